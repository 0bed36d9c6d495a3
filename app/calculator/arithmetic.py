"""The operators ``+ - * / // %``, unary minus, comparison and the degree sign ``°``.

Each takes values (see `app.calculator.numbers`) and the evaluation's `Ledger`, and returns a
value or raises `Fault`.

Strategy: exact in, exact out, as long as the result is rational and within MAX_EXACT_BITS;
the size of an exact result is estimated, and its cost charged, before GMP computes it. Anything
else is an approximation: one MPFR/MPC operation, correctly rounded at PRECISION_BITS (more for
the steps whose error is amplified), then checked against the magnitude cap. A value beyond
MPFR's exponent range is a `Huge`, on which products, quotients, powers and sums work through
(mantissa, exponent) parts and logarithms.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Final

import gmpy2
from gmpy2 import mpfr, mpq, mpz

from app.calculator.cost import (
    COMPLEX_UNITS,
    RATIONAL_UNITS,
    SMALL_BITS,
    Ledger,
    division_units,
    gcd_units,
    linear_units,
    product_units,
    rational_units,
)
from app.calculator.errors import CalcDomainError, DivisionByZero, Fault, LimitError
from app.calculator.numbers import (
    MAX_EXACT_BITS,
    MPC,
    MPFR,
    MPFR_SAFE_EXP,
    MPQ,
    MPZ,
    PI,
    PRECISION_BITS,
    SNAP_BITS,
    WORK,
    ZERO,
    Degrees,
    Exact,
    Huge,
    Value,
    complex_mag,
    exact_bits,
    exact_mag2,
    fit,
    from_parts,
    is_exact,
    mag2,
    parts,
    ratio,
    sign,
    snap,
    tidy_complex,
    to_mpc,
    to_mpfr,
)

__all__ = [
    "BINARY",
    "RATIONAL_TYPES",
    "add",
    "compare",
    "degrees",
    "divide",
    "exact_result",
    "floor_divide",
    "floor_value",
    "modulo",
    "multiply",
    "near_int",
    "negate",
    "plain_number",
    "subtract",
]




def exact_result(v: Exact, led: Ledger) -> Value:
    """Keep an exact result if it is within MAX_EXACT_BITS, else approximate it."""
    if type(v) is MPQ and v.denominator == 1:
        v = v.numerator
    bits = exact_bits(v)
    if bits <= MAX_EXACT_BITS:
        return v
    led.charge(linear_units(bits))
    return fit(to_mpfr(v))


def _rational(op: Callable[[Value, Value], Value], a: Value, b: Value, led: Ledger) -> Value:
    """``op(a, b)`` on rationals (at least one an mpq, or a quotient), charged first: GMP keeps
    it in lowest terms with gcds. Within the exact bound, or approximated."""
    if not (_small(a) and _small(b)):
        bits_a, bits_b = exact_bits(a), exact_bits(b)
        if type(a) is MPZ and type(b) is MPZ:  # a quotient of integers: one gcd
            led.charge(RATIONAL_UNITS + gcd_units(min(bits_a, bits_b)))
        else:
            led.charge(rational_units(bits_a, bits_b))
        return exact_result(op(a, b), led)
    led.charge(RATIONAL_UNITS)
    result = op(a, b)
    return result.numerator if type(result) is MPQ and result.denominator == 1 else result


def _small(v: Exact) -> bool:
    """Whether an exact value has at most SMALL_BITS bits (exact_bits without the max)."""
    if type(v) is MPZ:
        return bool(v.bit_length() <= SMALL_BITS)
    return bool(v.numerator.bit_length() <= SMALL_BITS and v.denominator.bit_length() <= SMALL_BITS)


def _quotient(a: Value, b: Value) -> Value:
    return MPQ(a, b) if type(a) is MPZ and type(b) is MPZ else MPQ(a) / b


def plain_number(v: Value) -> Value:
    """A degree angle used as a plain number: its value in radians."""
    return to_mpfr(v) if type(v) is Degrees else v


def negate(v: Value) -> Value:
    t = type(v)
    if t is MPZ or t is MPQ:
        return -v
    if t is Degrees:
        return Degrees(-v.deg)
    if t is Huge:
        return Huge(WORK.minus(v.mant), v.exp)
    return WORK.minus(v)


# Strategy for the four operations: the commonest operand types are tested first (small
# integers, then rationals, then plain reals), so that the everyday case costs a few type
# checks; degree angles, complex values and Huge values take the general path after them.
RATIONAL_TYPES: Final = frozenset({MPZ, MPQ})
_PLAIN: Final = frozenset({MPZ, MPQ, MPFR})
_get_exp: Final = gmpy2.get_exp


def _mag(v: mpz | mpq | mpfr) -> int:
    """About log2|v| for a nonzero plain real (within 1)."""
    if type(v) is MPFR:
        return int(_get_exp(v))
    return exact_mag2(v)


def _settled(r: mpfr) -> Value:
    """An mpfr result, or the Huge it is when its exponent has left MPFR's safe range."""
    if -MPFR_SAFE_EXP < _get_exp(r) < MPFR_SAFE_EXP and r.is_finite():
        return r
    return fit(r)


def add(a: Value, b: Value, led: Ledger) -> Value:
    ta, tb = type(a), type(b)
    if ta is MPZ and tb is MPZ:
        if a.bit_length() <= SMALL_BITS and b.bit_length() <= SMALL_BITS:
            return a + b  # nothing to charge, nothing outgrows a bound
        bits = max(a.bit_length(), b.bit_length())
        led.charge(linear_units(bits))
        return exact_result(a + b, led)
    if ta in RATIONAL_TYPES and tb in RATIONAL_TYPES:
        return _rational(operator.add, a, b, led)
    if ta in _PLAIN and tb in _PLAIN:
        r = WORK.add(a, b)
        if r.is_zero() or a == 0 or b == 0:
            return r
        exp = _get_exp(r)
        noise = exp + SNAP_BITS  # an operand above 2^noise makes r noise: sqrt(2)^2 - 2
        if (_get_exp(a) if ta is MPFR else _mag(a)) > noise:
            return ZERO
        if (_get_exp(b) if tb is MPFR else _mag(b)) > noise:
            return ZERO
        if -MPFR_SAFE_EXP < exp < MPFR_SAFE_EXP and r.is_finite():
            return r
        return fit(r)
    if ta is Degrees and tb is Degrees:
        return Degrees(a.deg + b.deg)
    a, b = plain_number(a), plain_number(b)
    if type(a) is MPC or type(b) is MPC:
        led.charge(COMPLEX_UNITS)
        x, y = to_mpc(a), to_mpc(b)
        ref = max((complex_mag(z) for z in (x, y) if z != 0), default=0)
        return tidy_complex(WORK.add(x, y), ref)
    if type(a) is Huge or type(b) is Huge:
        return _add_parts(a, b)
    return add(a, b, led)


def _add_parts(a: Value, b: Value) -> Value:
    (ma, ea), (mb, eb) = parts(a), parts(b)
    if mb.is_zero() or (not ma.is_zero() and ea - eb > PRECISION_BITS + 10):
        return from_parts(ma, ea)
    if ma.is_zero() or eb - ea > PRECISION_BITS + 10:
        return from_parts(mb, eb)
    if ea < eb:
        (ma, ea), (mb, eb) = (mb, eb), (ma, ea)
    total = WORK.add(ma, WORK.mul_2exp(mb, eb - ea))
    return from_parts(snap(total, 1), ea)


def subtract(a: Value, b: Value, led: Ledger) -> Value:
    if (
        type(a) is MPZ
        and type(b) is MPZ
        and a.bit_length() <= SMALL_BITS
        and b.bit_length() <= SMALL_BITS
    ):
        return a - b
    return add(a, negate(b), led)


def multiply(a: Value, b: Value, led: Ledger) -> Value:
    ta, tb = type(a), type(b)
    if ta is MPZ and tb is MPZ:
        bits_a, bits_b = a.bit_length(), b.bit_length()
        if bits_a + bits_b > SMALL_BITS:
            led.charge(product_units(bits_a, bits_b))
            return exact_result(a * b, led)
        return a * b
    if ta in RATIONAL_TYPES and tb in RATIONAL_TYPES:
        return _rational(operator.mul, a, b, led)
    if ta in _PLAIN and tb in _PLAIN:
        return _settled(WORK.mul(a, b))
    if ta is Degrees and tb in RATIONAL_TYPES:
        return Degrees(a.deg * b)
    if tb is Degrees and ta in RATIONAL_TYPES:
        return Degrees(b.deg * a)
    a, b = plain_number(a), plain_number(b)
    if type(a) is MPC or type(b) is MPC:
        led.charge(COMPLEX_UNITS)
        return tidy_complex(WORK.mul(to_mpc(a), to_mpc(b)))
    if type(a) is Huge or type(b) is Huge:
        (ma, ea), (mb, eb) = parts(a), parts(b)
        return from_parts(WORK.mul(ma, mb), ea + eb)
    return multiply(a, b, led)


def divide(a: Value, b: Value, led: Ledger) -> Value:
    ta, tb = type(a), type(b)
    if (tb is Degrees and b.deg == 0) or b == 0:
        raise Fault(DivisionByZero, "division by zero")
    if ta is MPZ and tb is MPZ and a.bit_length() <= SMALL_BITS and b.bit_length() <= SMALL_BITS:
        led.charge(RATIONAL_UNITS)  # what _rational charges, without its checks: 1/3, 100/7
        q = MPQ(a, b)
        return q.numerator if q.denominator == 1 else q
    if ta in RATIONAL_TYPES and tb in RATIONAL_TYPES:
        return _rational(_quotient, a, b, led)
    if ta in _PLAIN and tb in _PLAIN:
        return _settled(WORK.div(a, b))
    if ta is Degrees and tb in RATIONAL_TYPES:
        return Degrees(ratio(a.deg, b))
    if ta is Degrees and tb is Degrees:
        return exact_result(ratio(a.deg, b.deg), led)
    a, b = plain_number(a), plain_number(b)
    if type(a) is MPC or type(b) is MPC:
        led.charge(COMPLEX_UNITS)
        return tidy_complex(WORK.div(to_mpc(a), to_mpc(b)))
    if type(a) is Huge or type(b) is Huge:
        (ma, ea), (mb, eb) = parts(a), parts(b)
        return from_parts(WORK.div(ma, mb), ea - eb)
    return divide(a, b, led)


def _is_zero(v: Value) -> bool:
    if type(v) is Degrees:
        return bool(v.deg == 0)
    return bool(v == 0)


def _real_only(v: Value, what: str) -> None:
    if type(v) is MPC:
        raise Fault(CalcDomainError, f"{what} is not defined for complex numbers")


def floor_divide(a: Value, b: Value, led: Ledger) -> Value:
    _real_only(a, "//")
    _real_only(b, "//")
    if _is_zero(b):
        raise Fault(DivisionByZero, "division by zero")
    if is_exact(a) and is_exact(b):
        led.charge(division_units(max(exact_bits(a), exact_bits(b))))
        return exact_result(a // b, led)
    return floor_value(divide(a, b, led), "//")


def modulo(a: Value, b: Value, led: Ledger) -> Value:
    _real_only(a, "%")
    _real_only(b, "%")
    if _is_zero(b):
        raise Fault(DivisionByZero, "modulo by zero")
    if is_exact(a) and is_exact(b):
        led.charge(division_units(max(exact_bits(a), exact_bits(b))))
        return exact_result(a % b, led)
    q = floor_value(divide(a, b, led), "%")
    return subtract(a, multiply(q, b, led), led)


BINARY: Final = {
    "+": add,
    "-": subtract,
    "*": multiply,
    "/": divide,
    "//": floor_divide,
    "%": modulo,
}


def near_int(v: Value, what: str) -> mpz | None:
    """The integer an approximation is (within rounding noise), None if clearly not one.

    Raises LimitError when the value is too large for its integer part to be known.
    """
    if type(v) is Huge:
        if v.exp > 0:
            raise Fault(
                LimitError,
                f"{what} of an approximate value this large is not known exactly "
                "(its integer digits are beyond the working precision)",
            )
        return MPZ(0)
    x = to_mpfr(v)
    if x.is_zero():
        return MPZ(0)
    if mag2(x) > PRECISION_BITS - 40:
        raise Fault(
            LimitError,
            f"{what} of an approximate value this large is not known exactly "
            "(its integer digits are beyond the working precision)",
        )
    n = MPZ(WORK.rint_round(x))
    diff = WORK.sub(x, n)
    if diff.is_zero() or mag2(diff) < max(mag2(x), 0) - SNAP_BITS:
        return n
    return None


def floor_value(v: Value, what: str) -> Value:
    """floor() of a real value; for approximations the integer part must be knowable."""
    if type(v) is MPZ:
        return v
    if type(v) is MPQ:
        return v.numerator // v.denominator
    _real_only(v, what)
    n = near_int(v, what)
    if n is not None:
        return n
    return MPZ(WORK.rint_floor(to_mpfr(v)))


def compare(a: Value, b: Value) -> int:
    """-1, 0 or 1 as a <, =, > b, for real values."""
    _real_only(a, "comparison")
    _real_only(b, "comparison")
    if type(a) is Degrees and type(b) is Degrees:
        a, b = a.deg, b.deg
    a, b = plain_number(a), plain_number(b)
    if type(a) is Huge or type(b) is Huge:
        sa, sb = sign(a), sign(b)
        if sa != sb:
            return -1 if sa < sb else 1
        (ma, ea), (mb, eb) = parts(a), parts(b)
        if ea != eb:
            return (1 if ea > eb else -1) * sa
        return int((ma > mb) - (ma < mb))
    return int((a > b) - (a < b))


def degrees(v: Value, led: Ledger) -> Value:
    """The postfix degree sign: ``x°`` is x * pi / 180, kept exact for exact x."""
    if is_exact(v):
        return Degrees(v)
    return divide(multiply(plain_number(v), PI, led), MPZ(180), led)
