"""The calculator page in a real browser: what a person does with it (tests/browser_support.py
has the set-up; test_accessibility.py audits it).

One asyncio-mode server (`python -m app`) and one Chromium serve the whole module; every test
gets a fresh browser context. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests import browser_support
from tests.browser_support import (
    PHONE,
    calculate,
    compute,
    contrast,
    expect,
    key,
    relative_luminance,
)
from tests.certs import Pki
from tests.support import ServerProcess, running_server

pytestmark = pytest.mark.browser


# One Chromium and one server for the module's tests.
playwright = browser_support.playwright
browser = browser_support.browser
server = browser_support.server
open_page = browser_support.open_page


# ---- typing --------------------------------------------------------------------------------


def test_type_an_expression_and_press_enter(open_page: Any) -> None:
    p = open_page()
    page = p.page
    expect(page.locator("#expr")).to_be_focused()  # autofocus: type straight away
    page.keyboard.type("1/3 + 1/6")
    page.keyboard.press("Enter")
    form = page.locator("#calc-form")
    expect(form).to_have_attribute("data-state", "result")
    expect(page.locator("#result-value")).to_have_text("0.5")
    expect(page.locator(".frac-num")).to_have_text("1")
    expect(page.locator(".frac-den")).to_have_text("2")
    expect(page.locator("#result")).to_have_attribute("aria-live", "polite")
    expect(page.locator("#copy")).to_be_enabled()
    p.shot("type-enter")

    # Editing dims the old result; Escape clears everything.
    page.keyboard.type("+1")
    expect(form).to_have_attribute("data-stale", "true")
    page.keyboard.press("Escape")
    expect(page.locator("#expr")).to_have_value("")
    expect(form).to_have_attribute("data-state", "idle")
    expect(page.locator("#result")).to_have_text("")


def test_typing_anywhere_goes_to_the_expression(open_page: Any) -> None:
    page = open_page().page
    page.locator("h1").click()  # focus leaves the input
    expect(page.locator("#expr")).not_to_be_focused()
    page.keyboard.type("6*7")
    expect(page.locator("#expr")).to_be_focused()
    expect(page.locator("#expr")).to_have_value("6*7")
    page.keyboard.press("Enter")
    expect(page.locator("#result-value")).to_have_text("42")


def test_exact_and_inexact_results(open_page: Any) -> None:
    page = open_page().page
    calculate(page, "2^100")
    expect(page.locator("#result-value")).to_have_text("1267650600228229401496703205376")
    expect(page.locator(".result-sign")).to_have_text("=")
    expect(page.locator(".result-fraction")).to_have_count(0)
    calculate(page, "sqrt(2)")
    expect(page.locator(".result-sign")).to_have_text("≈")
    expect(page.locator(".result-badge")).to_have_text("approx.")
    expect(page.locator("#result-value")).to_have_text(re.compile(r"^1\.41421356237309504880"))


def test_copy_button_copies_the_result(open_page: Any, server: ServerProcess) -> None:
    p = open_page(permissions=["clipboard-read", "clipboard-write"])
    page = p.page
    expect(page.locator("#copy")).to_be_disabled()
    calculate(page, "1/8")
    expect(page.locator("#result-value")).to_have_text("0.125")
    page.locator("#copy").click()
    expect(page.locator("#copy")).to_have_text("Copied")
    expect(page.locator("#status")).to_have_text("Result copied to the clipboard")
    assert page.evaluate("navigator.clipboard.readText()") == "0.125"


# ---- keypad --------------------------------------------------------------------------------


def test_click_the_keypad(open_page: Any) -> None:
    p = open_page()
    page = p.page
    for name in ["1", "2", "backspace", "+ plus", "( open parenthesis", "7", "× times", "6"]:
        key(page, name).click()
    key(page, ") close parenthesis").click()
    expect(page.locator("#expr")).to_have_value("1+(7*6)")
    expect(page.locator("#expr")).to_be_focused()  # mouse clicks keep the typing position
    key(page, "= equals").click()
    expect(page.locator("#result-value")).to_have_text("43")

    key(page, "C clear").click()
    expect(page.locator("#expr")).to_have_value("")
    for name in ["√ square root", "9", ") close parenthesis", "− minus", "1", "÷ divide", "4"]:
        key(page, name).click()
    expect(page.locator("#expr")).to_have_value("sqrt(9)-1/4")
    key(page, "= equals").click()
    expect(page.locator("#result-value")).to_have_text("2.75")
    expect(page.locator(".frac-num")).to_have_text("11")
    p.shot("keypad")


def test_keypad_by_keyboard_is_one_tab_stop_with_arrow_keys(open_page: Any) -> None:
    page = open_page().page
    expect(page.locator("#expr")).to_be_focused()
    page.keyboard.press("Tab")  # copy is disabled, so next comes the keypad (its "7")
    expect(key(page, "7")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(key(page, "4")).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(key(page, "5")).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Space")
    expect(page.locator("#expr")).to_have_value("55")
    expect(key(page, "5")).to_be_focused()  # keyboard users stay on the key
    expect(key(page, "5")).to_have_attribute("tabindex", "0")
    expect(key(page, "7")).to_have_attribute("tabindex", "-1")
    page.keyboard.press("Shift+Tab")
    expect(page.locator("#expr")).to_be_focused()


# ---- errors --------------------------------------------------------------------------------


def test_error_shows_a_caret_under_the_failing_character(open_page: Any) -> None:
    p = open_page()
    page = p.page
    expr = "12 + * 3"
    calculate(page, expr)
    expect(page.locator("#calc-form")).to_have_attribute("data-state", "error")
    expect(page.locator("#expr")).to_have_attribute("aria-invalid", "true")
    message = page.locator("#error-message")
    expect(message).to_be_visible()
    expect(message).to_contain_text("at character 6")
    mark = page.locator(".caret-mark")
    expect(mark).to_be_visible()
    expect(mark).to_have_text("*")

    # Measure independently where the "*" is drawn inside the input, with the input's own font,
    # and check the caret row's mark sits right under it.
    expected_x = page.evaluate(
        """(prefix) => {
            const input = document.querySelector('#expr');
            const style = getComputedStyle(input);
            const ctx = document.createElement('canvas').getContext('2d');
            ctx.font = style.font;
            const box = input.getBoundingClientRect();
            return box.left + parseFloat(style.borderLeftWidth) + parseFloat(style.paddingLeft)
                + ctx.measureText(prefix).width - input.scrollLeft;
        }""",
        expr[:5],
    )
    input_box = page.locator("#expr").bounding_box()
    mark_box = mark.bounding_box()
    assert mark_box is not None and input_box is not None
    assert abs(mark_box["x"] - expected_x) < 2, (mark_box, expected_x)
    assert 0 <= mark_box["y"] - (input_box["y"] + input_box["height"]) < 12  # right below
    p.shot("error-caret")

    # Fixing the text removes the stale caret.
    page.locator("#expr").press("Backspace")
    expect(page.locator("#calc-form")).to_have_attribute("data-state", "idle")
    expect(mark).to_have_count(0)


def test_hostile_expression_is_shown_as_text(open_page: Any) -> None:
    p = open_page()
    page = p.page
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    expr = '<img src=x onerror="alert(1)">'
    calculate(page, expr)
    expect(page.locator("#calc-form")).to_have_attribute("data-state", "error")
    expect(page.locator(".caret-row img")).to_have_count(0)
    expect(page.locator("#result img")).to_have_count(0)
    assert dialogs == []


STRICT_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def test_page_works_under_a_strict_content_security_policy(open_page: Any) -> None:
    """No inline script or style anywhere: every feature works under the policy the server sends.

    A violation shows up as a console error, which the fixture turns into a failure too.
    """
    p = open_page()
    page = p.page
    response = page.reload()
    assert response is not None
    assert response.headers["content-security-policy"] == STRICT_CSP
    violations: list[str] = []
    page.on(
        "console", lambda m: violations.append(m.text) if "Content Security" in m.text else None
    )
    calculate(page, "2^100 / 3")  # long: the script resizes it through the CSSOM
    expect(page.locator(".result-fraction--long")).to_be_visible()
    calculate(page, "1 + (2")
    expect(page.locator(".caret-mark")).to_be_visible()
    key(page, "7").click()
    expect(page.locator(".history-item")).to_have_count(1)
    assert violations == []


# ---- history -------------------------------------------------------------------------------


def test_history_survives_a_reload_and_is_reusable(open_page: Any) -> None:
    p = open_page()
    page = p.page
    items = page.locator(".history-item")
    expect(items).to_have_count(0)
    expect(page.locator("#history-empty")).to_be_visible()
    calculate(page, "2*21")
    expect(page.locator("#result-value")).to_have_text("42")
    calculate(page, "1/4")
    expect(page.locator("#result-value")).to_have_text("0.25")
    calculate(page, "1 +")  # errors are not history
    expect(page.locator("#calc-form")).to_have_attribute("data-state", "error")
    expect(items).to_have_count(2)

    page.reload()
    expect(items).to_have_count(2)
    expect(page.locator("#history-empty")).to_be_hidden()
    expect(items.nth(0).locator(".history-expr")).to_have_text("1/4")  # newest first
    expect(items.nth(1).locator(".history-expr")).to_have_text("2*21")
    expect(page.locator("#expr")).to_have_value("")

    items.nth(1).click()
    expect(page.locator("#expr")).to_have_value("2*21")
    expect(page.locator("#expr")).to_be_focused()
    expect(page.locator("#result-value")).to_have_text("42")
    page.keyboard.type("+1")
    page.keyboard.press("Enter")
    expect(page.locator("#result-value")).to_have_text("43")
    expect(items).to_have_count(3)
    p.shot("history")

    page.locator("#history-clear").click()
    expect(items).to_have_count(0)
    page.reload()
    expect(items).to_have_count(0)


# ---- without JavaScript --------------------------------------------------------------------


def test_form_post_without_javascript(open_page: Any, server: ServerProcess) -> None:
    p = open_page(java_script_enabled=False)
    page = p.page
    expect(page.locator("#keypad")).to_be_hidden()
    submit = page.get_by_role("button", name="Calculate")
    expect(submit).to_be_visible()

    page.locator("#expr").fill("1/3 + 1/6")
    submit.click()
    page.wait_for_url(server.url + "/calculate")
    expect(page.locator("#expr")).to_have_value("1/3 + 1/6")  # the expression is kept
    expect(page.locator("#result-value")).to_have_text("0.5")
    expect(page.locator(".frac-den")).to_have_text("2")
    p.shot("nojs-result")

    # Enter submits too, and an error comes back rendered with its caret.
    page.locator("#expr").fill("<script>alert(1)</script> +")
    page.locator("#expr").press("Enter")
    page.wait_for_load_state()
    expect(page.locator("#expr")).to_have_value("<script>alert(1)</script> +")
    expect(page.locator("#calc-form")).to_have_attribute("data-state", "error")
    expect(page.locator(".caret-mark")).to_be_visible()
    expect(page.locator("#error-message")).to_be_visible()
    expect(page.locator("script")).to_have_count(1)  # only ours, with src=
    p.shot("nojs-error")


# ---- layout --------------------------------------------------------------------------------


def test_phone_viewport(open_page: Any) -> None:
    p = open_page(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = p.page
    for name in ["1", "÷ divide", "7"]:
        key(page, name).tap()
    key(page, "= equals").tap()
    expect(page.locator("#result-value")).to_have_text(re.compile(r"^0\.142857"))
    expect(page.locator(".frac-den")).to_have_text("7")

    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"horizontal scroll on a phone: {width}px"
    sizes = [box["height"] for box in map(lambda k: k.bounding_box(), page.locator(".key").all())]
    assert min(sizes) >= 40, f"touch targets too small: {min(sizes)}px"
    calc_box = page.locator(".calc").bounding_box()
    history_box = page.locator(".history").bounding_box()
    assert calc_box is not None and history_box is not None
    assert history_box["y"] >= calc_box["y"] + calc_box["height"]  # stacked, not side by side
    assert calc_box["x"] >= 0 and calc_box["x"] + calc_box["width"] <= PHONE["width"]
    p.shot("phone", full_page=True)


def test_desktop_puts_history_beside_the_calculator(open_page: Any) -> None:
    page = open_page().page
    calc_box = page.locator(".calc").bounding_box()
    history_box = page.locator(".history").bounding_box()
    assert calc_box is not None and history_box is not None
    assert history_box["x"] >= calc_box["x"] + calc_box["width"]


def test_dark_mode_follows_the_system(open_page: Any) -> None:
    light = open_page(color_scheme="light").page
    dark_page = open_page(color_scheme="dark")
    dark = dark_page.page
    style = "(sel) => getComputedStyle(document.querySelector(sel)).{}"
    for page, bright in [(light, True), (dark, False)]:
        background = page.evaluate(style.format("backgroundColor"), "body")
        ink = page.evaluate(style.format("color"), "body")
        panel = page.evaluate(style.format("backgroundColor"), ".calc")
        assert (relative_luminance(background) > 0.8) is bright
        assert (relative_luminance(panel) > 0.8) is bright
        assert contrast(ink, panel) > 7  # WCAG AAA body text either way
    calculate(dark, "1/7")
    expect(dark.locator(".frac-den")).to_have_text("7")
    dark_page.shot("dark")


# ---- README screenshots --------------------------------------------------------------------


def test_readme_screenshots(open_page: Any) -> None:
    """Light desktop and phone shots with a result and some history (copied into docs/)."""
    shots: list[tuple[str, dict[str, Any]]] = [
        ("readme-desktop", {"viewport": {"width": 1100, "height": 780}}),
        (
            "readme-mobile",
            {
                "viewport": {"width": 390, "height": 844},
                "device_scale_factor": 2,
                "is_mobile": True,
                "has_touch": True,
            },
        ),
    ]
    for name, context in shots:
        p = open_page(color_scheme="light", **context)
        page = p.page
        for expr in ["2^64", "sqrt(2)", "1/3 + 1/4", "3/8 + 1/4"]:
            compute(page, expr)
        expect(page.locator(".history-item")).to_have_count(4)
        expect(page.locator(".frac-den")).to_have_text("8")
        page.locator("#expr").blur()
        p.shot(name)


# ---- over TLS ------------------------------------------------------------------------------


def test_the_page_over_tls(playwright: Any, pki: Pki) -> None:
    """The page and a calculation over HTTPS. Chromium trusts exactly the test server's key
    (--ignore-certificate-errors-spki-list pins its SPKI hash), not any certificate: a
    certificate error would still fail the navigation."""
    tls = ["--ssl-certfile", str(pki.cert), "--ssl-keyfile", str(pki.key)]
    with running_server("asyncio", *tls) as srv:
        assert srv.scheme == "https"
        chromium = playwright.chromium.launch(
            executable_path=str(browser_support.CHROMIUM), headless=True,
            args=[*browser_support.CHROMIUM_ARGS,
                  f"--ignore-certificate-errors-spki-list={pki.spki_sha256()}"],
        )
        try:
            p = browser_support.Page(chromium, f"https://localhost:{srv.port}/")
            page = p.page
            assert page.evaluate("location.protocol") == "https:"
            assert page.evaluate("window.isSecureContext") is True
            calculate(page, "2^10")
            expect(page.locator("#result-value")).to_have_text("1024")
            p.shot("tls")
            assert p.problems == [], p.problems
            p.close()
        finally:
            chromium.close()
        assert "Traceback" not in srv.stderr_text()
