"""Differential check: every digit the calculator displays, against mpmath at 1,000 bits.

A seeded generator builds random expressions over the supported functions and operators
together with their value computed independently by mpmath at 1,000 bits (~300 digits). The
calculator's 40-digit display must equal that reference rounded to 40 significant digits.
Values that are cancellation noise (``sin(pi)``, whose true value is 0 and which the calculator
shows as 0, where mpmath gives its own rounding error) are left out by construction: every
generated value, and every value inside it, is between 1e-30 and 1e200 in magnitude.

`scripts/bench_calculator.py --differential N` runs the same check on more inputs (and, with
``--against OLD``, on another calculator module to show where its digits were wrong).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import mpmath
import pytest

from app.calculator import CalcError, evaluate

REFERENCE_BITS = 1000
DIGITS = 40
CASES = 1500  # ~3 s here; the script runs more

mpmath.mp.prec = REFERENCE_BITS
Mpf = mpmath.mpf
Reference = tuple[str, object]  # (text, mpmath value: mpf or mpc)

def _atom(rng: random.Random) -> Reference:
    kind = rng.random()
    if kind < 0.35:
        n = rng.randint(1, 1000)
        return str(n), Mpf(n)
    if kind < 0.6:
        whole, frac = rng.randint(0, 99), rng.randint(1, 999)
        return f"{whole}.{frac:03d}", Mpf(whole) + Mpf(frac) / 1000
    if kind < 0.75:
        p, q = rng.randint(1, 99), rng.randint(2, 99)
        return f"({p}/{q})", Mpf(p) / q
    name, value = rng.choice([("pi", mpmath.pi), ("e", mpmath.e), ("tau", 2 * mpmath.pi)])
    return name, +value


def _unary(rng: random.Random, depth: int) -> Reference:
    text, x = _expr(rng, depth + 1)
    fns: list[tuple[str, Callable[[object], object], Callable[[object], bool]]] = [
        ("sqrt", mpmath.sqrt, lambda v: v > 0),
        ("cbrt", mpmath.cbrt, lambda v: v > 0),
        ("exp", mpmath.exp, lambda v: abs(v) < 200),
        ("ln", mpmath.ln, lambda v: v > 0),
        ("log10", mpmath.log10, lambda v: v > 0),
        ("log2", lambda v: mpmath.log(v, 2), lambda v: v > 0),
        ("sin", mpmath.sin, lambda v: abs(v) < 1e6),
        ("cos", mpmath.cos, lambda v: abs(v) < 1e6),
        ("tan", mpmath.tan, lambda v: abs(v) < 1e6),
        ("atan", mpmath.atan, lambda v: True),
        ("asin", mpmath.asin, lambda v: abs(v) < 1),
        ("acos", mpmath.acos, lambda v: abs(v) < 1),
        ("sinh", mpmath.sinh, lambda v: abs(v) < 200),
        ("cosh", mpmath.cosh, lambda v: abs(v) < 200),
        ("tanh", mpmath.tanh, lambda v: abs(v) < 50),
    ]
    name, fn, ok = rng.choice(fns)
    if not ok(x):
        return text, x
    return f"{name}({text})", fn(x)


def _binary(rng: random.Random, depth: int) -> Reference:
    (a, x), (b, y) = _expr(rng, depth + 1), _expr(rng, depth + 1)
    op = rng.choice("+-*/^")
    if op == "+":
        return f"({a})+({b})", x + y
    if op == "-":
        return f"({a})-({b})", x - y
    if op == "*":
        return f"({a})*({b})", x * y
    if op == "/" and y != 0:
        return f"({a})/({b})", x / y
    if x > 0 and abs(y * mpmath.log(x)) < 300:
        return f"({a})^({b})", mpmath.power(x, y)
    return f"({a})*({b})", x * y


def _expr(rng: random.Random, depth: int = 0) -> Reference:
    r = rng.random()
    if depth >= 3 or r < 0.3:
        return _atom(rng)
    text, value = _unary(rng, depth) if r < 0.65 else _binary(rng, depth)
    if not 1e-30 < abs(value) < 1e200:  # type: ignore[arg-type]
        # sin(pi), tau - tau: the true value is 0, which the calculator shows; mpmath's 1e-301
        # is its own rounding of pi (and tan(pi/2)'s 1e301 the same at a pole).
        return _atom(rng)
    return text, value


def _complex_case(rng: random.Random) -> Reference:
    """A complex value: a root or logarithm of a negative number, or complex arithmetic."""
    text, x = _expr(rng, 2)
    x = -abs(x) if x != 0 else Mpf(-1)
    name, fn = rng.choice([("sqrt", mpmath.sqrt), ("ln", mpmath.ln)])
    k, z = rng.randint(1, 9), rng.randint(1, 9)
    return f"{name}(-abs({text}))*({k}+{z}i)", fn(x) * mpmath.mpc(k, z)


def references(count: int, seed: int) -> list[Reference]:
    """``count`` (text, reference value) pairs whose value is at least 1e-30 in magnitude."""
    rng = random.Random(seed)
    out: list[Reference] = []
    while len(out) < count:
        text, value = _complex_case(rng) if rng.random() < 0.1 else _expr(rng)
        if 1e-30 < abs(value) < 1e300 and len(text) < 400:
            out.append((text, value))
    return out


def rounded(value: object) -> object:
    """The reference rounded to DIGITS significant digits (each part of a complex value)."""
    if isinstance(value, mpmath.mpc):
        return mpmath.mpc(rounded(value.real), rounded(value.imag))
    if value == 0:
        return Mpf(0)
    return Mpf(mpmath.nstr(value, DIGITS, min_fixed=-mpmath.inf, max_fixed=mpmath.inf))


def displayed(display: str) -> object:
    """The calculator's display as an mpmath number ("1.5", "2i", "-i", "1e-11-2.5i")."""
    if not display.endswith("i"):
        return Mpf(display)
    body = display[:-1]
    split = max(k for k in range(len(body)) if k == 0 or (body[k] in "+-" and body[k - 1] != "e"))
    real, imag = body[:split], body[split:]
    if imag in ("", "+", "-"):
        imag += "1"
    return mpmath.mpc(Mpf(real or 0), Mpf(imag))


def mismatches(
    cases: list[Reference], evaluate_display: Callable[[str], str]
) -> list[tuple[str, str, str]]:
    """(text, displayed, reference to 45 digits) for every display that differs."""
    out = []
    for text, value in cases:
        shown = evaluate_display(text)
        want = rounded(value)
        if isinstance(value, mpmath.mpc) and abs(value.imag) < 1e-30 * abs(value):
            want = rounded(value.real)
        if shown == "error" or rounded(displayed(shown)) != want:  # long exact integers
            out.append((text, shown, mpmath.nstr(value, DIGITS + 5)))
    return out


def _display(text: str) -> str:
    try:
        return evaluate(text).display
    except CalcError:
        return "error"


def _at_bits(bits: int, compute: Callable[[], object]) -> object:
    """A reference that needs more than REFERENCE_BITS (an argument of 1,000 bits and more)."""
    with mpmath.workprec(bits):
        return +compute()  # type: ignore[operator]


def test_every_displayed_digit_is_right() -> None:
    cases = references(CASES, seed=16)
    bad = mismatches(cases, _display)
    assert not bad, f"{len(bad)} of {len(cases)} displays differ from mpmath: {bad[:5]}"


@pytest.mark.parametrize(
    ("text", "reference"),
    [
        ("sin(7)", mpmath.sin(7)),
        ("exp(100)", mpmath.exp(100)),
        ("ln(2)", mpmath.ln(2)),
        ("3^0.7", mpmath.power(3, Mpf(7) / 10)),
        ("atan(1)", mpmath.atan(1)),
        ("sqrt(-2)", mpmath.sqrt(-2)),
        ("ln(-1)", mpmath.ln(-1)),
        ("sin(45°)", mpmath.sin(mpmath.pi / 4)),
        ("(2+i)^(1/3)", mpmath.cbrt(mpmath.mpc(2, 1))),
        ("sin(10^299 + 1/3)", _at_bits(2200, lambda: mpmath.sin(Mpf(10) ** 299 + Mpf(1) / 3))),
    ],
)
def test_known_values(text: str, reference: object) -> None:
    assert displayed(evaluate(text).display) == rounded(reference), text


def test_results_do_not_depend_on_the_threads_gmpy2_context() -> None:
    """The calculator computes through explicit contexts only: a thread whose current gmpy2
    context has 24 bits, rounds down and a tiny exponent range gets the same answers."""
    import threading

    import gmpy2

    cases = [text for text, _ in references(300, seed=7)] + [
        "1e999999999 / 3", "99999999!", "sin(30°)", "(1+2i)*(3-i)", "-sqrt(2)", "abs(-pi)",
    ]  # fmt: skip
    expected = [_display(text) for text in cases]
    seen: list[str] = []

    def hostile_context() -> None:
        gmpy2.set_context(
            gmpy2.context(precision=24, round=gmpy2.RoundDown, emax=1000, emin=-1000)
        )
        seen.extend(_display(text) for text in cases)

    thread = threading.Thread(target=hostile_context)
    thread.start()
    thread.join()
    assert seen == expected


def test_threads_evaluating_at_once_get_every_answer_right() -> None:
    """The thread modes evaluate in many threads at once. Each evaluation enters its own copy of
    the working context: entering one shared context object from two threads made each restore
    the other's on exit ("Unexpected failure in restoring context", and in a server a crash)."""
    import threading

    cases = [text for text, _ in references(40, seed=11)] + [
        "+".join(["sin(7)"] * 20), "sqrt(-4)", "1/3", "sin(30°)", "2^0.5",
    ]  # fmt: skip
    expected = [_display(text) for text in cases]
    results: list[list[str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(12)

    def evaluate_all() -> None:
        try:
            start.wait()
            results.append([_display(text) for _ in range(10) for text in cases][-len(cases):])
        except BaseException as error:  # reported below, beside its peers
            errors.append(error)

    threads = [threading.Thread(target=evaluate_all) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == [expected] * 12
