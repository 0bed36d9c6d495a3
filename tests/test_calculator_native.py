"""The compiled calculator (scripts/build_native.py, app/calculator/native.py): when it loads, and
that it answers exactly as the pure Python sources do.

Each check runs in a child interpreter, as the choice is made once, at the package's import.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.calculator import native

ROOT = Path(__file__).resolve().parent.parent
BUILT = native.IMPLEMENTATION == "compiled"

# Prints the implementation, then one line per text: its display, exactness and fraction, or
# its error's kind and span (what the API promises, the same in both implementations).
_PROBE = """
import json, sys
import app.calculator as c
print(c.IMPLEMENTATION)
for text in json.loads(sys.stdin.read()):
    try:
        r = c.evaluate(text)
        print(json.dumps([r.display, r.exact, r.fraction]))
    except c.CalcError as e:
        print(json.dumps([e.kind, e.message, e.position, e.length]))
"""


def _probe(texts: list[str], *, pure: bool, path: Path = ROOT) -> tuple[str, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(path)}
    env.pop("CALCSERVE_PURE_CALCULATOR", None)
    if pure:
        env["CALCSERVE_PURE_CALCULATOR"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        env=env,
        cwd=path,
        timeout=120,
        check=True,
    )
    first, *rest = done.stdout.splitlines()
    return first, rest


def _texts() -> list[str]:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import bench_calculator
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    server = [text for _, text in bench_calculator.server_corpus()]
    hostile = [text for _, text in bench_calculator._hostile()]
    return [*bench_calculator.CORPUS, *server, *hostile, "1/0 +", "sin(", "2^^3", "(1+2i)^0.5"]


def test_the_choice_is_the_stamp_and_the_environment() -> None:
    # Whatever this machine built: compiled exactly when the stamp names these sources, and pure
    # Python whenever the environment asks for it.
    stamp = native.COMPILED_DIR / "STAMP"
    current = stamp.exists() and stamp.read_text().strip() == native.source_digest()
    assert _probe([], pure=False)[0] == ("compiled" if current else "pure")
    assert _probe([], pure=True)[0] == "pure"


@pytest.mark.skipif(not BUILT, reason="no compiled calculator here (scripts/build_native.py)")
def test_compiled_and_pure_give_the_same_answers() -> None:
    texts = _texts()
    compiled_impl, compiled = _probe(texts, pure=False)
    pure_impl, pure = _probe(texts, pure=True)
    assert (compiled_impl, pure_impl) == ("compiled", "pure")
    assert len(compiled) == len(texts)
    differ = [(t, c, p) for t, c, p in zip(texts, compiled, pure, strict=True) if c != p]
    assert differ == []


@pytest.mark.skipif(not BUILT, reason="no compiled calculator here (scripts/build_native.py)")
def test_a_source_edited_after_the_build_runs_as_written(tmp_path: Path) -> None:
    # A copy of the package with its build: compiled as copied; once a compiled module's source
    # changes, that source runs (pure), never the stale build.
    shutil.copytree(ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    assert _probe(["1+1"], pure=False, path=tmp_path) == ("compiled", ['["2", true, null]'])
    display = tmp_path / "app" / "calculator" / "display.py"
    source = display.read_text()
    marker = "def make_result(text: str, value: Value, led: Ledger) -> Result:\n"
    assert marker in source
    display.write_text(
        source.replace(marker, marker + '    return Result(text, "edited", True, None)\n')
    )
    assert _probe(["1+1"], pure=False, path=tmp_path) == ("pure", ['["edited", true, null]'])


def test_a_partial_build_is_never_loaded(tmp_path: Path) -> None:
    # A stamp that matches, with a compiled module missing: pure Python, not a mixture.
    shutil.copytree(ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    compiled = tmp_path / "app" / "calculator" / "_compiled"
    shutil.rmtree(compiled, ignore_errors=True)
    compiled.mkdir()
    digest = _digest_of_copy(tmp_path)
    (compiled / "STAMP").write_text(digest + "\n")
    assert _probe(["2^10"], pure=False, path=tmp_path) == ("pure", ['["1024", true, null]'])


def _digest_of_copy(root: Path) -> str:
    code = "from app.calculator import native; print(native.source_digest())"
    env = {**os.environ, "PYTHONPATH": str(root), "CALCSERVE_PURE_CALCULATOR": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root,
        timeout=60, check=True,
    )  # fmt: skip
    return out.stdout.strip()
