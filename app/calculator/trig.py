"""Trigonometric and hyperbolic functions, on reals, degree angles and complex values.

Strategy: MPFR reduces the argument of sin/cos/tan correctly however large it is, so the only
care needed here is to hand it the argument with all its bits: an exact argument of magnitude
2^k is converted at PRECISION_BITS + k bits (``sin(10^299 + 1/3)`` keeps its 1/3). An inexact
argument's result is snapped to 0 when it is cancellation noise against the argument
(``sin(pi)``, ``cos(pi/2)``). A degree angle whose sine or cosine is rational (multiples of 30°,
tangent: multiples of 45°) gives the exact value; any other is reduced modulo 360 exactly first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from gmpy2 import mpfr, mpq, mpz

from app.calculator.arithmetic import compare
from app.calculator.cost import Ledger, transcendental_units
from app.calculator.errors import CalcDomainError, Fault, LimitError
from app.calculator.numbers import (
    CAP_LOG2,
    MPC,
    MPFR,
    MPFR_SAFE_EXP,
    MPQ,
    MPZ,
    ONE,
    PRECISION_BITS,
    WORK,
    Degrees,
    Huge,
    Value,
    context_for,
    from_log2,
    is_exact,
    log2_estimate,
    mag2,
    out_of_range,
    ratio,
    sign,
    snap,
    tidy_complex,
    to_mpfr,
)

__all__ = ["TRIG_FUNCTIONS"]

# Arguments stay below 2^1000 (~1e301): the argument must be carried with as many bits as it
# has, and beyond that a result means nothing anyway.
TRIG_MAX_LOG2: Final = 1000
# |x| beyond this (about 2^12): tanh(x) is ±1 to far more than the working precision.
_TANH_SATURATES: Final = 12

Impl = Callable[[list[Value], Ledger], Value]

# sin(30° * k) for k = 0..11: rational for these k, ±sqrt(3)/2 (None) otherwise.
_SIN_30: Final[tuple[mpz | mpq | None, ...]] = (
    MPZ(0), MPQ(1, 2), None, MPZ(1), None, MPQ(1, 2),
    MPZ(0), MPQ(-1, 2), None, MPZ(-1), None, MPQ(-1, 2),
)  # fmt: skip


def _too_large(name: str) -> Fault:
    return Fault(LimitError, f"{name}() argument is too large (limit about 1e300)", 0)


def _argument(x: Value, name: str) -> mpfr:
    """x as an mpfr carrying every bit a trigonometric function needs."""
    if type(x) is MPFR:
        if mag2(x) > TRIG_MAX_LOG2:
            raise _too_large(name)
        return x
    mag = log2_estimate(x)
    if mag > TRIG_MAX_LOG2:
        raise _too_large(name)
    return to_mpfr(x, PRECISION_BITS + max(0, int(mag)) + 10)


def _degrees_reduced(deg: mpz | mpq) -> mpz | mpq:
    """deg modulo 360, exactly."""
    return deg % 360


def _sin_degrees(deg: mpz | mpq) -> mpz | mpq | None:
    """sin(deg°) when it is rational, else None."""
    steps = ratio(deg, MPZ(30))
    if type(steps) is MPQ:
        return None
    return _SIN_30[int(steps % 12)]


def _from_degrees(deg: mpz | mpq, name: str, led: Ledger) -> mpfr:
    """sin/cos/tan of an angle in degrees with no rational value, computed in radians."""
    ctx = context_for(PRECISION_BITS + 20)
    radians = ctx.div(ctx.mul(ctx.const_pi(), _degrees_reduced(deg)), 180)
    led.charge(transcendental_units(PRECISION_BITS + 20))
    if name == "tan":
        s, c = ctx.sin_cos(radians)
        return WORK.plus(ctx.div(s, c))
    fn = ctx.sin if name == "sin" else ctx.cos
    return WORK.plus(fn(radians))


def _sine_like(name: str, zero_value: int) -> Impl:
    fn = WORK.sin if name == "sin" else WORK.cos

    def impl(args: list[Value], led: Ledger) -> Value:
        x = args[0]
        if type(x) is MPFR and x.is_regular():  # the commonest argument: sin(pi/6)
            mag = mag2(x)
            if mag > TRIG_MAX_LOG2:
                raise _too_large(name)
            led.charge(transcendental_units(PRECISION_BITS + max(0, mag)))
            return snap(fn(x), mag)  # sin(pi): the true value may be 0; noise is not meaningful
        if type(x) is Degrees:
            shifted = x.deg if name == "sin" else x.deg + 90
            exact = _sin_degrees(shifted)
            return exact if exact is not None else _from_degrees(x.deg, name, led)
        if type(x) is MPC:
            led.charge(2 * transcendental_units(PRECISION_BITS))
            return tidy_complex((WORK.sin if name == "sin" else WORK.cos)(x))
        if sign(x) == 0:
            return MPZ(zero_value)
        if type(x) is Huge:
            if x.exp > 0:
                raise _too_large(name)
            return x if name == "sin" else ONE
        arg = _argument(x, name)
        led.charge(transcendental_units(PRECISION_BITS + max(0, mag2(arg))))
        r = (WORK.sin if name == "sin" else WORK.cos)(arg)
        if not is_exact(x):  # sin(pi): the true value may be 0; the noise is not meaningful
            r = snap(r, mag2(arg))
        return r

    return impl


def _tan(args: list[Value], led: Ledger) -> Value:
    x = args[0]
    if type(x) is Degrees:
        steps = ratio(x.deg, MPZ(45))
        if type(steps) is MPZ:
            k = int(steps % 4)
            if k == 2:
                raise Fault(CalcDomainError, "tan is undefined here (cos(x) = 0)", 0)
            return MPZ((0, 1, 0, -1)[k])
        return _from_degrees(x.deg, "tan", led)
    if type(x) is MPC:
        led.charge(2 * transcendental_units(PRECISION_BITS))
        return tidy_complex(WORK.tan(x))
    if sign(x) == 0:
        return MPZ(0)
    if type(x) is Huge:
        if x.exp > 0:
            raise _too_large("tan")
        return x
    arg = _argument(x, "tan")
    wp = PRECISION_BITS + 10
    led.charge(2 * transcendental_units(PRECISION_BITS + max(0, mag2(arg))))
    s, c = context_for(wp).sin_cos(arg)
    if not is_exact(x):
        s = snap(s, mag2(arg))
        c = snap(c, mag2(arg))
    if c.is_zero():
        raise Fault(CalcDomainError, "tan is undefined here (cos(x) = 0)", 0)
    return WORK.plus(context_for(wp).div(s, c))


def _inverse(name: str, bounded: bool) -> Impl:
    def impl(args: list[Value], led: Ledger) -> Value:
        x = args[0]
        led.charge(transcendental_units(PRECISION_BITS))
        fn = getattr(WORK, name)
        if type(x) is MPC:
            return tidy_complex(fn(x))
        if bounded and (compare(x, 1) > 0 or compare(x, -1) < 0):
            raise Fault(CalcDomainError, f"{name} is only defined for -1 <= x <= 1", 0)
        if sign(x) == 0 and name != "acos":
            return MPZ(0)
        if is_exact(x) and x == 1 and name == "acos":
            return MPZ(0)
        if type(x) is Huge:  # only atan gets here: ±pi/2 for huge x, x itself for tiny x
            return x if x.exp < 0 else fn(MPFR("inf") if sign(x) > 0 else MPFR("-inf"))
        return fn(x if type(x) is MPFR else to_mpfr(x, PRECISION_BITS + 10))

    return impl


def _atan2(args: list[Value], led: Ledger) -> Value:
    y, x = args
    for i, v in enumerate(args):
        if type(v) is MPC:
            raise Fault(CalcDomainError, "atan2() needs real numbers", i)
    if sign(y) == 0 and sign(x) >= 0:
        return MPZ(0)
    led.charge(transcendental_units(PRECISION_BITS))
    return WORK.atan2(to_mpfr(y, PRECISION_BITS + 10), to_mpfr(x, PRECISION_BITS + 10))


def _hyperbolic(name: str) -> Impl:
    def impl(args: list[Value], led: Ledger) -> Value:
        x = args[0]
        led.charge(2 * transcendental_units(PRECISION_BITS))
        fn = getattr(WORK, name)
        if type(x) is MPC:
            return tidy_complex(fn(x))
        if sign(x) == 0:
            return MPZ(1 if name == "cosh" else 0)
        if type(x) is Huge and x.exp < 0:
            return ONE if name == "cosh" else x
        big = type(x) is Huge or log2_estimate(x) > _TANH_SATURATES
        if name == "tanh":
            return to_mpfr(MPZ(sign(x))) if big else fn(to_mpfr(x, PRECISION_BITS + 10))
        # sinh, cosh ~ e^|x| / 2: log2 of the result is |x| / ln 2 - 1.
        if type(x) is Huge or log2_estimate(x) > 62:
            raise Fault(LimitError, out_of_range(True))
        ctx = context_for(PRECISION_BITS + 80)
        magnitude = ctx.abs(to_mpfr(x, PRECISION_BITS + 80))
        log2_result = ctx.sub(ctx.div(magnitude, ctx.const_log2()), 1)
        if log2_result > CAP_LOG2:
            raise Fault(LimitError, out_of_range(True))
        if log2_result < MPFR_SAFE_EXP - 2:
            wp = PRECISION_BITS + 10 + int(abs(log2_result)).bit_length()
            return WORK.plus(getattr(context_for(wp), name)(to_mpfr(x, wp)))
        return from_log2(log2_result, name == "sinh" and sign(x) < 0)

    return impl


TRIG_FUNCTIONS: Final[dict[str, tuple[str, Impl]]] = {
    "sin": ("sin(x) (radians, or degrees with °)", _sine_like("sin", 0)),
    "cos": ("cos(x) (radians, or degrees with °)", _sine_like("cos", 1)),
    "tan": ("tan(x) (radians, or degrees with °)", _tan),
    "asin": ("asin(x)", _inverse("asin", True)),
    "acos": ("acos(x)", _inverse("acos", True)),
    "atan": ("atan(x)", _inverse("atan", False)),
    "sinh": ("sinh(x)", _hyperbolic("sinh")),
    "cosh": ("cosh(x)", _hyperbolic("cosh")),
    "tanh": ("tanh(x)", _hyperbolic("tanh")),
}
ATAN2: Final = _atan2
