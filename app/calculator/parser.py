"""The Pratt parser: tokens in, a syntax tree out (or a positioned `CalcError`).

Precedence, high to low: parentheses and calls; postfix ``!`` and ``°``; ``^`` (right
associative, its right operand may carry a sign) and prefix ``√``; unary ``+ -``; ``* / // %``;
``+ -``.

Strategy: Pratt parsing over the token list. Every recursive call goes through `_expr`, which
counts depth explicitly, so nesting beyond MAX_DEPTH is a LimitError long before Python's
recursion limit. Names are resolved while parsing: unknown names and wrong argument counts are
reported before anything is evaluated. Numeric literals are valued here, once, and charged to
the ledger (a 10,000-digit literal is real work).
"""

from __future__ import annotations

import difflib
from typing import Final

from app.calculator.cost import Ledger
from app.calculator.errors import (
    CalcError,
    CalcSyntaxError,
    Fault,
    LimitError,
    UnknownNameError,
)
from app.calculator.functions import CONSTANTS, FUNCTIONS
from app.calculator.tokens import CANON, NAME_START, NUMBER_START, classify, parse_number, spans
from app.calculator.tree import (
    Call,
    Chain,
    Constant,
    Degree,
    Factorial,
    Node,
    Number,
    Power,
    Unary,
)

__all__ = ["MAX_DEPTH", "Parser"]

# 256 levels: Python's own parser allows ~200 nested parentheses; each level costs one Python
# frame in the parser and one in the evaluator, well inside the default recursion limit of 1000.
MAX_DEPTH: Final = 256

_UNARY_BP: Final = 30  # operand of unary +/-: binds ^ and ! but not * /
_POWER_BP: Final = 40  # lbp of ^; its right operand is parsed at 39 (right-associative)
_POSTFIX_BP: Final = 50
# Left binding power of every token that may follow an operand (anything else after an operand
# is an error: usually a missing operator). ")" and "," end an expression.
_LBP: Final = {
    "+": 10, "-": 10, "−": 10,
    "*": 20, "×": 20, "/": 20, "÷": 20, "//": 20, "%": 20,
    "^": _POWER_BP, "**": _POWER_BP,
    "!": _POSTFIX_BP, "°": _POSTFIX_BP,
    ")": 0, ",": 0,
}  # fmt: skip
# Tokens with a meaning in prefix position (numbers and names are recognised by their first
# character). Every other operator there is an error.
_P_OPEN, _P_SIGN, _P_ROOT, _P_PI, _P_BAD = range(5)
_PREFIX: Final = {
    "(": _P_OPEN, "-": _P_SIGN, "+": _P_SIGN, "−": _P_SIGN, "√": _P_ROOT, "π": _P_PI,
    ")": _P_BAD, ",": _P_BAD, "*": _P_BAD, "×": _P_BAD, "/": _P_BAD, "÷": _P_BAD,
    "//": _P_BAD, "%": _P_BAD, "^": _P_BAD, "**": _P_BAD, "!": _P_BAD, "°": _P_BAD,
}  # fmt: skip
_KNOWN_NAMES: Final = sorted([*FUNCTIONS, *CONSTANTS])


class Parser:
    """Parses one text; ``parse()`` returns the tree, ``locate()`` maps token spans to text."""

    __slots__ = ("depth", "ledger", "pos", "spans", "text", "toks")

    def __init__(self, text: str, toks: list[str], ledger: Ledger) -> None:
        self.text = text
        self.toks = toks
        self.ledger = ledger
        self.pos = 0
        self.depth = -1  # the top level is depth 0; MAX_DEPTH nested levels are allowed
        self.spans: list[tuple[int, int]] | None = None

    # -- positions and errors ---------------------------------------------------------------
    def locate(self, start: int, end: int) -> tuple[int, int]:
        """Character position and length of tokens[start:end]."""
        n = len(self.toks)
        if start >= n:
            return len(self.text), 1
        end = min(end, n)
        if self.spans is None or len(self.spans) < end:
            self.spans = spans(self.text, end)  # only errors need positions: scan that far
        first = self.spans[start][0]
        last = self.spans[end - 1][1]
        return first, max(1, last - first)

    def fail(self, cls: type[CalcError], message: str, start: int, end: int) -> CalcError:
        position, length = self.locate(start, end)
        return cls(message, position, length)

    # -- grammar ------------------------------------------------------------------------------
    def parse(self) -> Node:
        if not self.toks:
            raise CalcSyntaxError("empty expression", len(self.text), 1)
        node = self._expr(0)
        if self.pos < len(self.toks):
            raise self._unexpected(self.pos, node)
        return node

    def _unexpected(self, index: int, left: Node | None) -> CalcError:
        tok = self.toks[index]
        kind = classify(tok)
        if left is not None and (kind in ("number", "name") or tok in ("(", "√", "π")):
            # Two operands side by side: implicit multiplication. Point at the gap.
            gap = self.locate(left.end - 1, left.end)
            gap_pos = gap[0] + gap[1]
            lhs = self.text[self.locate(left.start, left.end)[0] : gap_pos]
            rhs_pos = self.locate(index, index + 1)[0]
            rhs = self.text[rhs_pos : rhs_pos + len(tok)]
            if len(lhs) > 20:
                lhs = "…" + lhs[-19:]
            return CalcSyntaxError(
                f"missing operator between {lhs!r} and {rhs!r} — did you mean '{lhs}*{rhs}'?",
                gap_pos,
                max(1, rhs_pos - gap_pos),
            )
        if tok == ")":
            return self.fail(CalcSyntaxError, "unmatched ')'", index, index + 1)
        if kind == "bad":
            return self.fail(CalcSyntaxError, f"unexpected character {tok!r}", index, index + 1)
        return self.fail(CalcSyntaxError, f"unexpected {tok!r}", index, index + 1)

    def _expr(self, min_bp: int) -> Node:
        depth = self.depth + 1
        if depth > MAX_DEPTH:
            raise self._too_deep(self.pos - 1)  # the token that opened this level
        self.depth = depth
        left = self._prefix()
        toks = self.toks
        n = len(toks)
        i = self.pos
        chain: Chain | None = None
        chain_bp = 0
        extra = 0  # postfix nesting adds tree depth without recursion
        while i < n:
            tok = toks[i]
            bp = _LBP.get(tok)
            if bp is None:
                raise self._unexpected(i, left)
            if bp <= min_bp:
                break
            if bp == _POSTFIX_BP:
                extra += 1
                if depth + extra > MAX_DEPTH:
                    raise self._too_deep(i)
                left = Factorial(left, i) if tok == "!" else Degree(left, i)
                chain = None
                i += 1
                continue
            self.pos = i + 1
            if bp == _POWER_BP:
                left = Power(left, self._expr(_POWER_BP - 1), tok)
                chain = None
            else:
                right = self._expr(bp)
                op = CANON[tok]
                if chain is not None and chain_bp == bp:
                    chain.operands.append(right)
                    chain.ops.append(op)
                    chain.end = right.end
                else:
                    chain = Chain([left, right], [op])
                    chain_bp = bp
                    left = chain
            i = self.pos
        self.pos = i
        self.depth = depth - 1
        return left

    def _prefix(self) -> Node:
        """The operand that starts at ``self.pos``; leaves ``self.pos`` after it."""
        toks = self.toks
        i = self.pos
        if i >= len(toks):
            raise CalcSyntaxError(
                "unexpected end of expression — expected a number, a name or '('",
                len(self.text),
                1,
            )
        tok = toks[i]
        kind = _PREFIX.get(tok)
        if kind is None:
            first = tok[0]
            if first in NUMBER_START and tok != ".":
                self.pos = i + 1
                return Number(self._number(tok, i), tok, i)
            if first in NAME_START:
                return self._name(tok, i)
            raise self.fail(CalcSyntaxError, f"unexpected character {tok!r}", i, i + 1)
        if kind == _P_OPEN:
            self.pos = i + 1
            inner = self._expr(0)
            j = self.pos
            if j >= len(toks) or toks[j] != ")":
                if j < len(toks):  # only ',' can stop an expression inside parentheses here
                    raise self.fail(CalcSyntaxError, "unexpected ','", j, j + 1)
                raise CalcSyntaxError(
                    f"missing ')' to close the '(' at position {self.locate(i, j)[0]}",
                    len(self.text),
                    1,
                )
            self.pos = j + 1
            inner.start = i  # a parenthesised operand's span includes its parentheses
            inner.end = j + 1
            return inner
        if kind == _P_SIGN:
            self.pos = i + 1
            return Unary(CANON[tok], self._expr(_UNARY_BP), i)
        if kind == _P_ROOT:
            self.pos = i + 1
            operand = self._expr(_POWER_BP)
            return Call("sqrt", "√", [operand], i, operand.end)
        if kind == _P_PI:
            self.pos = i + 1
            return Constant("pi", tok, i)
        if tok == ")" and i > 0 and toks[i - 1] == "(":
            raise self.fail(CalcSyntaxError, "empty parentheses", i - 1, i + 1)
        what = "an expression" if tok == ")" else "an operand"
        raise self.fail(CalcSyntaxError, f"unexpected {tok!r} — expected {what}", i, i + 1)

    def _too_deep(self, index: int) -> CalcError:
        return self.fail(
            LimitError,
            f"expression is nested too deeply (more than {MAX_DEPTH} levels)",
            index,
            index + 1,
        )

    def _name(self, tok: str, i: int) -> Node:
        name = tok.lower()
        toks = self.toks
        is_call = i + 1 < len(toks) and toks[i + 1] == "("
        if name in CONSTANTS:
            if is_call:
                raise self.fail(
                    CalcSyntaxError,
                    f"{tok!r} is a constant, not a function — did you mean '{tok}*(…)'?",
                    i,
                    i + 2,
                )
            self.pos = i + 1
            return Constant(name, tok, i)
        spec = FUNCTIONS.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, _KNOWN_NAMES, n=1, cutoff=0.6)
            hint = f" — did you mean '{close[0]}'?" if close else ""
            raise self.fail(UnknownNameError, f"unknown name {tok!r}{hint}", i, i + 1)
        if not is_call:
            raise self.fail(
                CalcSyntaxError,
                f"function {tok!r} needs its arguments in parentheses: {spec.usage}",
                i,
                i + 1,
            )
        self.pos = i + 2
        args: list[Node] = []
        if self.pos < len(toks) and toks[self.pos] == ")":
            self.pos += 1
        else:
            while True:
                args.append(self._expr(0))
                if self.pos >= len(toks):
                    raise CalcSyntaxError(f"missing ')' to close {tok}(", len(self.text), 1)
                sep = toks[self.pos]
                self.pos += 1
                if sep == ")":
                    break
                if sep != ",":
                    raise self._unexpected(self.pos - 1, args[-1])
        if not spec.min_args <= len(args) <= spec.max_args:
            raise self.fail(
                CalcSyntaxError,
                f"{name}() takes {spec.arity_text}, got {len(args)}: {spec.usage}",
                i,
                self.pos,
            )
        return Call(name, tok, args, i, self.pos)

    def _number(self, tok: str, i: int) -> object:
        try:
            return parse_number(tok, self.ledger)
        except Fault as fault:
            raise self.fail(fault.cls, fault.message, i, i + 1) from None
