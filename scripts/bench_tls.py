#!/usr/bin/env python3
"""POST /calculate over TLS at 64 connections: `python -m app` against uvicorn, same certificate.

    python3 scripts/bench_tls.py                 # 3 interleaved rounds, 5 s per server and scheme
    python3 scripts/bench_tls.py --runs 5 --duration 10

Measured as scripts/bench_ops.py measures (its helpers, imported): wrk, one thread, 64 keep-alive
connections, scripts/bench_post.lua over scripts/bench.py's corpus; server CPU from /proc; the
server pinned to core 0 and wrk to core 1 when there are two cores and taskset. wrk speaks TLS
(without verifying the certificate). Each server is also run over plain HTTP in the same
interleaved rounds, so the report says what TLS leaves of the plain-HTTP lead.

- Both servers get one certificate made for the run by tests/certs.py (the openssl CLI): an EC
  P-256 key signed by a throwaway CA, what a public CA issues today. Both negotiate TLS 1.3 with
  wrk's OpenSSL (the line `negotiated` shows version and cipher per server).
- Connections are kept alive, so a run does 64 handshakes and then measures the record layer
  (encrypt, decrypt, framing) per request, which is what a keep-alive client costs; a
  handshake-per-request workload would measure OpenSSL's key exchange, the same code in both.
- uvicorn: scripts/bench_peers/uvicorn_app.py (httptools, uvloop, no access log) with
  `ssl_certfile`/`ssl_keyfile`, uvicorn's own TLS options; ours: `--ssl-certfile`/`--ssl-keyfile`.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import bench_ops  # noqa: E402  (after the path set-up: scripts/ is not a package)

from tests.certs import Pki, make_pki  # noqa: E402

SERVERS = ("calcserve", "uvicorn")
SCHEMES = ("https", "http")


def serve_uvicorn(cert: str | None, key: str | None) -> None:
    """The uvicorn peer, in this process (the `--uvicorn-peer` entry below)."""
    sys.path.insert(0, str(ROOT / "scripts" / "bench_peers"))
    import uvicorn_app

    options = {} if cert is None else {"ssl_certfile": cert, "ssl_keyfile": key}
    uvicorn_app.Server(uvicorn_app.make_config("127.0.0.1", 0, **options)).run()


def start(server: str, scheme: str, pki: Pki,
          core: int | None) -> tuple[subprocess.Popen[str], int]:
    tls = scheme == "https"
    if server == "calcserve":
        extra = ["--ssl-certfile", str(pki.cert), "--ssl-keyfile", str(pki.key)] if tls else []
        return bench_ops.start(ROOT, 1, core, extra)
    argv = [sys.executable, __file__, "--uvicorn-peer"]
    if tls:
        argv += ["--cert", str(pki.cert), "--key", str(pki.key)]
    return bench_ops.start_process(argv, core)


def negotiated(port: int, pki: Pki) -> str:
    context = ssl.create_default_context(cafile=str(pki.ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
        cipher = sock.cipher()
        return f"{sock.version()} {cipher[0] if cipher else '?'}"


def pinning() -> tuple[int, int] | None:
    import os
    import shutil

    cores = len(os.sched_getaffinity(0))
    return (0, 1) if cores >= 2 and shutil.which("taskset") else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--uvicorn-peer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.uvicorn_peer:
        serve_uvicorn(args.cert, args.key)
        return
    pin = pinning()
    print(f"pinned: server core {pin[0]}, wrk core {pin[1]}" if pin else "not pinned",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        pki = make_pki(Path(tmp) / "pki")
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(bench_ops.load_corpus()) + "\n")
        results: dict[tuple[str, str], list[dict[str, float]]] = {
            (server, scheme): [] for server in SERVERS for scheme in SCHEMES}
        for run in range(args.runs):
            for server in SERVERS:
                for scheme in SCHEMES:
                    proc, port = start(server, scheme, pki, pin[0] if pin else None)
                    try:
                        if run == 0 and scheme == "https":
                            print(f"{server}: negotiated {negotiated(port, pki)}", flush=True)
                        results[server, scheme].append(bench_ops.load(
                            proc, port, args.duration, corpus, pin[1] if pin else None,
                            scheme))
                    finally:
                        proc.terminate()
                        proc.wait(30)
    for (server, scheme), runs in results.items():
        bench_ops.summarize(f"{server} {scheme}", runs)

    def median(server: str, scheme: str, key: str) -> float:
        return statistics.median(r[key] for r in results[server, scheme])

    for scheme in SCHEMES:
        print(f"{scheme}: calcserve / uvicorn = "
              f"{median('calcserve', scheme, 'rps') / median('uvicorn', scheme, 'rps'):.2f}x req/s,"
              f" uvicorn's CPU per request / ours = "
              f"{median('uvicorn', scheme, 'cpu_us_per_req') / median('calcserve', scheme, 'cpu_us_per_req'):.2f}x",  # noqa: E501
              flush=True)
    for server in SERVERS:
        cost = (median(server, "https", "cpu_us_per_req")
                - median(server, "http", "cpu_us_per_req"))
        print(f"{server}: TLS adds {cost:.1f} us CPU per request", flush=True)


if __name__ == "__main__":
    main()
