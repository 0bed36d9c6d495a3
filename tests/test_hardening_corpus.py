"""Replay the hostile-request corpus (tests/hostile_corpus.py) over real sockets, in every mode.

Each case is sent in one write on a fresh connection. The responses must have the expected
statuses (and named fields, e.g. `Allow`); where framing is in doubt the server must say
`Connection: close` and then close with nothing more on the wire; where it is not, a follow-up
request on the same connection is served. A case that stops right after an offending head line
must be answered at once: well inside half the header timeout, so never by the timeout's 408.
After every case a well-formed request on a fresh connection must still be answered 200, so one
bad client never takes the server down with it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile_corpus import CASES, Case, healthz_latency, replay
from tests.support import MODES, ServerProcess, running_server

# Small timeouts: a case the server wrongly waits on fails in seconds instead of hanging.
HEADER_TIMEOUT = 2.0
SERVER_ARGS = ("--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", "2",
               "--keepalive-timeout", "5")
# An early refusal is one read and one write; the header timeout fires only at HEADER_TIMEOUT.
# Half of it leaves room for a loaded machine and still tells the two apart.
PROMPT = HEADER_TIMEOUT / 2


@pytest.fixture(scope="module", params=MODES)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with running_server(request.param, *SERVER_ARGS) as proc:
        yield proc
        assert proc.proc.poll() is None, f"{proc.mode} died: {proc.stderr_text()[-2000:]}"
    tracebacks = proc.stderr_text().count("Traceback")
    # Client garbage is a 4xx, not a crash: nothing in the corpus may reach a traceback.
    assert tracebacks == 0, f"{proc.mode} logged {tracebacks} tracebacks:\n{proc.stderr_text()}"


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 100
    assert sum(case.close is True for case in CASES) >= 60
    assert sum(case.prompt for case in CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_request(server: ServerProcess, case: Case) -> None:
    outcome = replay(server.address, case)
    got = [response.status for response in outcome.responses]
    wanted = [sorted(statuses) for statuses in case.statuses]
    assert all(s in allowed for s, allowed in zip(got, case.statuses, strict=True)), (
        f"{case.name} ({case.source}): statuses {got}, wanted {wanted}"
    )
    last = outcome.responses[-1]
    for name, value in case.headers:
        assert last.header(name) == value, f"{case.name}: {name}: {last.header(name)!r}"
    if case.prompt:
        assert outcome.elapsed < PROMPT, (
            f"{case.name}: answered after {outcome.elapsed:.2f} s, not at the offending line"
        )
    says_close = (last.header("connection") or "").lower() == "close"
    if case.close is True:
        assert says_close, f"{case.name}: framing in doubt but no 'Connection: close' ({got})"
    if case.close is False:
        assert not says_close, f"{case.name}: connection closed but it need not be ({got})"
    if case.close is True or says_close:
        assert outcome.closed, f"{case.name}: said close but the connection stayed open"
        assert outcome.extra == b"", f"{case.name}: bytes after the response: {outcome.extra!r}"
    else:
        assert outcome.probe_status == 200, f"{case.name}: follow-up got {outcome.probe_status}"
    # And the server still serves a well-behaved client on a fresh connection.
    healthz_latency(server.address)
