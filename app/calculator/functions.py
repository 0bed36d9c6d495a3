"""The function table (`FUNCTIONS`) and the constants (`CONSTANTS`).

Each implementation takes the evaluated arguments and the ledger and returns a value; a `Fault`
with ``arg=i`` blames argument i. Functions other than sin/cos/tan see a degree angle as the
plain number (in radians) it stands for.

Strategy: exact where the answer is rational and a person expects it (``sqrt(9/4)``,
``log10(1000)``, ``cbrt(-8)``), complex where a real function has no real answer
(``sqrt(-4)`` is ``2i``, ``ln(-1)`` is ``πi``) and one correctly rounded MPFR/MPC call
otherwise. ``cbrt`` stays the real cube root, as people expect of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import gmpy2
from gmpy2 import mpc, mpfr, mpz

from app.calculator.arithmetic import (
    add,
    compare,
    exact_result,
    multiply,
    near_int,
    negate,
)
from app.calculator.cost import (
    Ledger,
    division_units,
    gcd_units,
    multiply_units,
    product_units,
    transcendental_units,
)
from app.calculator.errors import CalcDomainError, Fault, LimitError
from app.calculator.numbers import (
    CAP_LOG2,
    IMAGINARY_UNIT,
    MAX_EXACT_BITS,
    MAX_EXACT_DIGITS,
    MPC,
    MPFR,
    MPFR_SAFE_EXP,
    MPQ,
    MPZ,
    ONE,
    PI,
    PRECISION_BITS,
    TAU,
    WIDE,
    WORK,
    E,
    Huge,
    Value,
    context_for,
    exact_bits,
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
    tidy_complex,
    to_mpfr,
)
from app.calculator.powers import exact_root, factorial, ln_abs
from app.calculator.trig import ATAN2, TRIG_FUNCTIONS

__all__ = ["CONSTANTS", "FUNCTIONS", "FunctionSpec"]

Impl = Callable[[list[Value], Ledger], Value]
# round(x, digits) keeps the result exact while 10**digits fits the exact bound.
_MAX_EXACT_DIGITS: Final = MAX_EXACT_DIGITS
_VARIADIC: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A built-in function: argument counts, a usage line and the implementation."""

    min_args: int
    max_args: int
    usage: str
    impl: Impl
    # A degree angle is handed to the implementation as its value in radians (every function
    # but sin, cos, tan, which keep 30° exact, and the integer ones, which refuse it).
    radians: bool = True

    @property
    def arity_text(self) -> str:
        if self.min_args == self.max_args:
            return f"{self.min_args} argument{'s' if self.min_args != 1 else ''}"
        if self.max_args > 100:
            return f"at least {self.min_args} argument{'s' if self.min_args != 1 else ''}"
        return f"{self.min_args} to {self.max_args} arguments"


def _real_only(v: Value, name: str, arg: int = 0) -> None:
    if type(v) is MPC:
        raise Fault(CalcDomainError, f"{name}() is not defined for complex numbers", arg)


# --------------------------------------------------------------------------------------------
# Roots, exponentials and logarithms


def _sqrt(args: list[Value], led: Ledger) -> Value:
    x = args[0]
    if type(x) is MPZ and x >= 0:
        root, rem = gmpy2.isqrt_rem(x)
        if rem == 0:
            return root
        led.charge(division_units(x.bit_length()))
        if x.bit_length() <= PRECISION_BITS:  # x converts exactly: one rounding
            return WORK.sqrt(x)
        return WORK.plus(WIDE.sqrt(to_mpfr(x, PRECISION_BITS + 10)))
    if type(x) is MPC:
        return tidy_complex(WORK.sqrt(x))
    if sign(x) < 0:  # sqrt(-4) = 2i: the root of |x|, on the imaginary axis
        root = _sqrt([negate(x)], led)
        return MPC(0, to_mpfr(root), precision=PRECISION_BITS)
    if type(x) is MPQ:
        exact = exact_root(x, 2, led)
        if exact is not None:
            return exact
        return WORK.plus(WIDE.sqrt(to_mpfr(x, PRECISION_BITS + 10)))
    if type(x) is Huge:
        m, e = parts(x)
        return from_parts(WORK.sqrt(WORK.mul_2exp(m, e % 2)), e // 2)
    return WORK.sqrt(x)


def _cbrt(args: list[Value], led: Ledger) -> Value:
    x = args[0]
    if type(x) is MPC:
        led.charge(2 * transcendental_units(PRECISION_BITS))
        return tidy_complex(WIDE.pow(x, MPQ(1, 3)))
    if is_exact(x):
        exact = exact_root(x, 3, led)
        if exact is not None:
            return exact
    if sign(x) == 0:
        return MPZ(0)
    if type(x) is Huge:
        m, e = parts(x)
        return from_parts(WORK.cbrt(WORK.mul_2exp(m, e % 3)), e // 3)
    return WORK.cbrt(to_mpfr(x, PRECISION_BITS + 10))


def _abs(args: list[Value], led: Ledger) -> Value:
    x = args[0]
    if type(x) is MPC:
        return WORK.abs(x)
    if type(x) is Huge:
        return Huge(WORK.abs(x.mant), x.exp)
    return x if sign(x) >= 0 else negate(x)


def _exp(args: list[Value], led: Ledger) -> Value:
    x = args[0]
    if type(x) is MPC:
        led.charge(2 * transcendental_units(PRECISION_BITS))
        return tidy_complex(WORK.exp(x))
    if sign(x) == 0:
        return MPZ(1)
    if type(x) is Huge:
        if x.exp > 0:
            raise Fault(LimitError, out_of_range(sign(x) > 0))
        return ONE  # e^x = 1 + x, and x is below any precision
    if log2_estimate(x) > 62:
        raise Fault(LimitError, out_of_range(sign(x) > 0))
    estimate = float(to_mpfr(x)) * 1.4426950408889634  # log2 of the result
    if abs(estimate) > CAP_LOG2:
        raise Fault(LimitError, out_of_range(estimate > 0))
    wp = PRECISION_BITS + 10 + int(abs(estimate)).bit_length()
    led.charge(transcendental_units(wp))
    ctx = context_for(wp)
    if abs(estimate) < MPFR_SAFE_EXP - 2:
        return fit(WORK.plus(ctx.exp(to_mpfr(x, wp))))
    return from_log2(ctx.div(to_mpfr(x, wp), ctx.const_log2()))


# Up to 2^2048, k * bits(base) stays within SMALL_BITS for every base, so _exact_log charges 0.
_SMALL_LOG_BITS: Final = 2048


def _exact_log(x: Value, base: Value, led: Ledger) -> mpz | None:
    """log_base(x) when x is an exact integer power of an exact base (log10(1000) = 3)."""
    if type(x) is MPZ and type(base) is MPZ and 1 < x.bit_length() <= _SMALL_LOG_BITS:
        # x = y * base^k with y not divisible by base (base >= 2 here): a power iff y is 1.
        # At this size the general path below finds the same k and charges nothing.
        y, k = gmpy2.remove(x, base)
        return MPZ(k) if y == 1 else None
    if not (is_exact(x) and is_exact(base)):
        return None
    if x == 1:
        return MPZ(0)
    lb = log2_estimate(base)
    if lb == 0:
        return None
    k = round(log2_estimate(x) / lb)
    if k == 0 or abs(k) * exact_bits(base) > MAX_EXACT_BITS:
        return None
    led.charge(multiply_units(abs(k) * exact_bits(base)))
    return MPZ(k) if MPQ(base) ** k == x else None


def _ln(x: Value, bits: int) -> mpfr | mpc:
    """The natural logarithm of a nonzero value; a negative real's is complex (ln|x| + πi)."""
    if type(x) is MPC:
        return context_for(bits).log(x)
    magnitude = ln_abs(x, bits)
    if sign(x) < 0:
        return MPC(magnitude, context_for(bits).const_pi(), precision=bits)
    return magnitude


def _logarithm(name: str, fixed_base: mpz | None) -> Impl:
    def impl(args: list[Value], led: Ledger) -> Value:
        x = args[0]
        base: Value | None = args[1] if len(args) > 1 else fixed_base
        if type(x) is not MPC and sign(x) == 0:
            raise Fault(CalcDomainError, f"{name} of zero is undefined", 0)
        if base is not None:
            if type(base) is MPZ:
                bad = base <= 1
            else:
                bad = type(base) is MPC or sign(base) <= 0 or compare(base, 1) == 0
            if bad:
                raise Fault(CalcDomainError, "logarithm base must be positive and not 1", 1)
            exact = _exact_log(x, base, led)
            if exact is not None:
                return exact
        if is_exact(x) and x == 1:
            return MPZ(0)
        led.charge(transcendental_units(PRECISION_BITS + 10) * (1 if base is None else 2))
        wp = PRECISION_BITS + 10
        num = _ln(x, wp)
        if base is not None:
            num = context_for(wp).div(num, _ln(base, wp))
        if type(num) is MPC:
            return tidy_complex(MPC(num, precision=PRECISION_BITS))
        return WORK.plus(num)

    return impl


# --------------------------------------------------------------------------------------------
# Rounding


def _rounding(name: str) -> Impl:
    def impl(args: list[Value], led: Ledger) -> Value:
        x = args[0]
        _real_only(x, name)
        if type(x) is MPZ:
            return x
        if type(x) is MPQ:
            num, den = x.numerator, x.denominator
            if name == "floor":
                return num // den
            if name == "ceil":
                return -(-num // den)
            return gmpy2.t_div(num, den)
        if type(x) is Huge:
            if x.exp > 0:
                return x  # an approximation this large has no fractional digits left
            if name == "floor":
                return MPZ(-1 if sign(x) < 0 else 0)
            if name == "ceil":
                return MPZ(1 if sign(x) > 0 else 0)
            return MPZ(0)
        assert type(x) is MPFR
        if not x.is_zero() and mag2(x) > PRECISION_BITS - 40:
            return x
        n = near_int(x, f"{name}()")
        if n is not None:
            return n
        if name == "floor":
            return MPZ(WORK.rint_floor(x))
        if name == "ceil":
            return MPZ(WORK.rint_ceil(x))
        return MPZ(WORK.rint_trunc(x))

    return impl


def _round(args: list[Value], led: Ledger) -> Value:
    """round(x[, digits]), half away from zero."""
    x = args[0]
    _real_only(x, "round")
    digits = MPZ(0)
    if len(args) > 1:
        d = args[1]
        if type(d) is not MPZ:
            raise Fault(CalcDomainError, "round() digits must be an integer", 1)
        digits = d
    if type(x) is MPZ and digits >= 0:
        return x
    if not is_exact(x):
        return _round_approx(x, digits, led)
    if digits < -_MAX_EXACT_DIGITS - 1:  # |x| < 10**100000: every exact value rounds to 0
        return MPZ(0)
    if digits > _MAX_EXACT_DIGITS:  # the rounded value could not be kept exactly
        return _round_approx(to_mpfr(x), digits, led)
    led.charge(division_units(exact_bits(x) + abs(int(digits)) * 4))
    scale = MPQ(10) ** digits
    scaled = MPQ(x * scale)
    n, rem = divmod(abs(scaled.numerator), scaled.denominator)
    if 2 * rem >= scaled.denominator:
        n += 1
    if scaled < 0:
        n = -n
    return exact_result(ratio(n, scale), led)


def _round_approx(x: Value, digits: mpz, led: Ledger) -> Value:
    if type(x) is Huge:
        return x if x.exp > 0 else MPZ(0)
    assert type(x) is MPFR
    if x.is_zero():
        return MPZ(0)
    mag10 = mag2(x) * 0.3010299956639812
    if mag2(x) > PRECISION_BITS - 40 or digits > PRECISION_BITS * 0.3 - mag10:
        return x  # rounding beyond the working precision changes nothing we know
    if digits < -(mag10 + 2):
        return MPZ(0)
    ctx = context_for(PRECISION_BITS + 64)
    scaled = ctx.mul(x, ctx.pow(to_mpfr(MPZ(10), PRECISION_BITS + 64), digits))
    n = near_int(scaled, "round()")
    if n is None:
        n = MPZ(ctx.rint_floor(ctx.add(ctx.abs(scaled), MPQ(1, 2))))
        if sign(scaled) < 0:
            n = -n
    return exact_result(ratio(n, MPQ(10) ** digits), led)


# --------------------------------------------------------------------------------------------
# Several arguments


def _min(args: list[Value], led: Ledger) -> Value:
    best = args[0]
    for v in args[1:]:
        if compare(v, best) < 0:
            best = v
    return best


def _max(args: list[Value], led: Ledger) -> Value:
    best = args[0]
    for v in args[1:]:
        if compare(v, best) > 0:
            best = v
    return best


def _integers(args: list[Value], name: str) -> list[mpz]:
    out = []
    for i, v in enumerate(args):
        if type(v) is not MPZ:
            raise Fault(CalcDomainError, f"{name}() needs exact integers", i)
        out.append(v)
    return out


def _gcd(args: list[Value], led: Ledger) -> Value:
    ints = _integers(args, "gcd")
    for v in ints:
        led.charge(gcd_units(v.bit_length()))
    return gmpy2.gcd(*ints)


def _lcm(args: list[Value], led: Ledger) -> Value:
    ints = _integers(args, "lcm")
    acc = abs(ints[0])
    for v in ints[1:]:
        led.charge(gcd_units(min(v.bit_length(), acc.bit_length())))
        led.charge(product_units(v.bit_length(), acc.bit_length()))
        if acc.bit_length() + v.bit_length() > 2 * MAX_EXACT_BITS:
            raise Fault(LimitError, "lcm is too large to compute exactly")
        acc = gmpy2.lcm(acc, v)
    return exact_result(acc, led)


def _hypot(args: list[Value], led: Ledger) -> Value:
    total: Value = MPZ(0)
    for i, v in enumerate(args):
        _real_only(v, "hypot", i)
        total = add(total, multiply(v, v, led), led)
    return _sqrt([total], led)


def _factorial(args: list[Value], led: Ledger) -> Value:
    try:
        return factorial(args[0], led)
    except Fault as fault:
        fault.arg = 0
        raise


FUNCTIONS: Final[dict[str, FunctionSpec]] = {
    "sqrt": FunctionSpec(1, 1, "sqrt(x)", _sqrt),
    "cbrt": FunctionSpec(1, 1, "cbrt(x)", _cbrt),
    "abs": FunctionSpec(1, 1, "abs(x)", _abs),
    "exp": FunctionSpec(1, 1, "exp(x)", _exp),
    "ln": FunctionSpec(1, 1, "ln(x)", _logarithm("ln", None)),
    "log": FunctionSpec(
        1, 2, "log(x) (base 10) or log(x, base)", _logarithm("log", MPZ(10))
    ),
    "log2": FunctionSpec(1, 1, "log2(x)", _logarithm("log2", MPZ(2))),
    "log10": FunctionSpec(1, 1, "log10(x)", _logarithm("log10", MPZ(10))),
    **{
        name: FunctionSpec(1, 1, usage, impl, radians=name not in ("sin", "cos", "tan"))
        for name, (usage, impl) in TRIG_FUNCTIONS.items()
    },
    "atan2": FunctionSpec(2, 2, "atan2(y, x)", ATAN2),
    "floor": FunctionSpec(1, 1, "floor(x)", _rounding("floor")),
    "ceil": FunctionSpec(1, 1, "ceil(x)", _rounding("ceil")),
    "trunc": FunctionSpec(1, 1, "trunc(x)", _rounding("trunc")),
    "round": FunctionSpec(1, 2, "round(x) or round(x, digits)", _round),
    "min": FunctionSpec(1, _VARIADIC, "min(a, b, ...)", _min),
    "max": FunctionSpec(1, _VARIADIC, "max(a, b, ...)", _max),
    "gcd": FunctionSpec(1, _VARIADIC, "gcd(a, b, ...)", _gcd, radians=False),
    "lcm": FunctionSpec(1, _VARIADIC, "lcm(a, b, ...)", _lcm, radians=False),
    "hypot": FunctionSpec(1, _VARIADIC, "hypot(x, y, ...)", _hypot),
    "factorial": FunctionSpec(1, 1, "factorial(n)", _factorial, radians=False),
}

CONSTANTS: Final[dict[str, Value]] = {"pi": PI, "e": E, "tau": TAU, "i": IMAGINARY_UNIT}
