"""Tokens: splitting the text, where each token stands, and what a numeric literal is worth.

Strategy: one precompiled regex; ``findall()`` returns the token strings with whitespace already
dropped, the cheapest way to split text in CPython. Positions are only needed for error messages,
so `spans` recomputes them from the same regex (``finditer``) when an error happens. Each
alternative starts with one character class or literal, the common ones first, and none can
start with whitespace, so the regex engine skips whitespace by itself.
"""

from __future__ import annotations

import itertools
import re
from typing import Final

from gmpy2 import mpc, mpfr, mpq, mpz

from app.calculator.cost import SMALL_BITS, Ledger, digits_units
from app.calculator.errors import Fault, LimitError
from app.calculator.numbers import (
    MAX_DECIMAL_EXPONENT,
    MAX_EXACT_BITS,
    MPFR_SAFE_EXP,
    PRECISION_BITS,
    Value,
    context_for,
    exact_bits,
    from_log2,
    ratio,
    to_mpfr,
)

__all__ = ["CANON", "NAME_START", "NUMBER_START", "classify", "parse_number", "spans", "tokenize"]

_TOKEN_RE: Final = re.compile(
    r"""[-+()^%,!]                                # one-character operators, the commonest
      | [0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?(?:i(?![A-Za-z0-9_]))?  # number (2, 2.5e3, 2i)
      | [A-Za-z_][A-Za-z0-9_]*                    # name
      | \*\*?|//?                                # * ** / //
      | \.[0-9]+(?:[eE][+-]?[0-9]+)?(?:i(?![A-Za-z0-9_]))?  # number starting with a point
      | \S                                        # other characters: operators, or rejected
    """,
    re.VERBOSE,
)
_NUMBER_RE: Final = re.compile(r"([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?)([0-9]+))?(i?)")
NUMBER_START: Final = frozenset("0123456789.")
NAME_START: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
# Typographic operators people paste, and their ASCII meaning.
CANON: Final = {
    "+": "+", "-": "-", "−": "-", "*": "*", "×": "*", "/": "/", "÷": "/", "//": "//",
    "%": "%", "^": "^", "**": "^", "!": "!", "(": "(", ")": ")", ",": ",", "√": "√",
    "°": "°",
}  # fmt: skip
_LOG2_10: Final = 3.3219280948873626
# A plain integer literal this short is read directly (its digits cost nothing to charge).
_SHORT_DIGITS: Final = 300


# The token strings of a text, whitespace dropped (the pattern's bound method: one call less).
tokenize: Final = _TOKEN_RE.findall


def spans(text: str, count: int) -> list[tuple[int, int]]:
    """(start, end) character offsets of the first ``count`` tokens of ``text``."""
    return list(itertools.islice((m.span() for m in _TOKEN_RE.finditer(text)), count))


def classify(tok: str) -> str:
    """"op", "number", "name" or "bad" (a character the language does not use)."""
    if tok in CANON:
        return "op"
    if tok[0] in NUMBER_START and tok != ".":
        return "number"
    if tok[0] in NAME_START or tok == "π":
        return "name"
    return "bad"


def _range_error(tok: str) -> Fault:
    cap = len(str(MAX_DECIMAL_EXPONENT)) - 1
    return Fault(LimitError, f"{tok[:20]} is out of range (beyond 10^±(10^{cap}))")


def parse_number(tok: str, led: Ledger) -> Value:
    """The value of a numeric literal: exact when it fits, else correctly rounded."""
    if len(tok) <= _SHORT_DIGITS:  # the common shapes first: 12, 3.25
        if tok.isdigit():
            return mpz(tok)  # as cheap as a look-up in _LITERALS
        value = _LITERALS.get(tok)
        if value is not None:
            return value
    if len(tok) > _CACHED_LENGTH:
        return _literal(tok, led)
    value = _literal(tok, led)
    if (
        len(_LITERALS) < _MAX_LITERALS
        and (type(value) is mpz or type(value) is mpq)
        and exact_bits(value) <= SMALL_BITS  # 1e99999 is short too
    ):
        _LITERALS[tok] = value
    return value


# Strategy: the value of a short literal with a point or an exponent (0.1, 1.5e-3) is kept, so
# that the next text using it costs a look-up instead of a conversion (0.6-1.5 µs). The texts
# differ but their literals repeat. Such values are small exact numbers, immutable, charged
# nothing to compute (digits_units is 0 at this length), of at most SMALL_BITS bits; the table
# stops growing when full.
_CACHED_LENGTH: Final = 24
_MAX_LITERALS: Final = 4096
_LITERALS: Final[dict[str, Value]] = {}


def _literal(tok: str, led: Ledger) -> Value:
    if len(tok) <= _SHORT_DIGITS:
        whole, point, frac = tok.partition(".")
        if point and (whole + frac).isdigit() and frac.isdigit():
            q = mpq(mpz(whole + frac), mpz(10) ** len(frac))
            return q.numerator if q.denominator == 1 else q
    m = _NUMBER_RE.fullmatch(tok)
    assert m is not None  # the tokenizer only produces well-formed numbers
    int_part, frac_part, exp_sign, exp_digits, imaginary = m.groups()
    frac_part = frac_part or ""
    value = _real_literal(tok, int_part, frac_part, exp_sign, exp_digits, led)
    if imaginary:
        return mpc(0, to_mpfr(value), precision=PRECISION_BITS)
    return value


def _real_literal(
    tok: str, int_part: str, frac_part: str, exp_sign: str, exp_digits: str | None, led: Ledger
) -> Value:
    digits = (int_part + frac_part).lstrip("0")
    if not digits:
        return mpz(0)
    exponent = 0
    if exp_digits:
        exp_digits = exp_digits.lstrip("0") or "0"
        if len(exp_digits) > 18:
            raise _range_error(tok)
        exponent = int(exp_digits) * (-1 if exp_sign == "-" else 1)
    exponent -= len(frac_part)
    magnitude = len(digits) + exponent  # decimal digits before the point
    if abs(magnitude) > MAX_DECIMAL_EXPONENT:
        raise _range_error(tok)
    led.charge(digits_units(len(digits)))
    mantissa = mpz(digits)
    # Exact when it fits (10**99999 has 332,190 bits); the size check decides.
    if max(len(digits) + exponent, len(digits), -exponent) * _LOG2_10 < MAX_EXACT_BITS + 4:
        if exponent >= 0:
            value = mantissa * mpz(10) ** exponent
            if value.bit_length() <= MAX_EXACT_BITS:
                return value
        else:
            q = ratio(mantissa, mpz(10) ** -exponent)
            if max(q.numerator.bit_length(), q.denominator.bit_length()) <= MAX_EXACT_BITS:
                return q
    # Too many digits to keep exactly: approximate, correctly rounded when MPFR can hold it.
    if abs(magnitude) * _LOG2_10 < MPFR_SAFE_EXP - 64:
        return mpfr(f"{digits}e{exponent}", PRECISION_BITS)
    wp = PRECISION_BITS + 10 + abs(exponent).bit_length()
    ctx = context_for(wp)
    log2_value = ctx.add(ctx.log2(to_mpfr(mantissa, wp)), ctx.mul(ctx.log2(mpz(10)), exponent))
    return from_log2(log2_value)
