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

# First: decides whether the compiled modules or the pure ones load (see native.py).
from app.calculator.native import IMPLEMENTATION

# isort: split
from app.calculator.api import MAX_EXPRESSION_LENGTH, estimate_work, evaluate, parse
from app.calculator.cost import (
    INLINE_BUDGET,
    INLINE_MAX_LENGTH,
    WORK_BUDGET,
)
from app.calculator.errors import (
    CalcDomainError,
    CalcError,
    CalcSyntaxError,
    DivisionByZero,
    LimitError,
    OverBudget,
    Result,
    UnknownNameError,
)
from app.calculator.functions import CONSTANTS, FUNCTIONS
from app.calculator.numbers import (
    DISPLAY_DIGITS,
    MAX_DECIMAL_EXPONENT,
    MAX_EXACT_BITS,
    MAX_EXACT_DIGITS,
    PRECISION_BITS,
)
from app.calculator.parser import MAX_DEPTH
from app.calculator.powers import MAX_EXACT_FACTORIAL
from app.calculator.tree import Node, unparse

__all__ = [
    "CONSTANTS",
    "DISPLAY_DIGITS",
    "FUNCTIONS",
    "IMPLEMENTATION",
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
