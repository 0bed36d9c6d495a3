"""The inline work budget: ``evaluate(text, budget=N)`` answers cheap expressions exactly as a
full evaluation does and refuses costly ones with ``OverBudget`` (issue 13's fairness work).

No timing here: the estimate is deterministic, and what it is worth in CPU is measured by
``scripts/bench_calculator.py --budget`` (the calibration table).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.calculator import (
    INLINE_BUDGET,
    INLINE_MAX_LENGTH,
    MAX_EXPRESSION_LENGTH,
    WORK_BUDGET,
    CalcError,
    CalcSyntaxError,
    DivisionByZero,
    LimitError,
    OverBudget,
    Result,
    estimate_work,
    evaluate,
)
from tests.test_fuzz_calculator import calc_text

# What people type (the server benchmark's candidates and the calculator bench's corpus).
CHEAP = [
    "1+2", "sqrt(2)", "2*(3+4)/5", "0.1+0.2", "1/3", "1/3+1/6", "22/7-3", "2^10", "2^100",
    "2^64-1", "(1+2)*(3+4)*(5+6)", "((2+3)*4-5)/6", "-7+3*-2", "12345679*9", "3.14159*2",
    "1e3/7", "sqrt(16)+sqrt(9)", "pi", "2*pi*6371", "e^2", "sin(pi/6)", "cos(0)+sin(0)",
    "ln(10)", "log(1000)", "abs(-42)", "10!", "100/7*7", "(1/2)^8", "1.5e-3*4",
    "99999999*99999999", "19.99 * 3 * 1.2", "100 * 1.07^10", "factorial(20)", "hypot(3, 4)",
    "round(2/3, 4)", "max(3, 7, 2) - min(4, 1)", "exp(1)", "cos(1) ^ 2 + sin(1) ^ 2",
    "gcd(1071, 462)", "atan2(1, 2)", "sqrt(-4)", "(1+2i)*(3-i)", "ln(-1)", "sin(30°)",
]  # fmt: skip

COSTLY = [
    "+".join(["3^0.7"] * 1600),  # ~20 ms of CPU
    "+".join(["sqrt(2)"] * 800),
    "factorial(20000)",
    "*".join(f"sin({k})" for k in range(1, 61)),
    "7^123456",
    "25000!",
    "10^109999",
    "(10^5000+1)/(10^4999+3) + 1/7^5000",
    "(3^100000 + 1) % (7^30000 - 2)",
]


def test_constants() -> None:
    assert INLINE_BUDGET == 250
    assert INLINE_BUDGET < WORK_BUDGET
    assert 0 < INLINE_MAX_LENGTH < MAX_EXPRESSION_LENGTH


@pytest.mark.parametrize("text", CHEAP)
def test_cheap_expressions_are_answered_within_the_budget(text: str) -> None:
    assert evaluate(text, budget=INLINE_BUDGET) == evaluate(text)
    assert estimate_work(text)[0] <= INLINE_BUDGET


@pytest.mark.parametrize("text", COSTLY, ids=lambda t: t[:24])
def test_costly_expressions_are_over_budget(text: str) -> None:
    with pytest.raises(OverBudget) as info:
        evaluate(text, budget=INLINE_BUDGET)
    assert info.value.budget == INLINE_BUDGET
    assert info.value.spent > INLINE_BUDGET
    assert not isinstance(info.value, CalcError)
    full = estimate_work(text)[0]
    assert full > INLINE_BUDGET


def test_long_text_is_refused_before_tokenising() -> None:
    text = "1+" * (INLINE_MAX_LENGTH // 2) + "1"
    assert len(text) > INLINE_MAX_LENGTH
    with pytest.raises(OverBudget):
        evaluate(text, budget=INLINE_BUDGET)
    # Even when it would not parse: the length alone decides, up front.
    with pytest.raises(OverBudget):
        evaluate(")" * (INLINE_MAX_LENGTH + 1), budget=INLINE_BUDGET)
    # At the limit it is evaluated (one token per character costs what the check assumes).
    at_limit = "1+" * ((INLINE_MAX_LENGTH - 1) // 2) + "1"
    assert len(at_limit) <= INLINE_MAX_LENGTH
    assert evaluate(at_limit, budget=INLINE_BUDGET) == evaluate(at_limit)


def test_errors_within_the_budget_are_raised_as_usual() -> None:
    with pytest.raises(CalcSyntaxError):
        evaluate("1+", budget=INLINE_BUDGET)
    with pytest.raises(DivisionByZero) as info:
        evaluate("1/0", budget=INLINE_BUDGET)
    assert (info.value.position, info.value.length) == (2, 1)
    with pytest.raises(LimitError):  # refused from an estimate, before any work: cheap
        evaluate("9^9^9^9", budget=INLINE_BUDGET)
    with pytest.raises(LimitError):  # too long for any evaluation: the limit, not the budget
        evaluate("1" * (MAX_EXPRESSION_LENGTH + 1), budget=INLINE_BUDGET)


def test_a_large_budget_is_a_full_evaluation() -> None:
    text = "+".join(["25000!"] * 300)
    with pytest.raises(LimitError, match="too much work"):
        evaluate(text)
    with pytest.raises(LimitError, match="too much work"):
        evaluate(text, budget=WORK_BUDGET * 10)
    with pytest.raises(OverBudget):
        evaluate(text, budget=WORK_BUDGET // 2)


def test_over_budget_can_be_raised_bare() -> None:
    # A caller with nothing to spend inline (routes, budget 0) raises it without evaluating.
    with pytest.raises(OverBudget):
        raise OverBudget
    with pytest.raises(OverBudget):
        evaluate("1+2", budget=0)


def test_the_estimate_is_deterministic() -> None:
    for text in COSTLY[:3] + CHEAP[:3]:
        assert estimate_work(text) == estimate_work(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.sampled_from(CHEAP + COSTLY), calc_text))
def test_budgeted_evaluation_is_the_full_one_or_over_budget(text: str) -> None:
    def outcome(budget: int | None) -> Result | tuple[str, str, int, int]:
        try:
            return evaluate(text, budget=budget)
        except CalcError as err:
            return (err.kind, err.message, err.position, err.length)

    try:
        inline = outcome(INLINE_BUDGET)
    except OverBudget:
        assert estimate_work(text)[0] > INLINE_BUDGET or len(text) > INLINE_MAX_LENGTH
        return
    assert inline == outcome(None)
