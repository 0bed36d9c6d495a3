"""scripts/bench_tls.py and scripts/bench_ops.py --nginx run end to end (very short runs).

Not timed: the figures are the scripts' business (the lead reruns them on a quiet machine);
what is asserted is that they measure every configuration without an error.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.support import ROOT

if shutil.which("wrk") is None and not os.environ.get("CI"):
    pytest.skip("reason: wrk is not installed (apt-get install wrk; .ci/run installs it)",
                allow_module_level=True)


def run(*argv: str) -> str:
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_bench_tls_measures_both_servers_over_tls_and_plain() -> None:
    out = run("scripts/bench_tls.py", "--runs", "1", "--duration", "1")
    for server in ("calcserve", "uvicorn"):
        assert re.search(rf"^{server}: negotiated TLSv1\.[23] ", out, re.M), out
        for scheme in ("https", "http"):
            assert re.search(rf"^{server} {scheme} +\d+ req/s .* errors 0$", out, re.M), out
    assert re.search(r"^https: calcserve / uvicorn = \d+\.\d\dx req/s", out, re.M), out


@pytest.mark.skipif(shutil.which("nginx") is None and shutil.which("/usr/sbin/nginx") is None,
                    reason="nginx is not installed (apt-get install nginx)")
def test_bench_ops_measures_nginx_over_unix_and_tcp() -> None:
    out = run("scripts/bench_ops.py", "--skip-workers", "--nginx", "--runs", "1",
              "--duration", "1")
    for transport in ("unix", "tcp"):
        assert re.search(rf"^nginx -> 2 instances over {transport} .* errors 0$", out, re.M), out
    assert "nginx over Unix sockets / over TCP:" in out
