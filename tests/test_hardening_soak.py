"""The soak (scripts/soak.py) as tests: a short one always, minutes per mode when asked (-m slow).

Well-behaved clients must see zero failures while hostile ones hammer the same server, and the
server's descriptors and RSS must come back flat once the hostile leftovers are timed out.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any

import pytest

from tests.support import MODES, ROOT


def load_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("calcserve_soak", ROOT / "scripts" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


soak = load_soak()


def check(report: Any) -> None:
    print("\n" + report.summary())
    assert report.requests > 100, "the well-behaved clients barely ran"
    assert report.failures == 0, report.failure_samples
    assert report.server_alive
    assert sum(report.hostile_actions.values()) > 10
    assert report.fds_flat, "descriptors did not come back down"
    assert report.rss_flat, "RSS kept growing"
    assert report.tracebacks == 0
    assert report.passed


def test_short_soak_asyncio() -> None:
    check(soak.soak("asyncio", 8.0, clients=6, hostile_clients=3))  # -m slow: 180 s a mode


LONG_SOAK = 180.0  # seconds of load per mode


@pytest.mark.slow
@pytest.mark.timeout(LONG_SOAK + 120)  # the suite-wide 120 s would cut it off
@pytest.mark.parametrize("mode", MODES)
def test_long_soak(mode: str) -> None:
    check(soak.soak(mode, LONG_SOAK, clients=8, hostile_clients=4))
