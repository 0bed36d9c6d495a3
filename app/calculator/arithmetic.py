"""The operators: ``+ - * / // % ^ !``, unary minus and the degree sign ``°``.

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

import math
from typing import Final

import gmpy2
from gmpy2 import mpc, mpfr, mpq, mpz

from app.calculator.cost import (
    COMPLEX_UNITS,
    SMALL_BITS,
    Ledger,
    division_units,
    linear_units,
    multiply_units,
    rational_units,
    transcendental_units,
)
from app.calculator.errors import CalcDomainError, DivisionByZero, Fault, LimitError
from app.calculator.numbers import (
    CAP_LOG2,
    MAX_DECIMAL_EXPONENT,
    MAX_EXACT_BITS,
    MPFR_SAFE_EXP,
    PI,
    PRECISION_BITS,
    SNAP_BITS,
    WIDE,
    WORK,
    ZERO,
    Degrees,
    Exact,
    Huge,
    Value,
    complex_mag,
    context_for,
    exact_bits,
    exact_mag2,
    fit,
    from_log2,
    from_parts,
    is_exact,
    log2_estimate,
    mag2,
    out_of_range,
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
    "MAX_EXACT_FACTORIAL",
    "add",
    "compare",
    "degrees",
    "divide",
    "exact_result",
    "exact_root",
    "factorial",
    "floor_divide",
    "floor_value",
    "int_power",
    "ln_abs",
    "log2_abs",
    "modulo",
    "multiply",
    "near_int",
    "negate",
    "power",
    "subtract",
]



def _largest_exact_factorial(bits: int) -> int:
    """The largest n with n! < 2**bits (by log-gamma; the bound is far from a rounding edge)."""
    low, high = 1, bits
    while low < high:
        mid = (low + high + 1) // 2
        if math.lgamma(mid + 1) / math.log(2) < bits:
            low = mid
        else:
            high = mid - 1
    return low


# Exact factorials while n! fits MAX_EXACT_BITS: up to 27,462! (issue 16 asks for at least
# 25000!, 3248! before GMP); GMP computes 25000! in ~0.8 ms here.
MAX_EXACT_FACTORIAL: Final = _largest_exact_factorial(MAX_EXACT_BITS)
# Roots are looked for exactly up to this index: (x)^(p/q) with q above it is approximated.
MAX_EXACT_ROOT: Final = 64


def exact_result(v: Exact, led: Ledger) -> Value:
    """Keep an exact result if it is within MAX_EXACT_BITS, else approximate it."""
    if type(v) is mpq and v.denominator == 1:
        v = v.numerator
    bits = exact_bits(v)
    if bits <= MAX_EXACT_BITS:
        return v
    led.charge(linear_units(bits))
    return fit(to_mpfr(v))


def _rational_bits(a: Value, b: Value) -> int:
    """The larger size of two exact operands, or -1 when either is not exact."""
    ta, tb = type(a), type(b)
    if (ta is mpz or ta is mpq) and (tb is mpz or tb is mpq):
        return max(exact_bits(a), exact_bits(b))
    return -1


def _real(v: Value) -> Value:
    """A degree angle used as a plain number: its value in radians."""
    return to_mpfr(v) if type(v) is Degrees else v


def negate(v: Value) -> Value:
    t = type(v)
    if t is mpz or t is mpq:
        return -v
    if t is Degrees:
        return Degrees(-v.deg)
    if t is Huge:
        return Huge(WORK.minus(v.mant), v.exp)
    return WORK.minus(v)


# Strategy for the four operations: the commonest operand types are tested first (small
# integers, then rationals, then plain reals), so that the everyday case costs a few type
# checks; degree angles, complex values and Huge values take the general path after them.
_RATIONAL: Final = frozenset({mpz, mpq})
_PLAIN: Final = frozenset({mpz, mpq, mpfr})
_get_exp: Final = gmpy2.get_exp


def _mag(v: mpz | mpq | mpfr) -> int:
    """About log2|v| for a nonzero plain real (within 1)."""
    if type(v) is mpfr:
        return int(_get_exp(v))
    return exact_mag2(v)


def _settled(r: mpfr) -> Value:
    """An mpfr result, or the Huge it is when its exponent has left MPFR's safe range."""
    if -MPFR_SAFE_EXP < _get_exp(r) < MPFR_SAFE_EXP and r.is_finite():
        return r
    return fit(r)


def add(a: Value, b: Value, led: Ledger) -> Value:
    ta, tb = type(a), type(b)
    if ta is mpz and tb is mpz:
        bits = max(a.bit_length(), b.bit_length())
        if bits <= SMALL_BITS:
            return a + b  # nothing to charge, nothing outgrows a bound
        led.charge(linear_units(bits))
        return exact_result(a + b, led)
    if ta in _RATIONAL and tb in _RATIONAL:
        bits_a, bits_b = exact_bits(a), exact_bits(b)
        if bits_a > SMALL_BITS or bits_b > SMALL_BITS:
            led.charge(rational_units(bits_a, bits_b))  # gcd normalisation
        return exact_result(a + b, led)
    if ta in _PLAIN and tb in _PLAIN:
        r = WORK.add(a, b)
        if a == 0 or b == 0 or r == 0:
            return r
        if _get_exp(r) < max(_mag(a), _mag(b)) - SNAP_BITS:
            return ZERO  # cancellation noise: sqrt(2)^2 - 2
        return _settled(r)
    if ta is Degrees and tb is Degrees:
        return Degrees(a.deg + b.deg)
    a, b = _real(a), _real(b)
    if type(a) is mpc or type(b) is mpc:
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
    if type(a) is mpz and type(b) is mpz and max(a.bit_length(), b.bit_length()) <= SMALL_BITS:
        return a - b
    return add(a, negate(b), led)


def multiply(a: Value, b: Value, led: Ledger) -> Value:
    ta, tb = type(a), type(b)
    if ta is mpz and tb is mpz:
        bits = a.bit_length() + b.bit_length()
        if bits > SMALL_BITS:
            led.charge(multiply_units(bits))
            return exact_result(a * b, led)
        return a * b
    if ta in _RATIONAL and tb in _RATIONAL:
        bits_a, bits_b = exact_bits(a), exact_bits(b)
        if bits_a > SMALL_BITS or bits_b > SMALL_BITS:
            led.charge(rational_units(bits_a, bits_b))
        return exact_result(a * b, led)
    if ta in _PLAIN and tb in _PLAIN:
        return _settled(WORK.mul(a, b))
    if ta is Degrees and tb in _RATIONAL:
        return Degrees(a.deg * b)
    if tb is Degrees and ta in _RATIONAL:
        return Degrees(b.deg * a)
    a, b = _real(a), _real(b)
    if type(a) is mpc or type(b) is mpc:
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
    if ta in _RATIONAL and tb in _RATIONAL:
        bits = max(exact_bits(a), exact_bits(b))
        if bits > SMALL_BITS:
            led.charge(division_units(bits))
        q = mpq(a, b) if ta is mpz and tb is mpz else mpq(a) / b
        return exact_result(q, led)
    if ta in _PLAIN and tb in _PLAIN:
        return _settled(WORK.div(a, b))
    if ta is Degrees and tb in _RATIONAL:
        return Degrees(ratio(a.deg, b))
    if ta is Degrees and tb is Degrees:
        return exact_result(ratio(a.deg, b.deg), led)
    a, b = _real(a), _real(b)
    if type(a) is mpc or type(b) is mpc:
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
    if type(v) is mpc:
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
        return mpz(0)
    x = to_mpfr(v)
    if x.is_zero():
        return mpz(0)
    if mag2(x) > PRECISION_BITS - 40:
        raise Fault(
            LimitError,
            f"{what} of an approximate value this large is not known exactly "
            "(its integer digits are beyond the working precision)",
        )
    n = mpz(WORK.rint_round(x))
    diff = WORK.sub(x, n)
    if diff.is_zero() or mag2(diff) < max(mag2(x), 0) - SNAP_BITS:
        return n
    return None


def floor_value(v: Value, what: str) -> Value:
    """floor() of a real value; for approximations the integer part must be knowable."""
    if type(v) is mpz:
        return v
    if type(v) is mpq:
        return v.numerator // v.denominator
    _real_only(v, what)
    n = near_int(v, what)
    if n is not None:
        return n
    return mpz(WORK.rint_floor(to_mpfr(v)))


def compare(a: Value, b: Value) -> int:
    """-1, 0 or 1 as a <, =, > b, for real values."""
    _real_only(a, "comparison")
    _real_only(b, "comparison")
    if type(a) is Degrees and type(b) is Degrees:
        a, b = a.deg, b.deg
    a, b = _real(a), _real(b)
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
    return divide(multiply(_real(v), PI, led), mpz(180), led)


# --------------------------------------------------------------------------------------------
# Powers


def power(a: Value, b: Value, led: Ledger) -> Value:
    if (
        type(b) is mpz
        and type(a) in _RATIONAL
        and 0 < b <= SMALL_BITS
        and exact_bits(a) * b <= SMALL_BITS
    ):
        return a**b  # small and exact: nothing to charge or check
    a, b = _real(a), _real(b)
    if type(a) is mpc or type(b) is mpc:
        return _complex_power(to_mpc(a), b, led)
    sa, sb = sign(a), sign(b)
    if sb == 0:
        return mpz(1)  # 0^0 = 1, as in Python, IEEE 754 pow() and most calculators
    if sa == 0:
        if sb < 0:
            raise Fault(DivisionByZero, "0 to a negative power is a division by zero")
        return mpz(0)
    if type(b) is mpz:
        return int_power(a, b, led)
    if type(b) is mpq:
        # Rational exponent p/q: exact when the q-th root is rational ((9/4)^(1/2), 8^(2/3)).
        p, q = b.numerator, b.denominator
        if sa < 0 and q % 2 == 0:
            return _complex_power(to_mpc(a), b, led)
        if is_exact(a):
            root = exact_root(a, int(q) if q <= MAX_EXACT_ROOT else 0, led)
            if root is not None:
                return int_power(root, p, led)
        if sa < 0:  # odd root of a negative number: real, the sign follows p
            magnitude = power(negate(a), b, led)
            return negate(magnitude) if p % 2 else magnitude
    elif sa < 0:
        return _complex_power(to_mpc(a), b, led)
    return _positive_power(a, b, led, False)


def _positive_power(a: Value, b: Value, led: Ledger, negative: bool) -> Value:
    """±|a|^b for a real exponent b, as 2^(b log2|a|) with the range decided first."""
    estimate = _log2_product(a, b, 64)
    if abs(estimate) > CAP_LOG2:
        raise Fault(LimitError, out_of_range(estimate > 0))
    wp = PRECISION_BITS + 10 + max(0, int(abs(estimate))).bit_length()
    led.charge(3 * transcendental_units(wp))  # the estimate, the logarithm, the power
    if abs(estimate) < MPFR_SAFE_EXP - 2 and type(a) is not Huge and type(b) is not Huge:
        ctx = context_for(wp)
        r = WORK.plus(ctx.pow(to_mpfr(a, wp), b if is_exact(b) else to_mpfr(b, wp)))
        if _near_one(a):  # exact a within 2^-wp of 1: MPFR saw 1; use the logarithm instead
            r = to_mpfr(from_log2(_log2_product(a, b, wp)))
        return fit(WORK.minus(r) if negative else r)
    return from_log2(_log2_product(a, b, wp), negative)


def _near_one(a: Value) -> bool:
    if not is_exact(a):
        return False
    d = abs(a) - 1
    return d != 0 and exact_mag2(d) < -PRECISION_BITS


def _log2_product(a: Value, b: Value, bits: int) -> mpfr:
    """b * log2|a| at ``bits`` of precision (log2 computed without cancellation near 1)."""
    ctx = context_for(bits)
    factor = b.mant if type(b) is Huge else b
    product = ctx.mul(log2_abs(a, bits), factor)
    if type(b) is Huge:
        return ctx.mul_2exp(product, b.exp) if b.exp < 0 else _cap_log2(product, b.exp)
    return product


def _cap_log2(x: mpfr, exp: int) -> mpfr:
    if x.is_zero():
        return x
    raise Fault(LimitError, out_of_range(x > 0))


def log2_abs(v: Value, bits: int) -> mpfr:
    """log2|v| for a nonzero real value, accurate to ``bits`` bits."""
    return context_for(bits).div(ln_abs(v, bits + 10), context_for(bits + 10).const_log2())


def ln_abs(v: Value, bits: int) -> mpfr:
    """ln|v| for a nonzero real value, accurate to ``bits`` bits even when v is an exact
    rational extremely close to 1 (where rounding v first would lose the difference)."""
    ctx = context_for(bits)
    if type(v) is Huge:
        wide = context_for(bits + 10 + abs(v.exp).bit_length())
        return ctx.plus(wide.add(wide.log(WORK.abs(v.mant)), wide.mul(wide.const_log2(), v.exp)))
    if type(v) is mpz or type(v) is mpq:
        d = abs(v) - 1
        if d == 0:
            return ZERO
        if -0.5 < d < 0.5:  # near 1, log1p keeps the digits of d that rounding 1 + d drops
            return ctx.log1p(to_mpfr(d, bits + 10))
        return ctx.log(to_mpfr(abs(v), bits + 10))
    return ctx.log(ctx.abs(to_mpfr(v)))


def int_power(a: Value, n: mpz, led: Ledger) -> Value:
    if is_exact(a):
        if a == 1:
            return mpz(1)
        if a == -1:
            return mpz(1) if n % 2 == 0 else mpz(-1)
        if n < 0:
            a, n = ratio(mpz(1), a), -n
        if n.bit_length() <= 64:
            estimate = n * log2_estimate(a) if type(a) is mpz else float(n * exact_bits(a))
            if estimate <= MAX_EXACT_BITS + 1:
                led.charge(multiply_units(int(estimate)))
                return exact_result(a**n, led)
    negative = sign(a) < 0 and n % 2 == 1
    if type(a) is mpfr and n.bit_length() <= 64 and abs(n * mag2(a)) < MPFR_SAFE_EXP - 2:
        wp = PRECISION_BITS + 10 + n.bit_length()
        led.charge(transcendental_units(wp))
        return fit(WORK.plus(context_for(wp).pow(a, n)))
    return _positive_power(a, n, led, negative)


def _complex_power(z: mpc, b: Value, led: Ledger) -> Value:
    if z == 0:
        if type(b) is mpc or sign(b) <= 0:
            raise Fault(DivisionByZero, "0 to a negative or complex power is a division by zero")
        return mpz(0)
    if type(b) is Huge:
        raise Fault(LimitError, out_of_range(b.exp > 0))
    led.charge(2 * transcendental_units(PRECISION_BITS))
    exponent = b if type(b) is mpc or type(b) is mpz else to_mpfr(b, PRECISION_BITS + 10)
    if type(b) is not mpz and abs(log2_estimate(WORK.abs(z))) * _abs_float(b) > 1e6:
        raise Fault(LimitError, "complex results this large or this small are not supported")
    return tidy_complex(WIDE.pow(z, exponent), None)


def _abs_float(v: Value) -> float:
    return float(WORK.abs(v)) if type(v) is mpc else abs(float(to_mpfr(v)))


def exact_root(v: Exact, k: int, led: Ledger) -> Exact | None:
    """v^(1/k) when it is rational (v >= 0, or k odd), else None; k = 0 means "do not try"."""
    if k < 2:
        return None
    num, den = (v, mpz(1)) if type(v) is mpz else (v.numerator, v.denominator)
    if num < 0 and k % 2 == 0:
        return None
    led.charge(division_units(exact_bits(v)))
    rn, exact_n = gmpy2.iroot(abs(num), k)
    if not exact_n:
        return None
    rd, exact_d = gmpy2.iroot(den, k)
    if not exact_d:
        return None
    return ratio(-rn if num < 0 else rn, rd)


# --------------------------------------------------------------------------------------------
# Factorial


def factorial(v: Value, led: Ledger) -> Value:
    v = _real(v)
    if type(v) is mpz:
        n: mpz | None = v
    elif type(v) is mpfr or type(v) is Huge:
        n = near_int(v, "factorial")
    else:
        n = None
    if n is None or n < 0:
        raise Fault(CalcDomainError, "factorial is only defined for non-negative integers")
    if n <= MAX_EXACT_FACTORIAL:
        if n > 500:
            led.charge(multiply_units(int(log2_estimate(n) * n)))
        return gmpy2.fac(n)
    # log10(n!) ~ n log10(n/e): refuse before computing when that is beyond the cap.
    if n.bit_length() > 60 or n * (log2_estimate(n) * 0.30103 - 0.4343) > MAX_DECIMAL_EXPONENT:
        raise Fault(LimitError, f"factorial is too large (beyond 10^(10^{_cap_digits()}))")
    wp = PRECISION_BITS + 10 + n.bit_length() + 6
    led.charge(8 * transcendental_units(wp))
    ctx = context_for(wp)
    log2_fact = ctx.div(ctx.lngamma(n + 1), ctx.const_log2())
    return from_log2(log2_fact)


def _cap_digits() -> int:
    return len(str(MAX_DECIMAL_EXPONENT)) - 1


