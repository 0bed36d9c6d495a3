"""Property-based fuzzing of the pure calculator, app/calculator/.

Invariants:
- evaluate() returns a Result or raises CalcError, never anything else (no RecursionError,
  OverflowError, MemoryError, ValueError from int(), ...);
- errors name a known kind and point inside the text (0 <= position <= len, length >= 1);
- a result echoes its input and its JSON carries the display string;
- an exact integer result evaluates back to itself (when it fits the input limit).

Bounded here (a few seconds); scripts/fuzz.py runs the same property for minutes.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.calculator import MAX_EXPRESSION_LENGTH, CalcError, evaluate
from tests.test_fuzz import FUZZ_SETTINGS

ERROR_KINDS = {"syntax", "unknown_name", "domain", "division_by_zero", "limit"}


def check_calculator(text: str) -> None:
    try:
        result = evaluate(text)
    except CalcError as err:
        assert err.kind in ERROR_KINDS, err.kind
        assert 0 <= err.position <= len(text), (err.position, len(text))
        assert err.length >= 1
        assert set(err.to_json()) >= {"kind", "message", "position", "length"}
        return
    assert result.expr == text
    assert isinstance(result.display, str) and result.display
    payload = result.to_json()
    assert payload["result"] == result.display
    # Exact results reach 110,000 digits, past the 10,000-character input limit: the round
    # trip holds for every display that is itself a valid input.
    if (
        result.exact
        and result.fraction is None
        and result.display.lstrip("-").isdigit()
        and len(result.display) <= MAX_EXPRESSION_LENGTH
    ):
        again = evaluate(result.display)
        assert again.display == result.display, (text, result.display, again.display)


# --------------------------------------------------------------------------------------------
# Calculator inputs: token soup biased towards the grammar, plus arbitrary text
# --------------------------------------------------------------------------------------------

TOKENS = ["1", "2", "0", "9", "10", "0.5", ".5", "1e3", "1e", "3.", "+", "-", "*", "/", "^", "**",
          "%", "!", "(", ")", " ", ",", "sqrt", "sin", "cos", "tan", "log", "ln", "exp", "pi",
          "e", "abs", "factorial", "sqr", "_", "π", "√", "×", "÷", "−", "\t", "\x00", "9" * 30]
calc_text = st.lists(st.sampled_from(TOKENS), max_size=25).map("".join) | st.text(max_size=40)


@FUZZ_SETTINGS
@given(calc_text)
def test_calculator_only_raises_calc_error(text: str) -> None:
    check_calculator(text)


@FUZZ_SETTINGS
@given(st.integers(-(10**30), 10**30), st.integers(-(10**30), 10**30))
def test_calculator_integer_arithmetic_is_exact(a: int, b: int) -> None:
    assert evaluate(f"({a})+({b})").display == str(a + b)
    assert evaluate(f"({a})*({b})").display == str(a * b)
