"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest

from tests.certs import Pki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA with a server and a client certificate (made by tests/certs.py)."""
    return make_pki(tmp_path_factory.mktemp("pki"))
