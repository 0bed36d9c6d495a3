"""Routes stay pure: a costly /calculate comes back as a `Deferred` (the job and a pure renderer).

Through the public API only: `Routes.handle(request, budget)` and `Deferred.render(outcome)`.
The renderer must give, for a calculator outcome, exactly the response that inline evaluation
gives, and for the pool's own outcomes (shed, stopped) the statuses DESIGN.md names.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from app.calculator import INLINE_BUDGET, INLINE_MAX_LENGTH, CalcError, evaluate
from app.protocol import Connection, Request, Response
from app.routes import Deferred, Routes, load_assets
from app.work import Job, Shed, Stopped

COSTLY = "+".join(["sqrt(2)"] * 800)
ROUTES = Routes(load_assets())


def parse(raw: bytes) -> Request:
    """One request, parsed by the real core from its bytes."""
    conn = Connection()
    conn.receive_data(raw)
    event = conn.next_event()
    assert isinstance(event, Request), event
    return event


def post(content_type: str, body: bytes, accept: str = "application/json") -> Request:
    return parse(f"POST /calculate HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\n"
                 f"Accept: {accept}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)


def calc(expr: str, mode: str) -> Request:
    """A /calculate request for `expr` answered as `mode` (json, text or html)."""
    if mode == "text":
        return post("text/plain", expr.encode(), "text/plain")
    body = b"expr=" + quote(expr, safe="").encode()
    accept = "text/html" if mode == "html" else "application/json"
    return post("application/x-www-form-urlencoded", body, accept)


def deferred(expr: str, mode: str, budget: int = INLINE_BUDGET) -> Deferred:
    answer = ROUTES.handle(calc(expr, mode), budget)
    assert isinstance(answer, Deferred), answer
    return answer


@pytest.mark.parametrize("mode", ["json", "text", "html"])
def test_a_costly_calculation_is_deferred_and_renders_as_inline_would(mode: str) -> None:
    work = deferred(COSTLY, mode)
    assert work.job == Job(COSTLY)
    inline = ROUTES.handle(calc(COSTLY, mode))  # no budget: computed here, as without a pool
    assert isinstance(inline, Response) and inline.status == 200
    rendered = work.render(evaluate(COSTLY))
    assert (rendered.status, rendered.headers, rendered.body) == (
        inline.status, inline.headers, inline.body)


@pytest.mark.parametrize("mode", ["json", "text", "html"])
def test_a_calculator_error_from_the_pool_renders_as_inline_would(mode: str) -> None:
    expr = "1/(2-2)" + "+1" * INLINE_MAX_LENGTH  # long enough to be deferred at once
    work = deferred(expr, mode)
    with pytest.raises(CalcError) as error:
        evaluate(expr)
    inline = ROUTES.handle(calc(expr, mode))
    assert isinstance(inline, Response)
    rendered = work.render(error.value)
    assert (rendered.status, rendered.body, rendered.reason) == (
        422, inline.body, "division_by_zero")


def test_cheap_expressions_and_early_errors_are_answered_inline_within_the_budget() -> None:
    cheap = ROUTES.handle(calc("1+2", "json"), INLINE_BUDGET)
    assert isinstance(cheap, Response) and json.loads(cheap.body)["result"] == "3"
    syntax = ROUTES.handle(calc("2pi", "json"), INLINE_BUDGET)
    assert isinstance(syntax, Response) and syntax.status == 422
    assert json.loads(syntax.body)["error"]["kind"] == "syntax"


def test_a_zero_budget_defers_every_calculation_but_nothing_else() -> None:
    work = ROUTES.handle(calc("1+2", "json"), 0)
    assert isinstance(work, Deferred) and work.job == Job("1+2")
    page = ROUTES.handle(parse(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 0)
    assert isinstance(page, Response) and page.status == 200
    bad = ROUTES.handle(post("application/json", b"{not json"), 0)
    assert isinstance(bad, Response) and bad.status == 400


@pytest.mark.parametrize(("shed", "status", "kind"), [
    (Shed("client_share", 3), 429, "too_many_requests"),
    (Shed("saturated", 7), 503, "unavailable"),
])
def test_a_shed_job_is_429_or_503_with_retry_after(shed: Shed, status: int, kind: str) -> None:
    for mode in ("json", "text", "html"):
        response = deferred(COSTLY, mode).render(shed)
        assert response.status == status
        assert ("Retry-After", str(shed.retry_after)) in response.headers
        assert f"try again in {shed.retry_after} s".encode() in response.body
        assert response.reason == kind
    as_json = json.loads(deferred(COSTLY, "json").render(shed).body)
    assert as_json["error"]["kind"] == kind
    # A browser's form post gets the calculator page back, the expression kept, the reason shown.
    page = deferred(COSTLY, "html").render(shed)
    assert dict(page.headers)["Content-Type"].startswith("text/html")
    assert f'data-kind="{kind}"'.encode() in page.body
    assert b'value="sqrt(2)+sqrt(2)' in page.body
    assert b"caret-mark" not in page.body  # nothing in the text is at fault


def test_a_job_stopped_at_the_time_limit_is_a_422_limit_error() -> None:
    response = deferred(COSTLY, "json").render(Stopped("timeout", 0.1))
    assert response.status == 422
    error = json.loads(response.body)["error"]
    assert error["kind"] == "limit"
    assert "stopped after 100 ms" in error["message"]
    assert (error["position"], error["length"]) == (0, len(COSTLY))
    page = deferred(COSTLY, "html").render(Stopped("timeout", 0.25))
    assert page.status == 422 and b"stopped after 250 ms" in page.body


def test_a_job_whose_worker_died_is_a_500_that_says_so() -> None:
    for mode in ("json", "text", "html"):
        response = deferred(COSTLY, mode).render(Stopped("lost", 0.1))
        assert response.status == 500
        assert b"worker process stopped unexpectedly" in response.body
        assert not any(name == "Retry-After" for name, _ in response.headers)
    assert b'data-kind="internal"' in deferred(COSTLY, "html").render(Stopped("lost", 0.1)).body


def test_an_expression_past_the_length_limit_is_refused_inline_not_deferred() -> None:
    from app.calculator import MAX_EXPRESSION_LENGTH

    answer = ROUTES.handle(calc("(" * (MAX_EXPRESSION_LENGTH + 1), "json"), INLINE_BUDGET)
    assert isinstance(answer, Response) and answer.status == 422
    assert json.loads(answer.body)["error"]["kind"] == "limit"
