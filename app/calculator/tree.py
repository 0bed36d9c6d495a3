"""The syntax tree, how it evaluates, and how it prints back (`unparse`).

A node knows its token span (``start``, ``end``: token indices, end exclusive) so that an error
raised while evaluating it underlines the right characters. Evaluation is one recursive walk:
``node.evaluate(scope)``; the arithmetic raises `Fault` and the node that called it turns it
into a positioned `CalcError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from app.calculator.arithmetic import BINARY, degrees, factorial, negate, power
from app.calculator.cost import Ledger
from app.calculator.errors import CalcError, DivisionByZero, Fault
from app.calculator.functions import CONSTANTS, FUNCTIONS
from app.calculator.numbers import Value

__all__ = [
    "Call",
    "Chain",
    "Constant",
    "Degree",
    "Factorial",
    "Node",
    "Number",
    "Power",
    "Scope",
    "Unary",
    "unparse",
]


class Scope:
    """What evaluation needs besides the tree: the ledger, and the text positions of tokens."""

    __slots__ = ("ledger", "locate")

    def __init__(self, ledger: Ledger, locate: Callable[[int, int], tuple[int, int]]) -> None:
        self.ledger = ledger
        self.locate = locate  # token span -> (character position, length)

    def error(self, fault: Fault, node: Node) -> CalcError:
        position, length = self.locate(node.start, node.end)
        return fault.cls(fault.message, position, length)


class Node:
    """A node of the syntax tree; ``start``/``end`` are token indices (end exclusive)."""

    __slots__ = ("end", "start")
    start: int
    end: int

    def evaluate(self, scope: Scope) -> Value:  # pragma: no cover - abstract
        raise NotImplementedError


class Number(Node):
    """A numeric literal; ``text`` is the literal as written, ``value`` what it is worth."""

    __slots__ = ("text", "value")

    def __init__(self, value: Value, text: str, index: int) -> None:
        self.value = value
        self.text = text
        self.start = index
        self.end = index + 1

    def evaluate(self, scope: Scope) -> Value:
        return self.value


class Constant(Node):
    """A named constant (``pi``, ``e``, ``tau``, ``i``); ``text`` is the name as written."""

    __slots__ = ("name", "text", "value")

    def __init__(self, name: str, text: str, index: int) -> None:
        self.name = name
        self.text = text
        self.value = CONSTANTS[name]
        self.start = index
        self.end = index + 1

    def evaluate(self, scope: Scope) -> Value:
        return self.value


class Call(Node):
    """A function call ``name(args...)`` (``√x`` parses as ``sqrt(x)``)."""

    __slots__ = ("args", "name", "text")

    def __init__(self, name: str, text: str, args: list[Node], start: int, end: int) -> None:
        self.name = name
        self.text = text
        self.args = args
        self.start = start
        self.end = end

    def evaluate(self, scope: Scope) -> Value:
        values = [arg.evaluate(scope) for arg in self.args]
        try:
            return FUNCTIONS[self.name].impl(values, scope.ledger)
        except Fault as fault:
            where: Node = self if fault.arg is None else self.args[fault.arg]
            raise scope.error(fault, where) from None


class Unary(Node):
    """Unary ``-x`` or ``+x``."""

    __slots__ = ("op", "operand")

    def __init__(self, op: str, operand: Node, start: int) -> None:
        self.op = op
        self.operand = operand
        self.start = start
        self.end = operand.end

    def evaluate(self, scope: Scope) -> Value:
        value = self.operand.evaluate(scope)
        return value if self.op == "+" else negate(value)


class Chain(Node):
    """A left-associative run of same-precedence binary operators: ``a + b - c``.

    Flat rather than nested so that ``1+1+...+1`` (thousands of terms) costs no recursion.
    ``ops[i]`` is the canonical operator between ``operands[i]`` and ``operands[i+1]``.
    """

    __slots__ = ("operands", "ops")

    def __init__(self, operands: list[Node], ops: list[str]) -> None:
        self.operands = operands
        self.ops = ops
        self.start = operands[0].start
        self.end = operands[-1].end

    def evaluate(self, scope: Scope) -> Value:
        operands = self.operands
        ledger = scope.ledger
        acc = operands[0].evaluate(scope)
        for i, op in enumerate(self.ops, 1):
            operand = operands[i]
            b = operand.evaluate(scope)
            try:
                acc = BINARY[op](acc, b, ledger)
            except Fault as fault:
                where: Node = operand if fault.cls is DivisionByZero else self.prefix(i)
                raise scope.error(fault, where) from None
        return acc

    def prefix(self, i: int) -> Node:
        """The sub-chain operands[0..i] (for an error span)."""
        return Chain(self.operands[: i + 1], self.ops[:i])


class Power(Node):
    """``base ^ exponent`` (``op`` is the spelling: ``^`` or ``**``)."""

    __slots__ = ("base", "exponent", "op")

    def __init__(self, base: Node, exponent: Node, op: str) -> None:
        self.base = base
        self.exponent = exponent
        self.op = op
        self.start = base.start
        self.end = exponent.end

    def evaluate(self, scope: Scope) -> Value:
        a = self.base.evaluate(scope)
        b = self.exponent.evaluate(scope)
        try:
            return power(a, b, scope.ledger)
        except Fault as fault:
            raise scope.error(fault, self) from None


class Factorial(Node):
    """Postfix ``x!``."""

    __slots__ = ("operand",)

    def __init__(self, operand: Node, index: int) -> None:
        self.operand = operand
        self.start = operand.start
        self.end = index + 1

    def evaluate(self, scope: Scope) -> Value:
        value = self.operand.evaluate(scope)
        try:
            return factorial(value, scope.ledger)
        except Fault as fault:
            raise scope.error(fault, self) from None


class Degree(Node):
    """Postfix ``x°``: x degrees, as radians (exact for exact x, so ``sin(30°)`` is 1/2)."""

    __slots__ = ("operand",)

    def __init__(self, operand: Node, index: int) -> None:
        self.operand = operand
        self.start = operand.start
        self.end = index + 1

    def evaluate(self, scope: Scope) -> Value:
        value = self.operand.evaluate(scope)
        try:
            return degrees(value, scope.ledger)
        except Fault as fault:
            raise scope.error(fault, self) from None


# --------------------------------------------------------------------------------------------
# Printing a tree back
#
# Strategy: precedence levels for parenthesising: a child is wrapped when it binds more loosely
# than its position requires. Chains print iteratively, so the long direction costs no recursion;
# depth is bounded by MAX_DEPTH like the parser's.

_LEVEL_SUM: Final = 1
_LEVEL_PRODUCT: Final = 2
_LEVEL_UNARY: Final = 3
_LEVEL_POWER: Final = 4
_LEVEL_POSTFIX: Final = 5
_LEVEL_ATOM: Final = 6


def _level(node: Node) -> int:
    if isinstance(node, Chain):
        return _LEVEL_SUM if node.ops[0] in ("+", "-") else _LEVEL_PRODUCT
    if isinstance(node, Unary):
        return _LEVEL_UNARY
    if isinstance(node, Power):
        return _LEVEL_POWER
    if isinstance(node, Factorial | Degree):
        return _LEVEL_POSTFIX
    return _LEVEL_ATOM


def _wrap(node: Node, min_level: int) -> str:
    text = unparse(node)
    return f"({text})" if _level(node) < min_level else text


def unparse(node: Node) -> str:
    """Print a syntax tree back as text; ``parse(unparse(parse(t)))`` evaluates like ``t``.

    The output is canonical: ASCII operators (and ``°``), spaces around ``+ - * / // %``, only
    the parentheses precedence needs (``(1 + 2) * 3``, ``-2^2``, ``(-2)^2``).
    """
    if isinstance(node, Number):
        return node.text
    if isinstance(node, Constant):
        return node.name
    if isinstance(node, Call):
        return f"{node.name}({', '.join(unparse(a) for a in node.args)})"
    if isinstance(node, Unary):
        return node.op + _wrap(node.operand, _LEVEL_UNARY)
    if isinstance(node, Power):
        # The base must bind tighter than ^; the exponent may be another power or a signed term.
        return f"{_wrap(node.base, _LEVEL_POSTFIX)}^{_wrap(node.exponent, _LEVEL_UNARY)}"
    if isinstance(node, Factorial):
        return _wrap(node.operand, _LEVEL_POSTFIX) + "!"
    if isinstance(node, Degree):
        return _wrap(node.operand, _LEVEL_POSTFIX) + "°"
    if isinstance(node, Chain):
        level = _level(node)
        parts = [_wrap(node.operands[0], level)]
        for op, operand in zip(node.ops, node.operands[1:], strict=True):
            parts.append(f" {op} ")
            parts.append(_wrap(operand, level + 1))
        return "".join(parts)
    raise TypeError(f"not a calculator node: {node!r}")
