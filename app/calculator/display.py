"""Display: a value as the text a person reads.

Exact integers are shown in full. Everything else is rounded to DISPLAY_DIGITS (40) significant
digits, trailing zeros trimmed, in plain decimal for magnitudes 1e-10 <= |x| < 1e40 and in
scientific notation without a ``+`` (``3.230e954242``) outside that range. A complex value is
``a+bi`` (``2i``, ``-i``, ``1.5-2i``), each part shown as a real.

Strategy: an mpfr's 40 digits come from MPFR itself (``mpfr_get_str`` rounds correctly); an
exact fraction's from one integer division rounded half up; a Huge's from its decimal logarithm.
Printing big numbers is real work, charged to the ledger before it is done.
"""

from __future__ import annotations

from typing import Final

from gmpy2 import mpc, mpfr, mpz

from app.calculator.cost import RATIONAL_UNITS, SMALL_BITS, Ledger, division_units
from app.calculator.errors import Fault, LimitError, Result
from app.calculator.numbers import (
    DISPLAY_DIGITS,
    MPC,
    MPFR,
    MPQ,
    MPZ,
    PRECISION_BITS,
    WORK,
    Degrees,
    Huge,
    Value,
    context_for,
    out_of_range,
    to_mpfr,
)

__all__ = ["make_result"]

_PLAIN_MIN_EXP10: Final = -10  # 1e-10 is still shown as 0.0000000001
_PLAIN_MAX_EXP10: Final = DISPLAY_DIGITS - 1  # 1e40 is shown as 1e40


def make_result(text: str, value: Value, led: Ledger) -> Result:
    t = type(value)
    if t is MPZ:
        bits = value.bit_length()
        if bits > SMALL_BITS:
            led.charge(division_units(bits))
        return Result(text, str(value), True, None)
    if t is MPFR:
        return Result(text, _real(value), False, None)
    if t is MPQ:
        num, den = value.numerator, value.denominator
        if num.bit_length() > SMALL_BITS or den.bit_length() > SMALL_BITS:
            led.charge(RATIONAL_UNITS + 3 * division_units(max(num.bit_length(), den.bit_length())))
        else:
            led.charge(RATIONAL_UNITS)  # division_units is 0 at this size
        return Result(text, _fraction(num, den), True, str(num) + "/" + str(den))
    if t is MPC:
        led.charge(RATIONAL_UNITS)  # two parts to show
        return Result(text, _complex(value), False, None)
    if t is Huge:
        return Result(text, _huge(value), False, None)
    x = to_mpfr(value) if t is Degrees else value
    return Result(text, _real(x), False, None)


def _format(negative: bool, digits: str, exp10: int) -> str:
    """Sign, significant digits (no trailing zeros) and the decimal exponent of the first."""
    sign = "-" if negative else ""
    if 0 <= exp10 < len(digits) - 1:  # the commonest case: digits on both sides of the point
        return f"{sign}{digits[: exp10 + 1]}.{digits[exp10 + 1 :]}"
    if exp10 < _PLAIN_MIN_EXP10 or exp10 > _PLAIN_MAX_EXP10:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{exp10}"
    if exp10 < 0:
        return f"{sign}0.{'0' * (-exp10 - 1)}{digits}"
    return sign + digits.ljust(exp10 + 1, "0")  # no fractional digits


def _real(x: mpfr) -> str:
    if x.is_zero():
        return "0"
    if not x.is_finite():  # every operation checks its range; this is the last line of defence
        raise Fault(LimitError, out_of_range(x > 0))
    digits, exp, _ = x.digits(10, DISPLAY_DIGITS)
    if digits[0] == "-":
        return _format(True, digits[1:].rstrip("0"), exp - 1)
    return _format(False, digits.rstrip("0"), exp - 1)


def _huge(h: Huge) -> str:
    """m * 2^e in decimal: log10 = (e + log2|m|) * log10(2), split into exponent and digits."""
    wp = PRECISION_BITS + 20 + abs(h.exp).bit_length()
    ctx = context_for(wp)
    log10 = ctx.mul(ctx.add(ctx.log2(ctx.abs(h.mant)), h.exp), ctx.log10(MPZ(2)))
    exp10 = int(ctx.rint_floor(log10))
    lead = WORK.plus(ctx.exp10(ctx.sub(log10, exp10)))  # in [1, 10)
    digits, exp, _ = lead.digits(10, DISPLAY_DIGITS)
    return _format(h.mant < 0, digits.rstrip("0"), exp10 + int(exp) - 1)


def _complex(z: mpc) -> str:
    re, im = z.real, z.imag
    if im.is_zero():
        return _real(re)
    imag = _real(im)
    if imag in ("1", "-1"):
        imag = imag[:-1]  # 1i -> i, -1i -> -i
    if re.is_zero():
        return f"{imag}i"
    return f"{_real(re)}{'' if imag.startswith('-') else '+'}{imag}i"


def _fraction(num: mpz, den: mpz) -> str:
    """The display of the exact value num/den (in lowest terms, den > 1).

    With k chosen so that n = floor(p/q * 10^k) has more than DISPLAY_DIGITS digits, n's first
    DISPLAY_DIGITS are those of p/q, its length gives the exponent, and rounding half up on its
    next digit is rounding half up of p/q itself (what n drops is below one unit of that digit,
    which cannot reach the next half-unit step). k comes from digit counts, each of which gmpy2
    may give one high: one division, 41 to 44 digits.
    """
    negative = num < 0
    p = -num if negative else num
    e = int(p.num_digits(10) - den.num_digits(10)) - 2  # floor(log10(p/q)) - (0 to 3)
    shift = DISPLAY_DIGITS - e
    if shift >= 0:
        n = p * (_POW10[shift] if shift < _CACHED_POWERS else MPZ(10) ** shift) // den
    else:
        n = p // (den * _pow10(-shift))
    digits = str(n)
    e = len(digits) - 1 - shift
    if digits[DISPLAY_DIGITS] >= "5":
        # int(digits[:DISPLAY_DIGITS]) + 1, without parsing the digits back
        digits = str(n // _pow10(len(digits) - DISPLAY_DIGITS) + 1)
        if len(digits) > DISPLAY_DIGITS:  # rounding carried into a new digit: 9.99... -> 10
            e += 1
            digits = digits[:DISPLAY_DIGITS]
    else:
        digits = digits[:DISPLAY_DIGITS]
    return _format(negative, digits.rstrip("0"), e)


_CACHED_POWERS: Final = 128
_POW10: Final = tuple(MPZ(10) ** k for k in range(_CACHED_POWERS))


def _pow10(k: int) -> mpz:
    return _POW10[k] if k < len(_POW10) else MPZ(10) ** k
