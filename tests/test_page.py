"""render_page: the server-rendered calculator page (the no-JavaScript flow), tested purely.

Results and errors come from the real calculator (`app.calculator.evaluate`), so the page is
checked against what the server will actually hand it.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from app.calculator import CalcError, Result, evaluate
from app.page import render_page

TEMPLATE = (Path(__file__).resolve().parent.parent / "app" / "static" / "index.html").read_text()


class _Collector(HTMLParser):
    """Collects the text inside elements with a given class, and every element's attributes."""

    VOID = frozenset({"meta", "link", "img", "input", "br", "hr", "source", "path", "rect"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[set[str]] = []
        self.texts: dict[str, list[str]] = {}
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag in self.VOID:
            return
        classes = set((dict(attrs).get("class") or "").split())
        self.stack.append(classes)
        for name in classes:
            self.texts.setdefault(name, []).append("")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        for classes in self.stack:
            for name in classes:
                self.texts[name][-1] += data


def parse(page: bytes) -> _Collector:
    collector = _Collector()
    collector.feed(page.decode("utf-8"))
    collector.close()
    return collector


def text_of(page: bytes, css_class: str) -> str:
    found = parse(page).texts.get(css_class)
    assert found, f"no element with class {css_class!r}"
    assert len(found) == 1, f"{len(found)} elements with class {css_class!r}"
    return found[0]


def input_attrs(page: bytes) -> dict[str, str | None]:
    inputs = [attrs for tag, attrs in parse(page).elements if tag == "input"]
    assert len(inputs) == 1
    return inputs[0]


def form_state(page: bytes) -> str | None:
    forms = [attrs for tag, attrs in parse(page).elements if tag == "form"]
    assert len(forms) == 1
    return forms[0].get("data-state")


def error_of(expr: str) -> CalcError:
    with pytest.raises(CalcError) as info:
        evaluate(expr)
    return info.value


# ---- the template itself ---------------------------------------------------------------------


def test_template_is_csp_friendly() -> None:
    """No inline script, no inline style, no event-handler attributes: a strict CSP can apply."""
    elements = parse(render_page(TEMPLATE)).elements
    scripts = [attrs for tag, attrs in elements if tag == "script"]
    assert scripts
    assert all((attrs.get("src") or "").startswith("/static/") for attrs in scripts)
    assert not [tag for tag, _ in elements if tag == "style"]
    for tag, attrs in elements:
        assert "style" not in attrs, tag
        assert not [name for name in attrs if name.startswith("on")], tag


def test_form_posts_expr_to_calculate() -> None:
    forms = [attrs for tag, attrs in parse(render_page(TEMPLATE)).elements if tag == "form"]
    assert forms[0]["action"] == "/calculate"
    assert forms[0]["method"] == "post"
    assert input_attrs(render_page(TEMPLATE))["name"] == "expr"


def test_empty_page_fills_every_placeholder() -> None:
    page = render_page(TEMPLATE)
    assert b"{{" not in page and b"}}" not in page
    assert form_state(page) == "idle"
    assert input_attrs(page)["value"] == ""
    assert input_attrs(page)["aria-invalid"] == "false"
    assert text_of(page, "result") == ""


def test_keypad_names_start_with_the_text_on_the_key() -> None:
    """WCAG 2.5.3, Label in Name: a key's aria-label begins with what the key shows ("x²
    square"), so a voice user can say what they see. tests/test_accessibility.py audits the
    rendered page for the same with axe-core; this runs without a browser."""
    page = parse(render_page(TEMPLATE))
    keys = [
        attrs
        for tag, attrs in page.elements
        if tag == "button" and "key" in (attrs.get("class") or "").split()
    ]
    texts = [text.strip() for text in page.texts["key"]]
    assert len(keys) == len(texts) == 30
    named = 0
    for attrs, text in zip(keys, texts, strict=True):
        label = attrs.get("aria-label")
        if label is None:
            assert text, attrs  # named by its text, so it must have some
        elif text:
            assert label.startswith(text + " "), (label, text)
            named += 1
    assert named == 15  # the keys whose text is a symbol or an abbreviation


def test_unknown_placeholder_is_a_template_bug() -> None:
    with pytest.raises(KeyError):
        render_page("<p>{{nonsense}}</p>")


# ---- escaping --------------------------------------------------------------------------------


def test_script_expression_renders_as_text() -> None:
    expr = '<script>alert("x")</script>'
    page = render_page(TEMPLATE, expr=expr, error=error_of(expr))
    html = page.decode()
    assert "<script>alert" not in html
    assert html.count("<script") == 1  # ours: <script src="/static/app.js">
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert input_attrs(page)["value"] == expr  # the browser shows exactly what was typed
    assert form_state(page) == "error"


def test_expression_cannot_break_out_of_the_value_attribute() -> None:
    expr = '1" autofocus onfocus="alert(1)'
    page = render_page(TEMPLATE, expr=expr, error=error_of(expr))
    attrs = input_attrs(page)
    assert attrs["value"] == expr
    assert "onfocus" not in attrs


def test_placeholders_in_the_expression_are_not_substituted() -> None:
    expr = "{{result}} {{caret}}"
    page = render_page(TEMPLATE, expr=expr)
    assert input_attrs(page)["value"] == expr


def test_error_message_is_escaped() -> None:
    expr = "<b>"
    err = error_of(expr)
    page = render_page(TEMPLATE, expr=expr, error=err)
    assert text_of(page, "error-text") == " " + err.message
    assert b"<b>" not in page


def test_result_fields_are_escaped() -> None:
    forged = Result(expr="x", display="<i>1</i>", exact=True, fraction="<a>/<b>")
    page = render_page(TEMPLATE, expr="x", result=forged)
    assert b"<i>" not in page and b"<a>" not in page
    assert text_of(page, "result-value") == "<i>1</i>"
    assert text_of(page, "frac-num") == "<a>"
    assert text_of(page, "frac-den") == "<b>"


# ---- results ---------------------------------------------------------------------------------


def test_exact_fraction_shows_decimal_and_fraction() -> None:
    result = evaluate("1/3")
    assert result.fraction == "1/3"
    page = render_page(TEMPLATE, expr="1/3", result=result)
    assert form_state(page) == "result"
    assert input_attrs(page)["value"] == "1/3"
    assert text_of(page, "result-value") == result.display
    assert text_of(page, "result-sign") == "="
    assert (text_of(page, "frac-num"), text_of(page, "frac-den")) == ("1", "3")
    assert "exactly 1/3" in text_of(page, "result")
    assert "result-badge" not in parse(page).texts
    copy = [attrs for tag, attrs in parse(page).elements if attrs.get("id") == "copy"]
    assert "disabled" not in copy[0]


def test_integer_has_no_fraction() -> None:
    result = evaluate("6*7")
    page = render_page(TEMPLATE, expr="6*7", result=result)
    assert text_of(page, "result-value") == "42"
    assert "frac" not in parse(page).texts


def test_inexact_result_is_marked_approximate() -> None:
    result = evaluate("sqrt(2)")
    assert not result.exact
    page = render_page(TEMPLATE, expr="sqrt(2)", result=result)
    assert text_of(page, "result-sign") == "≈"
    assert text_of(page, "result-badge") == "approx."
    assert "approximately" in text_of(page, "result")
    assert text_of(page, "result-value").startswith("1.41421356")


def test_long_results_get_smaller_type() -> None:
    big = evaluate("2^100")
    assert len(big.display) > 28
    page = render_page(TEMPLATE, expr="2^100", result=big)
    assert b"result-value--huge" in page
    assert text_of(page, "result-value") == big.display


# ---- errors and the caret --------------------------------------------------------------------


def caret(page: bytes) -> tuple[str, str, str]:
    return (
        text_of(page, "caret-before"),
        text_of(page, "caret-mark"),
        text_of(page, "caret-after"),
    )


def test_error_caret_points_at_the_failing_character() -> None:
    expr = "2 + * 3"
    err = error_of(expr)
    assert expr[err.position] == "*"
    page = render_page(TEMPLATE, expr=expr, error=err)
    assert form_state(page) == "error"
    assert input_attrs(page)["aria-invalid"] == "true"
    before, mark, after = caret(page)
    assert before == "2 + "
    assert mark == expr[err.position : err.position + err.length]
    assert before + mark + after == expr
    assert text_of(page, "error-where") == f"at character {err.position + 1}"
    assert text_of(page, "error-title") == "Syntax error"
    assert text_of(page, "error-text") == " " + err.message
    copy = [attrs for tag, attrs in parse(page).elements if attrs.get("id") == "copy"]
    assert "disabled" in copy[0]


def test_unknown_name_is_underlined_whole() -> None:
    expr = "1 + sqr(4)"
    err = error_of(expr)
    assert err.kind == "unknown_name"
    page = render_page(TEMPLATE, expr=expr, error=err)
    assert caret(page) == ("1 + ", "sqr", "(4)")
    # The title is not said twice: "Unknown name 'sqr' — did you mean 'sqrt'?"
    assert err.message.lower().startswith("unknown name ")
    title, text = text_of(page, "error-title"), text_of(page, "error-text")
    assert title == "Unknown name"
    assert title + text == "Unknown name" + err.message[len("unknown name") :]


def test_unexpected_end_points_past_the_last_character() -> None:
    expr = "1 +"
    err = error_of(expr)
    assert err.position == len(expr)
    page = render_page(TEMPLATE, expr=expr, error=err)
    assert caret(page) == ("1 +", " ", "")
    assert text_of(page, "error-where") == "at the end"


def test_caret_row_drops_newlines_like_the_input_does() -> None:
    # <input type=text> strips CR/LF from its value, so the caret row must too or it drifts.
    expr = "1 +\n* 2"
    err = error_of(expr)
    page = render_page(TEMPLATE, expr=expr, error=err)
    assert err.position == 4  # the "*" after the newline
    assert caret(page) == ("1 +", "*", " 2")


@pytest.mark.parametrize("expr", ["1/0", "(1", "1 2", "", "é + 1"])
def test_any_error_renders_a_consistent_caret(expr: str) -> None:
    err = error_of(expr)
    page = render_page(TEMPLATE, expr=expr, error=err)
    before, mark, _after = caret(page)
    assert before == expr[: err.position]
    assert mark == (expr[err.position : err.position + err.length] or " ")
    assert re.fullmatch(r"at (character \d+|the end)", text_of(page, "error-where"))
