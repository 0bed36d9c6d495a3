"""`python -m app`: parse the options (argv over CALCSERVE_* environment), then serve.

`--workers 1` (the default) serves in this process; more, or `--max-requests` (worker
recycling needs someone to start the next worker), hands over to the pre-fork supervisor, which
imports the server only in its workers (so that SIGHUP reloads pick up new code).

Before anything listens, options that cannot work are refused with one line and exit status 2
(argparse's code for a usage error): contradictory options, and TLS files that are missing,
unreadable, or whose key does not match the certificate.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from app import listen, tls
from app.config import parse_config

PROG = "python -m app"
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the process exit code (0 after a graceful shutdown)."""
    config = parse_config(argv)
    found = listen.problems(config) + tls.problems(config)
    if not found and tls.enabled(config):
        try:
            tls.server_context(config)
        except tls.TLSError as exc:
            found.append(str(exc))
    if found:
        print(f"{PROG}: error: {found[0]}", file=sys.stderr)
        return EXIT_USAGE
    if config.workers > 1 or config.max_requests:
        from app import supervisor

        return supervisor.run(config, config.workers)
    from app.server import run

    return run(config)


if __name__ == "__main__":
    raise SystemExit(main())
