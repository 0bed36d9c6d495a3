"""Configuration of `python -m app`: one frozen dataclass, one argparse parser.

Every option is a field of `Config`, and the command-line parser is generated from those fields, so
an option is declared exactly once (uvicorn repeats each option in four places; we do not). Each
option can also come from the environment as `CALCSERVE_<NAME>` (`--max-connections` is
`CALCSERVE_MAX_CONNECTIONS`). Precedence: command line, then environment, then the default.

To add an option, add a field with `option(...)`: the flag, the environment variable, the help
text and validation follow from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

ENV_PREFIX: Final = "CALCSERVE_"
LOOPS: Final = ("auto", "uvloop", "asyncio")
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS: Final = ("common", "json")
SSL_CERT_REQS: Final = ("none", "optional", "required")

# The calculation pool's bounds (app/pool.py).
# 100 ms: the calculator's own promise (any input answers within it), now enforced by a kill.
CALC_TIMEOUT: Final = 0.1
# Jobs one client may have queued or running. A browser opens at most 6 connections to a host,
# and several people can share one address behind a NAT; 8 covers both, and a client's own
# queue drains in at most 8 of its turns.
CALC_CLIENT_QUEUE: Final = 8
# Jobs waiting in all: with 2 workers and jobs of ~20 ms (a 6,000-character sum of roots), the
# last waits ~0.6 s; even at the 100 ms limit, 3.2 s. Past that a client is better told 503.
CALC_BACKLOG: Final = 64


# Converters: each turns one string (from argv or the environment) into a value or raises
# ValueError with a message fit for the user.


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be between 0 and 65535 (0 picks a free port)")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a positive number of seconds")
    return value


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be one of 1/0, true/false, yes/no, on/off")


def worker_count(text: str) -> int:
    """`--workers`: a positive number, or `auto` for the CPUs this process may run on."""
    if text.strip().lower() == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            return os.cpu_count() or 1
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1, or auto")
    return value


def calc_worker_count(text: str) -> int | None:
    """`--calc-workers`: a number (0 = compute on the serving thread), or `auto` (None)."""
    if text.strip().lower() == "auto":
        return None
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 (no pool), a positive number, or auto")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def optional_path(text: str) -> str | None:
    """A file system path; empty means unset (handy for CALCSERVE_* templates)."""
    return text or None


def descriptor(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be a file descriptor number (0 or more)")
    return value


class Octal(int):
    """A file mode: shown as `0o660`, not `432`."""

    def __str__(self) -> str:
        return oct(self)


def file_mode(text: str) -> Octal:
    """`--uds-mode`: octal, with or without `0o`/`0` in front (`660`, `0660`, `0o660`)."""
    digits = text.strip().lower().removeprefix("0o")
    value = int(digits, 8)
    if not 0 <= value <= 0o777:
        raise ValueError("must be an octal mode between 0 and 777")
    return Octal(value)


def cert_reqs(text: str) -> str:
    """`--ssl-cert-reqs`: none|optional|required, or uvicorn's numbers 0|1|2 (ssl.CERT_*)."""
    lowered = text.strip().lower()
    lowered = {"0": "none", "1": "optional", "2": "required"}.get(lowered, lowered)
    if lowered not in SSL_CERT_REQS:
        raise ValueError(f"must be one of {', '.join(SSL_CERT_REQS)} (or 0, 1, 2)")
    return lowered


def trusted_proxies(text: str) -> str:
    """`--forwarded-allow-ips`: checked here, parsed by the server (app.forwarded)."""
    from app.forwarded import ProxyTrust

    ProxyTrust(text)  # raises ValueError naming the bad entry
    return ",".join(entry.strip() for entry in text.split(",") if entry.strip())


def choice(*choices: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        lowered = text.strip().lower()
        if lowered not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return lowered

    return convert


def option(
    default: Any, help: str, *, convert: Callable[[str], Any], metavar: str | None = None
) -> Any:
    """A `Config` field that is also a command-line option and an environment variable."""
    return field(
        default=default, metadata={"help": help, "convert": convert, "metavar": metavar}
    )


@dataclass(frozen=True)
class Config:
    """Everything `python -m app` can be told; the defaults are the production defaults."""

    host: str = option("127.0.0.1", "interface to listen on (IPv6 literals too, e.g. ::1)",
                       convert=str, metavar="HOST")
    port: int = option(8000, "TCP port; 0 picks a free one", convert=port_number, metavar="PORT")
    # 2048: uvicorn's and gunicorn's default; asyncio's own default of 100 drops SYNs under bursts.
    backlog: int = option(2048, "listen backlog (kernel caps it at net.core.somaxconn)",
                          convert=positive_int, metavar="N")
    # 16384: headroom over the benchmark's 10,000 idle keep-alive connections; an idle
    # connection costs a few KB, so this is bounded memory, not a throughput knob.
    max_connections: int = option(
        16384, "open connections at most; one more is answered 503 and closed",
        convert=positive_int, metavar="N")
    # Timeouts: the legacy modes' values (DESIGN contract), close to nginx (60 s client_header,
    # 75 s keepalive) scaled down for a calculator whose requests are tiny.
    header_timeout: float = option(
        10.0, "seconds for a whole request head to arrive (then 408); also closes a new "
        "connection that sends nothing", convert=positive_float, metavar="SECONDS")
    body_timeout: float = option(
        30.0, "seconds for a request body to arrive after its head (then 408); also bounds how "
        "long a client may leave responses unread", convert=positive_float, metavar="SECONDS")
    keepalive_timeout: float = option(
        5.0, "seconds an idle keep-alive connection is kept open", convert=positive_float,
        metavar="SECONDS")
    graceful_timeout: float = option(
        10.0, "on SIGTERM/SIGINT, seconds in-flight requests get to finish",
        convert=positive_float, metavar="SECONDS")
    access_log: bool = option(True, "log one line per request to stderr (see --log-format)",
                              convert=boolean)
    log_format: str = option("common", "access log format: common (CLF) or json",
                             convert=choice(*LOG_FORMATS), metavar="common|json")
    log_level: str = option("info", "logging level", convert=choice(*LOG_LEVELS),
                            metavar="|".join(LOG_LEVELS))
    loop: str = option("auto", "event loop: uvloop when importable (auto), or force one",
                       convert=choice(*LOOPS), metavar="|".join(LOOPS))
    # 1: the server runs in this process. More: a supervisor (app/supervisor.py) pre-forks them
    # on one port (SO_REUSEPORT), restarts the dead, and reloads them one by one on SIGHUP.
    workers: int = option(1, "worker processes; auto = one per CPU", convert=worker_count,
                          metavar="N|auto")
    # The calculation pool (app/pool.py): costly calculations leave the event loop. auto = the
    # CPUs this process may use divided among --workers, so that cores are not oversubscribed.
    calc_workers: int | None = option(
        None, "calculation worker processes per server process for expressions too costly for "
        "the event loop; 0 computes everything inline; auto = CPUs / --workers",
        convert=calc_worker_count, metavar="N|auto")
    calc_timeout: float = option(
        CALC_TIMEOUT, "seconds a pooled calculation may run before its worker is killed (the "
        "client gets a 422 limit error); time spent queued does not count",
        convert=positive_float, metavar="SECONDS")
    calc_client_queue: int = option(
        CALC_CLIENT_QUEUE, "costly calculations one client (address) may have queued or "
        "running; one more is 429 with Retry-After", convert=positive_int, metavar="N")
    calc_backlog: int = option(
        CALC_BACKLOG, "costly calculations waiting in all, per server process; one more is "
        "503 with Retry-After", convert=positive_int, metavar="N")
    # Production parity with uvicorn and gunicorn, under uvicorn's option names (gunicorn's for
    # worker recycling): TLS (app/tls.py), Unix sockets and socket activation (app/listen.py),
    # client addresses behind proxies (app/forwarded.py), worker recycling (app/supervisor.py).
    ssl_certfile: str | None = option(
        None, "TLS certificate chain (PEM); turns TLS on", convert=optional_path,
        metavar="PATH")
    ssl_keyfile: str | None = option(
        None, "private key of --ssl-certfile (PEM, unencrypted); unset: it is in the "
        "certificate file", convert=optional_path, metavar="PATH")
    ssl_ca_certs: str | None = option(
        None, "CA certificates (PEM file or directory) that sign client certificates",
        convert=optional_path, metavar="PATH")
    ssl_cert_reqs: str = option(
        "none", "client certificates: none, optional (verified if sent) or required",
        convert=cert_reqs, metavar="|".join(SSL_CERT_REQS))
    uds: str | None = option(
        None, "listen on this Unix socket instead of --host/--port (a stale socket file is "
        "replaced)", convert=optional_path, metavar="PATH")
    uds_mode: int = option(Octal(0o660), "permissions of the --uds socket file (octal)",
                           convert=file_mode, metavar="MODE")
    fd: int | None = option(
        None, "serve on this inherited listening socket (systemd's LISTEN_FDS is detected "
        "without it)", convert=descriptor, metavar="N")
    proxy_headers: bool = option(
        True, "believe X-Forwarded-For/-Proto and Forwarded from --forwarded-allow-ips",
        convert=boolean)
    # 127.0.0.1: uvicorn's default (a proxy on the same machine); a Unix-socket peer is always
    # trusted, as gunicorn does (the socket's mode decides who can connect).
    forwarded_allow_ips: str = option(
        "127.0.0.1", "peers trusted to name the client: comma list of addresses and CIDR "
        "networks, or *", convert=trusted_proxies, metavar="LIST")
    # 0: never, gunicorn's default; a cap bounds what a slow leak can cost.
    max_requests: int = option(
        0, "replace a worker after this many requests (0: never); runs the supervisor even "
        "with one worker", convert=non_negative_int, metavar="N")
    max_requests_jitter: int = option(
        0, "add a random 0..J to each worker's --max-requests, so workers do not all restart "
        "at once", convert=non_negative_int, metavar="J")

    def with_changes(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    @property
    def pool_size(self) -> int:
        """--calc-workers resolved: auto is this process's CPUs shared among --workers."""
        if self.calc_workers is not None:
            return self.calc_workers
        from app.pool import default_workers

        return default_workers(self.workers)


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser(prog: str = "python -m app") -> argparse.ArgumentParser:
    """The command-line parser; every flag defaults to None so the environment can fill in."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve the calculator over HTTP/1.1 with asyncio (uvloop when available).",
        epilog=f"Every option can also be set in the environment as {ENV_PREFIX}<NAME>, "
        f"e.g. {env_name('max_connections')}=512; the command line wins.",
    )
    for f in dataclasses.fields(Config):
        convert = f.metadata["convert"]
        help_text = f"{f.metadata['help']} (default: {_show(f.default)}; env {env_name(f.name)})"
        if convert is boolean:
            parser.add_argument(flag_name(f.name), dest=f.name, default=None, help=help_text,
                                action=argparse.BooleanOptionalAction)
        else:
            parser.add_argument(flag_name(f.name), dest=f.name, default=None, help=help_text,
                                type=_for_argparse(convert), metavar=f.metadata["metavar"])
    return parser


def parse_config(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """A `Config` from argv (default: sys.argv[1:]) over the environment (default: os.environ)."""
    parser = build_parser()
    namespace = parser.parse_args(argv)
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Config):
        given = getattr(namespace, f.name)
        if given is not None:
            values[f.name] = given
        elif env_name(f.name) in environ:
            raw = environ[env_name(f.name)]
            try:
                values[f.name] = f.metadata["convert"](raw)
            except ValueError as exc:
                parser.error(f"{env_name(f.name)}={raw!r}: {_reason(exc)}")
    return Config(**values)


def _show(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "auto"
    return str(value)


def _reason(exc: ValueError) -> str:
    text = str(exc)
    # int("x") says "invalid literal for int() with base 10: 'x'"; keep ours, simplify theirs.
    return "not a number" if text.startswith(("invalid literal", "could not convert")) else text


def _for_argparse(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def wrapped(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {_reason(exc)}") from None

    return wrapped
