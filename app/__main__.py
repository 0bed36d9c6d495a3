"""`python -m app`: parse the options (argv over CALCSERVE_* environment), then serve.

`--workers 1` (the default) serves in this process; more hands over to the pre-fork supervisor,
which imports the server only in its workers (so that SIGHUP reloads pick up new code).
"""

from __future__ import annotations

from collections.abc import Sequence

from app.config import parse_config


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the process exit code (0 after a graceful shutdown)."""
    config = parse_config(argv)
    if config.workers > 1:
        from app import supervisor

        return supervisor.run(config, config.workers)
    from app.server import run

    return run(config)


if __name__ == "__main__":
    raise SystemExit(main())
