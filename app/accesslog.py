"""Access log: one line per request, in the common log format or as JSON, written cheaply.

    127.0.0.1 - - [27/Nov/2026:06:46:32 +0000] "POST /calculate HTTP/1.1" 200 61
    {"time": "2026-11-27T06:46:32+00:00", "remote": "127.0.0.1", "method": "POST", ...}

The common log format (CLF) is what Apache, nginx's `common` and every log tool read; the JSON
form is for pipelines (Loki, Elasticsearch, jq) and adds the duration and the worker's pid.

Strategy: the `logging` module costs ~5-10 us a record (a LogRecord, a lock, a format, a write
per line); at tens of thousands of requests per second per core that is a large share of the
request. Here a line is one f-string (the CLF date is formatted once per second), appended to a
list; the lines of one event-loop iteration are written together at its end (`call_soon`). Each
`os.write` carries whole lines and at most PIPE_BUF bytes, which POSIX makes atomic on a pipe, so
the lines of several workers sharing one stderr never interleave mid-line.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
from collections.abc import Callable
from typing import Final

FORMATS: Final = ("common", "json")
# Bytes one write() may carry and still be atomic on a pipe (POSIX guarantees >= 512; 4096 on
# Linux). A line longer than this is written alone.
ATOMIC_WRITE: Final = getattr(select, "PIPE_BUF", 512)

_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                  "Dec")


def clf_time(epoch_seconds: int) -> str:
    """`[27/Nov/2026:06:46:32 +0000]`: the CLF timestamp, in UTC."""
    t = time.gmtime(epoch_seconds)
    return (f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000]")


def _escape(text: str) -> str:
    """Apache's escaping of the request line: `"` and `\\` escaped, controls as \\xHH."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable() and ord(char) < 0x7F:
            out.append(char)
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogateescape"))
    return "".join(out)


class AccessLog:
    """Formats request lines and writes them in batches to a file descriptor (stderr).

    Call `log(...)` once per response. `schedule` (the event loop's `call_soon`) runs the
    batched write at the end of the current loop iteration; without it each line is written at
    once. Call `flush()` before the process exits.
    """

    __slots__ = ("_fd", "_json", "_lines", "_pid", "_schedule", "_scheduled", "_second",
                 "_stamp")

    def __init__(
        self,
        fmt: str = "common",
        *,
        fd: int | None = None,
        schedule: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
        self._json = fmt == "json"
        self._fd = sys.stderr.fileno() if fd is None else fd
        self._schedule = schedule
        self._scheduled = False
        self._lines: list[str] = []
        self._second = -1
        self._stamp = ""
        self._pid = os.getpid()

    def log(
        self,
        remote: str,
        method: str,
        target: str,
        version: str,
        status: int,
        size: int,
        seconds: float,
        user_agent: str | None = None,
        *,
        scheme: str = "http",
    ) -> None:
        """Record one response: `size` is the body length sent (0 shows as `-` in CLF);
        `remote` and `scheme` are the client's (behind a trusted proxy: the forwarded ones)."""
        now = time.time()
        if self._json:
            line = json.dumps({
                "time": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now)),
                "remote": remote, "scheme": scheme, "method": method, "target": target,
                "protocol": f"HTTP/{version}", "status": status, "bytes": size,
                "duration_ms": round(seconds * 1000.0, 3), "user_agent": user_agent,
                "pid": self._pid,
            }, ensure_ascii=False)
        else:
            second = int(now)
            if second != self._second:
                self._second, self._stamp = second, clf_time(second)
            line = (f'{remote} - - {self._stamp} "{method} {_escape(target)} HTTP/{version}" '
                    f"{status} {size or '-'}")
        self._lines.append(line)
        if self._schedule is None:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._schedule(self.flush)

    def flush(self) -> None:
        """Write the pending lines: whole lines, at most ATOMIC_WRITE bytes per write."""
        self._scheduled = False
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        chunk: list[bytes] = []
        size = 0
        for text in lines:
            line = (text + "\n").encode("utf-8", "backslashreplace")
            if chunk and size + len(line) > ATOMIC_WRITE:
                self._write(b"".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        self._write(b"".join(chunk))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            # stderr closed or broken: losing access lines must never take the server down.
            pass
