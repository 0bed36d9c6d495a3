"""Benchmark app.calculator.evaluate: throughput on realistic input, and the hostile bound.

    python scripts/bench_calculator.py                 # throughput (evaluations/s, µs each)
    python scripts/bench_calculator.py --hostile       # time every hostile expression; exit 1 if
                                                       # any takes more than --bound-ms (100)
    python scripts/bench_calculator.py --check N       # differential check of the fast path
                                                       # against the tree path on N random inputs
    python scripts/bench_calculator.py --server-corpus # CPU µs per evaluation over the 1,200
                                                       # expressions bench.py POSTs, by class

Throughput: every expression is evaluated from scratch (no caching exists to defeat); each
figure is the median of --runs runs, each run the mean over enough repetitions to last ~0.2 s.
Hostile: each expression is timed --runs times and its *worst* run is compared with the bound, so
a passing run means "even the slowest of N attempts stayed inside the bound".
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import importlib.util
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote_plus

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import calculator
from app.calculator import MAX_EXPRESSION_LENGTH, CalcError, evaluate

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


def _run(text: str) -> str:
    try:
        return evaluate(text).display[:60]
    except CalcError as err:
        return f"{err.kind}: {err.message[:70]}"


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


def throughput(runs: int) -> None:
    def corpus() -> None:
        for text in CORPUS:
            with contextlib.suppress(CalcError):
                evaluate(text)

    print(f"calculator throughput (median of {runs} runs; no caching)")
    for label, fn, per in (
        (f"short   {SHORT!r}", lambda: evaluate(SHORT), 1),
        (f"60-token ({len(SIXTY)} chars)", lambda: evaluate(SIXTY), 1),
        (f"corpus  ({len(CORPUS)} varied expressions)", corpus, len(CORPUS)),
    ):
        samples = [_time_per_call(fn) / per for _ in range(runs)]
        med = statistics.median(samples)
        print(
            f"  {label:45} {med * 1e6:8.2f} µs/eval  {1 / med:10,.0f} evals/s"
            f"  (min {min(samples) * 1e6:.2f}, max {max(samples) * 1e6:.2f})"
        )


def server_corpus() -> list[tuple[str, str]]:
    """(class, expression) for the POST bodies the server benchmark sends: scripts/bench.py's own
    check_corpus() (its candidates, then seeded `EXPR+N` variants), decoded.  The class of a
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


def corpus_cost(runs: int) -> None:
    """Median process-CPU µs per evaluation over the server corpus, overall and by class."""
    rows = server_corpus()
    classes: dict[str, list[str]] = collections.defaultdict(list)
    for cls, expr in rows:
        classes[cls].append(expr)

    def per_eval(exprs: list[str]) -> float:
        samples = []
        for _ in range(runs):
            reps = max(1, 2400 // len(exprs))
            start = time.process_time()
            for _ in range(reps):
                for text in exprs:
                    evaluate(text)
            samples.append((time.process_time() - start) / (reps * len(exprs)))
        return statistics.median(samples) * 1e6

    all_exprs = [expr for _, expr in rows]
    for text in all_exprs:  # warm mpmath's caches
        evaluate(text)
    total = per_eval(all_exprs)
    print(f"server corpus: {len(rows)} expressions, {len(classes)} classes; median of {runs} runs")
    print(f"  all            {total:8.2f} µs/eval (process CPU)")
    costs = {cls: per_eval(exprs) for cls, exprs in classes.items()}
    weight = sum(costs[cls] * len(exprs) for cls, exprs in classes.items())
    for cls in sorted(costs, key=lambda c: -costs[c] * len(classes[c])):
        share = costs[cls] * len(classes[cls]) / weight * 100
        print(f"  {costs[cls]:8.2f} µs  x{len(classes[cls]):3}  {share:5.1f}%  {cls}")


def hostile(runs: int, bound_ms: float) -> int:
    worst_all = 0.0
    failures = []
    print(f"hostile inputs: worst of {runs} runs each, bound {bound_ms:.0f} ms")
    for label, text in _hostile():
        outcome = _run(text)
        times = []
        for _ in range(runs):
            gc.collect()
            start = time.perf_counter()
            _run(text)
            times.append(time.perf_counter() - start)
        worst = max(times) * 1000
        worst_all = max(worst_all, worst)
        flag = "SLOW" if worst > bound_ms else "ok  "
        if worst > bound_ms:
            failures.append(label)
        print(f"  {flag} {worst:8.2f} ms  {label:28} -> {outcome}")
    print(f"slowest: {worst_all:.2f} ms; over the bound: {len(failures)} {failures or ''}")
    return 1 if failures else 0


_ATOMS = ["0", "1", "2", "3", "7", "10", "12", "255", "0.5", ".25", "3.", "1.07", "19.99",
          "1e3", "2.5E-4", "1e-7", "4294967296", "9223372036854775807", "99999999999999999999",
          "pi", "π", "e", "tau", "PI"]
_FUNCS = ["sqrt", "cbrt", "abs", "exp", "ln", "log", "sin", "cos", "tan", "atan", "floor",
          "ceil", "round", "trunc", "min", "max", "gcd", "lcm", "hypot", "factorial", "atan2"]
_OPS = ["+", "-", "*", "/", "//", "%", "^", "**", "×", "÷", "−"]
_NOISE = ["(", ")", ",", "!", "√", "-", "+", " ", "x", "²", "٣", "$", ".", "sqr", "1", "(("]


def _random_expr(rng: random.Random, depth: int = 0) -> str:
    r = rng.random()
    if depth > 4 or r < 0.3:
        atom = rng.choice(_ATOMS)
        return atom + "!" if rng.random() < 0.05 and atom.isdigit() and len(atom) < 3 else atom
    if r < 0.45:
        return rng.choice(["-", "+", "−", "√", ""]) + "(" + _random_expr(rng, depth + 1) + ")"
    if r < 0.6:
        nargs = 2 if rng.random() < 0.3 else 1
        args = ", ".join(_random_expr(rng, depth + 1) for _ in range(nargs))
        return f"{rng.choice(_FUNCS)}({args})"
    left, right = _random_expr(rng, depth + 1), _random_expr(rng, depth + 1)
    return f"{left} {rng.choice(_OPS)} {right}"


def _mutate(rng: random.Random, text: str) -> str:
    """Insert, delete or replace a few characters (to reach the error paths)."""
    chars = list(text)
    for _ in range(rng.randint(1, 3)):
        k = rng.randrange(len(chars) + 1)
        what = rng.random()
        if what < 0.4 or not chars:
            chars.insert(k, rng.choice(_NOISE))
        elif what < 0.7 and k < len(chars):
            del chars[k]
        elif k < len(chars):
            chars[k] = rng.choice(_NOISE)
    return "".join(chars)


def check(count: int, seed: int) -> int:
    """The fast path either hands over (None) or gives exactly the tree path's Result."""
    rng = random.Random(seed)
    fast_hits = mismatches = 0
    for k in range(count):
        text = _random_expr(rng)
        if k % 3 == 0:
            text = _mutate(rng, text)
        toks = calculator._tokens(text)
        fast = calculator._fast_evaluate(text, toks)
        try:
            tree: object = calculator._evaluate_tree(text, toks)
        except CalcError as err:
            tree = err
        if fast is None:
            continue
        fast_hits += 1
        if fast != tree:
            mismatches += 1
            print(f"MISMATCH {text!r}: fast {fast!r} tree {tree!r}")
    print(f"{count} inputs (seed {seed}): fast path answered {fast_hits}, mismatches {mismatches}")
    return 1 if mismatches else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hostile", action="store_true", help="time the hostile set instead")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (default 5)")
    parser.add_argument("--bound-ms", type=float, default=100.0, help="hostile bound in ms")
    parser.add_argument("--check", type=int, metavar="N", help="differential check on N inputs")
    parser.add_argument("--seed", type=int, default=1, help="seed for --check (default 1)")
    parser.add_argument(
        "--server-corpus", action="store_true", help="CPU cost over the server benchmark's corpus"
    )
    args = parser.parse_args(argv)
    if args.check:
        return check(args.check, args.seed)
    if args.server_corpus:
        corpus_cost(args.runs)
        return 0
    if args.hostile:
        return hostile(args.runs, args.bound_ms)
    throughput(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
