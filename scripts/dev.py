#!/usr/bin/env python3
"""One entry point for a fresh machine that has only Python.

    python3 scripts/dev.py serve [ARGS...]   # make .venv if needed, then `python -m app ARGS...`
    python3 scripts/dev.py test  [PYTEST ARGS...]   # .venv with the test extra; ruff, mypy, pytest

The virtual environment lives in `.venv/` at the project root and is (re)installed only when
pyproject.toml changes, so the second run starts at once. Each command then compiles the
calculator with mypyc (scripts/build_native.py) when its sources changed since the last build:
~30 s once, nothing after. Without a C compiler that step says so and the pure Python calculator
runs, with the same results. Standard library only: this file runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _digest() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]


def ensure_venv(extras: str) -> None:
    """Create .venv and install the project (editable) with `extras`, unless already current."""
    stamp_file = VENV / ".calcserve-installed"
    if not PY.exists():
        print(f"creating {VENV}", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    # Extras already installed with this pyproject.toml count too: `serve` after `test` installs
    # nothing, and a new install keeps them (no reinstall each time the command changes).
    digest = _digest()
    installed_digest, _, installed = (
        stamp_file.read_text().partition(":") if stamp_file.exists() else ("", "", "")
    )
    have = set(filter(None, installed.split(","))) if installed_digest == digest else set()
    need = set(filter(None, extras.split(",")))
    if installed_digest == digest and need <= have:
        return
    extras = ",".join(sorted(need | have))
    spec = f".[{extras}]" if extras else "."
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "-e", spec], cwd=ROOT, check=True)
    stamp_file.write_text(f"{digest}:{extras}")


def run(argv: list[str]) -> int:
    return subprocess.run(argv, cwd=ROOT).returncode


def build_native() -> None:
    """Compile the calculator if its sources changed; a failed build leaves pure Python."""
    if run([str(PY), "scripts/build_native.py"]):
        print("dev.py: going on with the pure Python calculator", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"serve", "test", "bench"}:
        print(__doc__, file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "serve":
        ensure_venv("native")
        build_native()
        return run([str(PY), "-m", "app", *rest])
    if command == "bench":
        ensure_venv("test,bench")
        build_native()
        return run([str(PY), "scripts/bench.py", *rest])
    ensure_venv("test,bench")
    build_native()
    for step in (
        [str(PY), "-m", "ruff", "check", "app", "legacy", "tests", "scripts"],
        [str(PY), "-m", "mypy"],
    ):
        code = run(step)
        if code:
            return code
    return run([str(PY), "-m", "pytest", *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
