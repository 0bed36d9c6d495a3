"""The public functions: `evaluate`, `parse` and `estimate_work` (re-exported by the package).

Strategy: `evaluate` does the commonest case's checks in one test (a text, short enough for any
budget), then one `Evaluator` parses, computes and charges; `make_result` shows the value.
"""

from __future__ import annotations

from typing import Final

from app.calculator.cost import EVALUATION_UNITS, INLINE_BUDGET, INLINE_MAX_LENGTH, TOKEN_MILLIUNITS
from app.calculator.display import make_result
from app.calculator.errors import CalcError, CalcSyntaxError, Fault, LimitError, OverBudget, Result
from app.calculator.evaluator import Evaluator
from app.calculator.numbers import WORK
from app.calculator.tokens import tokenize
from app.calculator.tree import Node, TreeBuilder

__all__ = ["MAX_EXPRESSION_LENGTH", "estimate_work", "evaluate", "parse"]

# 10,000 characters: far beyond any expression a person types (a full screen of text), small
# enough that tokenizing and parsing it take a few milliseconds.
MAX_EXPRESSION_LENGTH: Final = 10_000


def _checked(text: object, budget: int | None) -> tuple[str, list[str]]:
    """The text, checked, and its tokens. Texts are typed `object`: anything but a str is a
    CalcSyntaxError, not the TypeError that compiled code raises for an argument's type."""
    if not isinstance(text, str):
        raise CalcSyntaxError("expression must be text", 0, 1)
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise LimitError(
            f"expression is too long ({len(text)} characters, limit {MAX_EXPRESSION_LENGTH})",
            MAX_EXPRESSION_LENGTH,
            len(text) - MAX_EXPRESSION_LENGTH,
        )
    if budget is not None and len(text) > (budget - EVALUATION_UNITS) * 1000 // TOKEN_MILLIUNITS:
        # At one token per character, its tokens alone would pass the budget (INLINE_MAX_LENGTH
        # is this length for INLINE_BUDGET): refused before any work.
        raise OverBudget(EVALUATION_UNITS + len(text) * TOKEN_MILLIUNITS // 1000, budget)
    return text, tokenize(text)


def parse(text: object) -> Node:
    """Parse ``text`` into a syntax tree (see ``unparse``); raises CalcError."""
    builder = TreeBuilder(*_checked(text, None))
    with WORK.copy():  # literals are valued as in evaluate(); a copy, as there
        return builder.parse()


def evaluate(text: object, *, budget: int | None = None) -> Result:
    """Evaluate an expression; raises CalcError when it cannot.

    With ``budget`` (work units, ~1 µs each; see ``INLINE_BUDGET``) it raises ``OverBudget``
    as soon as the estimated work passes it, and otherwise returns exactly what it returns
    without one.
    """
    if (
        isinstance(text, str)
        and len(text) <= INLINE_MAX_LENGTH
        and (budget is None or budget >= INLINE_BUDGET)
    ):
        toks = tokenize(text)  # every check of _checked passes: the commonest case, without them
    else:
        text, toks = _checked(text, budget)
    return _evaluate(Evaluator(text, toks, budget))


def estimate_work(text: object) -> tuple[int, Result | CalcError]:
    """The work units a full evaluation of ``text`` is charged (past WORK_BUDGET too), and its
    outcome: what `scripts/bench_calculator.py --budget` calibrates the cost model with."""
    spent = 0
    try:
        evaluator = Evaluator(*_checked(text, None), None, work_budget=1 << 62)
        try:
            outcome: Result | CalcError = _evaluate(evaluator)
        finally:
            spent = evaluator.spent
    except CalcError as error:
        outcome = error
    return spent, outcome


def _evaluate(evaluator: Evaluator) -> Result:
    text = evaluator.text
    try:
        evaluator.charge_tokens(evaluator.n)
    except Fault as fault:  # at one token per character, a text can only pass WORK_BUDGET here
        raise LimitError(fault.message, 0, max(1, len(text))) from None
    # The arithmetic names its contexts, but a few gmpy2 calls read the thread's current one
    # (an mpfr's decimal digits round in its rounding mode): make that WORK for the duration,
    # whatever the caller's thread had set (0.4 µs). A copy, entered by this call alone: a
    # context object keeps the one it replaced, so threads entering the shared WORK at once
    # restore each other's and fail ("Unexpected failure in restoring context", or a crash).
    with WORK.copy():
        value = evaluator.parse()
        if evaluator.error is not None:  # the first fault, once the whole text has parsed
            raise evaluator.error
        try:
            return make_result(text, value, evaluator)
        except Fault as fault:
            raise LimitError(fault.message, 0, max(1, len(text))) from None
