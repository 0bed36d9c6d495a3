"""Render the calculator page on the server, so the page works without JavaScript.

`app/static/index.html` is the template. It carries `{{name}}` placeholders that this module
fills in one pass; the JavaScript (`app/static/app.js`) builds the very same markup in the
browser, so a page rendered here after a plain form post and a page updated by `fetch` look
identical. Keep the two in step: the class names below are what `app.css` and `app.js` expect.

Placeholders:

    {{expr}}     the expression, for the input's value attribute
    {{state}}    "idle", "result" or "error" (a data attribute that the CSS keys on)
    {{invalid}}  "true" when an error is shown, else "false" (the input's aria-invalid)
    {{caret}}    the row under the input that points at the failing characters
    {{result}}   the contents of the <output> live region: the result or the error message
    {{copy}}     the copy button's `disabled` attribute when there is nothing to copy

Everything echoed is HTML-escaped: an expression of `<script>` renders as text.
"""

from __future__ import annotations

import re
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.calculator import CalcError, Result

__all__ = ["ERROR_TITLES", "render_page"]

# What the person sees above the message, per `CalcError.kind` (app.js has the same table).
ERROR_TITLES: dict[str, str] = {
    "syntax": "Syntax error",
    "unknown_name": "Unknown name",
    "domain": "Outside the domain",
    "division_by_zero": "Division by zero",
    "limit": "Too large",
    # The server's own answers to a calculation it could not run (no position in the text):
    "too_many_requests": "Too many at once",
    "unavailable": "Server busy",
    "internal": "Server error",
}

# Fractions longer than this are written on one line ("1/7" stacks; "1/63668...01" does not).
LONG_FRACTION = 16

_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")

# An <input type=text> drops CR and LF from its value (HTML "value sanitization"), so the caret
# row must drop them too or it would point one character off per newline.
_NEWLINES = str.maketrans("", "", "\r\n")


def render_page(
    template: str,
    *,
    expr: str = "",
    result: Result | None = None,
    error: CalcError | None = None,
    notice: tuple[str, str] | None = None,
) -> bytes:
    """Fill `template` for `expr` and its result or error; return UTF-8 HTML.

    `notice` is `(kind, message)` for a calculation the server did not run (a 429, 503 or 500
    from the pool): shown as an error, but with no caret, since nothing in the text is at fault.
    With neither a result nor an error the page is the empty calculator (still showing `expr`).
    Unknown placeholders are a bug in the template and raise KeyError.
    """
    if notice is not None:
        state = "error"
        caret = ""
        output = _notice_block(*notice)
    elif error is not None:
        state = "error"
        caret = _caret_row(expr, error.position, error.length)
        output = _error_block(expr, error)
    elif result is not None:
        state = "result"
        caret = ""
        output = _result_block(result)
    else:
        state = "idle"
        caret = ""
        output = ""
    values = {
        "expr": escape(expr, quote=True),
        "state": state,
        "invalid": "true" if error is not None and notice is None else "false",
        "caret": caret,
        "result": output,
        "copy": "" if result is not None and error is None else "disabled",
    }
    # One pass over the template: text substituted in is never scanned again, so an expression
    # that contains "{{result}}" stays exactly that.
    page = _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
    return page.encode("utf-8")


def _caret_row(expr: str, position: int, length: int) -> str:
    """The expression again, invisible except for a caret under the failing characters.

    Reusing the real text (not spaces) keeps the caret aligned in any font and for any
    character width, as long as the row and the input share font and padding (app.css).
    """
    position = min(max(position, 0), len(expr))
    end = min(position + max(length, 1), len(expr))
    before = expr[:position].translate(_NEWLINES)
    marked = expr[position:end].translate(_NEWLINES) or " "  # "unexpected end": point past it
    after = expr[end:].translate(_NEWLINES)
    return (
        f'<span class="caret-before">{escape(before)}</span>'
        f'<span class="caret-mark">{escape(marked)}</span>'
        f'<span class="caret-after">{escape(after)}</span>'
    )


def _where(expr: str, position: int) -> str:
    if position >= len(expr):
        return "at the end"
    return f"at character {position + 1}"


def _after_title(title: str, message: str) -> str:
    """The message, minus a leading repeat of the title ("Unknown name" + " 'sqr' — ...")."""
    if message.lower().startswith(title.lower()):
        return message[len(title) :]
    return " " + message


def _error_block(expr: str, error: CalcError) -> str:
    title = ERROR_TITLES.get(error.kind, "Error")
    return (
        f'<span class="error" id="error-message" data-kind="{escape(error.kind)}" '
        f'data-position="{int(error.position)}" data-length="{int(error.length)}">'
        f'<span class="error-title">{escape(title)}</span>'
        f'<span class="error-text">{escape(_after_title(title, error.message))}</span> '
        f'<span class="error-where">{escape(_where(expr, error.position))}</span>'
        f"</span>"
    )


def _notice_block(kind: str, message: str) -> str:
    title = ERROR_TITLES.get(kind, "Error")
    return (
        f'<span class="error" id="error-message" data-kind="{escape(kind)}">'
        f'<span class="error-title">{escape(title)}</span>'
        f'<span class="error-text">{escape(_after_title(title, message))}</span>'
        f"</span>"
    )


def _size_class(display: str) -> str:
    """Long numbers get a smaller face so they fit the display (app.js uses the same cut-offs)."""
    if len(display) > 28:
        return " result-value--huge"
    if len(display) > 18:
        return " result-value--longer"
    if len(display) > 12:
        return " result-value--long"
    return ""


def _result_block(result: Result) -> str:
    sign, spoken = ("=", "equals") if result.exact else ("≈", "approximately")
    parts = [
        '<span class="result-main">'
        f'<span class="result-sign" aria-hidden="true">{sign}</span>'
        f'<span class="visually-hidden">{spoken} </span>'
        f'<span class="result-value{_size_class(result.display)}" id="result-value">'
        f"{escape(result.display)}</span></span>",
    ]
    if result.fraction:
        numerator, _, denominator = result.fraction.partition("/")
        long = " result-fraction--long" if len(result.fraction) > LONG_FRACTION else ""
        parts.append(
            f'<span class="result-fraction{long}" title="exact fraction">'
            f'<span class="visually-hidden">, exactly {escape(result.fraction)}</span>'
            f'<span class="frac" aria-hidden="true">'
            f'<span class="frac-num">{escape(numerator)}</span>'
            f'<span class="frac-den">{escape(denominator)}</span></span></span>'
        )
    if not result.exact:
        parts.append('<span class="result-badge">approx.</span>')
    return "".join(parts)
