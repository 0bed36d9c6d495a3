"""Production operation: `--workers N` under faults and reloads, /metrics, access logs.

Every test runs the real `python -m app` (supervisor and workers as real processes) on a port of
its own and talks to it over loopback sockets. Load is a few client threads for a few seconds:
bounded, and never a timed assertion; what is asserted is that requests are answered.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.config import parse_config
from tests.support import (
    ROOT,
    RawResponse,
    ServerProcess,
    children,
    process_gone,
    read_response,
    recv_until_closed,
)
from tests.support import running_server as _running_server

WAIT = 20.0  # seconds for the supervisor to repair or reload; generous for a shared 2-core box


def running_server(*args: str) -> contextlib.AbstractContextManager[ServerProcess]:
    return _running_server("asyncio", *args)


def request(method: str, target: str, body: bytes = b"", *headers: str,
            close: bool = False) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: test", *headers]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def fetch(server: ServerProcess, target: str, raw: bytes | None = None) -> RawResponse:
    """One request on a fresh connection."""
    with server.connect() as sock:
        sock.sendall(raw if raw is not None else request("GET", target, close=True))
        return read_response(sock, bytearray())


def wait_for(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def metrics(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics, parsed by prometheus_client: {(sample name, sorted labels): value}."""
    response = fetch(server, "/metrics")
    assert response.status == 200
    assert (response.header("content-type") or "").startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@dataclass
class Load:
    """Client threads sending GET /calculate until stopped.

    Half of them open a connection per request; half keep connections alive and, like every
    HTTP client (RFC 9112 section 9.3.1), retry an idempotent request once on a fresh connection
    when a *reused* connection closes before any byte of the answer (the server closed it as idle
    just as the request left). Anything else that is not a 200 is a failure.
    """

    server: ServerProcess
    threads: int = 4
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        for index in range(self.threads):
            thread = threading.Thread(target=self._run, args=(index % 2 == 1,), daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(30)

    def count(self) -> int:
        with self._lock:
            return self.ok

    def _run(self, keep_alive: bool) -> None:
        sock: socket.socket | None = None
        n = 0
        while not self._stop.is_set():
            n += 1
            raw = request("GET", f"/calculate?expr={n}%2B1", close=not keep_alive)
            reused = sock is not None
            try:
                if sock is None:
                    sock = self.server.connect()
                response, sock = self._exchange(sock, raw, reused)
            except (OSError, ConnectionError) as exc:
                with self._lock:
                    self.failures.append(f"{'reused' if reused else 'fresh'}: {exc!r}")
                if sock is not None:
                    sock.close()
                sock = None
                continue
            with self._lock:
                if response.status == 200 and json.loads(response.body)["result"] == str(n + 1):
                    self.ok += 1
                else:
                    self.failures.append(f"{response.status} {response.body[:100]!r}")
            if not keep_alive or response.header("connection") == "close":
                sock.close()
                sock = None
        if sock is not None:
            sock.close()

    def _exchange(
        self, sock: socket.socket, raw: bytes, reused: bool
    ) -> tuple[RawResponse, socket.socket]:
        buffer = bytearray()
        try:
            sock.sendall(raw)
            return read_response(sock, buffer), sock
        except (OSError, ConnectionError):
            if not reused or buffer:
                raise
        sock.close()  # a stale keep-alive connection: retry once on a new one
        fresh = self.server.connect()
        fresh.sendall(raw)
        return read_response(fresh, bytearray()), fresh


# -- workers ----------------------------------------------------------------------------------


def test_two_workers_serve_and_both_answer() -> None:
    with running_server("--workers", "2") as server:
        assert len(children(server.proc.pid)) == 2
        for n in range(40):  # fresh connections: the kernel spreads them by address hash
            response = fetch(server, f"/calculate?expr={n}*2")
            assert response.status == 200
            assert json.loads(response.body)["result"] == str(n * 2)
        per_worker = {
            dict(labels)["worker"]: value
            for (name, labels), value in metrics(server).items()
            if name == "calcserve_worker_requests_total"
        }
        assert set(per_worker) == {"0", "1"}, per_worker
        assert all(value > 0 for value in per_worker.values())
        assert sum(per_worker.values()) == 40
        assert server.stop() == 0



@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_address_of_the_host_is_served(workers: str) -> None:
    """--host '' (every interface) resolves to 0.0.0.0 and, with IPv6, to ::: one socket each,
    one port, both served, with and without the supervisor. Connections go to loopback only."""
    passive = socket.getaddrinfo(None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    families = {info[0] for info in passive}
    loopbacks = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}
    assert socket.AF_INET in families, passive
    with running_server("--workers", workers, "--host", "") as server:
        port = server.address[1]
        for family in sorted(families & set(loopbacks)):
            with socket.create_connection((loopbacks[family], port), timeout=10) as sock:
                sock.sendall(request("GET", "/healthz", close=True))
                assert read_response(sock, bytearray()).status == 200, loopbacks[family]
        assert server.stop() == 0

def test_sigkill_of_a_worker_is_repaired_while_clients_get_answers() -> None:
    with running_server("--workers", "2") as server, Load(server) as load:
        assert wait_for(lambda: load.count() > 50)
        before = children(server.proc.pid)
        victim = min(before)
        subprocess.run(["kill", "-KILL", str(victim)], check=True)
        assert wait_for(lambda: len(children(server.proc.pid) - {victim}) == 2), "not repaired"
        after_repair = load.count()
        assert wait_for(lambda: load.count() > after_repair + 50)
        load.stop()
        # Only requests in flight on the killed worker can fail: at most one per client thread.
        assert len(load.failures) <= load.threads, load.failures
        assert "killed by SIGKILL" in server.stderr_text()
        assert server.stop() == 0


def test_sigterm_with_requests_in_flight_drains_and_exits_0() -> None:
    with running_server("--workers", "2", "--graceful-timeout", "10") as server:
        busy = [server.connect() for _ in range(4)]  # several: most likely on both workers
        body = b"expr=6*7"
        raw = request("POST", "/calculate", body, "Accept: application/json",
                      "Content-Type: application/x-www-form-urlencoded")
        for sock in busy:
            sock.sendall(raw[:-2])  # the head and part of the body: in flight
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert server.proc.poll() is None  # waiting for the in-flight requests
        for sock in busy:
            sock.sendall(raw[-2:])
            response = read_response(sock, bytearray())
            assert response.status == 200 and json.loads(response.body)["result"] == "42"
            assert response.header("connection") == "close"
            assert recv_until_closed(sock) == b""
            sock.close()
        assert server.proc.wait(15) == 0
        with pytest.raises(OSError):
            server.connect(timeout=2).sendall(request("GET", "/healthz"))
        assert "Traceback" not in server.stderr_text()


def test_sighup_replaces_every_worker_under_load_and_loses_nothing() -> None:
    with running_server("--workers", "2") as server, Load(server) as load:
        assert wait_for(lambda: load.count() > 50)
        before = children(server.proc.pid)
        server.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload complete" in server.stderr_text())
        # The old workers drain and exit; two new ones serve.
        assert wait_for(lambda: len(children(server.proc.pid)) == 2 and
                        not children(server.proc.pid) & before)
        reloaded_at = load.count()
        assert wait_for(lambda: load.count() > reloaded_at + 50)
        load.stop()
        assert load.failures == []
        assert load.ok > 100
        assert server.stop() == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_max_requests_recycles_workers_under_load_and_loses_nothing(workers: str) -> None:
    # One worker too: --max-requests runs the supervisor, which hands over as on SIGHUP.
    with running_server("--workers", workers, "--max-requests", "40",
                        "--max-requests-jitter", "10") as server, Load(server) as load:
        seen: set[int] = set()

        def recycled() -> bool:
            seen.update(children(server.proc.pid))
            return len(seen) >= 2 * int(workers) + 2 and load.count() > 300

        assert wait_for(recycled, 30), (seen, load.count(), server.stderr_text())
        load.stop()
        assert load.failures == []
        assert wait_for(lambda: len(children(server.proc.pid)) == int(workers))
        stderr = server.stderr_text()
        assert "answered its --max-requests: replacing it" in stderr
        assert "unexpectedly" not in stderr and "Traceback" not in stderr
        assert server.stop() == 0


def test_a_sighup_during_recycling_still_replaces_every_worker() -> None:
    with running_server("--workers", "2", "--max-requests", "200") as server, \
            Load(server) as load:
        assert wait_for(lambda: "--max-requests: replacing it" in server.stderr_text())
        before = children(server.proc.pid)
        server.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload complete" in server.stderr_text())
        assert wait_for(lambda: not children(server.proc.pid) & before)
        load.stop()
        assert load.failures == []


def test_workers_auto_is_one_per_usable_cpu() -> None:
    assert parse_config(["--workers", "auto"], environ={}).workers == len(os.sched_getaffinity(0))
    assert parse_config([], environ={"CALCSERVE_WORKERS": "3"}).workers == 3
    assert parse_config([], environ={}).workers == 1


def test_workers_exit_when_the_supervisor_is_killed() -> None:
    with running_server("--workers", "2") as server:
        workers = children(server.proc.pid)
        assert len(workers) == 2
        server.proc.kill()  # SIGKILL: no chance to stop them itself
        server.proc.wait(10)
        assert wait_for(lambda: all(process_gone(pid) for pid in workers)), "orphaned workers"


CRASHING_WORKER = """
import sys
from app.config import Config
from app.supervisor import run

def crash(config, context):
    print("worker", context.slot, "failing", file=sys.stderr, flush=True)
    return 7

sys.exit(run(Config(port=0), 2, crash))
"""


def test_a_crash_loop_makes_the_supervisor_give_up_loudly() -> None:
    done = subprocess.run([sys.executable, "-c", CRASHING_WORKER], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert "CRITICAL" in done.stderr and "crash loop, giving up" in done.stderr
    assert done.stderr.count("exited with status 7") >= 5
    assert "listening on" not in done.stdout


# -- metrics ----------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_metrics_count_every_request_across_workers(workers: str) -> None:
    with running_server("--workers", workers) as server:
        expected: Counter[tuple[str, str]] = Counter()
        for _ in range(7):
            assert fetch(server, "/healthz").status == 200
            expected["/healthz", "200"] += 1
        for n in range(5):
            assert fetch(server, f"/calculate?expr={n}%2B1").status == 200
            expected["/calculate", "200"] += 1
        for _ in range(3):
            assert fetch(server, "/calculate?expr=1/0").status == 422
            expected["/calculate", "422"] += 1
        raw = request("POST", "/calculate", b"sqr(2)", "Content-Type: text/plain", close=True)
        for _ in range(2):
            assert fetch(server, "", raw).status == 422
            expected["/calculate", "422"] += 1
        raw = request("POST", "/calculate", b"expr=2*(3", "Accept: text/html",
                      "Content-Type: application/x-www-form-urlencoded", close=True)
        assert fetch(server, "", raw).status == 422  # the page, with data-kind="syntax"
        expected["/calculate", "422"] += 1
        for _ in range(4):
            assert fetch(server, "/nope").status == 404
            expected["other", "404"] += 1
        assert fetch(server, "/static/app.js").status == 200
        expected["/static", "200"] += 1
        for _ in range(2):
            assert fetch(server, "", b"NOT HTTP AT ALL\r\n\r\n").status == 400

        first = metrics(server)
        expected["/metrics", "200"] += 1
        samples = metrics(server)  # the first scrape is counted in the second

        requests = {dict(labels)["route"] + " " + dict(labels)["status"]: value
                    for (name, labels), value in samples.items()
                    if name == "calcserve_http_requests_total"}
        assert requests == {f"{route} {status}": n for (route, status), n in expected.items()}
        assert samples["calcserve_calculator_errors_total", (("kind", "division_by_zero"),)] == 3
        assert samples["calcserve_calculator_errors_total", (("kind", "unknown_name"),)] == 2
        assert samples["calcserve_calculator_errors_total", (("kind", "syntax"),)] == 1
        assert samples["calcserve_protocol_errors_total", (("status", "400"),)] == 2
        calc = (("route", "/calculate"),)
        assert samples["calcserve_http_request_duration_seconds_count", calc] == 11
        assert samples["calcserve_http_request_duration_seconds_bucket",
                       (("le", "+Inf"), *calc)] == 11
        assert 0 < samples["calcserve_http_request_duration_seconds_sum", calc] < 10
        assert samples["calcserve_connections_total", ()] >= sum(expected.values()) + 2
        assert samples["calcserve_open_connections", ()] >= 1  # this scrape's own
        worker_total = sum(value for (name, _), value in samples.items()
                           if name == "calcserve_worker_requests_total")
        assert worker_total == sum(expected.values())
        assert first["calcserve_http_requests_total", (("route", "/healthz"),
                                                       ("status", "200"))] == 7
        assert server.stop() == 0


def test_metrics_survive_a_worker_restart() -> None:
    with running_server("--workers", "2") as server:
        for _ in range(20):
            assert fetch(server, "/healthz").status == 200
        victim = min(children(server.proc.pid))
        subprocess.run(["kill", "-KILL", str(victim)], check=True)
        assert wait_for(lambda: len(children(server.proc.pid) - {victim}) == 2)
        samples = metrics(server)
        # The dead worker's counts stay: a counter never goes down.
        assert samples["calcserve_http_requests_total",
                       (("route", "/healthz"), ("status", "200"))] == 20
        assert samples["calcserve_open_connections", ()] == 1


# -- access logs ------------------------------------------------------------------------------

# host ident authuser [date] "request line" status bytes
CLF = re.compile(
    r'^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2}'
    r' [+-]\d{4})\] "(?P<method>[A-Z]+) (?P<target>\S+) HTTP/(?P<version>1\.[01])" '
    r"(?P<status>\d{3}) (?P<size>\d+|-)$"
)


def make_logged_requests(server: ServerProcess) -> list[tuple[str, str, int]]:
    made = [("GET", "/healthz", 200), ("GET", "/calculate?expr=2%5E10", 200),
            ("GET", "/calculate?expr=1/0", 422), ("GET", "/nope", 404),
            ("HEAD", "/", 200)]
    for method, target, status in made:
        with server.connect() as sock:
            sock.sendall(request(method, target, close=True))
            assert read_response(sock, bytearray(), head_only=method == "HEAD").status == status
    return made


@pytest.mark.parametrize("workers", ["1", "2"])
def test_access_log_lines_are_common_log_format(workers: str) -> None:
    with running_server("--workers", workers, "--access-log") as server:
        made = make_logged_requests(server)
        assert server.stop() == 0
    lines = [m for line in server.stderr_text().splitlines() if (m := CLF.match(line))]
    assert sorted((m["method"], m["target"], int(m["status"])) for m in lines) == sorted(made)
    assert all(m["host"] == "127.0.0.1" for m in lines)
    sizes = {m["target"]: m["size"] for m in lines}
    assert sizes["/healthz"] == "2"  # "ok"
    assert sizes["/"] == "-"  # HEAD: no body sent


def test_access_log_json_lines_parse() -> None:
    with running_server("--workers", "2", "--access-log", "--log-format", "json") as server:
        made = make_logged_requests(server)
        assert server.stop() == 0
    records = [json.loads(line) for line in server.stderr_text().splitlines()
               if line.startswith("{")]
    assert sorted((r["method"], r["target"], r["status"]) for r in records) == sorted(made)
    for record in records:
        assert record["remote"] == "127.0.0.1" and record["protocol"] == "HTTP/1.1"
        assert record["duration_ms"] >= 0 and isinstance(record["pid"], int)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", record["time"])


def test_no_access_log_means_no_access_lines() -> None:
    with running_server("--workers", "2", "--no-access-log") as server:
        make_logged_requests(server)
        assert server.stop() == 0
    text = server.stderr_text()
    assert not any(CLF.match(line) for line in text.splitlines())
    assert '"target"' not in text


# -- the calculation pool under the supervisor -----------------------------------------------

COSTLY = "+".join(["sqrt(2)"] * 800)  # far past the inline budget: computed by the pool


def costly_request() -> bytes:
    body = ("expr=" + COSTLY.replace("+", "%2B")).encode()
    return request("POST", "/calculate", body,
                   "Content-Type: application/x-www-form-urlencoded", close=True)


def pool_workers(pid: int) -> set[int]:
    """The calculation workers among the children of `pid` (python -m app.pool_worker)."""
    found = set()
    for child in children(pid):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{child}/cmdline", "rb") as f:
            if b"app.pool_worker" in f.read():
                found.add(child)
    return found


def process_tree(pid: int) -> dict[int, set[int]]:
    """{server worker pid: its pool worker pids} under a supervisor."""
    return {worker: pool_workers(worker) for worker in children(pid)}


def test_calc_workers_auto_shares_the_cpus_among_the_workers() -> None:
    cpus = len(os.sched_getaffinity(0))
    assert parse_config([], environ={}).pool_size == cpus
    assert parse_config(["--workers", "2"], environ={}).pool_size == max(1, cpus // 2)
    assert parse_config(["--calc-workers", "0"], environ={}).pool_size == 0
    assert parse_config([], environ={"CALCSERVE_CALC_WORKERS": "3"}).pool_size == 3
    env = {"CALCSERVE_CALC_TIMEOUT": "0.25", "CALCSERVE_CALC_CLIENT_QUEUE": "2",
           "CALCSERVE_CALC_BACKLOG": "9"}
    config = parse_config([], environ=env)
    assert (config.calc_timeout, config.calc_client_queue, config.calc_backlog) == (0.25, 2, 9)
    with pytest.raises(SystemExit):
        parse_config(["--calc-workers", "-1"], environ={})
    with running_server("--workers", "2") as server:
        expected = max(1, cpus // 2)
        assert wait_for(lambda: len(process_tree(server.proc.pid)) == 2 and all(
            len(pool) == expected for pool in process_tree(server.proc.pid).values()))
        assert fetch(server, "", costly_request()).status == 200


def test_sighup_and_shutdown_leave_no_pool_process_behind() -> None:
    with running_server("--workers", "2", "--calc-workers", "1") as server:
        assert wait_for(lambda: sum(map(len, process_tree(server.proc.pid).values())) == 2)
        old = process_tree(server.proc.pid)
        old_pool = set().union(*old.values())
        assert fetch(server, "", costly_request()).status == 200
        server.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload complete" in server.stderr_text())
        assert wait_for(lambda: all(process_gone(pid) for pid in old_pool)), "orphans at reload"
        assert wait_for(lambda: (tree := process_tree(server.proc.pid)).keys().isdisjoint(old)
                        and len(tree) == 2 and all(len(pool) == 1 for pool in tree.values()))
        new_pool = set().union(*process_tree(server.proc.pid).values())
        assert fetch(server, "", costly_request()).status == 200
        assert server.stop() == 0
    assert all(process_gone(pid) for pid in new_pool), "orphans at shutdown"


def test_pool_workers_die_with_a_killed_server_worker() -> None:
    with running_server("--workers", "2", "--calc-workers", "2") as server:
        assert wait_for(lambda: sum(map(len, process_tree(server.proc.pid).values())) == 4)
        worker, pool = next(iter(process_tree(server.proc.pid).items()))
        os.kill(worker, signal.SIGKILL)  # no chance to close its pool: PR_SET_PDEATHSIG does
        assert wait_for(lambda: all(process_gone(pid) for pid in pool)), "orphaned pool workers"
        assert wait_for(lambda: fetch(server, "", costly_request()).status == 200)


def test_pool_metrics_count_jobs_shed_and_kills() -> None:
    with running_server("--calc-workers", "1", "--calc-client-queue", "1",
                        "--calc-timeout", "0.001") as server:
        # 2+ ticks of CPU (4 ms each): the 1 ms limit fires (as SLOW in tests/test_fairness.py)
        slow = "+".join(["(1+2i)^0.5"] * 700)
        body = urlencode({"expr": slow}).encode()
        raw = request("POST", "/calculate", body,
                      "Content-Type: application/x-www-form-urlencoded", close=True)
        first = fetch(server, "", raw)
        assert first.status == 422
        socks = [server.connect() for _ in range(3)]  # one client, one share: the rest shed
        for sock in socks:
            sock.sendall(raw)
            time.sleep(0.05)
        answers = [first, *(read_response(sock, bytearray()) for sock in socks)]
        for sock in socks:
            sock.close()
        statuses = sorted(a.status for a in answers)
        assert 429 in statuses and set(statuses) <= {422, 429}
        stopped = sum(b"stopped after 1 ms" in a.body for a in answers)
        assert stopped >= 1  # the kernel's limit fired (a job may end itself before a tick)
        samples = metrics(server)
        jobs = samples["calcserve_calc_jobs_total", ()]
        assert jobs == statuses.count(422)
        assert samples["calcserve_calc_shed_total", (("reason", "client_share"),)] == (
            statuses.count(429))
        assert samples["calcserve_calc_workers_killed_total", (("reason", "timeout"),)] == stopped
        assert samples["calcserve_calc_busy_seconds_total", ()] > 0
        assert samples["calcserve_calc_queue_depth", ()] == 0
        assert samples["calcserve_http_requests_total",
                       (("route", "/calculate"), ("status", "429"))] == statuses.count(429)
