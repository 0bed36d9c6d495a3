"""One calculation worker of `app.pool`: a child process that evaluates what it is sent.

Run by the pool as `python -m app.pool_worker PARENT_PID LIMIT`; nothing else should start it. It
reads jobs from stdin and writes outcomes to stdout, each a 4-byte big-endian length and a
payload: a job is the expression in UTF-8; an outcome is a pickled `("ok", Result)`,
`("error", CalcError)` or `("bug", text)`. The first thing it writes is `("ready", pid)`.

It computes one job at a time with the calculator's full budget, under a CPU-time limit the
kernel enforces: before each job it arms ITIMER_PROF for LIMIT seconds of its own CPU time, and
SIGPROF's default action terminates the process, even in the middle of a long GMP call. Time it
spends waiting for a CPU does not count, so a loaded machine does not turn slowness into
refusals; the pool also keeps a wall-clock backstop for a worker that is stopped or stuck in the
kernel. It lowers its own priority (POOL_NICE), so that when
the CPUs are short the serving threads win them, caps its address space (POOL_MEMORY), and dies
with its parent (PR_SET_PDEATHSIG on Linux; on stdin's end everywhere).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
import sys
from typing import BinaryIO, Final

# Niceness added to a worker: a serving thread woken by a cheap request preempts it at once.
# 10 is what `nice` itself adds by default.
POOL_NICE: Final = 10
# Address space a worker may map: the calculator's bounds keep a job's numbers to a few MB, so
# 2 GiB is only a backstop against a bug (the worker dies, its one client gets a 500).
POOL_MEMORY: Final = 2 * 1024**3
_HEADER: Final = struct.Struct(">I")
_PR_SET_PDEATHSIG: Final = 1


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL us when the parent goes; exit now if it already has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the prctl: nobody will read us
        os._exit(0)


def _limit_resources() -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.nice(POOL_NICE)
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (POOL_MEMORY, POOL_MEMORY))


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


def _send(stream: BinaryIO, message: object) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    _die_with_parent(int(args[0]) if args else os.getppid())
    limit = float(args[1]) if len(args) > 1 else 0.0
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server; it stops us
    arm = hasattr(signal, "setitimer") and limit > 0  # else the pool's wall clock alone
    if arm:
        signal.signal(signal.SIGPROF, signal.SIG_DFL)  # terminate: the limit's enforcement
    _limit_resources()
    from app.calculator import CalcError, evaluate

    evaluate("sin(1)+1/3")  # warm the caches before saying ready
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    _send(stdout, ("ready", os.getpid()))
    while True:
        header = _read_exact(stdin, _HEADER.size)
        if header is None:
            return 0  # the pool closed our stdin: done
        (size,) = _HEADER.unpack(header)
        payload = _read_exact(stdin, size)
        if payload is None:
            return 0
        expr = payload.decode("utf-8", "surrogatepass")
        if arm:
            signal.setitimer(signal.ITIMER_PROF, limit)
        try:
            outcome: tuple[str, object] = ("ok", evaluate(expr))
        except CalcError as error:
            outcome = ("error", error)
        except Exception as exc:  # a calculator bug: this job's client gets a 500, we go on
            outcome = ("bug", f"{type(exc).__name__}: {exc}")
        finally:
            if arm:
                signal.setitimer(signal.ITIMER_PROF, 0)
        _send(stdout, outcome)


if __name__ == "__main__":
    sys.exit(main())
