"""The Pratt parser: tokens in, the grammar's actions called in order, their result out.

Precedence, high to low: parentheses and calls; postfix ``!`` and ``°``; ``^`` (right
associative, its right operand may carry a sign) and prefix ``√``; unary ``+ -``; ``* / // %``;
``+ -``.

Strategy: the grammar exists once, here, and says what it found through its actions, methods
that a subclass defines: `app.calculator.tree.TreeBuilder` builds the syntax tree
(``parse()``), and `app.calculator.evaluator.Evaluator` computes the value as it goes
(``evaluate()``), so no tree is built to be walked once and thrown away. Each action gets the
token span of what it combines, for error positions. Every recursive call goes through `_expr`,
which counts depth explicitly (the peepholes that skip it check the depth it would), so nesting
beyond MAX_DEPTH is a LimitError long before Python's recursion limit. Names are resolved while
parsing: unknown names and wrong argument counts are syntax errors.
"""

from __future__ import annotations

import difflib
from typing import Final, Generic, TypeVar

from app.calculator.cost import Ledger
from app.calculator.errors import CalcError, CalcSyntaxError, LimitError, UnknownNameError
from app.calculator.functions import CONSTANTS, FUNCTIONS
from app.calculator.tokens import CANON, NAME_START, NUMBER_START, classify, spans

__all__ = ["MAX_DEPTH", "Parser"]

# 256 levels: Python's own parser allows ~200 nested parentheses; each level costs one Python
# frame in the parser, well inside the default recursion limit of 1000.
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

T = TypeVar("T")


class Parser(Ledger, Generic[T]):
    """The grammar: parses one text, calling its actions; ``parse()`` returns what the last
    action returned.

    The actions (``number`` ... ``group``, below) are what a subclass computes as the parser
    recognises each construct, in evaluation order: `app.calculator.evaluator.Evaluator` values,
    `app.calculator.tree.TreeBuilder` nodes. Spans are token indices, end exclusive;
    ``starts[k]``/``ends[k]`` those of argument k; ``extends`` is True when ``binary``
    continues a run of the same precedence (``a + b - c``). ``locate()`` maps a token span to
    (character position, length) for error messages.

    Strategy: the parser is a base class rather than an object that holds its actions, and it
    is the `Ledger` its actions charge, so one object per evaluation does the parsing, the
    computing and the accounting, and an action is a method of ``self``.
    """

    __slots__ = ("n", "spans", "text", "toks")

    def __init__(self, text: str, toks: list[str], budget: int | None, work_budget: int) -> None:
        super().__init__(budget, work_budget)
        self.text = text
        self.toks = toks
        self.n = len(toks)
        self.spans: list[tuple[int, int]] | None = None

    # -- the actions ----------------------------------------------------------------------------
    def number(self, tok: str, at: int) -> T:
        raise NotImplementedError

    def integer(self, tok: str, at: int) -> T:  # a literal of ASCII digits only
        raise NotImplementedError

    def constant(self, name: str, tok: str, at: int) -> T:
        raise NotImplementedError

    def call(
        self, name: str, tok: str, args: list[T], starts: list[int], ends: list[int],
        start: int, end: int,
    ) -> T:  # fmt: skip
        raise NotImplementedError

    def unary(self, op: str, operand: T, start: int) -> T:
        raise NotImplementedError

    def binary(
        self, op: str, left: T, right: T, start: int, right_start: int, end: int, extends: bool
    ) -> T:
        raise NotImplementedError

    def power(self, op: str, base: T, exponent: T, start: int, end: int) -> T:
        raise NotImplementedError

    def postfix(self, op: str, operand: T, start: int, end: int) -> T:
        raise NotImplementedError

    def group(self, inner: T, start: int, end: int) -> T:
        raise NotImplementedError

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
    def parse(self) -> T:
        if not self.toks:
            raise CalcSyntaxError("empty expression", len(self.text), 1)
        item, i = self._expr(0, 0, 0)  # the top level is depth 0; MAX_DEPTH nested are allowed
        if i < self.n:
            raise self._unexpected(i, 0)
        return item

    def _unexpected(self, index: int, left_start: int | None) -> CalcError:
        tok = self.toks[index]
        kind = classify(tok)
        if left_start is not None and (kind in ("number", "name") or tok in ("(", "√", "π")):
            # Two operands side by side: implicit multiplication. Point at the gap.
            gap = self.locate(index - 1, index)
            gap_pos = gap[0] + gap[1]
            lhs = self.text[self.locate(left_start, index)[0] : gap_pos]
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

    # Strategy: the position and the depth travel as arguments and the position comes back
    # with the value, (value, next index): locals and arguments are the cheapest state CPython
    # has, and an operand's first token is the index its caller passed.
    def _expr(self, i: int, min_bp: int, depth: int) -> tuple[T, int]:
        """The expression at token ``i`` up to an operator binding no tighter than ``min_bp``:
        what the actions made of it, and the index of the token after it."""
        if depth > MAX_DEPTH:
            raise self._too_deep(i - 1)  # the token that opened this level
        toks = self.toks
        n = self.n
        start = i
        # The commonest operand, a plain integer, without the call to _prefix.
        if i < n and (tok := toks[i]).isdigit() and tok.isascii():
            left = self.integer(tok, i)
            i += 1
        else:
            left, i = self._prefix(i, depth)
        chain_bp = 0  # the binding power of the run `left` is, 0 if none
        extra = 0  # postfix nesting adds tree depth without recursion
        while i < n:
            tok = toks[i]
            bp = _LBP.get(tok)
            if bp is None:
                raise self._unexpected(i, start)
            if bp <= min_bp:
                break
            if bp == _POSTFIX_BP:
                extra += 1
                if depth + extra > MAX_DEPTH:
                    raise self._too_deep(i)
                i += 1
                left = self.postfix(tok, left, start, i)
                chain_bp = 0
                continue
            j = i + 1
            if bp == _POWER_BP:
                exponent, i = self._expr(j, _POWER_BP - 1, depth + 1)
                left = self.power(tok, left, exponent, start, i)
                chain_bp = 0
                continue
            # The right operand. Most are plain integers that nothing after them binds into
            # (1+2*3's 1 and 3): they need no recursive call, the commonest step of parsing.
            if (
                j < n
                and (operand := toks[j]).isdigit()
                and operand.isascii()  # "²".isdigit() too: only ASCII digits are numbers
                and (j + 1 == n or _LBP.get(toks[j + 1], 99) <= bp)
            ):  # _plain_integer(j, bp), inlined here where it counts most
                right = self.integer(operand, j)
                i = j + 1
            else:
                right, i = self._expr(j, bp, depth + 1)
            left = self.binary(CANON[tok], left, right, start, j, i, chain_bp == bp)
            chain_bp = bp
        return left, i

    def _plain_integer(self, j: int, bp: int) -> bool:
        """Whether token j is an integer literal that the token after it does not bind into
        tighter than ``bp``: then it is the whole operand, and no call to _expr is needed."""
        toks = self.toks
        return (
            j < self.n
            and (tok := toks[j]).isdigit()
            and tok.isascii()
            and (j + 1 == self.n or _LBP.get(toks[j + 1], 99) <= bp)
        )

    def _prefix(self, i: int, depth: int) -> tuple[T, int]:
        """The operand that starts at token ``i`` (at nesting ``depth``), and the index after."""
        toks = self.toks
        if i >= self.n:
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
                return self.number(tok, i), i + 1
            if first in NAME_START:
                return self._name(tok, i, depth)
            raise self.fail(CalcSyntaxError, f"unexpected character {tok!r}", i, i + 1)
        if kind == _P_OPEN:
            inner, j = self._expr(i + 1, 0, depth + 1)
            if j >= self.n or toks[j] != ")":
                if j < self.n:  # only ',' can stop an expression inside parentheses here
                    raise self.fail(CalcSyntaxError, "unexpected ','", j, j + 1)
                raise CalcSyntaxError(
                    f"missing ')' to close the '(' at position {self.locate(i, j)[0]}",
                    len(self.text),
                    1,
                )
            return self.group(inner, i, j + 1), j + 1
        if kind == _P_SIGN:
            j = i + 1
            # -42: the operand without a call to _expr (at the depth _expr would allow it).
            if depth < MAX_DEPTH and self._plain_integer(j, _UNARY_BP):
                return self.unary(CANON[tok], self.integer(toks[j], j), i), j + 1
            operand, j = self._expr(j, _UNARY_BP, depth + 1)
            return self.unary(CANON[tok], operand, i), j
        if kind == _P_ROOT:
            operand, j = self._expr(i + 1, _POWER_BP, depth + 1)
            return self.call("sqrt", "√", [operand], [i + 1], [j], i, j), j
        if kind == _P_PI:
            return self.constant("pi", tok, i), i + 1
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

    def _name(self, tok: str, i: int, depth: int) -> tuple[T, int]:
        name = tok.lower()
        toks = self.toks
        n = self.n
        is_call = i + 1 < n and toks[i + 1] == "("
        if name in CONSTANTS:
            if is_call:
                raise self.fail(
                    CalcSyntaxError,
                    f"{tok!r} is a constant, not a function — did you mean '{tok}*(…)'?",
                    i,
                    i + 2,
                )
            return self.constant(name, tok, i), i + 1
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
        j = i + 2
        args: list[T] = []
        starts: list[int] = []
        ends: list[int] = []
        if j < n and toks[j] == ")":
            j += 1
        else:
            while True:
                arg_start = j
                if (
                    depth < MAX_DEPTH
                    and j + 1 < n
                    and (tok_j := toks[j]).isdigit()
                    and tok_j.isascii()
                    and _LBP.get(toks[j + 1], 99) <= 0
                ):  # sqrt(16): the argument without _expr (_plain_integer(j, 0), inlined)
                    arg = self.integer(tok_j, j)
                    j += 1
                else:
                    arg, j = self._expr(j, 0, depth + 1)
                args.append(arg)
                starts.append(arg_start)
                ends.append(j)
                if j >= n:
                    raise CalcSyntaxError(f"missing ')' to close {tok}(", len(self.text), 1)
                sep = toks[j]
                j += 1
                if sep == ")":
                    break
                if sep != ",":
                    raise self._unexpected(j - 1, arg_start)
        if not spec.min_args <= len(args) <= spec.max_args:
            raise self.fail(
                CalcSyntaxError,
                f"{name}() takes {spec.arity_text}, got {len(args)}: {spec.usage}",
                i,
                j,
            )
        return self.call(name, tok, args, starts, ends, i, j), j
