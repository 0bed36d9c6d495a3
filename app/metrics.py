"""Prometheus metrics for `python -m app`, exact across pre-forked workers, cheap per request.

What is counted (all names start with `calcserve_`):

    http_requests_total{route,status}           counter    every response to a parsed request
    http_request_duration_seconds{route}         histogram  its bytes read to its response queued
    open_connections                             gauge      connections open right now
    connections_total                            counter    connections accepted
    protocol_errors_total{status}                counter    requests refused by app/protocol.py
    calculator_errors_total{kind}                counter    422s, by CalcError.kind
    worker_requests_total{worker}                counter    requests per worker slot (balance)
    calc_queue_depth                             gauge      costly calculations waiting for the pool
    calc_jobs_total                              counter    calculations the pool computed
    calc_busy_seconds_total                      counter    pool worker time spent on them
    calc_shed_total{reason}                      counter    refused at once: client_share (429),
                                                            saturated (503)
    calc_workers_killed_total{reason}            counter    pool workers killed: timeout, lost

`route` is one of a fixed set (`/`, `/static`, `/calculate`, `/healthz`, `/metrics`, `other`)
and `status` one of the statuses the server can send (else `other`), so no client can grow the
label space: a label per raw path would let anyone fill the scraper's memory.

Strategy: every metric has a fixed slot in one flat array of float64 (the layout below), and
the hot path is a couple of `array[i] += 1` on a memoryview over that array. A worker's array is
a `mmap` of its own file `<dir>/worker-<pid>.bin`; GET /metrics in any worker reads every file
in the directory, sums them and renders the sum with prometheus_client's exposition code. Only
the owner ever writes a file, so there are no locks; an aligned 8-byte store is atomic on the
platforms we run on, so a reader never sees a torn value. When a worker dies the supervisor
folds its counters into a per-slot `retired-<slot>.bin` (counters never go down, as Prometheus
requires) and removes its file, under a lock that readers share; so the directory holds one file
per live worker plus one per slot, however many restarts and reloads. With one process there is
no directory: the array lives in anonymous memory.

Why not prometheus_client's own multiprocess mode (PROMETHEUS_MULTIPROC_DIR)? Measured on the
2-core CI box (`python -m app.metrics` runs the comparison with timeit): a connection gauge
inc/dec plus `labels(..).inc()` plus `labels(..).observe()` costs 9-12 us in multiprocess mode
(6.5 us single-process; 4.7 us even with the labelled children cached), the slot array 0.3-0.8 us
for the same work. Everything the driver adds per request (two perf_counter reads, the /metrics
test, `request_done`, the 422 test) is ~0.9 us by timeit, against 45-170 us of server CPU per
request on that box (GET /healthz to POST /calculate, scripts/bench_ops.py): about 1-2%, where
the library would cost 10-20%. prometheus_client is still used, but only off the hot path: a
custom collector feeds `generate_latest`, which owns the text format (escaping, `le` labels,
`_bucket`/`_sum`/`_count`), so we do not write the exposition by hand. It is imported on the
first scrape.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import fcntl
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

ROUTES: Final = ("/", "/static", "/calculate", "/healthz", "/metrics", "other")
_ROUTE_INDEX: Final = {
    route: index for index, route in enumerate(ROUTES[:-1]) if route != "/static"
}
_STATIC_PREFIX: Final = "/static/"
_STATIC: Final = ROUTES.index("/static")
_OTHER_ROUTE: Final = len(ROUTES) - 1

# Everything app/routes.py and app/protocol.py answer, plus the drivers' 503; anything else is
# counted as "other" rather than dropped.
STATUSES: Final = (
    100, 200, 204, 304, 400, 404, 405, 408, 413, 414, 415, 422, 429, 431, 500, 501, 503, 505
)
_STATUS_INDEX: Final = {status: index for index, status in enumerate(STATUSES)}
_STATUS_LABELS: Final = (*(str(status) for status in STATUSES), "other")
_OTHER_STATUS: Final = len(STATUSES)

CALC_ERROR_KINDS: Final = ("syntax", "unknown_name", "domain", "division_by_zero", "limit")
_KIND_INDEX: Final = {kind: index for index, kind in enumerate(CALC_ERROR_KINDS)}
_KIND_LABELS: Final = (*CALC_ERROR_KINDS, "other")
SHED_REASONS: Final = ("client_share", "saturated")  # app.work's, as label values
KILL_REASONS: Final = ("timeout", "lost")

# Upper bounds in seconds. The server answers a calculation in tens of microseconds, so the
# bottom buckets are finer than prometheus_client's defaults (which start at 5 ms and would put
# every request in the first bucket); the top ones catch a loop stalled by a huge computation.
BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)

# Worker slots beyond this share the last label value; 256 workers is past any sane machine.
MAX_WORKER_LABEL: Final = 256

# The layout: one float64 per slot.
_MAGIC: Final = 0  # LAYOUT_VERSION, so a reader can skip a file written by other code
_PID: Final = 1
_WORKER: Final = 2
_OPEN: Final = 3
_ACCEPTED: Final = 4
_REQUESTS: Final = 8  # ROUTES x (STATUSES + other)
_PER_ROUTE: Final = len(_STATUS_LABELS)
_HIST: Final = _REQUESTS + len(ROUTES) * _PER_ROUTE  # ROUTES x (BUCKETS + +Inf), not cumulative
_PER_HIST: Final = len(BUCKETS) + 1
_HIST_SUM: Final = _HIST + len(ROUTES) * _PER_HIST  # ROUTES
_PROTOCOL: Final = _HIST_SUM + len(ROUTES)  # STATUSES + other
_CALC: Final = _PROTOCOL + len(_STATUS_LABELS)  # KINDS + other
_POOL_QUEUE: Final = _CALC + len(_KIND_LABELS)
_POOL_JOBS: Final = _POOL_QUEUE + 1
_POOL_BUSY: Final = _POOL_JOBS + 1
_POOL_SHED: Final = _POOL_BUSY + 1  # SHED_REASONS
_POOL_KILLED: Final = _POOL_SHED + len(SHED_REASONS)  # KILL_REASONS
SLOTS: Final = _POOL_KILLED + len(KILL_REASONS)
LAYOUT_VERSION: Final = 1.0 + SLOTS / 1e6  # changes whenever the layout does
_FILE_SIZE: Final = SLOTS * 8
_PREFIX: Final = "worker-"
_RETIRED: Final = "retired-"


# (exact route path, status) -> (count slot, first histogram slot, sum slot): a fixed, finite
# table (exact routes x known statuses), so the hot path is one dict lookup.
_EXACT_SLOTS: Final = {
    (path, status): (
        _REQUESTS + route * _PER_ROUTE + s, _HIST + route * _PER_HIST, _HIST_SUM + route
    )
    for path, route in _ROUTE_INDEX.items()
    for s, status in enumerate(STATUSES)
}
_bisect_left: Final = bisect.bisect_left


def route_index(path: str) -> int:
    """The label slot for a request path (still percent-encoded, without the query)."""
    index = _ROUTE_INDEX.get(path)
    if index is not None:
        return index
    return _STATIC if path.startswith(_STATIC_PREFIX) else _OTHER_ROUTE


class Metrics:
    """One process's counters. Drivers call the `connection_*`/`request_done`/`*_error` methods
    (each a few slot increments); the /metrics handler calls `render()`.

    `Metrics()` keeps the counters in anonymous memory (one process). `Metrics.for_worker(dir,
    slot)` keeps them in a file in `dir` that every other worker's `render()` reads too.
    """

    __slots__ = ("_buffer", "_mmap", "_values", "directory")

    def __init__(self, directory: Path | None = None, worker: int = 0) -> None:
        self.directory = directory
        self._mmap: mmap.mmap | None = None
        if directory is None:
            self._buffer: bytearray | mmap.mmap = bytearray(_FILE_SIZE)
        else:
            path = directory / f"{_PREFIX}{os.getpid()}.bin"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.ftruncate(fd, _FILE_SIZE)
                self._mmap = mmap.mmap(fd, _FILE_SIZE)
            finally:
                os.close(fd)
            self._buffer = self._mmap
        self._values = memoryview(self._buffer).cast("d")
        self._values[_PID] = os.getpid()
        self._values[_WORKER] = worker
        self._values[_MAGIC] = LAYOUT_VERSION  # last: a reader skips a file until it is set up

    @classmethod
    def for_worker(cls, directory: Path, worker: int) -> Metrics:
        return cls(directory, worker)

    # -- hot path: keep each of these to a few slot updates -----------------------------------

    def connection_opened(self) -> None:
        values = self._values
        values[_OPEN] += 1.0
        values[_ACCEPTED] += 1.0

    def connection_closed(self) -> None:
        self._values[_OPEN] -= 1.0

    def request_done(self, path: str, status: int, seconds: float) -> None:
        """Count one response to a parsed request and its latency in seconds."""
        values = self._values
        known = _EXACT_SLOTS.get((path, status))
        if known is not None:  # the common case: one bounded-dict lookup for all three slots
            count, hist, total = known
        else:
            route = _ROUTE_INDEX.get(path)
            if route is None:
                route = _STATIC if path.startswith(_STATIC_PREFIX) else _OTHER_ROUTE
            count = _REQUESTS + route * _PER_ROUTE + _STATUS_INDEX.get(status, _OTHER_STATUS)
            hist = _HIST + route * _PER_HIST
            total = _HIST_SUM + route
        values[count] += 1.0
        values[hist + _bisect_left(BUCKETS, seconds)] += 1.0
        values[total] += seconds

    def protocol_error(self, status: int) -> None:
        self._values[_PROTOCOL + _STATUS_INDEX.get(status, _OTHER_STATUS)] += 1.0

    def calculator_error(self, kind: str) -> None:
        self._values[_CALC + _KIND_INDEX.get(kind, len(CALC_ERROR_KINDS))] += 1.0

    # -- the calculation pool (app.pool.PoolObserver): its thread and the serving thread -------
    # write different slots; each slot has one writing thread, except calc_shed (the serving
    # threads, which in the thread models are many: a lost increment there is tolerated).

    def calc_queue_depth(self, depth: int) -> None:
        self._values[_POOL_QUEUE] = float(depth)

    def calc_busy(self, seconds: float) -> None:
        values = self._values
        values[_POOL_JOBS] += 1.0
        values[_POOL_BUSY] += seconds

    def calc_shed(self, reason: str) -> None:
        if reason in SHED_REASONS:
            self._values[_POOL_SHED + SHED_REASONS.index(reason)] += 1.0

    def calc_killed(self, reason: str) -> None:
        if reason in KILL_REASONS:
            self._values[_POOL_KILLED + KILL_REASONS.index(reason)] += 1.0

    # -- reading -------------------------------------------------------------------------------

    def snapshot(self) -> list[tuple[int, array.array[float]]]:
        """(worker slot, values) for this process and, with a directory, every worker's file."""
        if self.directory is None:
            return [(int(self._values[_WORKER]), array.array("d", self._values.tobytes()))]
        return read_directory(self.directory)

    def render(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of the sum over all workers."""
        return render(self.snapshot())

    def close(self) -> None:
        self._values.release()
        if self._mmap is not None:
            self._mmap.close()


@contextlib.contextmanager
def _locked(directory: Path, operation: int) -> Iterator[None]:
    """Readers share the directory; retiring a worker's file takes it alone (microseconds)."""
    fd = os.open(directory / "lock", os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)  # releases the lock


def _load(path: Path) -> array.array[float] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) != _FILE_SIZE:
        return None
    values = array.array("d", data)
    return values if values[_MAGIC] == LAYOUT_VERSION else None


def read_directory(directory: Path) -> list[tuple[int, array.array[float]]]:
    """(slot, values) of every live worker's file and every slot's retired totals."""
    found = []
    with _locked(directory, fcntl.LOCK_SH):
        for pattern in (f"{_PREFIX}*.bin", f"{_RETIRED}*.bin"):
            for path in directory.glob(pattern):
                values = _load(path)
                if values is not None:
                    found.append((int(values[_WORKER]), values))
    return found


def retire_worker(directory: Path, pid: int) -> None:
    """Fold a dead worker's counters into its slot's `retired-<slot>.bin` and remove its file.

    Counters must never go down, so a dead worker's counts stay in the totals; folding them
    keeps the directory at one file per live worker plus one per slot however often workers
    are restarted or reloaded. Its open-connections gauge is dropped: those connections died
    with it.
    """
    path = directory / f"{_PREFIX}{pid}.bin"
    with _locked(directory, fcntl.LOCK_EX):
        values = _load(path)
        if values is not None:
            slot = int(values[_WORKER])
            archive = directory / f"{_RETIRED}{slot}.bin"
            total = _load(archive) or array.array("d", bytes(_FILE_SIZE))
            values[_OPEN] = values[_POOL_QUEUE] = 0.0  # gauges of a process that is gone
            for index in range(_OPEN, SLOTS):
                total[index] += values[index]
            total[_WORKER] = slot
            total[_MAGIC] = LAYOUT_VERSION
            staging = directory / f"{_RETIRED}{slot}.tmp"
            staging.write_bytes(total.tobytes())
            os.replace(staging, archive)  # readers see the old totals or the new, never half
        path.unlink(missing_ok=True)


def render(snapshot: list[tuple[int, array.array[float]]]) -> bytes:
    """Sum the per-worker values and format them with prometheus_client."""
    # Imported here so that a server that is never scraped never pays for the import.
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )

    total = [0.0] * SLOTS
    per_worker: dict[int, float] = {}
    for worker, values in snapshot:
        for index in range(_OPEN, SLOTS):
            total[index] += values[index]
        requests = sum(values[_REQUESTS:_HIST])
        label = min(worker, MAX_WORKER_LABEL)
        per_worker[label] = per_worker.get(label, 0.0) + requests

    def families() -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "calcserve_http_requests", "Responses to parsed requests, by route and status.",
            labels=("route", "status"))
        for r, route in enumerate(ROUTES):
            for s, status in enumerate(_STATUS_LABELS):
                value = total[_REQUESTS + r * _PER_ROUTE + s]
                if value:
                    requests.add_metric((route, status), value)
        yield requests

        latency = HistogramMetricFamily(
            "calcserve_http_request_duration_seconds",
            "Time from a parsed request to its response written, by route.",
            labels=("route",))
        for r, route in enumerate(ROUTES):
            counts = total[_HIST + r * _PER_HIST : _HIST + (r + 1) * _PER_HIST]
            if not any(counts):
                continue
            cumulative, buckets = 0.0, []
            for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append((_float_label(bound), cumulative))
            latency.add_metric((route,), buckets, total[_HIST_SUM + r])
        yield latency

        yield GaugeMetricFamily(
            "calcserve_open_connections", "Client connections open now.", value=total[_OPEN])
        yield CounterMetricFamily(
            "calcserve_connections", "Client connections accepted.", value=total[_ACCEPTED])

        protocol = CounterMetricFamily(
            "calcserve_protocol_errors", "Requests refused by the HTTP/1.1 parser, by status.",
            labels=("status",))
        for s, status in enumerate(_STATUS_LABELS):
            if total[_PROTOCOL + s]:
                protocol.add_metric((status,), total[_PROTOCOL + s])
        yield protocol

        calc = CounterMetricFamily(
            "calcserve_calculator_errors", "Expressions the calculator refused (422), by kind.",
            labels=("kind",))
        for k, kind in enumerate(_KIND_LABELS):
            if total[_CALC + k]:
                calc.add_metric((kind,), total[_CALC + k])
        yield calc

        workers = CounterMetricFamily(
            "calcserve_worker_requests", "Responses to parsed requests, by worker slot.",
            labels=("worker",))
        for worker in sorted(per_worker):
            workers.add_metric((str(worker),), per_worker[worker])
        yield workers

        yield GaugeMetricFamily(
            "calcserve_calc_queue_depth", "Costly calculations waiting for a pool worker.",
            value=total[_POOL_QUEUE])
        yield CounterMetricFamily(
            "calcserve_calc_jobs", "Calculations computed by the pool.", value=total[_POOL_JOBS])
        yield CounterMetricFamily(
            "calcserve_calc_busy_seconds", "Pool worker time spent on calculations.",
            value=total[_POOL_BUSY])
        shed = CounterMetricFamily(
            "calcserve_calc_shed", "Calculations refused at once: client_share is a 429, "
            "saturated a 503.", labels=("reason",))
        for i, reason in enumerate(SHED_REASONS):
            shed.add_metric((reason,), total[_POOL_SHED + i])
        yield shed
        killed = CounterMetricFamily(
            "calcserve_calc_workers_killed", "Pool workers killed: timeout (past "
            "--calc-timeout), lost (died on their own).", labels=("reason",))
        for i, reason in enumerate(KILL_REASONS):
            killed.add_metric((reason,), total[_POOL_KILLED + i])
        yield killed

    class _Collector:
        def collect(self) -> Iterator[Metric]:
            return families()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry)


def _float_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


def _compare_costs(n: int = 200_000) -> None:
    """Print the per-request cost of this module against prometheus_client's multiprocess mode."""
    import tempfile
    import timeit

    with tempfile.TemporaryDirectory() as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        from prometheus_client import Counter, Gauge, Histogram

        counter = Counter("req", "requests", ["route", "status"])
        histogram = Histogram("latency", "latency", ["route"], buckets=BUCKETS)
        gauge = Gauge("conns", "connections", multiprocess_mode="livesum")

        def library() -> None:
            gauge.inc()
            counter.labels("/calculate", "200").inc()
            histogram.labels("/calculate").observe(0.0004)
            gauge.dec()

        metrics = Metrics(Path(directory), 0)

        def slots() -> None:
            metrics.connection_opened()
            metrics.request_done("/calculate", 200, 0.0004)
            metrics.connection_closed()

        for name, func in (("prometheus_client multiprocess", library), ("slot array", slots)):
            seconds = min(timeit.repeat(func, number=n, repeat=3)) / n
            print(f"{name:32} {seconds * 1e6:6.2f} us per request (gauge +-1, count, observe)")
        metrics.close()


if __name__ == "__main__":
    _compare_costs()
