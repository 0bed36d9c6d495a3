"""Tokens: splitting the text, where each token stands, and what a numeric literal is worth.

Strategy: `tokenize` gives the token strings (whitespace dropped) and, only when an error needs
them, `spans` their positions: positions are never computed for a text that evaluates. One
grammar, TOKEN_GRAMMAR, defines the tokens; each implementation splits text the fastest way it
has (the regex in pure Python, the scanner `scan` once compiled: see native.py).
"""

from __future__ import annotations

import re
from typing import Final

from app.calculator.cost import SMALL_BITS, Ledger, digits_units
from app.calculator.errors import Fault, LimitError
from app.calculator.native import IMPLEMENTATION
from app.calculator.numbers import (
    MAX_DECIMAL_EXPONENT,
    MAX_EXACT_BITS,
    MPC,
    MPFR,
    MPFR_SAFE_EXP,
    MPQ,
    MPZ,
    PRECISION_BITS,
    Value,
    context_for,
    exact_bits,
    from_log2,
    ratio,
    to_mpfr,
)

__all__ = [
    "CANON",
    "NAME_START",
    "NUMBER_START",
    "TOKEN_GRAMMAR",
    "classify",
    "parse_number",
    "scan",
    "spans",
    "tokenize",
]

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


# Character classes of the scanner, by code point below 128; above it, a character is whitespace
# (str.isspace(), as the regex class \s is) or a character of its own, like π or ×.
_OTHER: Final = 0
_SPACE: Final = 1
_SINGLE: Final = 2  # - + ( ) ^ % , !
_DIGIT: Final = 3
_NAME: Final = 4  # A-Z a-z _
_STAR: Final = 5
_SLASH: Final = 6
_POINT: Final = 7


def _class_table() -> list[int]:
    table = [_SPACE if chr(o).isspace() else _OTHER for o in range(128)]
    for chars, kind in (
        ("-+()^%,!", _SINGLE),
        ("0123456789", _DIGIT),
        ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_", _NAME),
        ("*", _STAR),
        ("/", _SLASH),
        (".", _POINT),
    ):
        for c in chars:
            table[ord(c)] = kind
    return table


_CLASS: Final = _class_table()


# The grammar of a token, the longest match of the first alternative that matches. Its findall()
# is how pure Python splits a text (the fastest way in interpreted code: 1.1 µs for the server
# corpus's 15 characters, against 2.2 µs for `scan`); compiled code runs `scan`, which follows
# this grammar character by character in half the regex's time (0.5 µs), and
# tests/test_calculator_properties.py checks the two against each other on random text.
TOKEN_GRAMMAR: Final = re.compile(
    r"""[-+()^%,!]                                # one-character operators
      | [0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?(?:i(?![A-Za-z0-9_]))?  # number (2, 2.5e3, 2i)
      | [A-Za-z_][A-Za-z0-9_]*                    # name
      | \*\*?|//?                                # * ** / //
      | \.[0-9]+(?:[eE][+-]?[0-9]+)?(?:i(?![A-Za-z0-9_]))?  # number starting with a point
      | \S                                        # other characters: operators, or rejected
    """,
    re.VERBOSE,
)
_COMPILED: Final = IMPLEMENTATION == "compiled"


def tokenize(text: str) -> list[str]:
    """The token strings of ``text``, whitespace dropped."""
    if _COMPILED:
        return scan(text, None)
    return TOKEN_GRAMMAR.findall(text)


def spans(text: str, count: int) -> list[tuple[int, int]]:
    """(start, end) character offsets of the first ``count`` tokens of ``text``: from `scan` in
    both implementations, as only errors need them (the tokens are TOKEN_GRAMMAR's alike)."""
    starts: list[int] = []
    toks = scan(text, starts)
    return [(starts[k], starts[k] + len(toks[k])) for k in range(min(count, len(toks)))]


# Strategy: one pass over the characters, each classified by a table look-up; a token is one
# slice of the text. TOKEN_GRAMMAR's cases, in its order: the imaginary i counts only when no name
# character follows it (2in is 2, in), and an exponent only with its digits (2e is 2, e).
def scan(text: str, starts: list[int] | None = None) -> list[str]:
    """TOKEN_GRAMMAR's tokens of ``text``; with ``starts``, each token's offset is appended."""
    out: list[str] = []
    n = len(text)
    i = 0
    while i < n:
        o = ord(text[i])  # compiled, ord(text[i]) reads the code point without a 1-char str
        kind = _CLASS[o] if o < 128 else _SPACE if text[i].isspace() else _OTHER
        if kind == _SPACE:
            i += 1
            continue
        if kind == _SINGLE:
            j = i + 1
        elif kind == _DIGIT:
            j = _exponent_end(text, _fraction_end(text, _digits_end(text, i + 1, n), n), n)
        elif kind == _NAME:
            j = i + 1
            while j < n and _is_name_code(ord(text[j])):
                j += 1
        elif kind in (_STAR, _SLASH):
            j = i + 2 if i + 1 < n and ord(text[i + 1]) == o else i + 1
        elif kind == _POINT and i + 1 < n and 48 <= ord(text[i + 1]) <= 57:
            j = _exponent_end(text, _digits_end(text, i + 2, n), n)
        else:
            j = i + 1
        if starts is not None:
            starts.append(i)
        out.append(text[i] if j == i + 1 else text[i:j])
        i = j
    return out


# Code points: 48-57 are 0-9, 46 is ".", 101 "e", 69 "E", 43 "+", 45 "-", 105 "i".
def _digits_end(text: str, i: int, n: int) -> int:
    while i < n and 48 <= ord(text[i]) <= 57:
        i += 1
    return i


def _fraction_end(text: str, i: int, n: int) -> int:
    """After a number's integer digits (ending at i): the end of its point and fraction."""
    if i < n and ord(text[i]) == 46:
        return _digits_end(text, i + 1, n)
    return i


def _exponent_end(text: str, i: int, n: int) -> int:
    """After a number's digits (ending at i): the end of its exponent and its i, if any."""
    if i + 1 < n and (ord(text[i]) | 32) == 101:  # e or E
        sign = ord(text[i + 1])
        j = i + 2 if sign == 43 or sign == 45 else i + 1
        k = _digits_end(text, j, n)
        if k > j:
            i = k
    if i < n and ord(text[i]) == 105 and (i + 1 == n or not _is_name_code(ord(text[i + 1]))):
        i += 1
    return i


def _is_name_code(o: int) -> bool:
    return o < 128 and (_CLASS[o] == _NAME or _CLASS[o] == _DIGIT)


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
            return MPZ(tok)  # as cheap as a look-up in _LITERALS
        value = _LITERALS.get(tok)
        if value is not None:
            return value
    if len(tok) > _CACHED_LENGTH:
        return _literal(tok, led)
    value = _literal(tok, led)
    if (
        len(_LITERALS) < _MAX_LITERALS
        and (type(value) is MPZ or type(value) is MPQ)
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
            q = MPQ(MPZ(whole + frac), MPZ(10) ** len(frac))
            return q.numerator if q.denominator == 1 else q
    m = _NUMBER_RE.fullmatch(tok)
    assert m is not None  # the tokenizer only produces well-formed numbers
    # Unmatched optional groups are None (typed here, as compiled code checks the types).
    int_part: str = m.group(1)
    frac_part: str = m.group(2) or ""
    exp_sign: str = m.group(3) or ""
    exp_digits: str | None = m.group(4)
    imaginary: str = m.group(5)
    value = _real_literal(tok, int_part, frac_part, exp_sign, exp_digits, led)
    if imaginary:
        return MPC(0, to_mpfr(value), precision=PRECISION_BITS)
    return value


def _real_literal(
    tok: str, int_part: str, frac_part: str, exp_sign: str, exp_digits: str | None, led: Ledger
) -> Value:
    digits = (int_part + frac_part).lstrip("0")
    if not digits:
        return MPZ(0)
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
    mantissa = MPZ(digits)
    # Exact when it fits (10**99999 has 332,190 bits); the size check decides.
    if max(len(digits) + exponent, len(digits), -exponent) * _LOG2_10 < MAX_EXACT_BITS + 4:
        if exponent >= 0:
            value = mantissa * MPZ(10) ** exponent
            if value.bit_length() <= MAX_EXACT_BITS:
                return value
        else:
            q = ratio(mantissa, MPZ(10) ** -exponent)
            if max(q.numerator.bit_length(), q.denominator.bit_length()) <= MAX_EXACT_BITS:
                return q
    # Too many digits to keep exactly: approximate, correctly rounded when MPFR can hold it.
    if abs(magnitude) * _LOG2_10 < MPFR_SAFE_EXP - 64:
        return MPFR(f"{digits}e{exponent}", PRECISION_BITS)
    wp = PRECISION_BITS + 10 + abs(exponent).bit_length()
    ctx = context_for(wp)
    log2_value = ctx.add(ctx.log2(to_mpfr(mantissa, wp)), ctx.mul(ctx.log2(MPZ(10)), exponent))
    return from_log2(log2_value)
