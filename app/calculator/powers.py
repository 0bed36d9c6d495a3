"""Powers, roots, logarithms and the factorial: ``x^y``, ``x!`` and what they share.

Strategy: an exact power is computed exactly when its size, estimated from logarithms first,
is within MAX_EXACT_BITS; a rational exponent p/q looks for an exact q-th root. Anything else
is 2^(y log2|x|): its magnitude is decided from a 64-bit estimate before any precision is
chosen from it (``9^9^9^9`` would otherwise ask for a billion-bit logarithm), then MPFR's pow
computes it when the result fits MPFR's range, and the (mantissa, exponent) form beyond. The
logarithm of an exact rational near 1 goes through log1p, so ``(1 + 10^-500)^(10^499)`` keeps
the digits that rounding 1 + 10^-500 would lose.
"""

from __future__ import annotations

import math
from typing import Final

import gmpy2
from gmpy2 import mpc, mpfr, mpz

from app.calculator.arithmetic import (
    RATIONAL_TYPES,
    exact_result,
    near_int,
    negate,
    plain_number,
)
from app.calculator.cost import (
    SMALL_BITS,
    Ledger,
    division_units,
    multiply_units,
    transcendental_units,
)
from app.calculator.errors import CalcDomainError, DivisionByZero, Fault, LimitError
from app.calculator.numbers import (
    CAP_LOG2,
    MAX_DECIMAL_EXPONENT,
    MAX_EXACT_BITS,
    MPC,
    MPFR,
    MPFR_SAFE_EXP,
    MPQ,
    MPZ,
    PRECISION_BITS,
    WIDE,
    WORK,
    ZERO,
    Exact,
    Huge,
    Value,
    context_for,
    exact_bits,
    exact_mag2,
    fit,
    from_log2,
    is_exact,
    log2_estimate,
    mag2,
    out_of_range,
    ratio,
    sign,
    tidy_complex,
    to_mpc,
    to_mpfr,
)

__all__ = [
    "MAX_EXACT_FACTORIAL",
    "MAX_EXACT_ROOT",
    "exact_root",
    "factorial",
    "int_power",
    "ln_abs",
    "log2_abs",
    "power",
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


# --------------------------------------------------------------------------------------------
# Powers


def power(a: Value, b: Value, led: Ledger) -> Value:
    if (
        type(b) is MPZ
        and type(a) in RATIONAL_TYPES
        and 0 < b <= SMALL_BITS
        and exact_bits(a) * b <= SMALL_BITS
    ):
        return a**b  # small and exact: nothing to charge or check
    a, b = plain_number(a), plain_number(b)
    if type(a) is MPC or type(b) is MPC:
        return _complex_power(to_mpc(a), b, led)
    sa, sb = sign(a), sign(b)
    if sb == 0:
        return MPZ(1)  # 0^0 = 1, as in Python, IEEE 754 pow() and most calculators
    if sa == 0:
        if sb < 0:
            raise Fault(DivisionByZero, "0 to a negative power is a division by zero")
        return MPZ(0)
    if type(b) is MPZ:
        return int_power(a, b, led)
    if type(b) is MPQ:
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
    # Away from 1 (|ln v| > 0.4), rounding v to ``bits`` first costs under an ulp of the result.
    if type(v) is MPZ:
        return ZERO if v == 1 or v == -1 else ctx.log(abs(v))
    if type(v) is MPQ:
        d = abs(v) - 1
        if -0.5 < d < 0.5:  # near 1, log1p keeps the digits of d that rounding 1 + d drops
            return ctx.log1p(to_mpfr(d, bits + 10))
        return ctx.log(abs(v))
    return ctx.log(ctx.abs(to_mpfr(v)))


def int_power(a: Value, n: mpz, led: Ledger) -> Value:
    if is_exact(a):
        if a == 1:
            return MPZ(1)
        if a == -1:
            return MPZ(1) if n % 2 == 0 else MPZ(-1)
        if n < 0:
            a, n = ratio(MPZ(1), a), -n
        if n.bit_length() <= 64:
            estimate = n * log2_estimate(a) if type(a) is MPZ else float(n * exact_bits(a))
            if estimate <= MAX_EXACT_BITS + 1:
                led.charge(multiply_units(int(estimate)))
                return exact_result(a**n, led)
    negative = sign(a) < 0 and n % 2 == 1
    if type(a) is MPFR and n.bit_length() <= 64 and abs(n * mag2(a)) < MPFR_SAFE_EXP - 2:
        wp = PRECISION_BITS + 10 + n.bit_length()
        led.charge(transcendental_units(wp))
        return fit(WORK.plus(context_for(wp).pow(a, n)))
    return _positive_power(a, n, led, negative)


def _complex_power(z: mpc, b: Value, led: Ledger) -> Value:
    if z == 0:
        if type(b) is MPC or sign(b) <= 0:
            raise Fault(DivisionByZero, "0 to a negative or complex power is a division by zero")
        return MPZ(0)
    if type(b) is Huge:
        raise Fault(LimitError, out_of_range(b.exp > 0))
    led.charge(2 * transcendental_units(PRECISION_BITS))
    exponent = b if type(b) is MPC or type(b) is MPZ else to_mpfr(b, PRECISION_BITS + 10)
    if type(b) is not MPZ and abs(log2_estimate(WORK.abs(z))) * _abs_float(b) > 1e6:
        raise Fault(LimitError, "complex results this large or this small are not supported")
    return tidy_complex(WIDE.pow(z, exponent), None)


def _abs_float(v: Value) -> float:
    return float(WORK.abs(v)) if type(v) is MPC else abs(float(to_mpfr(v)))


def exact_root(v: Exact, k: int, led: Ledger) -> Exact | None:
    """v^(1/k) when it is rational (v >= 0, or k odd), else None; k = 0 means "do not try"."""
    if k < 2:
        return None
    num, den = (v, MPZ(1)) if type(v) is MPZ else (v.numerator, v.denominator)
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
    v = plain_number(v)
    if type(v) is MPZ:
        n: mpz | None = v
    elif type(v) is MPFR or type(v) is Huge:
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


