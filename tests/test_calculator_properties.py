"""Property tests for app.calculator (hypothesis), bounded to run in a few seconds."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.calculator import CalcError, DivisionByZero, evaluate, parse, unparse
from app.calculator.tokens import TOKEN_GRAMMAR, scan, spans, tokenize

SETTINGS = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# An expression strategy that also carries its value, computed independently with Fraction.
# None stands for "division by zero somewhere".
Expr = tuple[str, Fraction | None]


def _literal() -> st.SearchStrategy[Expr]:
    ints = st.integers(min_value=0, max_value=10**6).map(lambda n: (str(n), Fraction(n)))
    decimals = st.tuples(
        st.integers(min_value=0, max_value=10**4), st.integers(min_value=0, max_value=999)
    ).map(lambda t: (f"{t[0]}.{t[1]:03d}", Fraction(t[0]) + Fraction(t[1], 1000)))
    return st.one_of(ints, decimals)


def _combine(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    def binary(t: tuple[Expr, str, Expr]) -> Expr:
        (a, x), op, (b, y) = t
        text = f"({a}){op}({b})"
        if x is None or y is None:
            return text, None
        if op == "+":
            return text, x + y
        if op == "-":
            return text, x - y
        if op == "*":
            return text, x * y
        return (text, None) if y == 0 else (text, x / y)

    def power(t: tuple[Expr, int]) -> Expr:
        (a, x), n = t
        text = f"({a})^{n}" if n >= 0 else f"({a})^({n})"
        if x is None or (x == 0 and n < 0):
            return text, None
        return text, x**n

    def negate(e: Expr) -> Expr:
        return f"-({e[0]})", None if e[1] is None else -e[1]

    return st.one_of(
        st.tuples(children, st.sampled_from("+-*/"), children).map(binary),
        st.tuples(children, st.integers(min_value=-3, max_value=3)).map(power),
        children.map(negate),
    )


EXPRESSIONS = st.recursive(_literal(), _combine, max_leaves=12)


@SETTINGS
@given(EXPRESSIONS)
def test_rational_arithmetic_is_exact(expr: Expr) -> None:
    text, expected = expr
    if expected is None:
        try:
            evaluate(text)
        except DivisionByZero:
            return
        raise AssertionError(f"{text} should divide by zero")
    result = evaluate(text)
    assert result.exact
    if expected.denominator == 1:
        assert result.fraction is None
        assert result.display == str(expected.numerator)
    else:
        assert result.fraction == f"{expected.numerator}/{expected.denominator}"


@SETTINGS
@given(EXPRESSIONS)
def test_unparse_then_evaluate_gives_the_same_result(expr: Expr) -> None:
    text = expr[0]
    printed = unparse(parse(text))
    assert unparse(parse(printed)) == printed
    try:
        expected = evaluate(text)
    except CalcError as err:
        try:
            evaluate(printed)
        except CalcError as again:
            assert again.kind == err.kind
            return
        raise AssertionError(f"{printed!r} evaluated but {text!r} raised {err!r}") from None
    assert evaluate(printed).to_json() | {"expr": text} == expected.to_json()


# Text built from the calculator's own alphabet finds far more interesting inputs than
# arbitrary Unicode; a little arbitrary Unicode is mixed in as well.
ALPHABET = [
    *"0123456789.eE+-*/^%!(), ",
    "//", "**", "×", "÷", "−", "π", "√", "pi", "sqrt", "sin", "log", "max", "factorial",
    "1e999", "10^", "9^9", "round(", "gcd(", "tau", "x", "$", "\u00a0", "\n",
]  # fmt: skip
TEXT = st.one_of(
    st.lists(st.sampled_from(ALPHABET), max_size=30).map("".join),
    st.text(max_size=40),
)


@SETTINGS
@given(TEXT)
def test_any_text_returns_or_raises_calc_error(text: str) -> None:
    try:
        result = evaluate(text)
    except CalcError as err:
        assert err.kind in {"syntax", "unknown_name", "domain", "division_by_zero", "limit"}
        assert 0 <= err.position <= len(text)
        assert err.length >= 1
        assert err.message
        return
    assert result.expr == text
    assert result.display
    assert result.exact or result.fraction is None


@SETTINGS
@given(TEXT)
def test_parse_and_unparse_never_raise_anything_else(text: str) -> None:
    try:
        node = parse(text)
    except CalcError:
        return
    printed = unparse(node)
    reparsed = parse(printed)  # whatever parses must print as something that parses
    assert unparse(reparsed) == printed


# Characters where the grammar's cases meet (digits, points, exponents, i, names, doubled
# operators), whitespace of several kinds, and characters outside ASCII.
_TOKEN_ALPHABET = "0123456789.eEi+-*/^%,!()_aZx \t\n\u2003\u00a0π×÷−√°²é"


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.text(alphabet=_TOKEN_ALPHABET, max_size=16), st.text(max_size=12)))
def test_tokens_and_their_spans_follow_the_token_grammar(text: str) -> None:
    # The scanner (what compiled code runs) against the grammar (what pure Python runs), and
    # whichever of the two this process's tokenize() and spans() are.
    expected = TOKEN_GRAMMAR.findall(text)
    starts: list[int] = []
    assert scan(text, starts) == expected
    assert tokenize(text) == expected
    expected_spans = [m.span() for m in TOKEN_GRAMMAR.finditer(text)]
    assert [(s, s + len(t)) for s, t in zip(starts, expected, strict=True)] == expected_spans
    assert spans(text, len(expected)) == expected_spans
    assert spans(text, 2) == expected_spans[:2]
