"""The syntax tree that ``parse()`` returns, the actions that build it, and `unparse`.

Nodes are plain data: ``start``/``end`` are token indices (end exclusive). Evaluation does not
walk them: `app.calculator.evaluator.Evaluator` computes values as the parser goes.
"""

from __future__ import annotations

from typing import Final

from app.calculator.cost import WORK_BUDGET
from app.calculator.errors import Fault
from app.calculator.numbers import Value
from app.calculator.parser import Parser
from app.calculator.tokens import parse_number

__all__ = [
    "Call",
    "Chain",
    "Constant",
    "Degree",
    "Factorial",
    "Node",
    "Number",
    "Power",
    "TreeBuilder",
    "Unary",
    "unparse",
]


class Node:
    """A node of the syntax tree; ``start``/``end`` are token indices (end exclusive)."""

    __slots__ = ("end", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end


class Number(Node):
    """A numeric literal; ``text`` is the literal as written, ``value`` what it is worth."""

    __slots__ = ("text", "value")

    def __init__(self, value: Value, text: str, index: int) -> None:
        super().__init__(index, index + 1)
        self.value = value
        self.text = text


class Constant(Node):
    """A named constant (``pi``, ``e``, ``tau``, ``i``); ``text`` is the name as written."""

    __slots__ = ("name", "text")

    def __init__(self, name: str, text: str, index: int) -> None:
        super().__init__(index, index + 1)
        self.name = name
        self.text = text


class Call(Node):
    """A function call ``name(args...)`` (``√x`` parses as ``sqrt(x)``)."""

    __slots__ = ("args", "name", "text")

    def __init__(self, name: str, text: str, args: list[Node], start: int, end: int) -> None:
        super().__init__(start, end)
        self.name = name
        self.text = text
        self.args = args


class Unary(Node):
    """Unary ``-x`` or ``+x``."""

    __slots__ = ("op", "operand")

    def __init__(self, op: str, operand: Node, start: int) -> None:
        super().__init__(start, operand.end)
        self.op = op
        self.operand = operand


class Chain(Node):
    """A left-associative run of same-precedence binary operators: ``a + b - c``.

    Flat rather than nested so that ``1+1+...+1`` (thousands of terms) costs no recursion.
    ``ops[i]`` is the canonical operator between ``operands[i]`` and ``operands[i+1]``.
    """

    __slots__ = ("operands", "ops")

    def __init__(self, operands: list[Node], ops: list[str]) -> None:
        super().__init__(operands[0].start, operands[-1].end)
        self.operands = operands
        self.ops = ops


class Power(Node):
    """``base ^ exponent`` (``op`` is the spelling: ``^`` or ``**``)."""

    __slots__ = ("base", "exponent", "op")

    def __init__(self, base: Node, exponent: Node, op: str) -> None:
        super().__init__(base.start, exponent.end)
        self.base = base
        self.exponent = exponent
        self.op = op


class Factorial(Node):
    """Postfix ``x!``."""

    __slots__ = ("operand",)

    def __init__(self, operand: Node, end: int) -> None:
        super().__init__(operand.start, end)
        self.operand = operand


class Degree(Node):
    """Postfix ``x°``: x degrees."""

    __slots__ = ("operand",)

    def __init__(self, operand: Node, end: int) -> None:
        super().__init__(operand.start, end)
        self.operand = operand


class TreeBuilder(Parser[Node]):
    """Parses one text into its syntax tree, for ``parse()``.

    Literals are valued (and checked against the range limits) as in evaluation, and charged to
    the builder's ledger, which has no budget.
    """

    __slots__ = ()

    def __init__(self, text: str, toks: list[str]) -> None:
        super().__init__(text, toks, None, WORK_BUDGET)

    def number(self, tok: str, at: int) -> Node:
        try:
            return Number(parse_number(tok, self), tok, at)
        except Fault as fault:
            raise fault.cls(fault.message, *self.locate(at, at + 1)) from None

    def integer(self, tok: str, at: int) -> Node:
        return self.number(tok, at)

    def constant(self, name: str, tok: str, at: int) -> Node:
        return Constant(name, tok, at)

    def call(
        self, name: str, tok: str, args: list[Node], starts: list[int], ends: list[int],
        start: int, end: int,
    ) -> Node:  # fmt: skip
        return Call(name, tok, args, start, end)

    def unary(self, op: str, operand: Node, start: int) -> Node:
        return Unary(op, operand, start)

    def binary(
        self, op: str, left: Node, right: Node, start: int, right_start: int, end: int,
        extends: bool,
    ) -> Node:  # fmt: skip
        if extends:
            assert isinstance(left, Chain)
            left.operands.append(right)
            left.ops.append(op)
            left.end = right.end
            return left
        return Chain([left, right], [op])

    def power(self, op: str, base: Node, exponent: Node, start: int, end: int) -> Node:
        return Power(base, exponent, op)

    def postfix(self, op: str, operand: Node, start: int, end: int) -> Node:
        return Factorial(operand, end) if op == "!" else Degree(operand, end)

    def group(self, inner: Node, start: int, end: int) -> Node:
        inner.start = start  # a parenthesised operand's span includes its parentheses
        inner.end = end
        return inner


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
