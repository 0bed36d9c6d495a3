"""Exact, safe, bounded expression evaluation for calcserve.

Public API::

    evaluate(text) -> Result          # raises CalcError, and only CalcError
    parse(text) -> Node               # the syntax tree (CalcError for syntax and unknown names)
    unparse(node) -> str              # print a tree back as text that parses to an equivalent tree

Language
--------
Numbers ``12``, ``3.25``, ``.5``, ``1e3``, ``2.5E-4``; constants ``pi`` (``π``), ``e``, ``tau``;
the functions in ``FUNCTIONS``; names are case-insensitive. Precedence, high to low:

1. parentheses, function calls ``f(a, b)``
2. postfix ``!`` (factorial)
3. ``^`` / ``**`` (right-associative; its right operand may carry a sign: ``2^-1 = 0.5``),
   prefix ``√`` (applies to the operand right after it: ``√2^2 = (√2)^2``, ``√4! = √(4!)``)
4. unary ``+ -`` (below ``^``: ``-2^2 = -4``)
5. ``* / // %`` (``×``, ``÷`` too), left-associative
6. ``+ -`` (``−`` too), left-associative

Implicit multiplication (``2pi``, ``3(4+5)``) is an error that points at the gap.

Arithmetic
----------
Strategy: a value is an ``int``, a ``fractions.Fraction`` (exact rationals) or an mpmath ``mpf``
tuple from ``mpmath.libmp`` (inexact).  ``+ - * / // %`` and integer powers on exact values stay
exact; roots and logs of exact values stay exact when the answer is rational (``sqrt(9/4)``,
``log10(1000)``, ``8^(1/3)``).  Everything else is computed with ``PRECISION_BITS`` of binary
precision (about 77 significant digits) and flagged inexact.  The low-level libmp functions take
the precision as an argument, so there is no global mpmath context to race on between threads.

Display: exact integers in full; everything else rounded to ``DISPLAY_DIGITS`` (40) significant
digits, trailing zeros trimmed, plain decimal for magnitudes 1e-10 <= |x| < 1e40 and scientific
notation without a ``+`` (``3.230e954242``) outside that range.

Bounds, decided before any big computation starts (no watchdog thread)
-----------------------------------------------------------------------
* ``MAX_EXPRESSION_LENGTH`` characters, ``MAX_DEPTH`` levels of nesting (a ``LimitError``, never a
  ``RecursionError``: the parser counts its depth explicitly).
* Exact numerators and denominators stay below ``2**MAX_EXACT_BITS`` (so at most 10,000 digits).
  A result that would be larger is approximated instead (``3^2000000`` is ``3.2317...e954242``),
  which is cheap because mpf exponents are plain integers.
* Approximations stay within 10^±``MAX_DECIMAL_EXPONENT``; anything beyond (``9^9^9^9``,
  ``factorial(10^100)``) is a ``LimitError``, estimated from logarithms before computing.
* Big-number work is charged against ``WORK_BUDGET`` (cost ~ bits^2, the shape of CPython's
  quadratic division, gcd and str conversion), so even a 10,000-character expression full of
  10,000-digit fractions ends within the 100 ms goal; over budget it is a ``LimitError``.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, TypeAlias, cast

from mpmath import libmp

__all__ = [
    "DISPLAY_DIGITS",
    "FUNCTIONS",
    "INLINE_BUDGET",
    "INLINE_MAX_LENGTH",
    "MAX_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "CalcDomainError",
    "CalcError",
    "CalcSyntaxError",
    "DivisionByZero",
    "LimitError",
    "Node",
    "OverBudget",
    "Result",
    "UnknownNameError",
    "evaluate",
    "parse",
    "unparse",
]

# --------------------------------------------------------------------------------------------
# Limits

# 10,000 characters: far beyond any expression a person types (a full screen of text), small
# enough that tokenizing and parsing it take a few milliseconds.
MAX_EXPRESSION_LENGTH: Final = 10_000
# 256 levels: Python's own parser allows ~200 nested parentheses; each level costs one Python
# frame in the parser and one in the evaluator, well inside the default recursion limit of 1000.
MAX_DEPTH: Final = 256
# Exact integers (numerators, denominators) below 2**33219 < 10**10000: at most 10,000 digits,
# the size the issue names; one operation on such numbers costs at most a few milliseconds.
MAX_EXACT_BITS: Final = 33_219
# Approximate magnitudes within 10^±10^15: every intermediate exponent fits in 64 bits, so mpf
# arithmetic on them is as cheap as on small numbers.  (Qalculate prints 10^10^10 too.)
MAX_DECIMAL_EXPONENT: Final = 10**15
# Work budget in units of (bits/1024)^2 for quadratic big-number operations; one unit is ~3-7 µs
# here (measured: a Fraction product of two 10,000-digit fractions is ~1,050 units and ~4.4 ms),
# so the budget is ~40 ms of big-number work, leaving room for parsing inside 100 ms.
WORK_BUDGET: Final = 10_000
# Charge for one transcendental function at working precision (~50 µs here under load).
_TRANSCENDENTAL_UNITS: Final = 12
# The serving thread's allowance per request, for `evaluate(text, budget=INLINE_BUDGET)`.
# Stand-in until the cost model is in work units of ~1 us: here the fast path's own budget
# (_FAST_BUDGET, ~0.5 ms) is what is spent inline, and longer texts are not even tokenised.
INLINE_BUDGET: Final = 250
# Texts longer than this are over any inline budget before parsing (~1 us a character here).
INLINE_MAX_LENGTH: Final = 250
# Digits shown for non-terminating / inexact values (the issue asks for at least 40).
DISPLAY_DIGITS: Final = 40
# Working precision of inexact results: 256 bits ~ 77 digits, leaving ~37 guard digits.
PRECISION_BITS: Final = 256

_CAP_LOG2: Final = int(MAX_DECIMAL_EXPONENT * 3.3219280948873626) + 1
_SNAP_BITS: Final = PRECISION_BITS - 32  # cancellation beyond this is rounding noise: call it 0
_LN10: Final = libmp.mpf_ln10(64)
_LN2_64: Final = libmp.mpf_ln2(64)

MPF: TypeAlias = tuple[int, int, int, int]
Value: TypeAlias = "int | Fraction | MPF"

_RND: Final = libmp.round_nearest
_ZERO: Final[MPF] = libmp.fzero
_PI: Final[MPF] = libmp.mpf_pi(PRECISION_BITS, _RND)
_E: Final[MPF] = libmp.mpf_e(PRECISION_BITS, _RND)
_TAU: Final[MPF] = libmp.mpf_shift(_PI, 1)


# --------------------------------------------------------------------------------------------
# Errors and results


class CalcError(Exception):
    """An expression that cannot be evaluated.

    ``position`` is a 0-based index into the original text (``len(text)`` for "unexpected end")
    and ``length`` (>= 1) the number of characters to underline.
    """

    kind: str = "error"

    def __init__(self, message: str, position: int = 0, length: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.length = max(1, length)

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "message": self.message,
            "position": self.position,
            "length": self.length,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, {self.position}, {self.length})"


class CalcSyntaxError(CalcError):
    kind = "syntax"


class UnknownNameError(CalcError):
    kind = "unknown_name"


class CalcDomainError(CalcError):
    kind = "domain"


class DivisionByZero(CalcError):
    kind = "division_by_zero"


class LimitError(CalcError):
    kind = "limit"


class Result:
    """The value of an expression.

    ``display`` is the human string; ``exact`` is True when the value is an exact rational
    (``1/3`` is exact even though its display is rounded); ``fraction`` is ``"p/q"`` for exact
    non-integers and ``None`` otherwise.

    Immutable, with equality, hashing and repr by value, as the frozen dataclass it was; but a
    frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (~7,000
    instructions per evaluation, as much as tokenizing a short expression).  Here ``__init__``
    stores plain private slots and the public fields are read-only properties over them.
    """

    __slots__ = ("_display", "_exact", "_expr", "_fraction")
    __match_args__ = ("expr", "display", "exact", "fraction")

    def __init__(self, expr: str, display: str, exact: bool, fraction: str | None) -> None:
        self._expr = expr
        self._display = display
        self._exact = exact
        self._fraction = fraction

    @property
    def expr(self) -> str:
        return self._expr

    @property
    def display(self) -> str:
        return self._display

    @property
    def exact(self) -> bool:
        return self._exact

    @property
    def fraction(self) -> str | None:
        return self._fraction

    def _key(self) -> tuple[str, str, bool, str | None]:
        return (self._expr, self._display, self._exact, self._fraction)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Result)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Result(expr={self._expr!r}, display={self._display!r}, exact={self._exact!r}, "
            f"fraction={self._fraction!r})"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "expr": self._expr,
            "result": self._display,
            "exact": self._exact,
            "fraction": self._fraction,
        }


class OverBudget(Exception):
    """`evaluate(text, budget=N)` would need more than N work units: not a CalcError (the
    expression may be fine), only more costly than the caller will spend where it is."""


class _Fail(Exception):
    """Raised by arithmetic helpers; the node that called them adds the position."""

    def __init__(self, cls: type[CalcError], message: str, arg: int | None = None) -> None:
        super().__init__(message)
        self.cls = cls
        self.message = message
        self.arg = arg  # for function calls: the index of the offending argument


# --------------------------------------------------------------------------------------------
# Tokenizer
#
# Strategy: one precompiled regex; findall() returns the token strings with whitespace already
# dropped, which is the cheapest way to split text in CPython.  Positions are only needed for
# error messages, so they are recomputed from the same regex (finditer) when an error happens.
# No capturing group and no leading \s*: the regex engine skips whitespace itself (no
# alternative can start with it), which is ~1/3 faster on spaced-out input.  Each alternative
# starts with a single character class or literal and the common ones come first: half the
# instructions of the former `(?:digits(.digits)?|.digits)(e...)? | name | \*\*|// | \S`, which
# splits text into exactly the same tokens.

_TOKEN_RE: Final = re.compile(
    r"""[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?    # number starting with a digit
      | \*\*?|//?                                # * ** / //
      | [A-Za-z_][A-Za-z0-9_]*                    # name
      | \.[0-9]+(?:[eE][+-]?[0-9]+)?              # number starting with a point
      | \S                                        # one-character operators, or rejected
    """,
    re.VERBOSE,
)
_NUMBER_START: Final = frozenset("0123456789.")
_NAME_START: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
# Canonical operator spellings (typographic forms people paste map onto ASCII ones).
_CANON: Final = {
    "+": "+", "-": "-", "−": "-", "*": "*", "×": "*", "/": "/", "÷": "/", "//": "//",
    "%": "%", "^": "^", "**": "^", "!": "!", "(": "(", ")": ")", ",": ",", "√": "√",
}  # fmt: skip
_UNARY_BP: Final = 30  # operand of unary +/-: binds ^ and ! but not * /
_POWER_BP: Final = 40  # lbp of ^; its right operand is parsed at 39 (right-associative)
_POSTFIX_BP: Final = 50
# Left binding power of every token that may follow an operand (anything else after an operand
# is an error: usually a missing operator).  ")" and "," end an expression.
_LBP: Final = {
    "+": 10, "-": 10, "−": 10,
    "*": 20, "×": 20, "/": 20, "÷": 20, "//": 20, "%": 20,
    "^": _POWER_BP, "**": _POWER_BP,
    "!": _POSTFIX_BP,
    ")": 0, ",": 0,
}  # fmt: skip
# Tokens with a meaning in prefix position (numbers and names are recognised by their first
# character).  Every other operator there is an error.
_P_OPEN, _P_SIGN, _P_ROOT, _P_PI, _P_BAD = range(5)
_PREFIX: Final = {
    "(": _P_OPEN, "-": _P_SIGN, "+": _P_SIGN, "−": _P_SIGN, "√": _P_ROOT, "π": _P_PI,
    ")": _P_BAD, ",": _P_BAD, "*": _P_BAD, "×": _P_BAD, "/": _P_BAD, "÷": _P_BAD,
    "//": _P_BAD, "%": _P_BAD, "^": _P_BAD, "**": _P_BAD, "!": _P_BAD,
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Syntax tree


class Node:
    """A node of the syntax tree; ``start``/``end`` are token indices (end exclusive)."""

    __slots__ = ("end", "start")
    start: int
    end: int

    def evaluate(self, ctx: _Context) -> Value:  # pragma: no cover - abstract
        raise NotImplementedError


class Number(Node):
    """A numeric literal; ``text`` is the literal as written."""

    __slots__ = ("text", "value")

    def __init__(self, value: Value, text: str, index: int) -> None:
        self.value = value
        self.text = text
        self.start = index
        self.end = index + 1

    def evaluate(self, ctx: _Context) -> Value:
        return self.value


class Constant(Node):
    """A named constant (``pi``, ``e``, ``tau``); ``text`` is the name as written."""

    __slots__ = ("name", "text", "value")

    def __init__(self, name: str, text: str, index: int) -> None:
        self.name = name
        self.text = text
        self.value = CONSTANTS[name]
        self.start = index
        self.end = index + 1

    def evaluate(self, ctx: _Context) -> Value:
        return self.value


class Call(Node):
    """A function call ``name(args...)`` (``√x`` parses as ``sqrt(x)``)."""

    __slots__ = ("args", "name", "text")

    def __init__(self, name: str, text: str, args: list[Node], start: int, end: int) -> None:
        self.name = name
        self.text = text
        self.args = args
        self.start = start
        self.end = end

    def evaluate(self, ctx: _Context) -> Value:
        values = [arg.evaluate(ctx) for arg in self.args]
        try:
            return FUNCTIONS[self.name].impl(values, ctx)
        except _Fail as fail:
            where: Node = self if fail.arg is None else self.args[fail.arg]
            raise ctx.error(fail.cls, fail.message, where) from None


class Unary(Node):
    """Unary ``-x`` or ``+x``."""

    __slots__ = ("op", "operand")

    def __init__(self, op: str, operand: Node, start: int) -> None:
        self.op = op
        self.operand = operand
        self.start = start
        self.end = operand.end

    def evaluate(self, ctx: _Context) -> Value:
        value = self.operand.evaluate(ctx)
        if self.op == "+":
            return value
        if type(value) is tuple:
            return libmp.mpf_neg(value)  # type: ignore[no-any-return]
        return -value  # type: ignore[operator]


class Chain(Node):
    """A left-associative run of same-precedence binary operators: ``a + b - c``.

    Flat rather than nested so that ``1+1+...+1`` (thousands of terms) costs no recursion.
    ``ops[i]`` is the canonical operator between ``operands[i]`` and ``operands[i+1]``.
    """

    __slots__ = ("operands", "ops")

    def __init__(self, operands: list[Node], ops: list[str]) -> None:
        self.operands = operands
        self.ops = ops
        self.start = operands[0].start
        self.end = operands[-1].end

    def evaluate(self, ctx: _Context) -> Value:
        operands = self.operands
        acc = operands[0].evaluate(ctx)
        for i, op in enumerate(self.ops, 1):
            operand = operands[i]
            b = operand.evaluate(ctx)
            # Fast path: small ints, the overwhelmingly common case.
            if (
                type(acc) is int
                and type(b) is int
                and -(1 << 62) < acc < (1 << 62)
                and -(1 << 62) < b < (1 << 62)
            ):
                if op == "+":
                    acc = acc + b
                    continue
                if op == "-":
                    acc = acc - b
                    continue
                if op == "*":
                    acc = acc * b
                    continue
                if op == "/" and b:
                    q, r = divmod(acc, b)
                    acc = Fraction(acc, b) if r else q
                    continue
            try:
                acc = _BINARY[op](acc, b, ctx)
            except _Fail as fail:
                where: Node = operand if fail.cls is DivisionByZero else self._prefix(i)
                raise ctx.error(fail.cls, fail.message, where) from None
        return acc

    def _prefix(self, i: int) -> Node:
        """The sub-chain operands[0..i] (for an error span)."""
        return Chain(self.operands[: i + 1], self.ops[:i])


class Power(Node):
    """``base ^ exponent`` (``op`` is the spelling: ``^`` or ``**``)."""

    __slots__ = ("base", "exponent", "op")

    def __init__(self, base: Node, exponent: Node, op: str) -> None:
        self.base = base
        self.exponent = exponent
        self.op = op
        self.start = base.start
        self.end = exponent.end

    def evaluate(self, ctx: _Context) -> Value:
        a = self.base.evaluate(ctx)
        b = self.exponent.evaluate(ctx)
        try:
            return _power(a, b, ctx)
        except _Fail as fail:
            raise ctx.error(fail.cls, fail.message, self) from None


class Factorial(Node):
    """Postfix ``x!``."""

    __slots__ = ("operand",)

    def __init__(self, operand: Node, index: int) -> None:
        self.operand = operand
        self.start = operand.start
        self.end = index + 1

    def evaluate(self, ctx: _Context) -> Value:
        value = self.operand.evaluate(ctx)
        try:
            return _factorial(value, ctx)
        except _Fail as fail:
            raise ctx.error(fail.cls, fail.message, self) from None


# --------------------------------------------------------------------------------------------
# Parser
#
# Strategy: Pratt parsing over the token list.  Every recursive call goes through _expr(), which
# counts depth explicitly, so nesting beyond MAX_DEPTH is a LimitError long before Python's
# recursion limit.  Names are resolved while parsing: unknown names and wrong argument counts are
# reported without evaluating anything.


class _Parser:
    __slots__ = ("depth", "pos", "spans", "text", "toks")

    def __init__(self, text: str, toks: list[str]) -> None:
        self.text = text
        self.toks = toks
        self.pos = 0
        self.depth = -1  # the top level is depth 0; MAX_DEPTH nested levels are allowed
        self.spans: list[tuple[int, int]] | None = None

    # -- errors ---------------------------------------------------------------------------
    def span(self, start: int, end: int) -> tuple[int, int]:
        """Character position and length of tokens[start:end]."""
        n = len(self.toks)
        if start >= n:
            return len(self.text), 1
        end = min(end, n)
        spans = self.spans
        if spans is None or len(spans) < end:
            # Positions are only needed for errors: scan just far enough.
            spans = self.spans = list(
                itertools.islice((m.span() for m in _TOKEN_RE.finditer(self.text)), end)
            )
        first = spans[start][0]
        last = spans[end - 1][1]
        return first, max(1, last - first)

    def fail(self, cls: type[CalcError], message: str, start: int, end: int) -> CalcError:
        position, length = self.span(start, end)
        return cls(message, position, length)

    def describe(self, index: int) -> str:
        if index >= len(self.toks):
            return "end of expression"
        return repr(self.toks[index])

    # -- grammar --------------------------------------------------------------------------
    def parse(self) -> Node:
        if not self.toks:
            raise CalcSyntaxError("empty expression", len(self.text), 1)
        node = self._expr(0)
        if self.pos < len(self.toks):
            raise self._unexpected(self.pos, node)
        return node

    def _unexpected(self, index: int, left: Node | None) -> CalcError:
        tok = self.toks[index]
        kind = _classify(tok)
        if left is not None and (kind in ("number", "name") or tok in ("(", "√", "π")):
            # Two operands side by side: implicit multiplication.  Point at the gap.
            gap = self.span(left.end - 1, left.end)
            gap_pos = gap[0] + gap[1]
            lhs = self.text[self.span(left.start, left.end)[0] : gap_pos]
            rhs_pos = self.span(index, index + 1)[0]
            rhs = self.text[rhs_pos : rhs_pos + len(tok)]
            if len(lhs) > 20:
                lhs = "…" + lhs[-19:]
            return CalcSyntaxError(
                f"missing operator between {lhs!r} and {rhs!r} — did you mean '{lhs}*{rhs}'?",
                gap_pos,
                max(1, rhs_pos - gap_pos),
            )
        if tok == ")":
            return self.fail(CalcSyntaxError, "unmatched ')'", index, index + 1)
        if kind == "bad":
            return self.fail(CalcSyntaxError, f"unexpected character {tok!r}", index, index + 1)
        return self.fail(CalcSyntaxError, f"unexpected {tok!r}", index, index + 1)

    def _expr(self, min_bp: int) -> Node:
        depth = self.depth + 1
        if depth > MAX_DEPTH:
            raise self._too_deep(self.pos - 1)  # the token that opened this level
        self.depth = depth
        toks = self.toks
        n = len(toks)
        i = self.pos
        if i >= n:
            raise CalcSyntaxError(
                "unexpected end of expression — expected a number, a name or '('",
                len(self.text),
                1,
            )
        # ---- prefix part
        tok = toks[i]
        kind = _PREFIX.get(tok)
        left: Node
        if kind is None:
            first = tok[0]
            if first in _NUMBER_START and tok != ".":
                if tok.isdigit() and len(tok) < 300:
                    left = Number(int(tok), tok, i)
                else:
                    left = Number(self._number(tok, i), tok, i)
                i += 1
            elif first in _NAME_START:
                left = self._name(tok, i)
                i = self.pos
            else:
                raise self.fail(CalcSyntaxError, f"unexpected character {tok!r}", i, i + 1)
        elif kind == _P_OPEN:
            self.pos = i + 1
            left = self._expr(0)
            opened = i
            i = self.pos
            if i >= n or toks[i] != ")":
                if i < n:  # only ',' can stop an expression inside parentheses here
                    raise self.fail(CalcSyntaxError, "unexpected ','", i, i + 1)
                raise CalcSyntaxError(
                    f"missing ')' to close the '(' at position {self.span(opened, i)[0]}",
                    len(self.text),
                    1,
                )
            i += 1
            left.start = opened  # a parenthesised operand's span includes its parentheses
            left.end = i
        elif kind == _P_SIGN:
            self.pos = i + 1
            left = Unary(_CANON[tok], self._expr(_UNARY_BP), i)
            i = self.pos
        elif kind == _P_ROOT:
            self.pos = i + 1
            operand = self._expr(_POWER_BP)
            left = Call("sqrt", "√", [operand], i, operand.end)
            i = self.pos
        elif kind == _P_PI:
            left = Constant("pi", tok, i)
            i += 1
        else:
            if tok == ")" and i > 0 and toks[i - 1] == "(":
                raise self.fail(CalcSyntaxError, "empty parentheses", i - 1, i + 1)
            what = "an expression" if tok == ")" else "an operand"
            raise self.fail(CalcSyntaxError, f"unexpected {tok!r} — expected {what}", i, i + 1)
        # ---- infix / postfix loop
        lbp_of = _LBP
        chain: Chain | None = None
        chain_bp = 0
        extra = 0  # postfix nesting adds tree depth without recursion
        while i < n:
            tok = toks[i]
            bp = lbp_of.get(tok)
            if bp is None:
                raise self._unexpected(i, left)
            if bp <= min_bp:
                break
            if bp == _POSTFIX_BP:
                extra += 1
                if depth + extra > MAX_DEPTH:
                    raise self._too_deep(i)
                left = Factorial(left, i)
                chain = None
                i += 1
                continue
            if bp == _POWER_BP:
                self.pos = i + 1
                left = Power(left, self._expr(_POWER_BP - 1), tok)
                i = self.pos
                chain = None
                continue
            # Binary operator.  Peephole: a plain integer operand that nothing binds into
            # becomes a leaf without a recursive call (most operands in practice).
            j = i + 1
            right: Node
            if (
                j < n
                and (nt := toks[j]).isdigit()
                and nt.isascii()  # "²".isdigit() too: only ASCII digits are numbers
                and len(nt) < 300
                and (j + 1 == n or lbp_of.get(toks[j + 1], 99) <= bp)
            ):
                right = Number(int(nt), nt, j)
                i = j + 1
            else:
                self.pos = j
                right = self._expr(bp)
                i = self.pos
            op = _CANON[tok]
            if chain is not None and chain_bp == bp:
                chain.operands.append(right)
                chain.ops.append(op)
                chain.end = right.end
            else:
                chain = Chain([left, right], [op])
                chain_bp = bp
                left = chain
        self.pos = i
        self.depth = depth - 1
        return left

    def _too_deep(self, index: int) -> CalcError:
        return self.fail(
            LimitError,
            f"expression is nested too deeply (more than {MAX_DEPTH} levels)",
            index,
            index + 1,
        )

    def _name(self, tok: str, i: int) -> Node:
        name = "pi" if tok == "π" else tok.lower()
        toks = self.toks
        is_call = i + 1 < len(toks) and toks[i + 1] == "("
        if name in CONSTANTS:
            if is_call:
                raise self.fail(
                    CalcSyntaxError,
                    f"{tok!r} is a constant, not a function — did you mean '{tok}*(…)'?",
                    i,
                    i + 2,
                )
            self.pos = i + 1
            return Constant(name, tok, i)
        spec = FUNCTIONS.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, _KNOWN_NAMES, n=1, cutoff=0.6)
            hint = f" — did you mean '{close[0]}'?" if close else ""
            raise self.fail(UnknownNameError, f"unknown name {tok!r}{hint}", i, i + 1)
        if not is_call:
            raise self.fail(
                CalcSyntaxError,
                f"function {tok!r} needs its arguments in parentheses: {spec.usage}",
                i,
                i + 1,
            )
        self.pos = i + 2
        args: list[Node] = []
        if self.pos < len(toks) and toks[self.pos] == ")":
            self.pos += 1
        else:
            while True:
                args.append(self._expr(0))
                if self.pos >= len(toks):
                    raise CalcSyntaxError(
                        f"missing ')' to close {tok}(", len(self.text), 1
                    )
                sep = toks[self.pos]
                self.pos += 1
                if sep == ")":
                    break
                if sep != ",":
                    raise self._unexpected(self.pos - 1, args[-1])
        if not spec.min_args <= len(args) <= spec.max_args:
            raise self.fail(
                CalcSyntaxError,
                f"{name}() takes {spec.arity_text}, got {len(args)}: {spec.usage}",
                i,
                self.pos,
            )
        return Call(name, tok, args, i, self.pos)

    def _number(self, tok: str, i: int) -> Value:
        if tok.isdigit() and len(tok) < 300:
            return int(tok)
        try:
            return _parse_number(tok)
        except _Fail as fail:
            raise self.fail(fail.cls, fail.message, i, i + 1) from None


def _classify(tok: str) -> str:
    if tok in _CANON:
        return "op"
    if tok[0] in _NUMBER_START and tok != ".":
        return "number"
    if tok[0] in _NAME_START or tok == "π":
        return "name"
    return "bad"


_NUMBER_RE: Final = re.compile(r"([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?)([0-9]+))?")


def _parse_number(tok: str) -> Value:
    m = _NUMBER_RE.fullmatch(tok)
    assert m is not None  # the tokenizer only produces well-formed numbers
    int_part, frac_part, exp_sign, exp_digits = m.groups()
    frac_part = frac_part or ""
    digits = (int_part + frac_part).lstrip("0")
    if not digits:
        return 0
    mantissa = _parse_int(digits)
    exponent = 0
    if exp_digits:
        exp_digits = exp_digits.lstrip("0") or "0"
        if len(exp_digits) > 18:
            raise _Fail(LimitError, f"{tok[:20]} is out of range (beyond 10^±{_fmt_cap()})")
        exponent = int(exp_digits) * (-1 if exp_sign == "-" else 1)
    exponent -= len(frac_part)
    magnitude = len(digits) + exponent  # decimal digits before the point
    if abs(magnitude) > MAX_DECIMAL_EXPONENT:
        raise _Fail(LimitError, f"{tok[:20]} is out of range (beyond 10^±{_fmt_cap()})")
    # Build the exact value when it can fit (10**9999 has 33,216 bits); the size check decides.
    if exponent >= 0:
        if (len(digits) + exponent) * 3.3219280948873626 < MAX_EXACT_BITS + 4:
            value = mantissa * int(10**exponent)
            if value.bit_length() <= MAX_EXACT_BITS:
                return value
    elif max(len(digits), -exponent) * 3.3219280948873626 < MAX_EXACT_BITS + 4:
        frac = Fraction(mantissa, int(10**-exponent))
        if _bits(frac) <= MAX_EXACT_BITS:
            return _normalize(frac)
    # Too many digits to keep exactly: approximate.
    wp = PRECISION_BITS + 10
    scale = libmp.mpf_pow_int(libmp.from_int(10), abs(exponent), wp + 64, _RND)
    m_mpf = libmp.from_int(mantissa, wp, _RND)
    if exponent >= 0:
        return _round(libmp.mpf_mul(m_mpf, scale, wp, _RND))
    return _round(libmp.mpf_div(m_mpf, scale, wp, _RND))


def _parse_int(digits: str) -> int:
    """int(digits) without tripping CPython's 4,300-digit conversion limit."""
    if len(digits) <= 4000:
        return int(digits)
    half = len(digits) // 2
    return _parse_int(digits[:-half]) * int(10**half) + _parse_int(digits[-half:])


# --------------------------------------------------------------------------------------------
# Evaluation context


class _Context:
    __slots__ = ("budget", "parser", "work")

    def __init__(self, parser: _Parser | None, budget: int = WORK_BUDGET) -> None:
        self.parser = parser
        self.work = 0
        self.budget = budget

    def error(self, cls: type[CalcError], message: str, node: Node) -> CalcError:
        assert self.parser is not None  # only the tree evaluator reports positioned errors
        return self.parser.fail(cls, message, node.start, node.end)

    def charge(self, bits: int) -> None:
        """Account for a quadratic operation (division, gcd, any Fraction arithmetic) on
        numbers of ``bits`` bits: (bits/1024)^2 units."""
        if bits > 2048:
            self.charge_units((bits * bits) >> 20)

    def charge_mul(self, bits: int) -> None:
        """Account for an int product or power with a ``bits``-bit result (Karatsuba: ~8x
        cheaper than quadratic at these sizes)."""
        if bits > 4096:
            self.charge_units((bits * bits) >> 23)

    def charge_linear(self, bits: int) -> None:
        """Account for a linear operation (int addition, conversion to mpf)."""
        if bits > 8192:
            self.charge_units(bits >> 12)

    def charge_units(self, units: int) -> None:
        self.work += units
        if self.work > self.budget:
            raise _Fail(
                LimitError,
                "too much work: this expression needs more big-number arithmetic than allowed",
            )


def _fmt_cap() -> str:
    return f"(10^{len(str(MAX_DECIMAL_EXPONENT)) - 1})"


# --------------------------------------------------------------------------------------------
# Numeric helpers


def _bits(v: int | Fraction) -> int:
    if type(v) is int:
        return v.bit_length()
    assert isinstance(v, Fraction)
    return max(v.numerator.bit_length(), v.denominator.bit_length())


def _normalize(v: Fraction) -> int | Fraction:
    return v.numerator if v.denominator == 1 else v


def _round(x: MPF) -> MPF:
    return libmp.normalize(x[0], x[1], x[2], x[3], PRECISION_BITS, _RND)  # type: ignore[no-any-return]


def _to_mpf(v: Value, prec: int = PRECISION_BITS) -> MPF:
    if type(v) is tuple:
        return v
    if type(v) is int:
        return libmp.from_int(v, prec, _RND)  # type: ignore[no-any-return]
    assert isinstance(v, Fraction)
    return libmp.from_rational(v.numerator, v.denominator, prec, _RND)  # type: ignore[no-any-return]


def _mag2(x: MPF) -> int:
    """log2|x| rounded up (x nonzero): mpf (sign, man, exp, bc) is man * 2**exp."""
    return x[2] + x[3]


def _check_mpf(x: MPF) -> MPF:
    """Refuse approximations beyond 10^±MAX_DECIMAL_EXPONENT."""
    if x[1] and abs(x[2] + x[3]) > _CAP_LOG2:
        raise _Fail(LimitError, _out_of_range(x[2] + x[3] > 0))
    return x


def _out_of_range(big: bool) -> str:
    if big:
        return f"result is too large (beyond 10^{_fmt_cap()})"
    return f"result is too small (below 10^-{_fmt_cap()})"


def _exact_or_approx(v: int | Fraction, ctx: _Context) -> Value:
    """Keep an exact result if it is within MAX_EXACT_BITS, else approximate it."""
    if type(v) is int:
        if v.bit_length() <= MAX_EXACT_BITS:
            return v
        ctx.charge_linear(v.bit_length())
        return _check_mpf(libmp.from_int(v, PRECISION_BITS, _RND))
    assert isinstance(v, Fraction)
    if v.denominator == 1:
        return _exact_or_approx(v.numerator, ctx)
    bits = _bits(v)
    if bits <= MAX_EXACT_BITS:
        return v
    ctx.charge_linear(bits)
    return _check_mpf(_to_mpf(v))


def _sign(v: Value) -> int:
    if type(v) is tuple:
        return libmp.mpf_sign(v)  # type: ignore[no-any-return]
    if type(v) is Fraction:
        v = v.numerator  # int comparisons: Fraction's go through the numbers ABCs
    return (v > 0) - (v < 0)  # type: ignore[operator]


def _is_exact(v: Value) -> bool:
    return type(v) is not tuple


def _snap(r: MPF, reference_mag: int) -> MPF:
    """Turn catastrophic-cancellation noise (sin(pi), sqrt(2)^2-2) into 0."""
    if r[1] and _mag2(r) < reference_mag - _SNAP_BITS:
        return _ZERO
    return r


def _norm(sign: int, man: int, exp: int) -> MPF:
    """libmp.normalize(sign, man, exp, man.bit_length(), PRECISION_BITS, round_nearest) for
    man > 0: the same rounding (half to even) and the same canonical tuple, but the trailing
    zero bits go in one C-level step (mpmath strips a byte per Python loop iteration: ~35,000
    instructions for sin(pi/6)+12345, whose sum rounds to 12345.5 exactly)."""
    n = man.bit_length() - PRECISION_BITS
    if n > 0:
        t = man >> (n - 1)  # the kept bits and the first dropped one
        # up when above half, or exactly half with an odd last kept bit (half to even)
        round_up = t & 1 and (t & 2 or man & ((1 << (n - 1)) - 1))
        man = (t >> 1) + 1 if round_up else t >> 1
        exp += n
    tz = (man & -man).bit_length() - 1
    if tz:
        man >>= tz
        exp += tz
    return (sign, man, exp, man.bit_length())


# An mpf whose exponent is within this many bits of 0 meets an int directly in _add and _mul:
# the exact sum or product is at most a few hundred bits longer than its operands.
_MIXED_EXP: Final = 1024


def _add(a: Value, b: Value, ctx: _Context) -> Value:
    if type(a) is not tuple and type(b) is not tuple:
        ea: int | Fraction = a  # type: ignore[assignment]
        eb: int | Fraction = b  # type: ignore[assignment]
        if type(ea) is int and type(eb) is int:
            ctx.charge_linear(max(ea.bit_length(), eb.bit_length()))
        else:
            ctx.charge(max(_bits(ea), _bits(eb)))
        return _exact_or_approx(ea + eb, ctx)
    if type(b) is int and type(a) is tuple:
        a, b = b, a
    if type(a) is int and type(b) is tuple and a and b[1] and a.bit_length() <= PRECISION_BITS:
        # An int (exactly an mpf at working precision) plus an mpf, whose exponent is near 0:
        # the exact sum rounded once, which is what mpf_add(b, from_int(a)) computes.
        xs, xm, xe, xbc = b
        if -_MIXED_EXP < xe < _MIXED_EXP:
            if xe >= 0:
                total = (-(xm << xe) if xs else xm << xe) + a
                exp = 0
            else:
                total = (-xm if xs else xm) + (a << -xe)
                exp = xe
            if not total:
                return _ZERO
            r = _norm(0, total, exp) if total > 0 else _norm(1, -total, exp)
            # _snap (both operands are nonzero) and _check_mpf, inlined
            mag = xe + xbc
            if a.bit_length() > mag:  # the int's mag2 (mpf exponent + bit count)
                mag = a.bit_length()
            if r[2] + r[3] < mag - _SNAP_BITS:
                return _ZERO
            if abs(r[2] + r[3]) > _CAP_LOG2:
                raise _Fail(LimitError, _out_of_range(r[2] + r[3] > 0))
            return r
    # Inexact: _check_mpf(_snap(r, max(_mag2(x), _mag2(y)))) with the helpers inlined.
    x = a if type(a) is tuple else _to_mpf(a)
    y = b if type(b) is tuple else _to_mpf(b)
    r = libmp.mpf_add(x, y, PRECISION_BITS, _RND)
    if r[1]:
        if x[1] and y[1]:
            mag = x[2] + x[3]
            if y[2] + y[3] > mag:
                mag = y[2] + y[3]
            if r[2] + r[3] < mag - _SNAP_BITS:
                return _ZERO
        if abs(r[2] + r[3]) > _CAP_LOG2:
            raise _Fail(LimitError, _out_of_range(r[2] + r[3] > 0))
    return r  # type: ignore[no-any-return]


def _sub(a: Value, b: Value, ctx: _Context) -> Value:
    if type(b) is tuple:
        return _add(a, libmp.mpf_neg(b), ctx)
    return _add(a, -b, ctx)  # type: ignore[operator]


def _mul(a: Value, b: Value, ctx: _Context) -> Value:
    if type(a) is not tuple and type(b) is not tuple:
        ea: int | Fraction = a  # type: ignore[assignment]
        eb: int | Fraction = b  # type: ignore[assignment]
        if type(ea) is int and type(eb) is int:
            ctx.charge_mul(ea.bit_length() + eb.bit_length())
        else:
            ctx.charge(max(_bits(ea), _bits(eb)))
        return _exact_or_approx(ea * eb, ctx)
    if type(b) is int and type(a) is tuple:
        a, b = b, a
    if (
        type(a) is int
        and type(b) is tuple
        and a
        and b[1]
        and a.bit_length() <= PRECISION_BITS
        and -_MIXED_EXP < b[2] < _MIXED_EXP
    ):
        # An int (exactly an mpf at working precision) times an mpf of moderate size: the
        # exact product rounded once, which is what mpf_mul(b, from_int(a)) computes.
        r = _norm(b[0] ^ (a < 0), b[1] * (-a if a < 0 else a), b[2])
        if abs(r[2] + r[3]) > _CAP_LOG2:
            raise _Fail(LimitError, _out_of_range(r[2] + r[3] > 0))
        return r
    x = _to_mpf(a)
    y = _to_mpf(b)
    if x[1] and y[1] and abs(_mag2(x) + _mag2(y)) > _CAP_LOG2 + 2:
        raise _Fail(LimitError, _out_of_range(_mag2(x) + _mag2(y) > 0))
    return _check_mpf(libmp.mpf_mul(x, y, PRECISION_BITS, _RND))


def _div(a: Value, b: Value, ctx: _Context) -> Value:
    if _sign(b) == 0:
        raise _Fail(DivisionByZero, "division by zero")
    if type(a) is int and type(b) is int:
        ctx.charge(max(a.bit_length(), b.bit_length()))
        q, r = divmod(a, b)
        if not r:
            return q
        return _exact_or_approx(Fraction(a, b), ctx)
    if type(a) is not tuple and type(b) is not tuple:
        ctx.charge(max(_bits(a), _bits(b)))  # type: ignore[arg-type]
        return _exact_or_approx(_normalize(Fraction(a) / Fraction(b)), ctx)  # type: ignore[arg-type]
    x = _to_mpf(a)
    y = _to_mpf(b)
    if x[1] and abs(_mag2(x) - _mag2(y)) > _CAP_LOG2 + 2:
        raise _Fail(LimitError, _out_of_range(_mag2(x) - _mag2(y) > 0))
    return _check_mpf(libmp.mpf_div(x, y, PRECISION_BITS, _RND))


def _floordiv(a: Value, b: Value, ctx: _Context) -> Value:
    if _sign(b) == 0:
        raise _Fail(DivisionByZero, "division by zero")
    if type(a) is not tuple and type(b) is not tuple:
        ctx.charge(max(_bits(a), _bits(b)))  # type: ignore[arg-type]
        return _exact_or_approx(a // b, ctx)  # type: ignore[operator]
    return _floor(_div(a, b, ctx), "//")


def _mod(a: Value, b: Value, ctx: _Context) -> Value:
    if _sign(b) == 0:
        raise _Fail(DivisionByZero, "modulo by zero")
    if type(a) is not tuple and type(b) is not tuple:
        ctx.charge(max(_bits(a), _bits(b)))  # type: ignore[arg-type]
        return _exact_or_approx(_normalize(Fraction(a % b)), ctx)  # type: ignore[operator]
    q = _floor(_div(a, b, ctx), "%")
    return _sub(a, _mul(q, b, ctx), ctx)


_BINARY: Final[dict[str, Callable[[Value, Value, _Context], Value]]] = {
    "+": _add,
    "-": _sub,
    "*": _mul,
    "/": _div,
    "//": _floordiv,
    "%": _mod,
}


def _floor(v: Value, what: str) -> Value:
    """floor() of any value; for inexact values the integer part must be knowable."""
    if type(v) is int:
        return v
    if isinstance(v, Fraction):
        return v.numerator // v.denominator
    assert type(v) is tuple
    n = _near_int(v, what)
    if n is not None:
        return n
    return libmp.to_int(libmp.mpf_floor(v), _RND)  # type: ignore[no-any-return]


def _near_int(x: MPF, what: str) -> int | None:
    """The integer x is (within rounding noise), None if x is clearly not an integer.

    Raises LimitError when x is too large for its integer part to be known.
    """
    if not x[1]:
        return 0
    if _mag2(x) > PRECISION_BITS - 40:
        raise _Fail(
            LimitError,
            f"{what} of an approximate value this large is not known exactly "
            "(its integer digits are beyond the working precision)",
        )
    n = libmp.to_int(libmp.mpf_nint(x), _RND)
    diff = libmp.mpf_sub(x, libmp.from_int(n), PRECISION_BITS, _RND)
    if not diff[1] or _mag2(diff) < max(_mag2(x), 0) - _SNAP_BITS:
        return int(n)
    return None


def _log2_exact(v: int | Fraction) -> float:
    """log2|v| for a nonzero exact value, as a float (good to ~1e-15 relative)."""
    if type(v) is int:
        return _log2_int(abs(v))
    assert isinstance(v, Fraction)
    return _log2_int(abs(v.numerator)) - _log2_int(v.denominator)


def _log2_int(n: int) -> float:
    bl = n.bit_length()
    if bl <= 1000:
        return math.log2(n)
    return bl - 64 + math.log2(n >> (bl - 64))


def _ln(v: Value, prec: int) -> MPF:
    """ln|v| for a nonzero value, accurate to ``prec`` bits even when v is an exact rational
    extremely close to 1 (where converting v to mpf first would round the difference away)."""
    if type(v) is tuple:
        return libmp.mpf_log(libmp.mpf_abs(v), prec, _RND)  # type: ignore[no-any-return]
    if type(v) is int:
        p, q = abs(v), 1
    else:
        assert isinstance(v, Fraction)
        p, q = abs(v.numerator), v.denominator
    d = p - q
    if d == 0:
        return _ZERO
    lost = max(0, q.bit_length() - abs(d).bit_length())
    if lost >= prec:  # ln(1 + d/q) = d/q to within (d/q)^2
        return libmp.from_rational(d, q, prec, _RND)  # type: ignore[no-any-return]
    wp = prec + lost + 10
    return libmp.mpf_log(libmp.from_rational(p, q, wp, _RND), prec, _RND)  # type: ignore[no-any-return]


def _check_log_estimate(log_value: MPF) -> None:
    """Refuse a result whose natural log is ``log_value`` if it is beyond the magnitude cap.

    Callers estimate the log at 64 bits first, so this runs before any precision is chosen
    from it (9^9^9^9 would otherwise ask for a billion-bit logarithm)."""
    if not log_value[1]:
        return
    log2_result = libmp.mpf_div(log_value, _LN2_64, 64, _RND)
    if _mag2(log2_result) > 60 or abs(libmp.to_int(log2_result)) > _CAP_LOG2:
        raise _Fail(LimitError, _out_of_range(libmp.mpf_sign(log_value) > 0))


def _exp_of(log_value: MPF, ctx: _Context) -> MPF:
    """exp(x) with the range check done first (x is a natural log of the result)."""
    if not log_value[1]:
        return libmp.fone  # type: ignore[no-any-return]
    _check_log_estimate(log_value)
    extra = max(0, _mag2(log_value)) + 10
    ctx.charge_units(_TRANSCENDENTAL_UNITS)
    return libmp.mpf_exp(log_value, PRECISION_BITS + extra, _RND)  # type: ignore[no-any-return]


def _iroot(n: int, k: int) -> int | None:
    """The exact k-th root of n >= 0 if it is an integer, else None."""
    if n < 2:
        return n
    if k == 2:
        r = math.isqrt(n)
        return r if r * r == n else None
    x = 1 << -(-n.bit_length() // k)  # >= the root
    while True:
        y = ((k - 1) * x + n // x ** (k - 1)) // k
        if y >= x:
            break
        x = y
    return x if x**k == n else None


def _exact_root(v: int | Fraction, k: int) -> int | Fraction | None:
    """v^(1/k) when it is rational (v >= 0, or k odd), else None."""
    if k > 64 or _bits(v) > 4096:
        return None
    if type(v) is int:
        num, den = v, 1
    else:
        assert isinstance(v, Fraction)
        num, den = v.numerator, v.denominator
    negative = num < 0
    if negative and k % 2 == 0:
        return None
    rn = _iroot(abs(num), k)
    if rn is None:
        return None
    rd = _iroot(den, k)
    if rd is None:
        return None
    r = Fraction(-rn if negative else rn, rd)
    return _normalize(r)


def _power(a: Value, b: Value, ctx: _Context) -> Value:
    sa = _sign(a)
    sb = _sign(b)
    if sb == 0:
        return 1  # 0^0 = 1, as in Python, IEEE 754 pow() and most calculators
    if sa == 0:
        if sb < 0:
            raise _Fail(DivisionByZero, "0 to a negative power is a division by zero")
        return 0
    if type(b) is int:
        return _int_power(a, b, ctx)
    if isinstance(b, Fraction):
        # Rational exponent p/q: exact when the q-th root is rational ((9/4)^(1/2), 8^(2/3)).
        p, q = b.numerator, b.denominator
        if sa < 0 and q % 2 == 0:
            raise _Fail(
                CalcDomainError,
                "a negative number to a fractional power with an even denominator is not real",
            )
        if type(a) is not tuple:
            root = _exact_root(a, q)  # type: ignore[arg-type]
            if root is not None:
                return _int_power(root, p, ctx)
        if sa < 0:  # odd root of a negative number: real, sign follows p
            magnitude = _power(-a if type(a) is not tuple else libmp.mpf_neg(a), b, ctx)  # type: ignore[operator]
            if p % 2:
                return libmp.mpf_neg(magnitude) if type(magnitude) is tuple else -magnitude  # type: ignore[operator]
            return magnitude
    elif sa < 0:
        raise _Fail(CalcDomainError, "a negative number to a non-integer power is not real")
    # a > 0: exp(b * ln a), with the range decided from a 64-bit estimate first.
    est = libmp.mpf_mul(_ln(a, 64), _to_mpf(b, 64), 64, _RND)
    _check_log_estimate(est)
    wp = PRECISION_BITS + max(0, _mag2(est)) + 10
    log_value = libmp.mpf_mul(_ln(a, wp), _to_mpf(b, wp), wp, _RND)
    ctx.charge_units(_TRANSCENDENTAL_UNITS)
    return _check_mpf(_round(_exp_of(log_value, ctx)))


def _int_power(a: Value, n: int, ctx: _Context) -> Value:
    if type(a) is not tuple:
        assert isinstance(a, (int, Fraction))
        if a == 1:
            return 1
        if a == -1:
            return 1 if n % 2 == 0 else -1
        if n < 0:
            a = _normalize(Fraction(1) / a)
            n = -n
        # Estimated size of the exact result (exponents beyond 2^64 never fit).
        est_bits = MAX_EXACT_BITS + 2.0
        if n.bit_length() <= 64:
            est_bits = n * _log2_exact(a) if type(a) is int else float(n * _bits(a))
        if est_bits <= MAX_EXACT_BITS + 1:
            ctx.charge_mul(int(est_bits))
            return _exact_or_approx(a**n, ctx)
    # Approximate: estimate log2 of the result before computing anything.
    x = _to_mpf(a, PRECISION_BITS + n.bit_length() + 10)
    est_log2 = abs(n) * (_mag2(x) - 1 if _mag2(x) > 0 else _mag2(x))
    if abs(est_log2) > 4 * _CAP_LOG2:
        raise _Fail(LimitError, _out_of_range(est_log2 > 0))
    if n.bit_length() <= 64:
        wp = PRECISION_BITS + n.bit_length() + 10
        ctx.charge_units(2)
        if n < 0:
            r = libmp.mpf_pow_int(x, -n, wp, _RND)
            if abs(_mag2(r)) > _CAP_LOG2 + 2:
                raise _Fail(LimitError, _out_of_range(_mag2(r) < 0))
            return _check_mpf(_round(libmp.mpf_div(libmp.fone, r, wp, _RND)))
        return _check_mpf(_round(libmp.mpf_pow_int(x, n, wp, _RND)))
    # Huge exponent on a base very close to 1: exp(n ln|a|).
    est = libmp.mpf_mul(_ln(a, 64), libmp.from_int(n, 64, _RND), 64, _RND)
    _check_log_estimate(est)
    wp = PRECISION_BITS + max(0, _mag2(est)) + 10
    r = _exp_of(libmp.mpf_mul(_ln(a, wp), libmp.from_int(n), wp, _RND), ctx)
    if _sign(a) < 0 and n % 2:
        r = libmp.mpf_neg(r)
    return _check_mpf(_round(r))


# log10(n!) for n! to stay exact: 3249! has 10,000 digits.
_MAX_EXACT_FACTORIAL: Final = 3248


def _factorial(v: Value, ctx: _Context) -> Value:
    if type(v) is tuple:
        n = _near_int(v, "factorial")
        if n is None:
            raise _Fail(CalcDomainError, "factorial is only defined for non-negative integers")
    elif type(v) is int:
        n = v
    else:
        raise _Fail(CalcDomainError, "factorial is only defined for non-negative integers")
    if n < 0:
        raise _Fail(CalcDomainError, "factorial is only defined for non-negative integers")
    if n <= _MAX_EXACT_FACTORIAL:
        if n > 500:
            ctx.charge_mul(int(n * math.log2(n)))
        return math.factorial(n)
    # log10(n!) ~ n log10(n/e): refuse before computing when that is beyond the cap.
    if n.bit_length() > 60 or n * (math.log10(n) - 0.4343) > MAX_DECIMAL_EXPONENT:
        raise _Fail(LimitError, f"factorial is too large (beyond 10^{_fmt_cap()})")
    ctx.charge_units(_TRANSCENDENTAL_UNITS)
    return _check_mpf(libmp.mpf_gamma(libmp.from_int(n + 1), PRECISION_BITS, _RND))


# --------------------------------------------------------------------------------------------
# Functions
#
# Each implementation takes the evaluated arguments and the context; _Fail(arg=i) blames
# argument i.


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A built-in function: argument counts, a usage line and the implementation."""

    min_args: int
    max_args: int
    usage: str
    impl: Callable[[list[Value], _Context], Value]

    @property
    def arity_text(self) -> str:
        if self.min_args == self.max_args:
            return f"{self.min_args} argument{'s' if self.min_args != 1 else ''}"
        if self.max_args > 100:
            return f"at least {self.min_args} argument{'s' if self.min_args != 1 else ''}"
        return f"{self.min_args} to {self.max_args} arguments"


# mpmath's pure-Python integer square root below this is Newton's method run to the exact floor
# (isqrt_small_python), which math.isqrt computes in C.
_SQRT_SMALL: Final = 1 << 600


def _mpf_sqrt(s: MPF, prec: int) -> MPF:
    """libmp.mpf_sqrt(s, prec, round_nearest), the same steps with the integer square root done
    by math.isqrt: ~25,000 instructions less at working precision."""
    sign, man, exp, bc = s
    if sign or not man:
        return libmp.mpf_sqrt(s, prec, _RND)  # type: ignore[no-any-return]
    if exp & 1:
        exp -= 1
        man <<= 1
        bc += 1
    elif man == 1:
        return libmp.normalize(sign, man, exp // 2, bc, prec, _RND)  # type: ignore[no-any-return]
    shift = max(4, 2 * prec - bc + 4)
    shift += shift & 1
    n = man << shift
    if n >= _SQRT_SMALL:  # mpmath's larger-number square root: leave it to mpmath
        return libmp.mpf_sqrt(s, prec, _RND)  # type: ignore[no-any-return]
    root = math.isqrt(n)
    if root * root != n:  # perturb up, as mpf_sqrt does for a nonzero remainder
        root = (root << 1) + 1
        shift += 2
    return libmp.from_man_exp(root, (exp - shift) // 2, prec, _RND)  # type: ignore[no-any-return]


def _f_sqrt(args: list[Value], ctx: _Context) -> Value:
    x = args[0]
    if type(x) is int and x >= 0 and x.bit_length() <= 2048:
        # The common case without the general helpers: a perfect square's root is exact
        # (what _exact_root finds), anything else is rounded from working precision (no charge
        # below 2048 bits); the same values either way.
        r = math.isqrt(x)
        if r * r == x:
            return r
        wp = PRECISION_BITS + 10
        return _round(_mpf_sqrt(libmp.from_int(x, wp, _RND), wp))
    if _sign(x) < 0:
        raise _Fail(CalcDomainError, "square root of a negative number", 0)
    if type(x) is not tuple:
        root = _exact_root(x, 2)  # type: ignore[arg-type]
        if root is not None:
            return root
        ctx.charge(_bits(x))  # type: ignore[arg-type]
    return _round(_mpf_sqrt(_to_mpf(x, PRECISION_BITS + 10), PRECISION_BITS + 10))


def _f_cbrt(args: list[Value], ctx: _Context) -> Value:
    x = args[0]
    if type(x) is not tuple:
        root = _exact_root(x, 3)  # type: ignore[arg-type]
        if root is not None:
            return root
    if _sign(x) == 0:
        return 0
    wp = PRECISION_BITS + 10
    r = libmp.mpf_cbrt(libmp.mpf_abs(_to_mpf(x, wp)), wp, _RND)
    return _round(libmp.mpf_neg(r) if _sign(x) < 0 else r)


def _f_abs(args: list[Value], ctx: _Context) -> Value:
    x = args[0]
    if type(x) is tuple:
        return libmp.mpf_abs(x)  # type: ignore[no-any-return]
    v = cast("int | Fraction", x)
    return -v if v < 0 else v


def _f_exp(args: list[Value], ctx: _Context) -> Value:
    x = args[0]
    if _sign(x) == 0:
        return 1
    return _check_mpf(_round(_exp_of(_to_mpf(x, PRECISION_BITS + 70), ctx)))


def _log_any(x: Value, base: Value | None, ctx: _Context, name: str) -> Value:
    if _sign(x) <= 0:
        what = "zero" if _sign(x) == 0 else "a negative number"
        raise _Fail(CalcDomainError, f"{name} of {what} is undefined", 0)
    if base is not None:
        if _sign(base) <= 0 or _cmp(base, 1) == 0:  # pi/pi is an inexact 1: ln of it is 0
            raise _Fail(CalcDomainError, "logarithm base must be positive and not 1", 1)
        exact = _exact_log(x, base)
        if exact is not None:
            return exact
    if type(x) is not tuple and x == 1:
        return 0
    ctx.charge_units(_TRANSCENDENTAL_UNITS)
    num = _ln(x, PRECISION_BITS + 10)
    if base is None:
        return _round(num)
    den = _ln(base, PRECISION_BITS + 10)
    return _round(libmp.mpf_div(num, den, PRECISION_BITS + 10, _RND))


def _exact_log(x: Value, base: Value) -> int | None:
    """log_base(x) when x is an exact integer power of an exact base (log10(1000) = 3)."""
    if type(x) is tuple or type(base) is tuple:
        return None
    assert isinstance(x, (int, Fraction)) and isinstance(base, (int, Fraction))
    if x == 1:
        return 0
    lb = _log2_exact(base)
    if lb == 0:
        return None
    k = round(_log2_exact(x) / lb)
    if k == 0 or abs(k) * _bits(base) > MAX_EXACT_BITS:
        return None
    return k if Fraction(base) ** k == x else None


def _f_ln(args: list[Value], ctx: _Context) -> Value:
    return _log_any(args[0], None, ctx, "ln")


def _f_log(args: list[Value], ctx: _Context) -> Value:
    return _log_any(args[0], args[1] if len(args) > 1 else 10, ctx, "log")


def _f_log2(args: list[Value], ctx: _Context) -> Value:
    return _log_any(args[0], 2, ctx, "log2")


def _f_log10(args: list[Value], ctx: _Context) -> Value:
    return _log_any(args[0], 10, ctx, "log10")


# Trigonometric arguments must stay below 2^1000 (~1e301): argument reduction needs pi to as
# many bits as the argument has, and beyond that a result means nothing anyway.
_TRIG_MAX_LOG2: Final = 1000


def _trig_arg(x: Value, name: str) -> MPF:
    """x as an mpf with enough precision that reduction modulo 2*pi keeps PRECISION_BITS."""
    if type(x) is tuple:
        if x[1] and _mag2(x) > _TRIG_MAX_LOG2:
            raise _Fail(LimitError, f"{name}() argument is too large (limit about 1e300)", 0)
        return x
    mag = _log2_exact(cast("int | Fraction", x))  # x != 0: callers handle 0
    if mag > _TRIG_MAX_LOG2:
        raise _Fail(LimitError, f"{name}() argument is too large (limit about 1e300)", 0)
    return _to_mpf(x, PRECISION_BITS + max(0, int(mag)) + 10)


def _trig(name: str, fn: Callable[[MPF, int, str], MPF], zero_value: int) -> Callable[..., Value]:
    def impl(args: list[Value], ctx: _Context) -> Value:
        x = args[0]
        if _sign(x) == 0:
            return zero_value
        arg = _trig_arg(x, name)
        ctx.charge_units(_TRANSCENDENTAL_UNITS)
        r = fn(arg, PRECISION_BITS + max(0, _mag2(arg)) + 10, _RND)
        if type(x) is tuple:  # sin(pi): the true value may be 0; the noise is not meaningful
            r = _snap(r, _mag2(arg))
        return _round(r)

    return impl


def _f_tan(args: list[Value], ctx: _Context) -> Value:
    x = args[0]
    if _sign(x) == 0:
        return 0
    arg = _trig_arg(x, "tan")
    ctx.charge_units(_TRANSCENDENTAL_UNITS)
    wp = PRECISION_BITS + max(0, _mag2(arg)) + 10
    c, s = libmp.mpf_cos_sin(arg, wp, _RND)
    if type(x) is tuple:
        c = _snap(c, _mag2(arg))
        s = _snap(s, _mag2(arg))
    if not c[1]:
        raise _Fail(CalcDomainError, "tan is undefined here (cos(x) = 0)", 0)
    return _check_mpf(_round(libmp.mpf_div(s, c, wp, _RND)))


def _inverse_trig(
    name: str, fn: Callable[[MPF, int, str], MPF], bounded: bool
) -> Callable[..., Value]:
    def impl(args: list[Value], ctx: _Context) -> Value:
        x = args[0]
        if bounded and (_cmp(x, 1) > 0 or _cmp(x, -1) < 0):
            raise _Fail(CalcDomainError, f"{name} is only defined for -1 <= x <= 1", 0)
        if _sign(x) == 0 and name != "acos":
            return 0
        if type(x) is not tuple and x == 1 and name == "acos":
            return 0
        ctx.charge_units(_TRANSCENDENTAL_UNITS)
        return _round(fn(_to_mpf(x, PRECISION_BITS + 10), PRECISION_BITS + 10, _RND))

    return impl


def _f_atan2(args: list[Value], ctx: _Context) -> Value:
    y, x = args
    if _sign(y) == 0 and _sign(x) >= 0:
        return 0
    ctx.charge_units(_TRANSCENDENTAL_UNITS)
    wp = PRECISION_BITS + 10
    return _round(libmp.mpf_atan2(_to_mpf(y, wp), _to_mpf(x, wp), wp, _RND))


def _hyperbolic(name: str) -> Callable[..., Value]:
    def impl(args: list[Value], ctx: _Context) -> Value:
        x = args[0]
        if _sign(x) == 0:
            return 1 if name == "cosh" else 0
        xm = _to_mpf(x, PRECISION_BITS + 70)
        if name == "tanh":
            if _mag2(xm) > 12:  # |x| > 4096: tanh is +-1 to far more than 77 digits
                return _round(libmp.mpf_neg(libmp.fone) if _sign(x) < 0 else libmp.fone)
            ctx.charge_units(_TRANSCENDENTAL_UNITS)
            return _round(libmp.mpf_tanh(xm, PRECISION_BITS + 10, _RND))
        # sinh, cosh ~ e^|x| / 2: the range check of exp decides.
        ex = _exp_of(libmp.mpf_abs(xm), ctx)
        wp = PRECISION_BITS + 10
        inv = libmp.mpf_div(libmp.fone, ex, wp, _RND)
        if name == "cosh":
            r = libmp.mpf_shift(libmp.mpf_add(ex, inv, wp, _RND), -1)
        else:
            r = libmp.mpf_shift(libmp.mpf_sub(ex, inv, wp, _RND), -1)
            if _sign(x) < 0:
                r = libmp.mpf_neg(r)
        return _check_mpf(_round(r))

    return impl


def _rounding(name: str) -> Callable[..., Value]:
    def impl(args: list[Value], ctx: _Context) -> Value:
        x = args[0]
        if type(x) is tuple:
            if x[1] and _mag2(x) > PRECISION_BITS - 40:
                return x  # an approximation this large has no fractional digits left
            n = _near_int(x, f"{name}()")
            if n is not None:
                return n
            if name == "floor":
                return libmp.to_int(libmp.mpf_floor(x), _RND)  # type: ignore[no-any-return]
            if name == "ceil":
                return libmp.to_int(libmp.mpf_ceil(x), _RND)  # type: ignore[no-any-return]
            return libmp.to_int(x, "d")  # type: ignore[no-any-return]
        assert isinstance(x, (int, Fraction))
        if name == "floor":
            return math.floor(x)
        if name == "ceil":
            return math.ceil(x)
        return math.trunc(x)

    return impl


def _f_round(args: list[Value], ctx: _Context) -> Value:
    """round(x[, digits]), half away from zero."""
    x = args[0]
    digits = 0
    if len(args) > 1:
        d = args[1]
        if type(d) is not int:
            raise _Fail(CalcDomainError, "round() digits must be an integer", 1)
        digits = d
    if type(x) is tuple:
        return _round_approx(x, digits, ctx)
    assert isinstance(x, (int, Fraction))
    if type(x) is int and digits >= 0:
        return x
    if digits < -_MAX_EXACT_DIGITS - 1:  # |x| < 10**10000: every exact value rounds to 0
        return 0
    if digits > _MAX_EXACT_DIGITS:  # the rounded value could not be kept exactly
        return _round_approx(_to_mpf(x), digits, ctx)
    ctx.charge(_bits(x) + abs(digits) * 4)
    scale = Fraction(10) ** digits
    scaled = x * scale
    n, rem = divmod(abs(scaled.numerator), scaled.denominator)
    if 2 * rem >= scaled.denominator:
        n += 1
    if scaled < 0:
        n = -n
    return _exact_or_approx(_normalize(n / scale), ctx)


_MAX_EXACT_DIGITS: Final = int(MAX_EXACT_BITS * 0.3010299956639812)  # 10**this fits exactly


def _round_approx(x: MPF, digits: int, ctx: _Context) -> Value:
    if not x[1]:
        return 0
    mag10 = _mag2(x) * 0.3010299956639812
    if _mag2(x) > PRECISION_BITS - 40 or digits > PRECISION_BITS * 0.3 - mag10:
        return x  # rounding beyond the working precision changes nothing we know
    if digits < -(mag10 + 2):
        return 0
    wp = PRECISION_BITS + 64
    scale = libmp.mpf_pow_int(libmp.from_int(10), abs(digits), wp, _RND)
    scale_op = libmp.mpf_mul if digits >= 0 else libmp.mpf_div
    scaled = scale_op(x, scale, wp, _RND)
    n = _near_int(scaled, "round()")
    if n is None:
        half = libmp.mpf_add(libmp.mpf_abs(scaled), libmp.from_rational(1, 2, 64), wp, _RND)
        n = int(libmp.to_int(libmp.mpf_floor(half)))
        if _sign(scaled) < 0:
            n = -n
    if abs(digits) > _MAX_EXACT_DIGITS:
        return _check_mpf(_round(libmp.mpf_mul(libmp.from_int(n), libmp.mpf_div(
            libmp.fone, scale, wp, _RND) if digits >= 0 else scale, wp, _RND)))
    return _exact_or_approx(_normalize(Fraction(n) / Fraction(10) ** digits), ctx)


def _cmp(a: Value, b: Value) -> int:
    if type(a) is not tuple and type(b) is not tuple:
        return (a > b) - (a < b)  # type: ignore[operator]
    return libmp.mpf_cmp(_to_mpf(a, PRECISION_BITS + 10), _to_mpf(b, PRECISION_BITS + 10))  # type: ignore[no-any-return]


def _f_min(args: list[Value], ctx: _Context) -> Value:
    best = args[0]
    for v in args[1:]:
        if _cmp(v, best) < 0:
            best = v
    return best


def _f_max(args: list[Value], ctx: _Context) -> Value:
    best = args[0]
    for v in args[1:]:
        if _cmp(v, best) > 0:
            best = v
    return best


def _integers(args: list[Value], name: str) -> list[int]:
    out = []
    for i, v in enumerate(args):
        if type(v) is not int:
            raise _Fail(CalcDomainError, f"{name}() needs exact integers", i)
        out.append(v)
    return out


def _f_gcd(args: list[Value], ctx: _Context) -> Value:
    ints = _integers(args, "gcd")
    for v in ints:
        ctx.charge(v.bit_length())
    return math.gcd(*ints)


def _f_lcm(args: list[Value], ctx: _Context) -> Value:
    ints = _integers(args, "lcm")
    acc = ints[0]
    for v in ints[1:]:
        ctx.charge(max(v.bit_length(), acc.bit_length()))
        if acc.bit_length() + v.bit_length() > 2 * MAX_EXACT_BITS:
            raise _Fail(LimitError, "lcm is too large to compute exactly")
        acc = math.lcm(acc, v)
    return _exact_or_approx(abs(acc), ctx)


def _f_hypot(args: list[Value], ctx: _Context) -> Value:
    total: Value = 0
    for v in args:
        total = _add(total, _mul(v, v, ctx), ctx)
    return _f_sqrt([total], ctx)


def _f_factorial(args: list[Value], ctx: _Context) -> Value:
    try:
        return _factorial(args[0], ctx)
    except _Fail as fail:
        fail.arg = 0
        raise


_VARIADIC: Final = 1_000_000

FUNCTIONS: Final[dict[str, FunctionSpec]] = {
    "sqrt": FunctionSpec(1, 1, "sqrt(x)", _f_sqrt),
    "cbrt": FunctionSpec(1, 1, "cbrt(x)", _f_cbrt),
    "abs": FunctionSpec(1, 1, "abs(x)", _f_abs),
    "exp": FunctionSpec(1, 1, "exp(x)", _f_exp),
    "ln": FunctionSpec(1, 1, "ln(x)", _f_ln),
    "log": FunctionSpec(1, 2, "log(x) (base 10) or log(x, base)", _f_log),
    "log2": FunctionSpec(1, 1, "log2(x)", _f_log2),
    "log10": FunctionSpec(1, 1, "log10(x)", _f_log10),
    "sin": FunctionSpec(1, 1, "sin(x) (radians)", _trig("sin", libmp.mpf_sin, 0)),
    "cos": FunctionSpec(1, 1, "cos(x) (radians)", _trig("cos", libmp.mpf_cos, 1)),
    "tan": FunctionSpec(1, 1, "tan(x) (radians)", _f_tan),
    "asin": FunctionSpec(1, 1, "asin(x)", _inverse_trig("asin", libmp.mpf_asin, True)),
    "acos": FunctionSpec(1, 1, "acos(x)", _inverse_trig("acos", libmp.mpf_acos, True)),
    "atan": FunctionSpec(1, 1, "atan(x)", _inverse_trig("atan", libmp.mpf_atan, False)),
    "atan2": FunctionSpec(2, 2, "atan2(y, x)", _f_atan2),
    "sinh": FunctionSpec(1, 1, "sinh(x)", _hyperbolic("sinh")),
    "cosh": FunctionSpec(1, 1, "cosh(x)", _hyperbolic("cosh")),
    "tanh": FunctionSpec(1, 1, "tanh(x)", _hyperbolic("tanh")),
    "floor": FunctionSpec(1, 1, "floor(x)", _rounding("floor")),
    "ceil": FunctionSpec(1, 1, "ceil(x)", _rounding("ceil")),
    "trunc": FunctionSpec(1, 1, "trunc(x)", _rounding("trunc")),
    "round": FunctionSpec(1, 2, "round(x) or round(x, digits)", _f_round),
    "min": FunctionSpec(1, _VARIADIC, "min(a, b, ...)", _f_min),
    "max": FunctionSpec(1, _VARIADIC, "max(a, b, ...)", _f_max),
    "gcd": FunctionSpec(1, _VARIADIC, "gcd(a, b, ...)", _f_gcd),
    "lcm": FunctionSpec(1, _VARIADIC, "lcm(a, b, ...)", _f_lcm),
    "hypot": FunctionSpec(1, _VARIADIC, "hypot(x, y, ...)", _f_hypot),
    "factorial": FunctionSpec(1, 1, "factorial(n)", _f_factorial),
}

CONSTANTS: Final[dict[str, Value]] = {"pi": _PI, "e": _E, "tau": _TAU}
_KNOWN_NAMES: Final = sorted([*FUNCTIONS, *CONSTANTS])


# --------------------------------------------------------------------------------------------
# Display


def _int_to_str(n: int) -> str:
    """str(n) without tripping CPython's 4,300-digit conversion limit."""
    if n.bit_length() <= 13_000:
        return str(n)
    if n < 0:
        return "-" + _int_to_str(-n)
    half = int(n.bit_length() * 0.30103) // 2
    hi, lo = divmod(n, 10**half)
    return _int_to_str(hi) + _int_to_str(lo).zfill(half)


def _format(negative: bool, digits: str, exp10: int) -> str:
    """Format sign, significant digits (no trailing zeros) and the exponent of the first digit."""
    if 0 <= exp10 < len(digits) - 1:  # the commonest case: digits on both sides of the point
        text = digits[: exp10 + 1] + "." + digits[exp10 + 1 :]
        return "-" + text if negative else text
    sign = "-" if negative else ""
    if exp10 < -10 or exp10 >= DISPLAY_DIGITS:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{exp10}"
    if exp10 < 0:
        return f"{sign}0.{'0' * (-exp10 - 1)}{digits}"
    return sign + digits.ljust(exp10 + 1, "0")  # no fractional digits


# 10**k for the exponents display needs often (digit extraction of small fractions and mpfs).
_POW10: Final = [10**k for k in range(1200)]
# libmp.to_digits_exp(x, DISPLAY_DIGITS + 5), inlined below: its working bits and log2(10).
_DIGITS_BITPREC: Final = int((DISPLAY_DIGITS + 5) * math.log(10, 2)) + 10
_LOG2_10: Final = math.log(10, 2)


def _display_fraction(num: int, den: int) -> str:
    """The display of the exact value num/den (in lowest terms, den > 1)."""
    negative = num < 0
    p, q = -num if negative else num, den
    if q.bit_length() <= 64 and p.bit_length() <= 128:
        # A small terminating decimal (q = 2^a 5^b) is printed exactly.
        twos = (q & -q).bit_length() - 1
        t = q >> twos
        fives = 0
        while t % 5 == 0:
            t //= 5
            fives += 1
        if t == 1:
            k = max(twos, fives)
            digits = str(p * _POW10[k] // q)  # k <= 63: q < 2^64
            stripped = digits.rstrip("0")
            if len(stripped) <= DISPLAY_DIGITS:
                return _format(negative, stripped, len(digits) - 1 - k)
        # Otherwise: m = floor(p/q * 10^k) with k chosen so that m has more than
        # DISPLAY_DIGITS digits.  Its first digits are those of p/q and its length gives the
        # exponent; rounding half up on the next digit of m is rounding half up of p/q itself
        # (the dropped tail of m is below one unit, which cannot reach the next half-unit step).
        k = 42 + ((q.bit_length() - p.bit_length() + 1) * 30103) // 100_000  # 3 <= k <= 62
        m = p * _POW10[k] // q
        digits = str(m)
        e = len(digits) - 1 - k
        if digits[DISPLAY_DIGITS] >= "5":
            # int(digits[:DISPLAY_DIGITS]) + 1, without parsing the digits back
            digits = str(m // _POW10[len(digits) - DISPLAY_DIGITS] + 1)
            if len(digits) > DISPLAY_DIGITS:  # rounding carried into a new digit: 9.99... -> 10
                e += 1
                digits = digits[:DISPLAY_DIGITS]
        else:
            digits = digits[:DISPLAY_DIGITS]
        return _format(negative, digits.rstrip("0"), e)
    # exp10 = floor(log10(p/q)), estimated from bit lengths then corrected.
    e = math.floor((_log2_int(p) - _log2_int(q)) * 0.3010299956639812)
    while True:
        if e >= 0:
            lo_ok = p >= q * 10**e
            hi_ok = p < q * 10 ** (e + 1)
        else:
            lo_ok = p * 10**-e >= q
            hi_ok = p * 10 ** (-e - 1) < q
        if not lo_ok:
            e -= 1
        elif not hi_ok:
            e += 1
        else:
            break
    shift = DISPLAY_DIGITS - 1 - e
    if shift >= 0:
        n, r = divmod(p * 10**shift, q)
        if 2 * r >= q:
            n += 1
    else:
        d = q * 10**-shift
        n, r = divmod(p, d)
        if 2 * r >= d:
            n += 1
    digits = str(n)
    if len(digits) > DISPLAY_DIGITS:  # rounding carried into a new digit: 9.99... -> 10
        e += 1
        digits = digits[:DISPLAY_DIGITS]
    return _format(negative, digits.rstrip("0"), e)


def _display_mpf(x: MPF) -> str:
    sign, man, exp, bc = x
    if not man:
        return "0"
    e2 = exp + bc
    if -3500 <= e2 <= 3500:
        # libmp.to_digits_exp(x, DISPLAY_DIGITS + 5) without its calls: the same integer steps
        # (x as a fixed-point integer, then floor(x * 10^fixdps)), so the same digits.
        fixprec = _DIGITS_BITPREC - e2
        if fixprec < 0:
            fixprec = 0
        fixdps = int(fixprec / _LOG2_10 + 0.5)
        offset = exp + fixprec
        fixed = man << offset if offset >= 0 else man >> -offset
        n = fixed * (_POW10[fixdps] if fixdps < 1200 else 10**fixdps) >> fixprec
        digits = str(n)
        exp10 = len(digits) - fixdps - 1
        if digits[DISPLAY_DIGITS] >= "5":  # round half up on the 41st digit
            # int(digits[:DISPLAY_DIGITS]) + 1, without parsing the digits back
            text = str(n // _POW10[len(digits) - DISPLAY_DIGITS] + 1)
        else:
            text = digits[:DISPLAY_DIGITS]
    else:
        _, digits, exp10 = libmp.to_digits_exp(x, DISPLAY_DIGITS + 5)
        text = digits[:DISPLAY_DIGITS]
        if digits[DISPLAY_DIGITS] >= "5":  # round half up on the 41st digit
            text = str(int(text) + 1)
    if len(text) > DISPLAY_DIGITS:  # rounding carried into a new digit: 9.99... -> 10
        exp10 += 1
        text = text[:DISPLAY_DIGITS]
    return _format(sign == 1, text.rstrip("0"), exp10)


def _make_result(text: str, value: Value, ctx: _Context) -> Result:
    # Result(text, display, exact, fraction) without the class call (~1,000 instructions less).
    result = _new_object(Result)
    result._expr = text
    if type(value) is int:
        result._display = (
            str(value) if value.bit_length() <= 13_000 else _int_to_str(value)
        )
        result._exact = True
        result._fraction = None
    elif type(value) is Fraction:
        if _FAST_FRACTIONS:  # the slots behind the numerator/denominator properties
            num, den = value._numerator, value._denominator  # type: ignore[attr-defined]
        else:  # pragma: no cover
            num, den = value.numerator, value.denominator
        if den.bit_length() < 13_000 and num.bit_length() < 13_000:
            result._fraction = f"{num}/{den}"
        else:
            result._fraction = f"{_int_to_str(num)}/{_int_to_str(den)}"
        result._display = _display_fraction(num, den)
        result._exact = True
    else:
        assert type(value) is tuple
        result._display = _display_mpf(value)
        result._exact = False
        result._fraction = None
    return result


# --------------------------------------------------------------------------------------------
# Fast path
#
# Strategy: most requests are short, valid expressions over small numbers.  For them,
# _fast_expr() evaluates while it parses (the same Pratt loop as _Parser._expr, with the same
# binding powers, peephole and depth counting, but no tree) and inlines arithmetic on small ints.
# It never reports an error itself: at the first sign of trouble -- a syntax error, an unknown
# name, any _Fail from the arithmetic, or more work than _FAST_BUDGET -- it gives up (_Bail) and
# evaluate() starts over on the tree path, which produces the positioned error exactly as before.
# The values come from the same helpers in the same order, so a result is the same either way;
# and since the fast path's budget is a small fraction of WORK_BUDGET, an input that succeeds on
# it could not have run out of budget on the tree path.  Giving up wastes at most ~0.5 ms.
#
# Cost (callgrind, CPython 3.11 here): ~64,000 instructions (~15 µs) per evaluation on average
# over the 1,200 expressions scripts/bench.py POSTs (`bench_calculator.py --server-corpus`), down
# from ~84,000.  What remains is interpretive overhead spread thin: ~1,000 instructions per token
# in the regex tokenizer, ~4,000 per operator here, ~15,000 to print a fraction or an mpf, and
# mpmath's pure-Python transcendental functions at 266 bits (sin ~80,000, sqrt ~38,000).

# Work units the fast path may spend before handing over (~0.5 ms here, all of it wasted when
# it hands over).  Besides the charges of the arithmetic helpers, a function call costs
# _FAST_CALL_UNITS and any operation beyond small exact numbers 1, so that uncharged work
# (sqrt of an approximation, long chains of mid-sized fractions) is bounded too.
_FAST_BUDGET: Final = 100
_FAST_CALL_UNITS: Final = 3
_SMALL: Final = 1 << 62
_DIGITS: Final = frozenset("0123456789")


class _Bail(Exception):
    """The fast path leaves this input to the tree path."""


def _fraction_unchecked(n: int, d: int) -> Fraction:
    """Fraction(n, d) for coprime n and d > 1, without Fraction.__new__'s type checks and gcd
    (what Python 3.12's Fraction._from_coprime_ints does)."""
    f = _new_object(Fraction)
    f._numerator = n  # type: ignore[attr-defined]
    f._denominator = d  # type: ignore[attr-defined]
    return f


_new_object: Final = object.__new__
try:  # verify the representation once (it is CPython's, unchanged since 3.0's __slots__)
    _probe = _fraction_unchecked(14, 5)
    _FAST_FRACTIONS = _probe == Fraction(14, 5) and str(_probe) == "14/5"
except (AttributeError, TypeError):  # pragma: no cover - another Fraction implementation
    _FAST_FRACTIONS = False


def _ratio(n: int, d: int) -> int | Fraction:
    """n/d (d != 0) as _normalize(Fraction(n, d)) would give it."""
    g = math.gcd(n, d)
    if d < 0:
        g = -g
    if g != 1:
        n //= g
        d //= g
    if d == 1:
        return n
    if _FAST_FRACTIONS:
        return _fraction_unchecked(n, d)
    return Fraction(n, d)  # pragma: no cover


def _fast_number(tok: str) -> Value:
    """A numeric literal token, as _parse_number() reads it."""
    if len(tok) >= 300:
        raise _Bail  # long literals: let the tree path pay for them once
    if tok.isdigit():
        return int(tok)
    mantissa, marker, exponent_text = tok.partition("e")
    if not marker:
        mantissa, marker, exponent_text = tok.partition("E")
    whole, _, frac = mantissa.partition(".")
    if not marker:
        if not frac:
            return int(whole)
        return _ratio(int(whole + frac), 10 ** len(frac))
    if len(exponent_text) > 3:
        return _parse_number(tok)  # its range and size checks decide
    # Below 10^±999 with under 300 digits the value is always exact and within MAX_EXACT_BITS,
    # so _parse_number would build exactly this (its Fraction normalised as _ratio does).
    exponent = int(exponent_text) - len(frac)
    digits = int(whole + frac)
    if exponent >= 0:
        return digits * int(10**exponent)
    return _ratio(digits, int(10**-exponent))


def _fast_expr(
    toks: list[str], n: int, i: int, min_bp: int, depth: int, ctx: _Context
) -> tuple[Value, int]:
    """Parse and evaluate toks[i:] up to an operator binding no tighter than min_bp.

    Mirrors _Parser._expr (see there); returns the value and the index of the next token.
    """
    if depth > MAX_DEPTH or i >= n:
        raise _Bail
    # ---- prefix part
    tok = toks[i]
    kind = _PREFIX.get(tok)
    left: Value
    if kind is None:
        first = tok[0]
        if first in _NUMBER_START and tok != ".":
            left = int(tok) if tok.isdigit() and len(tok) < 300 else _fast_number(tok)
            i += 1
        elif first in _NAME_START:
            name = tok.lower()
            if i + 1 < n and toks[i + 1] == "(":
                spec = FUNCTIONS.get(name)
                if spec is None:
                    raise _Bail
                i += 2
                args: list[Value] = []
                while True:
                    value, i = _fast_expr(toks, n, i, 0, depth + 1, ctx)
                    args.append(value)
                    if i >= n:
                        raise _Bail
                    sep = toks[i]
                    i += 1
                    if sep == ")":
                        break
                    if sep != ",":
                        raise _Bail
                if not spec.min_args <= len(args) <= spec.max_args:
                    raise _Bail
                ctx.work += _FAST_CALL_UNITS  # ctx.charge_units(), inlined
                if ctx.work > ctx.budget:
                    raise _Bail
                left = spec.impl(args, ctx)
            else:
                constant = CONSTANTS.get(name)
                if constant is None:
                    raise _Bail
                left = constant
                i += 1
        else:
            raise _Bail
    elif kind == _P_OPEN:
        left, i = _fast_expr(toks, n, i + 1, 0, depth + 1, ctx)
        if i >= n or toks[i] != ")":
            raise _Bail
        i += 1
    elif kind == _P_SIGN:
        left, i = _fast_expr(toks, n, i + 1, _UNARY_BP, depth + 1, ctx)
        if tok != "+":
            left = libmp.mpf_neg(left) if type(left) is tuple else -left  # type: ignore[operator]
    elif kind == _P_ROOT:
        operand, i = _fast_expr(toks, n, i + 1, _POWER_BP, depth + 1, ctx)
        ctx.charge_units(_FAST_CALL_UNITS)
        left = _f_sqrt([operand], ctx)
    elif kind == _P_PI:
        left = _PI
        i += 1
    else:
        raise _Bail
    # ---- infix / postfix loop
    lbp_of = _LBP
    extra = 0
    while i < n:
        tok = toks[i]
        bp = lbp_of.get(tok)
        if bp is None:
            raise _Bail
        if bp <= min_bp:
            break
        if bp == _POSTFIX_BP:
            extra += 1
            if depth + extra > MAX_DEPTH:
                raise _Bail
            ctx.charge_units(1)
            left = _factorial(left, ctx)
            i += 1
            continue
        if bp == _POWER_BP:
            b, i = _fast_expr(toks, n, i + 1, _POWER_BP - 1, depth + 1, ctx)
            if (
                type(left) is int
                and type(b) is int
                and b >= 0
                and -_SMALL < left < _SMALL
                and b * left.bit_length() <= 4096
            ):
                left = left**b  # what _int_power computes, and below its charging threshold
            elif (
                type(left) is Fraction
                and type(b) is int
                and b > 0
                and _FAST_FRACTIONS
                and b * max(
                    (num := left._numerator).bit_length(),  # type: ignore[attr-defined]
                    (den := left._denominator).bit_length(),  # type: ignore[attr-defined]
                )
                <= 4096
            ):
                # What _int_power computes (Fraction.__pow__: both terms to the power, still in
                # lowest terms), without its generic checks; no charge below 4096 bits there.
                ctx.charge_units(1)
                left = _fraction_unchecked(num**b, den**b)
            else:
                ctx.charge_units(1)
                left = _power(left, b, ctx)
            continue
        # Binary operator, with _Parser._expr's peephole for a plain integer operand.
        j = i + 1
        if (
            j < n
            and (nt := toks[j]).isdigit()
            and nt.isascii()
            and len(nt) < 300
            and (j + 1 == n or lbp_of.get(toks[j + 1], 99) <= bp)
        ):
            b = int(nt)
            i = j + 1
        else:
            b, i = _fast_expr(toks, n, j, bp, depth + 1, ctx)
        if (
            type(left) is int
            and type(b) is int
            and -_SMALL < left < _SMALL
            and -_SMALL < b < _SMALL
        ):
            # Small ints: no budget to charge and nothing to approximate.
            if tok == "+":
                left = left + b
            elif tok == "-" or tok == "−":
                left = left - b
            elif tok == "*" or tok == "×":
                left = left * b
            elif not b:
                raise _Bail  # division or modulo by zero: the tree path reports it
            elif tok == "/" or tok == "÷":
                left = _ratio(left, b)
            elif tok == "//":
                left = left // b
            else:  # %
                left = left % b
        else:
            exact = _small_exact(tok, left, b)
            if exact is None:
                ctx.charge_units(1)
                left = _BINARY[_CANON[tok]](left, b, ctx)
            else:
                left = exact
    return left, i


def _small_exact(tok: str, a: Value, b: Value) -> int | Fraction | None:
    """a <tok> b for small exact operands (terms below 2^62: no charge, nothing to approximate),
    computed on integers; None when the operands are not that or b is a zero divisor."""
    # Fraction's numerator/denominator are Python properties: read the slots behind them
    # (the representation _FAST_FRACTIONS verified); without it, leave it to the caller.
    if type(a) is int:
        an, ad = a, 1
    elif type(a) is Fraction and _FAST_FRACTIONS:
        an, ad = a._numerator, a._denominator  # type: ignore[attr-defined]
    else:
        return None
    if type(b) is int:
        bn, bd = b, 1
    elif type(b) is Fraction and _FAST_FRACTIONS:
        bn, bd = b._numerator, b._denominator  # type: ignore[attr-defined]
    else:
        return None
    if not (-_SMALL < an < _SMALL and ad < _SMALL and -_SMALL < bn < _SMALL and bd < _SMALL):
        return None
    if tok == "+":
        return _ratio(an * bd + bn * ad, ad * bd)
    if tok == "-" or tok == "−":
        return _ratio(an * bd - bn * ad, ad * bd)
    if tok == "*" or tok == "×":
        return _ratio(an * bn, ad * bd)
    if not bn:
        return None
    if tok == "/" or tok == "÷":
        return _ratio(an * bd, ad * bn)
    if tok == "//":  # Fraction.__floordiv__
        return (an * bd) // (ad * bn)
    return _ratio((an * bd) % (bn * ad), ad * bd)  # % as Fraction.__mod__


def _fast_evaluate(text: str, toks: list[str]) -> Result | None:
    """The Result of a well-formed, cheap expression; None to use the tree path instead."""
    ctx = _Context(None, _FAST_BUDGET)
    try:
        value, i = _fast_expr(toks, len(toks), 0, 0, 0, ctx)
        if i < len(toks):
            return None
        return _make_result(text, value, ctx)
    except (_Bail, _Fail):
        return None


# --------------------------------------------------------------------------------------------
# Entry points


def _tokens(text: str) -> list[str]:
    if not isinstance(text, str):
        raise CalcSyntaxError("expression must be text", 0, 1)
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise LimitError(
            f"expression is too long ({len(text)} characters, limit {MAX_EXPRESSION_LENGTH})",
            MAX_EXPRESSION_LENGTH,
            len(text) - MAX_EXPRESSION_LENGTH,
        )
    return _TOKEN_RE.findall(text)


def parse(text: str) -> Node:
    """Parse ``text`` into a syntax tree (see ``unparse``); raises CalcError."""
    return _Parser(text, _tokens(text)).parse()


def evaluate(text: str, *, budget: int | None = None) -> Result:
    """Evaluate an expression; raises CalcError (and only CalcError) when it cannot.

    With a `budget` (work units, see INLINE_BUDGET), an expression that would cost more raises
    `OverBudget` instead, before or while it is computed; within the budget the answer is the
    same as without one.
    """
    if (budget is not None and isinstance(text, str)
            and INLINE_MAX_LENGTH < len(text) <= MAX_EXPRESSION_LENGTH):
        raise OverBudget  # too long to parse here; past the maximum it is refused right here
    # _tokens() and _fast_evaluate() inlined: two calls fewer on every request.
    if isinstance(text, str) and len(text) <= MAX_EXPRESSION_LENGTH:
        toks = _TOKEN_RE.findall(text)
    else:
        toks = _tokens(text)  # raises the error
    # _Context(None, _FAST_BUDGET) without the class call (~1,000 instructions less)
    ctx = _new_object(_Context)
    ctx.parser = None
    ctx.work = 0
    ctx.budget = _FAST_BUDGET
    try:
        value, i = _fast_expr(toks, len(toks), 0, 0, 0, ctx)
        if i == len(toks):
            if type(value) is int and value.bit_length() <= 13_000:
                # _make_result's commonest case, and Result(...) without the class call
                result = _new_object(Result)
                result._expr = text
                result._display = str(value)
                result._exact = True
                result._fraction = None
                return result
            return _make_result(text, value, ctx)
    except (_Bail, _Fail):
        if budget is not None and ctx.work > ctx.budget:
            raise OverBudget from None
    return _evaluate_tree(text, toks)


def _evaluate_tree(text: str, toks: list[str]) -> Result:
    """evaluate() by building the syntax tree, then walking it: the path that reports errors."""
    parser = _Parser(text, toks)
    node = parser.parse()
    ctx = _Context(parser)
    value = node.evaluate(ctx)
    try:
        return _make_result(text, value, ctx)
    except _Fail as fail:
        raise ctx.error(fail.cls, fail.message, node) from None


# --------------------------------------------------------------------------------------------
# Printing a tree back
#
# Precedence levels for parenthesising: a child is wrapped when it binds more loosely than its
# position requires.  Iterative chains keep this non-recursive in the long direction; depth is
# bounded by MAX_DEPTH like the parser's.

_LEVEL_SUM: Final = 1
_LEVEL_PRODUCT: Final = 2
_LEVEL_UNARY: Final = 3
_LEVEL_POWER: Final = 4
_LEVEL_POSTFIX: Final = 5
_LEVEL_ATOM: Final = 6


def _level(node: Node) -> int:
    if isinstance(node, Chain):
        return _LEVEL_SUM if node.ops[0] in ("+", "-") else _LEVEL_PRODUCT
    if isinstance(node, Unary):
        return _LEVEL_UNARY
    if isinstance(node, Power):
        return _LEVEL_POWER
    if isinstance(node, Factorial):
        return _LEVEL_POSTFIX
    return _LEVEL_ATOM


def _wrap(node: Node, min_level: int) -> str:
    text = unparse(node)
    return f"({text})" if _level(node) < min_level else text


def unparse(node: Node) -> str:
    """Print a syntax tree back as text; ``parse(unparse(parse(t)))`` evaluates like ``t``.

    The output is canonical: ASCII operators, spaces around ``+ - * / // %``, only the
    parentheses precedence needs (``(1 + 2) * 3``, ``-2^2``, ``(-2)^2``).
    """
    if isinstance(node, Number):
        return node.text
    if isinstance(node, Constant):
        return node.name
    if isinstance(node, Call):
        return f"{node.name}({', '.join(unparse(a) for a in node.args)})"
    if isinstance(node, Unary):
        return node.op + _wrap(node.operand, _LEVEL_UNARY)
    if isinstance(node, Power):
        # The base must bind tighter than ^; the exponent may be another power or a signed term.
        return f"{_wrap(node.base, _LEVEL_POSTFIX)}^{_wrap(node.exponent, _LEVEL_UNARY)}"
    if isinstance(node, Factorial):
        return _wrap(node.operand, _LEVEL_POSTFIX) + "!"
    if isinstance(node, Chain):
        level = _level(node)
        parts = [_wrap(node.operands[0], level)]
        for op, operand in zip(node.ops, node.operands[1:], strict=True):
            parts.append(f" {op} ")
            parts.append(_wrap(operand, level + 1))
        return "".join(parts)
    raise TypeError(f"not a calculator node: {node!r}")
