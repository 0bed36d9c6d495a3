"""Compile the calculator with mypyc into app/calculator/_compiled/ (see app/calculator/native.py).

    python scripts/build_native.py            # build unless _compiled/ is current; say which
    python scripts/build_native.py --force    # build even if it is current
    python scripts/build_native.py --clean    # remove _compiled/ (the package runs pure Python)

Needs mypy (its mypyc) and a C compiler with the Python headers. The build takes ~30 s and
happens only when a compiled module's source changed. Without a compiler it prints why and
exits 1, and the package goes on running pure Python: nothing depends on the build but speed.

Strategy: mypyc's setuptools integration (``mypycify``) builds in a temporary directory; the
extension modules are then moved into ``_compiled/`` together, and ``STAMP`` (the sources'
digest) is written last, so a failed or interrupted build leaves nothing that loads.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ["CALCSERVE_PURE_CALCULATOR"] = "1"  # this process only reads native.py's facts
from app.calculator import native  # noqa: E402

# Run in a child, by `python -c`: setuptools' setup() parses its own argv and may exit.
_BUILD = """
import sys
from mypyc.build import mypycify
from setuptools import setup
sources, build_lib, build_temp = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
setup(
    name="calcserve-calculator-compiled",
    ext_modules=mypycify(sources, opt_level="3", group_name="app.calculator._compiled",
                         target_dir=build_temp),
    script_args=["-q", "build_ext", "--build-lib", build_lib, "--build-temp", build_temp],
)
"""


def is_current() -> bool:
    try:
        stamp = (native.COMPILED_DIR / "STAMP").read_text().strip()
    except OSError:
        return False
    return stamp == native.source_digest()


def build() -> None:
    digest = native.source_digest()
    sources = ",".join(f"app/calculator/{name}.py" for name in native.MODULES)
    with tempfile.TemporaryDirectory(prefix="calcserve-mypyc-") as tmp:
        build_lib, build_temp = Path(tmp, "lib"), Path(tmp, "temp")
        subprocess.run(
            [sys.executable, "-c", _BUILD, sources, str(build_lib), str(build_temp)],
            cwd=ROOT,
            check=True,
        )
        built = sorted((build_lib / "app" / "calculator").glob("*.so")) + sorted(
            (build_lib / "app" / "calculator").glob("*.pyd")
        )
        names = {path.name.split(".", 1)[0] for path in built}
        missing = {*native.MODULES, "_compiled__mypyc"} - names
        if missing:
            raise SystemExit(f"build_native: mypyc built no module for {sorted(missing)}")
        shutil.rmtree(native.COMPILED_DIR, ignore_errors=True)
        staging = Path(tmp, "_compiled")
        staging.mkdir()
        for path in built:
            shutil.copy2(path, staging / path.name)
        (staging / "STAMP").write_text(digest + "\n")  # last: what makes the directory load
        shutil.move(str(staging), native.COMPILED_DIR)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="build even if current")
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules")
    args = parser.parse_args(argv)
    if args.clean:
        shutil.rmtree(native.COMPILED_DIR, ignore_errors=True)
        print(f"build_native: removed {native.COMPILED_DIR.relative_to(ROOT)}")
        return 0
    if is_current() and not args.force:
        print("build_native: the compiled calculator is current")
        return 0
    try:
        import mypyc  # noqa: F401
    except ImportError:
        print("build_native: mypyc is not installed (pip install mypy); pure Python runs")
        return 1
    print("build_native: compiling app/calculator with mypyc (~30 s)", flush=True)
    try:
        build()
    except (subprocess.CalledProcessError, OSError) as error:
        print(f"build_native: the build failed ({error}); pure Python runs", file=sys.stderr)
        return 1
    print(f"build_native: built {native.COMPILED_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
