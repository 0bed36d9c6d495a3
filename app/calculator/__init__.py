"""Exact, safe, bounded expression evaluation for calcserve.

Public API::

    evaluate(text, *, budget=None) -> Result   # raises CalcError (or OverBudget with a budget)
    parse(text) -> Node                       # the syntax tree (CalcError for syntax, names)
    unparse(node) -> str                      # print a tree back as text that parses alike

Language
--------
Numbers ``12``, ``3.25``, ``.5``, ``1e3``, ``2.5E-4``, imaginary ``2i``; constants ``pi``
(``π``), ``e``, ``tau``, ``i``; degrees ``30°``; the functions in ``FUNCTIONS``; names are
case-insensitive. Precedence, high to low:

1. parentheses, function calls ``f(a, b)``
2. postfix ``!`` (factorial) and ``°`` (degrees)
3. ``^`` / ``**`` (right-associative; its right operand may carry a sign: ``2^-1 = 0.5``),
   prefix ``√`` (applies to the operand right after it: ``√2^2 = (√2)^2``, ``√4! = √(4!)``)
4. unary ``+ -`` (below ``^``: ``-2^2 = -4``)
5. ``* / // %`` (``×``, ``÷`` too), left-associative
6. ``+ -`` (``−`` too), left-associative

Implicit multiplication (``2pi``, ``3(4+5)``) is an error that points at the gap; ``2i`` is a
literal, as ``2j`` is in Python.

Values: exact rationals on GMP (``mpz``/``mpq``) up to 100,000 digits, approximations on MPFR
(correctly rounded at 256 bits, shown to 40 digits), complex values on MPC. See the modules:
``tokens`` (splitting text), ``parser`` (the grammar, once), ``evaluator`` (values as the
parser goes) and ``tree`` (the tree ``parse`` returns), ``numbers`` (values and bounds),
``arithmetic`` (operators), ``powers`` (powers, roots, logarithms, factorial), ``functions`` and
``trig`` (the function table), ``display``, ``cost`` (work accounting, budgets), ``errors``.

Bounds, decided before any big computation starts (no watchdog, no clock)
--------------------------------------------------------------------------
* ``MAX_EXPRESSION_LENGTH`` characters, ``MAX_DEPTH`` levels of nesting (a ``LimitError``, never
  a ``RecursionError``: the parser counts its depth explicitly).
* Exact results below 2**``MAX_EXACT_BITS`` (100,000 digits); larger ones are approximated.
* Approximations within 10^±``MAX_DECIMAL_EXPONENT``; beyond is a ``LimitError``, estimated from
  logarithms before computing.
* Work, estimated in units of about 1 µs, within ``WORK_BUDGET`` (a ``LimitError`` past it), and
  within the caller's ``budget`` if one is given (``OverBudget`` past it).
"""

from __future__ import annotations

from typing import Final

from app.calculator.cost import (
    EVALUATION_UNITS,
    INLINE_BUDGET,
    INLINE_MAX_LENGTH,
    TOKEN_MILLIUNITS,
    WORK_BUDGET,
)
from app.calculator.display import make_result
from app.calculator.errors import (
    CalcDomainError,
    CalcError,
    CalcSyntaxError,
    DivisionByZero,
    Fault,
    LimitError,
    OverBudget,
    Result,
    UnknownNameError,
)
from app.calculator.evaluator import Evaluator
from app.calculator.functions import CONSTANTS, FUNCTIONS
from app.calculator.numbers import (
    DISPLAY_DIGITS,
    MAX_DECIMAL_EXPONENT,
    MAX_EXACT_BITS,
    MAX_EXACT_DIGITS,
    PRECISION_BITS,
    WORK,
)
from app.calculator.parser import MAX_DEPTH
from app.calculator.powers import MAX_EXACT_FACTORIAL
from app.calculator.tokens import tokenize
from app.calculator.tree import Node, TreeBuilder, unparse

__all__ = [
    "CONSTANTS",
    "DISPLAY_DIGITS",
    "FUNCTIONS",
    "INLINE_BUDGET",
    "INLINE_MAX_LENGTH",
    "MAX_DECIMAL_EXPONENT",
    "MAX_DEPTH",
    "MAX_EXACT_BITS",
    "MAX_EXACT_DIGITS",
    "MAX_EXACT_FACTORIAL",
    "MAX_EXPRESSION_LENGTH",
    "PRECISION_BITS",
    "WORK_BUDGET",
    "CalcDomainError",
    "CalcError",
    "CalcSyntaxError",
    "DivisionByZero",
    "LimitError",
    "Node",
    "OverBudget",
    "Result",
    "UnknownNameError",
    "estimate_work",
    "evaluate",
    "parse",
    "unparse",
]

# 10,000 characters: far beyond any expression a person types (a full screen of text), small
# enough that tokenizing and parsing it take a few milliseconds.
MAX_EXPRESSION_LENGTH: Final = 10_000


def _tokens(text: str, budget: int | None) -> list[str]:
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
    return tokenize(text)


def parse(text: str) -> Node:
    """Parse ``text`` into a syntax tree (see ``unparse``); raises CalcError."""
    builder = TreeBuilder(text, _tokens(text, None))
    with WORK.copy():  # literals are valued as in evaluate(); a copy, as there
        return builder.parse()


def evaluate(text: str, *, budget: int | None = None) -> Result:
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
        toks = tokenize(text)  # every check of _tokens passes: the commonest case, without them
    else:
        toks = _tokens(text, budget)
    return _evaluate(Evaluator(text, toks, budget))


def estimate_work(text: str) -> tuple[int, Result | CalcError]:
    """The work units a full evaluation of ``text`` is charged (past WORK_BUDGET too), and its
    outcome: what `scripts/bench_calculator.py --budget` calibrates the cost model with."""
    spent = 0
    try:
        evaluator = Evaluator(text, _tokens(text, None), None, work_budget=1 << 62)
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
