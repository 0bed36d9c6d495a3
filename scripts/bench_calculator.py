"""Benchmark app.calculator.evaluate: throughput, the hostile bound, the budget's calibration.

    python scripts/bench_calculator.py                 # throughput (evaluations/s, µs each)
    python scripts/bench_calculator.py --hostile       # time every hostile expression; exit 1 if
                                                       # any takes more than --bound-ms (100)
    python scripts/bench_calculator.py --server-corpus # CPU µs per evaluation over the 1,200
                                                       # expressions bench.py POSTs, by class
    python scripts/bench_calculator.py --budget        # work units estimated vs CPU µs measured,
                                                       # per class of expression (calibration)
    python scripts/bench_calculator.py --differential N  # N random expressions against mpmath
                                                       # at 1,000 bits (every displayed digit)
    ... --against OLD.py       # the same, side by side, for another calculator module (e.g.
                               # the single-file one: git show main:app/calculator.py > OLD.py)

"new" is app.calculator as it loads here: compiled, once scripts/build_native.py has built it, or
pure Python (always with CALCSERVE_PURE_CALCULATOR=1); the first line says which.

Throughput: every expression is evaluated from scratch (no caching exists to defeat); each
figure is the median of --runs runs, each run the mean over enough repetitions to last ~0.2 s.
Hostile: each expression is timed --runs times and its *worst* run is compared with the bound, so
a passing run means "even the slowest of N attempts stayed inside the bound". With --against,
the two modules' runs are interleaved, so load on a shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import importlib.util
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote_plus

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import calculator
from app.calculator import (
    INLINE_BUDGET,
    MAX_EXACT_FACTORIAL,
    MAX_EXPRESSION_LENGTH,
    CalcError,
    estimate_work,
)

Evaluate = Callable[[str], object]

SHORT = "2*(3+4)/5"
# 60 tokens: numbers, operators, parentheses, calls; exact and inexact parts.
SIXTY = "(12.5 + 3) * 4 - 7 / 2 + (2^10 - 24) // 3 % 7 + sqrt(16) * 1.5 - (8 - 3) * (6 + 2) / 4"

# Varied realistic expressions: what people type into a web calculator.
CORPUS = [
    "1+1",
    "2*(3+4)/5",
    "0.1+0.2",
    "1/3",
    "19.99 * 3 * 1.2",
    "100 * 1.07^10",
    "2^64",
    "sqrt(2)",
    "pi * 2.5^2",
    "sin(pi/6)",
    "ln(2)",
    "log10(12345)",
    "factorial(20)",
    "5!",
    "(1+2)*(3+4)*(5+6)",
    "1e3 / 7",
    "hypot(3, 4)",
    "round(2/3, 4)",
    "max(3, 7, 2) - min(4, 1)",
    "-2^2 + 3 * -4",
    "17 // 5 + 17 % 5",
    "exp(1)",
    "cos(1) ^ 2 + sin(1) ^ 2",
    "gcd(1071, 462)",
    "3 × 4 ÷ 6 − 1",
    "2 ^ 0.5",
    "atan2(1, 2)",
    "1234567 * 7654321",
    "(3.5 - 1.25) / 0.75",
    "10 % 3 + 2 ^ 3 ^ 2 / 512",
]


def _hostile() -> list[tuple[str, str]]:
    """(label, expression) pairs that try to make evaluate() slow or unbounded."""
    big = "(10^9999-1)/(10^9998+7)"
    items = [
        ("power tower", "9^9^9^9"),
        ("10^10^10", "10^10^10"),
        ("huge literal", "1e999999999"),
        ("tiny literal", "1e-999999999"),
        ("huge literal exponent", "1e99999999999999999999"),
        ("power of power", "(10^10000)^10000"),
        ("factorial 1e8", "99999999!"),
        ("factorial 10^100", "factorial(10^100)"),
        ("nested factorial", "4!!!"),
        ("factorial chain", "3!!!!!!!!!!!!!!!!!!!!!!"),
        ("10k nested parentheses", "(" * 4999 + "1" + ")" * 4999),
        ("10k open parentheses", "(" * MAX_EXPRESSION_LENGTH),
        ("10k unary minus", "-" * (MAX_EXPRESSION_LENGTH - 1) + "1"),
        ("too long", "1+" * MAX_EXPRESSION_LENGTH),
        ("1/0", "1/0"),
        ("0^-1", "0^-1"),
        ("sqrt(-1)", "sqrt(-1)"),
        ("ln(0)", "ln(0)"),
        ("sin of 10^10000", "sin(10^10000)"),
        ("sin of huge exact", "sin(10^299 + 1/3)"),
        ("cos of 2^999", "cos(2^999)"),
        ("tan of huge approx", "tan(1e299 * pi)"),
        ("exp(10^6)", "exp(10^6)"),
        ("exp(10^100)", "exp(10^100)"),
        ("sinh(10^20)", "sinh(10^20)"),
        ("huge % small", "1e999999999 % 7"),
        ("huge // small", "(10^9999 + 1/3) // 7"),
        ("huge exact %", "(3^20000) % (7^9000 + 1/11)"),
        ("fraction huge denominators", "1/3^20000 + 1/7^11000"),
        ("gcd huge", "gcd(10^9999 - 1, 10^9998 - 1)"),
        ("lcm huge", "lcm(10^9999 - 1, 10^9998 - 1, 10^9997 - 7)"),
        ("round many digits", "round(1/7, 10^9)"),
        ("round huge digits approx", "round(pi, 10^100)"),
        ("round 10000 digits", "round(10^9999/7, 9999)"),
        ("mpf of huge fraction", "sqrt(2) + 1/(10^9999 - 1)"),
        ("near-one power", "(1 + 10^-500)^(10^499)"),
        ("near-one huge power", "(1+1e-9999)^(10^9999)"),
        ("big digits literal", "9" * MAX_EXPRESSION_LENGTH),
        ("big decimal literal", "0." + "3" * (MAX_EXPRESSION_LENGTH - 2)),
        ("exact factorial sum", "+".join(["3248!"] * 30)),
        ("big fraction sum", "+".join([big] * (MAX_EXPRESSION_LENGTH // (len(big) + 1)))),
        ("big product chain", "*".join(["(10^999+1)"] * 900)),
        ("harmonic primes", _harmonic_primes()),
        ("many sins", "+".join(["sin(7)"] * 1400)),
        ("many exps", "+".join(["exp(7.5)"] * 1100)),
        ("many sqrts", "+".join(["sqrt(3)"] * 1250)),
        ("many powers", "+".join(["3^0.7"] * 1600)),
        ("many logs", "+".join(["log(7,3)"] * 1100)),
        ("long sum", "+".join(["1"] * 5000)),
        ("long division chain", "/".join(["7"] * 5000)),
        ("power chain", "^".join(["1.0001"] * 250)),
        ("2^-huge", "2^-(10^20)"),
        ("huge^-1", "(3^30000)^-1"),
        ("factorial of approx", "(1e20)!"),
        ("huge atan", "atan(10^9999)"),
        ("cbrt huge", "cbrt(10^9999 + 1)"),
        ("sqrt huge", "sqrt(10^9999 + 1)"),
        ("log huge", "log(10^9999 + 1, 7)"),
        ("hypot huge", "hypot(10^5000, 10^5000, 10^5000)"),
        ("floor of approx huge", "floor(1e999999999)"),
        ("mod chain huge", "%".join(["(10^9999-1)"] * 100)),
        ("3^2000000", "3^2000000"),
        # the exact bounds raised by GMP (issue 16)
        ("exact 25000!", "25000!"),
        (f"exact {MAX_EXACT_FACTORIAL}!", f"{MAX_EXACT_FACTORIAL}!"),
        ("just past exact factorial", f"{MAX_EXACT_FACTORIAL + 1}!"),
        ("exact 7^123456", "7^123456"),
        ("exact 10^109999", "10^109999"),
        ("exact 110,000-digit fraction", "(10^54999+1)/(10^54998+3)"),
        ("exact factorial sum 25000!", "+".join(["25000!"] * 300)),
        ("exact big gcd", "gcd(3^200000 - 1, 7^100000 - 1)"),
        ("exact big modulo", "(7^123456) % (3^100000 + 2)"),
        ("round 100000 digits", "round(10^99999/7, 99999)"),
        ("big decimal literal 10k", "0." + "7" * (MAX_EXPRESSION_LENGTH - 2)),
        # complex values (MPC) and degree literals
        ("complex power tower", "(1+i)^(1+i)^(1+i)^(1+i)"),
        ("complex huge power", "(1+i)^(10^100)"),
        ("complex tiny power", "(1+i)^(-(10^100))"),
        ("complex exp huge", "exp(10^6 * i + 10^6)"),
        ("complex sin huge", "sin(10^9 * i)"),
        ("complex sqrt of huge negative", "sqrt(-(10^99999))"),
        ("complex ln of huge negative", "ln(-(10^109999))"),
        ("many complex products", "*".join(["(1+2i)"] * 1400)),
        ("many complex roots", "+".join(["sqrt(-7)"] * 1100)),
        ("degrees of huge", "sin((10^300)°)"),
        ("degrees exact huge", "sin((10^109999 + 30)°)"),
        ("many degree sines", "+".join(["sin(30°)"] * 1100)),
        ("many degree tangents", "+".join(["tan(1°)"] * 1100)),
    ]
    return items


def _harmonic_primes() -> str:
    """1/2 + 1/3 + 1/5 + ... as long as the length limit allows (denominators keep growing)."""
    terms: list[str] = []
    length = 0
    for p in _primes(3000):
        term = f"1/{p}"
        if length + len(term) + 1 > MAX_EXPRESSION_LENGTH:
            break
        terms.append(term)
        length += len(term) + 1
    return "+".join(terms)


def _primes(limit: int) -> list[int]:
    sieve = bytearray([1]) * (limit * 10)
    out = []
    for i in range(2, len(sieve)):
        if sieve[i]:
            out.append(i)
            if len(out) >= limit:
                break
            sieve[i * i :: i] = bytearray(len(sieve[i * i :: i]))
    return out


def _run(evaluate: Evaluate, text: str) -> str:
    try:
        return evaluate(text).display[:60]  # type: ignore[attr-defined, no-any-return]
    except CalcError as err:
        return f"{err.kind}: {err.message[:70]}"
    except Exception as err:  # another module's error classes
        return f"{getattr(err, 'kind', type(err).__name__)}: {str(err)[:70]}"


def load_module(path: str) -> types.ModuleType:
    """Another calculator (a single-file module, e.g. a previous commit's), to compare with."""
    spec = importlib.util.spec_from_file_location("_calculator_against", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _time_per_call(fn: Callable[[], object], min_time: float = 0.2) -> float:
    """Seconds per call, averaged over enough calls to last min_time."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / n
        n *= 2 if elapsed > min_time / 10 else 10


def throughput(modules: dict[str, Evaluate], runs: int) -> None:
    print(f"calculator throughput (median of {runs} runs; no caching)")
    for name, evaluate in modules.items():

        def corpus(evaluate: Evaluate = evaluate) -> None:
            for text in CORPUS:
                with contextlib.suppress(Exception):
                    evaluate(text)

        for label, fn, per in (
            (f"short   {SHORT!r}", lambda evaluate=evaluate: evaluate(SHORT), 1),
            (f"60-token ({len(SIXTY)} chars)", lambda evaluate=evaluate: evaluate(SIXTY), 1),
            (f"corpus  ({len(CORPUS)} varied expressions)", corpus, len(CORPUS)),
        ):
            samples = [_time_per_call(fn) / per for _ in range(runs)]
            med = statistics.median(samples)
            print(
                f"  {name:8} {label:45} {med * 1e6:8.2f} µs/eval  {1 / med:10,.0f} evals/s"
                f"  (min {min(samples) * 1e6:.2f}, max {max(samples) * 1e6:.2f})"
            )


def server_corpus() -> list[tuple[str, str]]:
    """(class, expression) for the POST bodies the server benchmark sends: scripts/bench.py's own
    check_corpus() (its candidates, then seeded `EXPR+N` variants), decoded. The class of a
    variant is the candidate it extends."""
    path = Path(__file__).resolve().parent / "bench.py"
    spec = importlib.util.spec_from_file_location("_bench_server", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up while the class is built
    spec.loader.exec_module(bench)
    bodies, _dropped = bench.check_corpus()
    candidates = set(bench.CORPUS_CANDIDATES)
    out = []
    for body in bodies:
        expr = unquote_plus(body.removeprefix("expr="))
        out.append((expr if expr in candidates else expr.rsplit("+", 1)[0], expr))
    return out


def _cpu_per_eval(evaluate: Evaluate, exprs: list[str]) -> float:
    """Process-CPU seconds per evaluation over ``exprs``, repeated to ~2,400 evaluations."""
    reps = max(1, 2400 // len(exprs))
    start = time.process_time()
    for _ in range(reps):
        for text in exprs:
            evaluate(text)
    return (time.process_time() - start) / (reps * len(exprs))


def corpus_cost(modules: dict[str, Evaluate], runs: int) -> None:
    """Median process-CPU µs per evaluation over the server corpus, overall and by class; the
    modules' runs interleaved."""
    rows = server_corpus()
    classes: dict[str, list[str]] = collections.defaultdict(list)
    for cls, expr in rows:
        classes[cls].append(expr)
    all_exprs = [expr for _, expr in rows]
    for evaluate in modules.values():
        for text in all_exprs:  # warm caches (constants, contexts, the old module's mpmath)
            evaluate(text)
    totals: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(runs):
        for name, evaluate in modules.items():
            totals[name].append(_cpu_per_eval(evaluate, all_exprs))
    print(f"server corpus: {len(rows)} expressions, {len(classes)} classes; median of {runs} runs")
    medians = {name: statistics.median(samples) * 1e6 for name, samples in totals.items()}
    for name, med in medians.items():
        print(f"  {name:8} all {med:8.2f} µs/eval (process CPU)  runs: "
              + " ".join(f"{t * 1e6:.2f}" for t in totals[name]))
    if len(medians) == 2:
        (a, ma), (b, mb) = medians.items()
        print(f"  {b} / {a}: {mb / ma:.2f}x the CPU ({ma / mb:.2f}x faster)")
    costs = {
        cls: {name: statistics.median(_cpu_per_eval(ev, exprs) for _ in range(3)) * 1e6
              for name, ev in modules.items()}
        for cls, exprs in classes.items()
    }
    first = next(iter(modules))
    print("  by class (µs/eval): " + "  ".join(f"{name:>8}" for name in modules))
    for cls in sorted(costs, key=lambda c: -costs[c][first] * len(classes[c])):
        cells = "  ".join(f"{costs[cls][name]:8.2f}" for name in modules)
        print(f"    x{len(classes[cls]):3}  {cells}  {cls}")


def hostile(modules: dict[str, Evaluate], runs: int, bound_ms: float) -> int:
    worst_all = dict.fromkeys(modules, 0.0)
    failures = []
    print(f"hostile inputs: worst of {runs} runs each, bound {bound_ms:.0f} ms")
    for label, text in _hostile():
        cells = []
        for name, evaluate in modules.items():
            outcome = _run(evaluate, text)
            times = []
            for _ in range(runs):
                gc.collect()
                start = time.perf_counter()
                _run(evaluate, text)
                times.append(time.perf_counter() - start)
            worst = max(times) * 1000
            worst_all[name] = max(worst_all[name], worst)
            if worst > bound_ms and name == "new":
                failures.append(label)
            cells.append(f"{'SLOW' if worst > bound_ms else 'ok  '} {name} {worst:8.2f} ms")
        print(f"  {'  '.join(cells)}  {label:30} -> {outcome}")
    for name, worst in worst_all.items():
        print(f"slowest ({name}): {worst:.2f} ms")
    print(f"over the bound: {len(failures)} {failures or ''}")
    return 1 if failures else 0


# Classes of expression for the budget's calibration: (class, expressions).
_BUDGET_CLASSES: list[tuple[str, list[str]]] = [
    ("tiny: 1+2, 2^10", ["1+2", "2^10", "12345679*9", "10!"]),
    ("short exact: 1/3+1/6, (1/2)^8", ["1/3+1/6", "(1/2)^8", "0.1+0.2", "22/7-3"]),
    ("short MPFR: sqrt(2), sin(pi/6)", ["sqrt(2)", "sin(pi/6)", "ln(10)", "e^2", "pi"]),
    ("short complex: sqrt(-4), (1+2i)*(3-i)", ["sqrt(-4)", "(1+2i)*(3-i)", "ln(-1)", "2^i"]),
    ("short degrees: sin(30°), sin(45°)", ["sin(30°)", "sin(45°)", "tan(45°)"]),
    ("server corpus (1,200)", []),  # filled from server_corpus()
    ("long sum 1+1+... (5,000 terms)", ["+".join(["1"] * 5000)]),
    ("long fractions 1/2+1/3+... (primes)", [_harmonic_primes()]),
    ("chain of 1400 sin(7)", ["+".join(["sin(7)"] * 1400)]),
    ("chain of 1600 3^0.7", ["+".join(["3^0.7"] * 1600)]),
    ("chain of 800 sqrt(2)", ["+".join(["sqrt(2)"] * 800)]),
    ("chain of 1100 log(7,3)", ["+".join(["log(7,3)"] * 1100)]),
    ("60 sins multiplied", ["*".join(f"sin({k})" for k in range(1, 61))]),
    ("1400 complex products", ["*".join(["(1+2i)"] * 1400)]),
    ("wide precision: sin(10^299+1/3)", ["sin(10^299 + 1/3)", "cos(2^999)"]),
    ("lngamma: 99999999!", ["99999999!", "(10^15)!"]),
    ("exact 3248!", ["3248!"]),
    ("exact 20000!", ["factorial(20000)"]),
    ("exact 25000!", ["25000!"]),
    ("exact 7^123456", ["7^123456"]),
    ("exact 10^109999", ["10^109999"]),
    ("exact 3^200000 mod", ["(3^200000) % (7^60000 + 1)"]),
    ("exact 33,000-digit fraction", ["(10^16000+1)/(10^15999+3) + 1/7^9000"]),
    ("literal of 10,000 digits", ["9" * MAX_EXPRESSION_LENGTH]),
]


def budget(runs: int) -> None:
    """Estimated units against measured process-CPU µs, per class of expression."""
    classes = [(c, exprs or [e for _, e in server_corpus()]) for c, exprs in _BUDGET_CLASSES]
    print(f"inline budget calibration: INLINE_BUDGET = {INLINE_BUDGET} units; median of {runs}")
    print(f"  {'units/eval':>10} {'µs/eval':>10} {'µs/unit':>8}  class")
    for label, exprs in classes:
        units = statistics.mean(estimate_work(text)[0] for text in exprs)
        for text in exprs:
            estimate_work(text)  # warm
        samples = []
        for _ in range(runs):
            reps = max(1, int(20_000 / max(units * len(exprs), 1)))
            start = time.process_time()
            for _ in range(reps):
                for text in exprs:
                    estimate_work(text)
            samples.append((time.process_time() - start) / (reps * len(exprs)) * 1e6)
        measured = statistics.median(samples)
        print(f"  {units:10.0f} {measured:10.1f} {measured / max(units, 1):8.2f}  {label}")


def differential(count: int, seed: int, modules: dict[str, Evaluate]) -> int:
    """Every displayed digit of ``count`` random expressions against mpmath at 1,000 bits."""
    from tests.test_calculator_mpfr import mismatches, references

    cases = references(count, seed)
    status = 0
    for name, evaluate in modules.items():

        def display(text: str, evaluate: Evaluate = evaluate) -> str:
            try:
                return evaluate(text).display  # type: ignore[attr-defined, no-any-return]
            except Exception:
                return "error"

        bad = mismatches(cases, display)
        print(f"{name}: {len(cases)} expressions (seed {seed}), {len(bad)} mismatches")
        for text, shown, reference in bad[:40]:
            print(f"  {text}\n    shown     {shown}\n    reference {reference}")
        status |= bool(bad) and name == "new"
    return int(status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hostile", action="store_true", help="time the hostile set instead")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (default 5)")
    parser.add_argument("--bound-ms", type=float, default=100.0, help="hostile bound in ms")
    parser.add_argument("--server-corpus", action="store_true",
                        help="CPU cost over the server benchmark's corpus")
    parser.add_argument("--budget", action="store_true", help="the budget's calibration table")
    parser.add_argument("--differential", type=int, metavar="N",
                        help="check N random expressions against mpmath at 1,000 bits")
    parser.add_argument("--seed", type=int, default=1, help="seed for --differential")
    parser.add_argument("--against", metavar="PATH",
                        help="another calculator module to run side by side ('old')")
    args = parser.parse_args(argv)
    modules: dict[str, Evaluate] = {}
    if args.against:
        modules["old"] = load_module(args.against).evaluate
    modules["new"] = calculator.evaluate
    # Which app.calculator runs as "new": compiled by scripts/build_native.py, or pure Python
    # (CALCSERVE_PURE_CALCULATOR=1 chooses it).
    print(f"new: app.calculator, {calculator.IMPLEMENTATION}")
    if args.differential:
        return differential(args.differential, args.seed, modules)
    if args.budget:
        budget(args.runs)
        return 0
    if args.server_corpus:
        corpus_cost(modules, args.runs)
        return 0
    if args.hostile:
        return hostile(modules, args.runs, args.bound_ms)
    throughput(modules, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
