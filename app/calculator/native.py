"""Which implementation runs: the package compiled to C by mypyc, when it is built and current,
else the same modules as pure Python.

The compiled modules are the package's own sources, unchanged, turned into C extensions by
mypyc (``python scripts/build_native.py``, which ``scripts/dev.py`` runs). It is the same code,
with direct calls between its functions and native attribute access on its classes: over the
server benchmark's corpus, 33,200 instructions per evaluation against 73,400 pure. They live
in ``_compiled/``, beside the sources, with a ``STAMP`` naming the digest of the sources they
were built from. Importing this module puts ``_compiled/`` first on
the package's ``__path__`` only when that digest is the digest of the sources here now: an
edited source runs as written, pure, until the next build (nothing stale can shadow it), and a
machine without a C compiler runs pure Python, with the same results.

``CALCSERVE_PURE_CALCULATOR=1`` in the environment chooses pure Python whatever is built.

Strategy: one decision, at the package's first import, before any other of its modules loads;
the digest reads the compiled modules' sources (~120 KB, ~0.2 ms), once per process.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import os
import sys
from pathlib import Path
from typing import Final, Literal

__all__ = ["COMPILED_DIR", "IMPLEMENTATION", "MODULES", "source_digest"]

_HERE: Final = Path(__file__).resolve().parent
COMPILED_DIR: Final = _HERE / "_compiled"

# The modules mypyc compiles: all but __init__ and this module, which decide which code loads.
MODULES: Final = (
    "api",
    "arithmetic",
    "cost",
    "display",
    "errors",
    "evaluator",
    "functions",
    "numbers",
    "parser",
    "powers",
    "tokens",
    "tree",
    "trig",
)


def source_digest() -> str:
    """The digest a build records: the compiled modules' sources and this interpreter's tag."""
    digest = hashlib.sha256(sys.implementation.cache_tag.encode())
    for name in MODULES:
        digest.update(name.encode() + b"\0" + (_HERE / f"{name}.py").read_bytes() + b"\0")
    return digest.hexdigest()


def _choose() -> Literal["compiled", "pure"]:
    if os.environ.get("CALCSERVE_PURE_CALCULATOR", "") not in ("", "0"):
        return "pure"
    try:
        stamp = (COMPILED_DIR / "STAMP").read_text().strip()
    except OSError:
        return "pure"  # never built here (or no compiler where it was installed)
    try:
        current = source_digest()
    except OSError:
        return "pure"  # sources not readable as files (a zip, or byte code only): cannot check
    if stamp != current:
        return "pure"  # built from other sources: stale, never loaded
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]  # this interpreter's own, as built
    built = set(os.listdir(COMPILED_DIR))
    if any(f"{name}{suffix}" not in built for name in (*MODULES, "_compiled__mypyc")):
        return "pure"  # a module missing (a partial copy): none of them loads
    package = sys.modules[__name__.rpartition(".")[0]]
    package.__path__.insert(0, str(COMPILED_DIR))
    return "compiled"


# "compiled" or "pure": what this process runs (the server logs it at start).
IMPLEMENTATION: Final = _choose()
