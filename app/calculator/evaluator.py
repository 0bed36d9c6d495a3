"""The evaluator: the parser's actions for ``evaluate()``, computing values as it goes.

Strategy: values are computed in the order the parser recognises their parts, which is the
order a tree walk would take (operands left to right, then the operator), without building the
tree. A syntax error still wins over an evaluation error anywhere before it (``1/0 +`` is a
syntax error), as if the whole text had been parsed first: the first `Fault` is kept, with its
position, and the remaining text is only parsed; `evaluate()` raises the fault once the parse has
finished cleanly. ``OverBudget`` is not a fault and leaves at once.
"""

from __future__ import annotations

from typing import Final

from app.calculator.arithmetic import BINARY, degrees, negate, plain_number
from app.calculator.cost import CALL_UNITS, WORK_BUDGET
from app.calculator.errors import CalcError, DivisionByZero, Fault
from app.calculator.functions import CONSTANTS, FUNCTIONS
from app.calculator.numbers import MPZ, Degrees, Value
from app.calculator.parser import Parser
from app.calculator.powers import factorial, power
from app.calculator.tokens import parse_number

__all__ = ["Evaluator"]

# What an action returns once a fault is kept: nothing is computed from it.
_FAILED: Final = None
# Plain integer literals up to this many digits are read without parse_number's checks.
_SHORT_INTEGER: Final = 300
# The integer literals people type most, spelled as they are typed (no leading zeros): a fixed
# table, built once.
_SMALL_INTEGERS: Final = {str(k): MPZ(k) for k in range(1000)}


class Evaluator(Parser[Value]):
    """Parses one text and computes its value as it goes; ``error`` is the first fault,
    positioned (``evaluate()`` raises it once the text has parsed)."""

    __slots__ = ("error",)

    def __init__(
        self, text: str, toks: list[str], budget: int | None, work_budget: int = WORK_BUDGET
    ) -> None:
        # Ledger's and Parser's fields, set here: their two __init__ calls would cost as much
        # as the rest of an evaluation's set-up (measured: 0.2 µs each).
        self.budget = budget
        self.limit = work_budget if budget is None else min(budget, work_budget)
        self.spent = 0
        self.text = text
        self.toks = toks
        self.n = len(toks)
        self.spans = None
        self.error: CalcError | None = None

    def _keep(self, fault: Fault, start: int, end: int) -> None:
        if self.error is None:
            self.error = fault.cls(fault.message, *self.locate(start, end))

    def number(self, tok: str, at: int) -> Value:
        if self.error is not None:
            return _FAILED
        try:
            return parse_number(tok, self)
        except Fault as fault:
            self._keep(fault, at, at + 1)
            return _FAILED

    def integer(self, tok: str, at: int) -> Value:
        if self.error is None:
            small = _SMALL_INTEGERS.get(tok)  # 2, 10, 100: a look-up (36 ns against 134)
            if small is not None:
                return small
            if len(tok) <= _SHORT_INTEGER:
                # Nothing to charge or to check at this size; int() reads ASCII digits faster
                # than mpz() does (134 ns against 166 for six digits, both included).
                return MPZ(int(tok))
        return self.number(tok, at)

    def constant(self, name: str, tok: str, at: int) -> Value:
        return CONSTANTS[name]

    def call(
        self, name: str, tok: str, args: list[Value], starts: list[int], ends: list[int],
        start: int, end: int,
    ) -> Value:  # fmt: skip
        if self.error is not None:
            return _FAILED
        try:
            self.charge(CALL_UNITS)
            spec = FUNCTIONS[name]
            if spec.radians:
                for v in args:
                    if type(v) is Degrees:  # 30° given to sqrt: the number it stands for
                        args = [plain_number(a) for a in args]
                        break
            return spec.impl(args, self)
        except Fault as fault:
            if fault.arg is None:
                self._keep(fault, start, end)
            else:
                self._keep(fault, starts[fault.arg], ends[fault.arg])
            return _FAILED

    def unary(self, op: str, operand: Value, start: int) -> Value:
        if self.error is not None or op == "+":
            return operand
        return negate(operand)

    def binary(
        self, op: str, left: Value, right: Value, start: int, right_start: int, end: int,
        extends: bool,
    ) -> Value:  # fmt: skip
        if self.error is not None:
            return _FAILED
        try:
            return BINARY[op](left, right, self)
        except Fault as fault:
            # A zero divisor is the right operand's fault; anything else the whole run's so far.
            self._keep(fault, right_start if fault.cls is DivisionByZero else start, end)
            return _FAILED

    def power(self, op: str, base: Value, exponent: Value, start: int, end: int) -> Value:
        if self.error is not None:
            return _FAILED
        try:
            return power(base, exponent, self)
        except Fault as fault:
            self._keep(fault, start, end)
            return _FAILED

    def postfix(self, op: str, operand: Value, start: int, end: int) -> Value:
        if self.error is not None:
            return _FAILED
        try:
            if op == "!":
                return factorial(operand, self)
            return degrees(operand, self)
        except Fault as fault:
            self._keep(fault, start, end)
            return _FAILED

    def group(self, inner: Value, start: int, end: int) -> Value:
        return inner
