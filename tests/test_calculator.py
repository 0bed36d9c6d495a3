"""Table tests for app.calculator: values, display, precedence, functions, errors, hostile input.

Timing is not asserted here (see scripts/bench_calculator.py --hostile for the 100 ms bound);
the hostile table asserts what each input evaluates to or which error it raises.
"""

from __future__ import annotations

import math
import pickle

import pytest

from app.calculator import (
    FUNCTIONS,
    MAX_DEPTH,
    MAX_EXACT_BITS,
    MAX_EXACT_FACTORIAL,
    MAX_EXPRESSION_LENGTH,
    CalcDomainError,
    CalcError,
    CalcSyntaxError,
    DivisionByZero,
    LimitError,
    Result,
    UnknownNameError,
    evaluate,
    parse,
    unparse,
)

SQRT2 = "1.41421356237309504880168872420969807857"  # 40 significant digits, trailing 0 trimmed
PI = "3.141592653589793238462643383279502884197"


def check(expr: str, display: str, exact: bool, fraction: str | None = None) -> None:
    result = evaluate(expr)
    assert (result.display, result.exact, result.fraction) == (display, exact, fraction), expr


# ---------------------------------------------------------------------------------------------
# Exact arithmetic and display

EXACT = [
    ("1+1", "2", None),
    ("0.1+0.2", "0.3", "3/10"),
    ("1/3*3", "1", None),
    ("1/3", "0.3333333333333333333333333333333333333333", "1/3"),
    ("2/3", "0.6666666666666666666666666666666666666667", "2/3"),
    ("-1/3", "-0.3333333333333333333333333333333333333333", "-1/3"),
    ("1/7", "0.1428571428571428571428571428571428571429", "1/7"),
    ("2^100", "1267650600228229401496703205376", None),
    ("2*(3+4)/5", "2.8", "14/5"),
    ("123456789/1000", "123456.789", "123456789/1000"),
    ("12", "12", None),
    ("3.25", "3.25", "13/4"),
    (".5", "0.5", "1/2"),
    ("1e3", "1000", None),
    ("2.5E-4", "0.00025", "1/4000"),
    ("1e-10", "0.0000000001", "1/10000000000"),
    ("1e-11", "1e-11", "1/100000000000"),
    ("3e-12 * 7", "2.1e-11", "21/1000000000000"),
    ("1e40", "1" + "0" * 40, None),  # exact integers are always shown in full
    ("10^40 + 1/2", "1e40", "20000000000000000000000000000000000000001/2"),
    ("2^-100", "7.888609052210118054117285652827862296732e-31",
     "1/1267650600228229401496703205376"),
    ("0", "0", None),
    ("-0", "0", None),
    ("0.000", "0", None),
    ("007", "7", None),
    ("1/1024", "0.0009765625", "1/1024"),
    ("10/4", "2.5", "5/2"),
    ("9.999999999999999999999999999999999999999", "9.999999999999999999999999999999999999999",
     "9999999999999999999999999999999999999999/1000000000000000000000000000000000000000"),
    # Rounded to 40 significant digits, with the carry into a new digit.
    ("9.99999999999999999999999999999999999999999", "10",
     "999999999999999999999999999999999999999999/100000000000000000000000000000000000000000"),
    ("2^64", "18446744073709551616", None),
    ("1234567 * 7654321", "9449772114007", None),
    ("7 // 2", "3", None),
    ("-7 // 2", "-4", None),
    ("-7 % 3", "2", None),
    ("7 % -3", "-2", None),
    ("7.5 % 2", "1.5", "3/2"),
    ("7.5 // 2", "3", None),
    ("(1/3) % (1/4)", "0.08333333333333333333333333333333333333333", "1/12"),
    ("0^0", "1", None),
    ("0^5", "0", None),
    ("(-1)^1001", "-1", None),
    ("(2/3)^-2", "2.25", "9/4"),
    ("10^9999 / 10^9998", "10", None),
]


@pytest.mark.parametrize(("expr", "display", "fraction"), EXACT)
def test_exact_values(expr: str, display: str, fraction: str | None) -> None:
    check(expr, display, True, fraction)


INEXACT = [
    ("sqrt(2)", SQRT2),
    ("2^0.5", SQRT2),
    ("√2", SQRT2),
    ("pi", PI),
    ("π", PI),
    ("e", "2.718281828459045235360287471352662497757"),
    ("tau", "6.283185307179586476925286766559005768394"),
    ("sin(1)", "0.8414709848078965066525023216302989996226"),
    ("exp(50)", "5184705528587072464087.453322933485384827"),  # plain below 1e40
    ("exp(100)", "2.688117141816135448412625551580013587361e43"),
    ("3^2000000", "3.231761663598316523394443550638606592472e954242"),
    ("10^110000", "1e110000"),  # 110,001 digits: beyond the exact limit, approximated
    ("1e999999999", "1e999999999"),
    ("1e-999999999", "1e-999999999"),
    ("10^10^10", "1e10000000000"),
    ("(10^10000)^10000", "1e100000000"),
    ("99999999!", "1.617203794921462386338773185612804043292e756570548"),
    ("exp(10^6)", "3.033215396802087545086402141418114327084e434294"),
    ("sin(pi)", "0"),  # cancellation noise below the working precision is 0
    ("cos(pi/2)", "0"),
    ("sqrt(2)^2 - 2", "0"),
    ("sqrt(2)^2", "2"),
    ("-sqrt(2)", "-" + SQRT2),
    ("1/sqrt(2)^20", "0.0009765625"),
    ("sin(pi*1e-70)", "3.141592653589793238462643383279502884197e-70"),
    ("(1 + 10^-500)^(10^499)", "1.105170918075647624811707826490246668225"),
]


@pytest.mark.parametrize(("expr", "display"), INEXACT)
def test_inexact_values(expr: str, display: str) -> None:
    check(expr, display, False, None)


# Complex results (MPC): a real function with no real answer, the constant i, 2i literals.
# Irrational parts are mpmath's values at 1,000 bits rounded to 40 digits.
COMPLEX = [
    ("sqrt(-4)", "2i"),
    ("sqrt(-1)", "i"),
    ("sqrt(-2)", SQRT2 + "i"),
    ("ln(-1)", PI + "i"),
    ("ln(-2)", "0.6931471805599453094172321214581765680755+" + PI + "i"),
    ("log(-100)", "2+1.36437635384184134748578362543135577021i"),
    ("i", "i"),
    ("-i", "-i"),
    ("I", "i"),
    ("2i", "2i"),
    ("2.5i", "2.5i"),
    ("1+i", "1+i"),
    ("(1+2i)*(3-i)", "5+5i"),
    ("(1+2i)/(3-i)", "0.1+0.7i"),
    ("1/i", "-i"),
    ("(-1)^0.5", "i"),
    ("(-2)^pi", "-7.966178303885685738232708446235996294462"
                "-3.797398698989756365830630870107086269971i"),
    ("sqrt(i)", "0.7071067811865475244008443621048490392848"
                "+0.7071067811865475244008443621048490392848i"),
    ("exp(i*pi/2)", "i"),
    ("2^i", "0.7692389013639721265783299936612707014409"
            "+0.6389612763136348011500329114647017842572i"),
    ("abs(3+4i)", "5"),
    ("sin(i)", "1.175201193643801456882381850595600815156i"),
    ("1e-20i + 1", "1+1e-20i"),
]
# Complex arithmetic that lands on the real axis comes back as a real.
COMPLEX_TO_REAL = [
    ("i^2", "-1"),
    ("i*i*i*i", "1"),
    ("e^(i*pi)", "-1"),
    ("e^(i*pi) + 1", "0"),
    ("sqrt(-2)^2", "-2"),
    ("(1+i)*(1-i)", "2"),
    ("cbrt(-8)", "-2"),  # the real cube root, not the principal complex one
    ("(-8)^(1/3)", "-2"),
]


@pytest.mark.parametrize(("expr", "display"), COMPLEX + COMPLEX_TO_REAL)
def test_complex_values(expr: str, display: str) -> None:
    result = evaluate(expr)
    assert (result.display, result.fraction) == (display, None), expr
    assert result.exact is (expr in ("cbrt(-8)", "(-8)^(1/3)")), expr


# Degree literals: exact wherever the value is rational.
DEGREES = [
    ("sin(30°)", "0.5", True, "1/2"),
    ("cos(60°)", "0.5", True, "1/2"),
    ("sin(-30°)", "-0.5", True, "-1/2"),
    ("sin(390°)", "0.5", True, "1/2"),
    ("sin(90°) + cos(180°)", "0", True, None),
    ("cos(0°)", "1", True, None),
    ("tan(45°)", "1", True, None),
    ("tan(-45°)", "-1", True, None),
    ("tan(135°)", "-1", True, None),
    ("sin(30.0°)", "0.5", True, "1/2"),
    ("sin((20+10)°)", "0.5", True, "1/2"),
    ("sin(2*15°)", "0.5", True, "1/2"),
    ("30° / 1°", "30", True, None),
    ("sin(45°)", "0.7071067811865475244008443621048490392848", False, None),
    ("cos(30°)", "0.8660254037844386467637231707529361834714", False, None),
    ("sin(1.5°)", "0.02617694830787315261061168555411266379339", False, None),
    ("180°", PI, False, None),
    ("sqrt(180°)", "1.772453850905516027298167483341145182798", False, None),
    ("sin(pi°)", "0.05480366514878953088774871353983325406563", False, None),
]


@pytest.mark.parametrize(("expr", "display", "exact", "fraction"), DEGREES)
def test_degrees(expr: str, display: str, exact: bool, fraction: str | None) -> None:
    check(expr, display, exact, fraction)


def test_result_json_shapes() -> None:
    assert evaluate("1/3").to_json() == {
        "expr": "1/3",
        "result": "0.3333333333333333333333333333333333333333",
        "exact": True,
        "fraction": "1/3",
    }
    assert evaluate(" 2 + 2 ").to_json() == {
        "expr": " 2 + 2 ",
        "result": "4",
        "exact": True,
        "fraction": None,
    }
    result = evaluate("pi")
    assert isinstance(result, Result)
    assert result.to_json()["exact"] is False
    with pytest.raises(AttributeError):
        result.display = "3"  # type: ignore[misc]


def test_exact_integer_up_to_the_limit_is_shown_in_full() -> None:
    result = evaluate("10^9999")
    assert result.exact
    assert result.display == "1" + "0" * 9999
    result = evaluate("10^109999")  # 110,000 digits: the largest power of ten kept exact
    assert result.exact and result.display == "1" + "0" * 109_999
    result = evaluate(f"2^{MAX_EXACT_BITS - 1}")  # MAX_EXACT_BITS bits
    assert result.exact and len(result.display) == 110_000
    assert not evaluate(f"2^{MAX_EXACT_BITS}").exact
    assert evaluate("9" * 5000).display == "9" * 5000  # beyond CPython's 4,300-digit str limit
    assert evaluate("7^123456").exact  # 104,332 digits


def test_exact_factorial_up_to_the_limit() -> None:
    result = evaluate("25000!")
    assert result.exact and len(result.display) == 99_094
    assert _matches(result.display, math.factorial(25000))
    assert result.display.endswith("0" * 6249) and result.display[-6250] != "0"
    assert evaluate(f"{MAX_EXACT_FACTORIAL}!").exact
    assert not evaluate(f"{MAX_EXACT_FACTORIAL + 1}!").exact


# ---------------------------------------------------------------------------------------------
# Precedence and associativity

PRECEDENCE = [
    ("-2^2", "-4"),
    ("2^-1", "0.5"),
    ("2^3^2", "512"),
    ("(2^3)^2", "64"),
    ("2**3**2", "512"),
    ("-2**2", "-4"),
    ("(-2)^2", "4"),
    ("2^-1^2", "0.5"),  # 2^(-(1^2))
    ("1+2*3", "7"),
    ("(1+2)*3", "9"),
    ("10-4-3", "3"),
    ("2*3^2", "18"),
    ("100/10/5", "2"),
    ("2^2*3", "12"),
    ("-3!", "-6"),
    ("3!^2", "36"),
    ("2^3!", "64"),
    ("3!!", "720"),
    ("2*-3", "-6"),
    ("2--3", "5"),
    ("2-+3", "-1"),
    ("--2", "2"),
    ("-(2+3)*2", "-10"),
    ("7 - 10 // 3 * 2", "1"),
    ("2 + 7 % 4 * 2", "8"),
    ("3 × 4 ÷ 6 − 1", "1"),
    ("√16 + 1", "5"),
    ("√4!", "4.898979485566356196394568149411782783932"),  # √(4!)
    ("√2^2", "2"),  # (√2)^2
    ("2^0.5 * 2^0.5", "2"),
]


@pytest.mark.parametrize(("expr", "display"), PRECEDENCE)
def test_precedence(expr: str, display: str) -> None:
    assert evaluate(expr).display == display


# ---------------------------------------------------------------------------------------------
# Every function

FUNCTION_CASES = [
    ("sqrt(9/4)", "1.5", True),
    ("sqrt(0)", "0", True),
    ("sqrt(3)", "1.732050807568877293527446341505872366943", False),
    ("cbrt(27)", "3", True),
    ("cbrt(-8/27)", "-0.6666666666666666666666666666666666666667", True),
    ("cbrt(2)", "1.25992104989487316476721060727822835057", False),
    ("abs(-3.5)", "3.5", True),
    ("abs(-pi)", PI, False),
    ("exp(0)", "1", True),
    ("exp(1)", "2.718281828459045235360287471352662497757", False),
    ("ln(1)", "0", True),
    ("ln(e)", "1", False),
    ("ln(2)", "0.6931471805599453094172321214581765680755", False),
    ("log(1000)", "3", True),
    ("log(8, 2)", "3", True),
    ("log(1/8, 2)", "-3", True),
    ("log(2, 8)", "0.3333333333333333333333333333333333333333", False),
    ("log(7)", "0.8450980400142568307122162585926361934836", False),
    ("log2(1024)", "10", True),
    ("log2(3)", "1.58496250072115618145373894394781650876", False),
    ("log10(0.001)", "-3", True),
    ("log10(2)", "0.3010299956639811952137388947244930267682", False),
    ("sin(0)", "0", True),
    ("sin(pi/6)", "0.5", False),
    ("cos(0)", "1", True),
    ("cos(pi)", "-1", False),
    ("tan(0)", "0", True),
    ("tan(pi/4)", "1", False),
    ("asin(1)", "1.570796326794896619231321691639751442099", False),
    ("asin(0)", "0", True),
    ("acos(1)", "0", True),
    ("acos(0)", "1.570796326794896619231321691639751442099", False),
    ("atan(1)", "0.7853981633974483096156608458198757210493", False),
    ("atan2(1, 1)", "0.7853981633974483096156608458198757210493", False),
    ("atan2(0, 1)", "0", True),
    ("atan2(0, -1)", PI, False),
    ("sinh(1)", "1.175201193643801456882381850595600815156", False),
    ("cosh(0)", "1", True),
    ("cosh(1)", "1.543080634815243778477905620757061682602", False),
    ("tanh(0)", "0", True),
    ("tanh(10000)", "1", False),
    ("floor(-2.5)", "-3", True),
    ("floor(pi)", "3", True),
    ("ceil(2.1)", "3", True),
    ("ceil(-pi)", "-3", True),
    ("trunc(-2.7)", "-2", True),
    ("trunc(e)", "2", True),
    ("round(2.5)", "3", True),
    ("round(-2.5)", "-3", True),
    ("round(2.4)", "2", True),
    ("round(1/3, 2)", "0.33", True),
    ("round(2.675, 2)", "2.68", True),  # exact decimals: half away from zero really happens
    ("round(1234, -2)", "1200", True),
    ("round(pi, 4)", "3.1416", True),
    ("round(-pi, 2)", "-3.14", True),
    ("min(3, 1, 2)", "1", True),
    ("min(pi, 4)", PI, False),
    ("max(1, 2/3)", "1", True),
    ("max(7)", "7", True),
    ("gcd(12, 18)", "6", True),
    ("gcd(12, 18, 8)", "2", True),
    ("gcd(0, 5)", "5", True),
    ("lcm(4, 6)", "12", True),
    ("lcm(4, 6, 10)", "60", True),
    ("hypot(3, 4)", "5", True),
    ("hypot(1, 1)", SQRT2, False),
    ("hypot(2, 3, 6)", "7", True),
    ("factorial(5)", "120", True),
    ("factorial(0)", "1", True),
    ("25!", "15511210043330985984000000", True),
    ("8^(1/3)", "2", True),
    ("(-8)^(1/3)", "-2", True),
    ("(9/4)^(3/2)", "3.375", True),
    ("(-2)^(1/3)", "-1.25992104989487316476721060727822835057", False),
    ("SQRT(4)", "2", True),  # names are case-insensitive
    ("Pi", PI, False),
]


@pytest.mark.parametrize(("expr", "display", "exact"), FUNCTION_CASES)
def test_functions(expr: str, display: str, exact: bool) -> None:
    result = evaluate(expr)
    assert (result.display, result.exact) == (display, exact), expr


def test_every_function_is_covered() -> None:
    covered = {name for name in FUNCTIONS if any(e.lower().startswith(name + "(") or
                                                  f" {name}(" in e for e, _, _ in FUNCTION_CASES)}
    covered |= {"factorial"}
    assert covered == set(FUNCTIONS)


# ---------------------------------------------------------------------------------------------
# Errors: kind, position, length


ERRORS: list[tuple[str, type[CalcError], int, int]] = [
    # syntax
    ("", CalcSyntaxError, 0, 1),
    ("   ", CalcSyntaxError, 3, 1),
    ("1+", CalcSyntaxError, 2, 1),
    ("(1+2", CalcSyntaxError, 4, 1),
    ("1+2)", CalcSyntaxError, 3, 1),
    ("()", CalcSyntaxError, 0, 2),
    ("1 $ 2", CalcSyntaxError, 2, 1),
    ("*3", CalcSyntaxError, 0, 1),
    ("1,2", CalcSyntaxError, 1, 1),
    ("(1,2)", CalcSyntaxError, 2, 1),
    ("2pi", CalcSyntaxError, 1, 1),  # implicit multiplication: the gap before 'pi'
    ("3(4+5)", CalcSyntaxError, 1, 1),
    ("(1)(2)", CalcSyntaxError, 3, 1),
    ("2 3", CalcSyntaxError, 1, 1),  # the gap, spaces included
    ("2   sqrt(4)", CalcSyntaxError, 1, 3),
    ("1.2.3", CalcSyntaxError, 3, 1),
    ("sin", CalcSyntaxError, 0, 3),
    ("sin 2", CalcSyntaxError, 0, 3),
    ("pi(2)", CalcSyntaxError, 0, 3),
    ("sin(1, 2)", CalcSyntaxError, 0, 9),
    ("atan2(1)", CalcSyntaxError, 0, 8),
    ("sqrt()", CalcSyntaxError, 0, 6),
    ("max(1,", CalcSyntaxError, 6, 1),
    ("sin(2", CalcSyntaxError, 5, 1),
    ("2^", CalcSyntaxError, 2, 1),
    ("1 ! 2", CalcSyntaxError, 3, 1),
    ("1+²", CalcSyntaxError, 2, 1),  # "²".isdigit() is True, but it is not a number
    ("1+٣", CalcSyntaxError, 2, 1),  # nor is an Arabic-Indic digit (alone or after an operator)
    # unknown names
    ("sqr(2)", UnknownNameError, 0, 3),
    ("1 + foo", UnknownNameError, 4, 3),
    ("x", UnknownNameError, 0, 1),
    # domain
    ("ln(0)", CalcDomainError, 3, 1),
    ("log(0, 2)", CalcDomainError, 4, 1),
    ("log(8, 1)", CalcDomainError, 7, 1),
    ("log(8, -2)", CalcDomainError, 7, 2),
    ("log(8, pi/pi)", CalcDomainError, 7, 5),  # an inexact 1 (was a ZeroDivisionError)
    ("asin(2)", CalcDomainError, 5, 1),
    ("acos(-1.5)", CalcDomainError, 5, 4),
    ("(-1)!", CalcDomainError, 0, 5),
    ("2.5!", CalcDomainError, 0, 4),
    ("factorial(pi)", CalcDomainError, 10, 2),
    ("gcd(2.5, 5)", CalcDomainError, 4, 3),
    ("lcm(4, pi)", CalcDomainError, 7, 2),
    ("round(2, 0.5)", CalcDomainError, 9, 3),
    ("tan(pi/2)", CalcDomainError, 4, 4),
    ("tan(90°)", CalcDomainError, 4, 3),
    # complex values where only real ones make sense
    ("floor(2i)", CalcDomainError, 6, 2),
    ("5 % 2i", CalcDomainError, 0, 6),
    ("7 // (1+i)", CalcDomainError, 0, 10),
    ("max(1, i)", CalcDomainError, 0, 9),
    ("(1+i)!", CalcDomainError, 0, 6),
    ("round(i)", CalcDomainError, 6, 1),
    ("hypot(3, 4i)", CalcDomainError, 9, 2),
    ("log(8, i)", CalcDomainError, 7, 1),
    # division by zero
    ("1/0", DivisionByZero, 2, 1),
    ("1 / (2 - 2)", DivisionByZero, 4, 7),
    ("5 // 0", DivisionByZero, 5, 1),
    ("5 % 0", DivisionByZero, 4, 1),
    ("0^-1", DivisionByZero, 0, 4),
    ("1 + 0^-2", DivisionByZero, 4, 4),
    ("pi/0", DivisionByZero, 3, 1),
    # limits
    ("9^9^9^9", LimitError, 0, 7),
    ("factorial(10^100)", LimitError, 10, 6),
    ("(10^100)!", LimitError, 0, 9),
    ("1e99999999999999999999", LimitError, 0, 22),
    ("exp(10^100)", LimitError, 0, 11),
    ("exp(-10^100)", LimitError, 0, 12),
    ("sin(10^10000)", LimitError, 4, 8),
    ("2^-(10^20)", LimitError, 0, 10),
    ("1e999999999 % 7", LimitError, 0, 15),
]


@pytest.mark.parametrize(("expr", "cls", "position", "length"), ERRORS)
def test_errors(expr: str, cls: type[CalcError], position: int, length: int) -> None:
    with pytest.raises(CalcError) as info:
        evaluate(expr)
    err = info.value
    assert type(err) is cls, (expr, err)
    assert (err.position, err.length) == (position, length), (expr, err)
    assert err.kind == cls.kind
    assert err.message
    assert err.to_json() == {
        "kind": cls.kind,
        "message": err.message,
        "position": position,
        "length": length,
    }


def test_error_kinds() -> None:
    assert [c.kind for c in (CalcSyntaxError, UnknownNameError, CalcDomainError,
                             DivisionByZero, LimitError)] == [
        "syntax", "unknown_name", "domain", "division_by_zero", "limit"]


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'sqrt'"):
        evaluate("sqr(2)")
    with pytest.raises(UnknownNameError, match="did you mean 'sin'"):
        evaluate("sinn(1)")
    with pytest.raises(UnknownNameError, match="did you mean 'pi'"):
        evaluate("2 * pie")
    with pytest.raises(UnknownNameError) as info:
        evaluate("zzzzqqq")
    assert "did you mean" not in info.value.message


def test_implicit_multiplication_suggests_star() -> None:
    with pytest.raises(CalcSyntaxError, match=r"did you mean '2\*pi'"):
        evaluate("2pi")
    with pytest.raises(CalcSyntaxError, match=r"'3\*\('"):
        evaluate("3(4+5)")


# ---------------------------------------------------------------------------------------------
# Bounds and hostile input (results and error kinds; timing lives in the benchmark script)


def test_length_limit() -> None:
    evaluate("1" + "+1" * ((MAX_EXPRESSION_LENGTH - 1) // 2))  # right at the limit: fine
    text = "1+" * MAX_EXPRESSION_LENGTH
    with pytest.raises(LimitError) as info:
        evaluate(text)
    assert info.value.position == MAX_EXPRESSION_LENGTH
    assert info.value.length == len(text) - MAX_EXPRESSION_LENGTH


def test_depth_limit_is_exact() -> None:
    ok = "(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH
    assert evaluate(ok).display == "1"
    assert evaluate("-" * MAX_DEPTH + "1").display == "1"
    too_deep = "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(LimitError) as info:
        evaluate(too_deep)
    assert info.value.position == MAX_DEPTH
    with pytest.raises(LimitError):
        evaluate("-" * (MAX_DEPTH + 1) + "1")
    with pytest.raises(LimitError):
        evaluate("3" + "!" * (MAX_DEPTH + 1))
    with pytest.raises(LimitError):
        evaluate("2" + "^2" * (MAX_DEPTH + 1))
    with pytest.raises(LimitError):
        evaluate("sqrt(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1))


HOSTILE: list[tuple[str, str | type[CalcError]]] = [
    ("9^9^9^9", LimitError),
    ("10^10^10", "1e10000000000"),
    ("1e999999999", "1e999999999"),
    ("(10^10000)^10000", "1e100000000"),
    ("99999999!", "1.617203794921462386338773185612804043292e756570548"),
    ("factorial(10^100)", LimitError),
    ("(" * 4999 + "1" + ")" * 4999, LimitError),
    ("(" * MAX_EXPRESSION_LENGTH, LimitError),
    ("-" * (MAX_EXPRESSION_LENGTH - 1) + "1", LimitError),
    ("1/0", DivisionByZero),
    ("0^-1", DivisionByZero),
    ("sqrt(-1)", "i"),
    ("ln(0)", CalcDomainError),
    ("sin(10^10000)", LimitError),
    ("sin(10^299 + 1/3)", "-0.4519647257674536177509561373608294395888"),
    ("cos(2^999)", "-0.996806419922873862567018005908009087881"),
    ("exp(10^6)", "3.033215396802087545086402141418114327084e434294"),
    ("sinh(10^20)", LimitError),
    ("1e-999999999", "1e-999999999"),
    ("1e-999999999 / 3", "3.333333333333333333333333333333333333333e-1000000000"),
    ("1e999999999 % 7", LimitError),
    ("10^9999 % 7", "6"),
    ("gcd(10^9999 - 1, 10^9998 - 1)", "9"),
    ("lcm(10^99999 - 1, 10^99998 - 1, 10^99997 - 7)", LimitError),
    ("round(1/7, 10^9)", "0.1428571428571428571428571428571428571429"),
    ("round(pi, 10^100)", PI),
    ("round(7, -10^100)", "0"),
    ("sqrt(2) + 1/(10^9999 - 1)", SQRT2),
    ("(1+1e-9999)^(10^9999)", "2.718281828459045235360287471352662497757"),
    ("9" * MAX_EXPRESSION_LENGTH, "9" * MAX_EXPRESSION_LENGTH),  # exact since GMP (issue 16)
    ("2^-(10^20)", LimitError),
    ("(3^30000)^-1", "2.30334191180960083757891470079389333391e-14314"),
    ("(1e20)!", LimitError),
    ("4!!!", LimitError),
    ("floor(1e999999999)", "1e999999999"),
    ("3^2000000", "3.231761663598316523394443550638606592472e954242"),
    ("+".join(["3248!"] * 300), LimitError),
    ("+".join(["25000!"] * 300), LimitError),
    ("+".join(["(10^9999-1)/(10^9998+7)"] * 400), LimitError),
    ("+".join(["sin(7)"] * 1400), LimitError),
    ("+".join(["99999999!"] * 1000), LimitError),
    ("+".join(["1"] * 5000), "5000"),
]


@pytest.mark.parametrize(("expr", "expected"), HOSTILE, ids=lambda v: str(v)[:30])
def test_hostile(expr: str, expected: str | type[CalcError]) -> None:
    if isinstance(expected, str):
        assert evaluate(expr).display == expected
    else:
        with pytest.raises(expected):
            evaluate(expr)


def _matches(digits: str, n: int) -> bool:
    """``digits`` is the decimal form of ``n`` (checked without str(n), which CPython refuses
    beyond 4,300 digits): the same length, the same first 30 and last 30 digits."""
    scale = 10 ** (len(digits) - 30)
    head = int(digits[:30])
    return head * scale <= n < (head + 1) * scale and int(digits[-30:]) == n % 10**30


def test_huge_lcm_is_exact() -> None:
    # LimitError before GMP (10,000 digits); 29,993 digits now, within the exact bound.
    a, b, c = 10**9999 - 1, 10**9998 - 1, 10**9997 - 7
    result = evaluate("lcm(10^9999 - 1, 10^9998 - 1, 10^9997 - 7)")
    assert result.exact
    assert _matches(result.display, math.lcm(a, b, c))


def test_huge_floor_division_is_exact() -> None:
    result = evaluate("(10^9999 + 1/3) // 7")  # 10^9999 = 6 (mod 7), so the 1/3 changes nothing
    assert result.exact
    assert len(result.display) == 9999
    assert result.display.startswith("142857142857")
    assert result.display.endswith(str(10**9999 // 7 % 10**12))


@pytest.mark.parametrize(
    "text", ["1/3", "2^100", "sqrt(-4)", "1/0", "sin(", "foo(2)", "10^10^10", "ln(0)"]
)
def test_outcomes_pickle_with_every_field(text: str) -> None:
    # A pool worker sends its outcome back pickled: every field must arrive, compiled or not.
    try:
        outcome: object = evaluate(text)
    except CalcError as error:
        outcome = error
    back = pickle.loads(pickle.dumps(outcome))
    assert type(back) is type(outcome)
    if isinstance(outcome, CalcError):
        assert isinstance(back, CalcError)
        assert back.to_json() == outcome.to_json()
        assert str(back) == str(outcome)
    else:
        assert back == outcome
        assert back.to_json() == outcome.to_json()  # type: ignore[attr-defined]


def test_evaluate_rejects_non_text() -> None:
    with pytest.raises(CalcSyntaxError):
        evaluate(b"1+1")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# parse / unparse

UNPARSE = [
    ("1+2*3", "1 + 2 * 3"),
    ("(1+2)*3", "(1 + 2) * 3"),
    ("-2^2", "-2^2"),
    ("(-2)^2", "(-2)^2"),
    ("2^3^2", "2^3^2"),
    ("(2^3)^2", "(2^3)^2"),
    ("2^-1", "2^-1"),
    ("2**3", "2^3"),
    ("1-(2-3)", "1 - (2 - 3)"),
    ("(1-2)-3", "1 - 2 - 3"),
    ("3!!", "3!!"),
    ("(2^3)!", "(2^3)!"),
    ("√(2)", "sqrt(2)"),
    ("3 × 4 ÷ 6 − 1", "3 * 4 / 6 - 1"),
    ("max(1, 2,3)", "max(1, 2, 3)"),
    ("π", "pi"),
    ("((((7))))", "7"),
    ("2*-3", "2 * -3"),
    ("-(1+2)", "-(1 + 2)"),
    ("1.50e3", "1.50e3"),
    ("30°", "30°"),
    ("sin((1+2)°)", "sin((1 + 2)°)"),
    ("2i*i", "2i * i"),
    ("(2^3)°", "(2^3)°"),
]


@pytest.mark.parametrize(("text", "printed"), UNPARSE)
def test_unparse(text: str, printed: str) -> None:
    assert unparse(parse(text)) == printed
    assert unparse(parse(printed)) == printed  # canonical form is a fixed point
    assert evaluate(printed).display == evaluate(text).display


def test_parse_reports_syntax_errors_without_evaluating() -> None:
    parse("1/0")  # division by zero is an evaluation error, not a parse error
    with pytest.raises(CalcSyntaxError):
        parse("1+")
    with pytest.raises(UnknownNameError):
        parse("foo(1)")
