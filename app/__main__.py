"""`python -m app`: parse the options (argv over CALCSERVE_* environment), then serve."""

from __future__ import annotations

from collections.abc import Sequence

from app.config import parse_config
from app.server import run


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the process exit code (0 after a graceful shutdown)."""
    return run(parse_config(argv))


if __name__ == "__main__":
    raise SystemExit(main())
