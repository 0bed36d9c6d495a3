"""The calculator page is accessible (WCAG 2.2 AA) in every state a person meets.

- axe-core audits every state: desktop, phone and dark; idle, a result, an error, a long and an
  inexact result, a stale one, a copied one, the history filled; the pages a browser without
  JavaScript gets back from a form post (result and error), read with and without JavaScript.
  Each audit must find nothing. axe also returns "needs review" items it cannot decide; each
  kind the page produces is listed in REVIEWED with the test that decides it instead, and any
  other kind fails the audit too.
- Keyboard alone: Tab and the arrow keys reach every control, 3/8+1/4 is computed on the keypad
  without a pointer, and the result is announced in the live region.
- Focus is visible on every control, at 3:1 against what surrounds it.
- prefers-reduced-motion: reduce stops every transition and animation.

One Chromium and one asyncio-mode server for the module (tests/browser_support.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests import browser_support
from tests.browser_support import (
    PHONE,
    axe_source,
    calculate,
    compute,
    contrast,
    expect,
    key,
    settled,
)
from tests.support import ServerProcess

pytestmark = pytest.mark.browser

# WCAG 2.0, 2.1 and 2.2 at levels A and AA: the tags axe files those success criteria under.
WCAG_22_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": WCAG_22_AA},
    "resultTypes": ["violations", "incomplete"],
}
# No rule is excepted: every audit must come back with no violation at all.
#
# What axe returns as "incomplete" (a person must judge), by rule and axe's message key, and why
# each kind is fine here; a kind not in this table fails the audit until someone decides on it.
REVIEWED: dict[tuple[str, str], str] = {
    ("color-contrast", "bgGradient"): (
        "text on the page's backdrop gradient (heading, tagline, footer): axe cannot measure "
        "it; test_text_on_the_backdrop_gradient_has_contrast measures it against both ends"
    ),
    ("color-contrast", "nonBmp"): (
        "keys whose text is only a symbol (√, −): test_every_key_ink_has_contrast measures "
        "every key's ink on its ground"
    ),
    ("color-contrast", "equalRatio"): (
        "the caret row under the input: an aria-hidden copy of the expression in transparent "
        "ink, only there to place the error caret under the right character"
    ),
    ("label-content-name-mismatch", ""): (
        "keys whose text is a symbol or one letter (√, π, C, ÷, =): axe cannot tell whether "
        "the name contains it; test_every_control_is_named_by_its_visible_text checks that "
        "each name starts with the key's text"
    ),
}
LONG = "2^200/3"  # 60 digits and a 61-digit fraction: the smallest type and the one-line pill
TEXT_CONTRAST = 4.5  # WCAG 1.4.3 (AA), normal text
LARGE_TEXT_CONTRAST = 3.0  # WCAG 1.4.3 for large text: 24 px, or 18.66 px bold
NON_TEXT_CONTRAST = 3.0  # WCAG 1.4.11 (AA): focus indicators and control boundaries
MIN_OUTLINE_PX = 2  # WCAG 2.4.13's focus-appearance thickness (AAA), which we hold ourselves to


# One Chromium and one server for the module's tests.
playwright = browser_support.playwright
browser = browser_support.browser
server = browser_support.server
open_page = browser_support.open_page


@pytest.fixture(scope="module")
def axe() -> str:
    return axe_source()


# ---- the audit -------------------------------------------------------------------------------


def audit(page: Any, axe: str) -> dict[str, list[str]]:
    """Run axe on the page; return what it found, rule -> one line per node (empty: all good).

    Violations are reported as they are; "incomplete" items only when REVIEWED has no entry
    for their kind.
    """
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe)  # once per document; CDP evaluation is not subject to the page's CSP
    results = page.evaluate("options => axe.run(document, options)", AXE_OPTIONS)
    found: dict[str, list[str]] = {}
    for kind, items in (("", results["violations"]), ("review: ", results["incomplete"])):
        for rule in items:
            for node in rule["nodes"]:
                checks = node["any"] + node["all"] + node["none"]
                keys = {message_key(check) for check in checks} or {""}
                if kind and all((rule["id"], k) in REVIEWED for k in keys):
                    continue
                summary = " ".join(node.get("failureSummary", "").split())
                found.setdefault(kind + rule["id"], []).append(
                    f"{', '.join(map(str, node['target']))}: {summary or sorted(keys)}"
                )
    return found


def message_key(check: dict[str, Any]) -> str:
    """Which of a check's messages axe chose ("bgGradient", ...); "" for a check with one."""
    data = check.get("data")
    return str(data.get("messageKey", "")) if isinstance(data, dict) else ""


def assert_clean(findings: dict[str, dict[str, list[str]]]) -> None:
    dirty = {state: found for state, found in findings.items() if found}
    assert dirty == {}, "axe found, by state:\n" + json.dumps(dirty, indent=1, ensure_ascii=False)


LOOKS = {
    "desktop-light": {"color_scheme": "light"},
    "desktop-dark": {"color_scheme": "dark"},
    "phone-light": {
        "color_scheme": "light",
        "viewport": PHONE,
        "is_mobile": True,
        "has_touch": True,
    },
    "phone-dark": {"color_scheme": "dark", "viewport": PHONE, "is_mobile": True, "has_touch": True},
}


@pytest.mark.parametrize("look", list(LOOKS))
def test_every_state_passes_the_audit(open_page: Any, axe: str, look: str) -> None:
    p = open_page(permissions=["clipboard-read", "clipboard-write"], **LOOKS[look])
    page = p.page
    findings = {"idle, empty history": audit(page, axe)}

    compute(page, "3/8+1/4")
    expect(page.locator("#result-value")).to_have_text("0.625")
    findings["result"] = audit(page, axe)

    page.locator("#copy").click()
    expect(page.locator("#copy")).to_have_text("Copied")
    findings["result copied"] = audit(page, axe)

    calculate(page, "12 + * 3")
    settled(page, "error")
    expect(page.locator(".caret-mark")).to_be_visible()
    findings["error"] = audit(page, axe)

    compute(page, LONG)
    expect(page.locator(".result-fraction--long")).to_be_visible()
    findings["long result"] = audit(page, axe)

    compute(page, "sqrt(2)")
    expect(page.locator(".result-badge")).to_be_visible()
    page.locator("#expr").press_sequentially("+1")
    expect(page.locator("#calc-form")).to_have_attribute("data-stale", "true")
    expect(page.locator(".history-item")).to_have_count(3)
    findings["inexact result gone stale, history filled"] = audit(page, axe)
    assert_clean(findings)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_form_post_pages_pass_the_audit(
    open_page: Any, server: ServerProcess, axe: str, scheme: str
) -> None:
    """What the server renders after a plain form post, as a browser without JavaScript shows
    it (keypad and history hidden, a Calculate button) and as one with JavaScript does."""
    p = open_page(scripts=False, color_scheme=scheme)
    page = p.page
    p.scripts_on(True)
    findings = {"no JavaScript, idle": audit(page, axe)}
    for expr, state in [("3/8+1/4", "result"), ("12 + * 3", "error"), (LONG, "result")]:
        page.locator("#expr").fill(expr)
        p.scripts_on(False)
        with page.expect_navigation(url=server.url + "/calculate"):
            page.locator("#expr").press("Enter")  # no script: the browser posts the form
        expect(page.locator("#calc-form")).to_have_attribute("data-state", state)
        p.scripts_on(True)
        # app.js never ran on this document: the <noscript> stylesheet hides the keypad, and the
        # script's first act (marking the output for fitting) did not happen.
        expect(page.locator("#keypad")).to_be_hidden()
        expect(page.locator("#result")).not_to_have_attribute("data-fit", "")
        findings[f"no JavaScript, {expr}"] = audit(page, axe)

    with_js = open_page(color_scheme=scheme).page
    for expr, state in [("3/8+1/4", "result"), ("12 + * 3", "error")]:
        with_js.locator("#expr").fill(expr)
        # form.submit() posts without a submit event, so app.js does not take over: the server
        # renders the page, and app.js then adopts it.
        with with_js.expect_navigation(url=server.url + "/calculate"):
            with_js.evaluate("() => document.querySelector('#calc-form').submit()")
        expect(with_js.locator("#calc-form")).to_have_attribute("data-state", state)
        expect(with_js.locator("#keypad")).to_be_visible()
        findings[f"server-rendered with JavaScript, {expr}"] = audit(with_js, axe)
    assert_clean(findings)


def test_the_audit_catches_a_reintroduced_problem(open_page: Any, axe: str) -> None:
    """The audit is not vacuous: put back the old pale grey and the old name of the x² key,
    and it reports exactly those."""
    page = open_page().page
    assert audit(page, axe) == {}
    page.evaluate(
        """() => {
            document.documentElement.style.setProperty('--ink-faint', '#8a8d97');
            document.querySelector('[data-insert="^2"]').setAttribute('aria-label', 'squared');
        }"""
    )
    found = audit(page, axe)
    assert set(found) == {"color-contrast", "label-content-name-mismatch"}, found
    pale = " ".join(found["color-contrast"])
    for target in ["label", "#keys-help", "#history-empty"]:
        assert f"{target}:" in pale, (target, found["color-contrast"])
    assert [line.split(":")[0] for line in found["label-content-name-mismatch"]] == [
        'button[data-insert="^2"]'
    ]


# ---- checks for what axe leaves to a person --------------------------------------------------

COLOURS = """(selector) => [...document.querySelectorAll(selector)].map(el => {
    const s = getComputedStyle(el);
    return {name: el.getAttribute('aria-label') || el.textContent.trim(), color: s.color,
            background: s.backgroundColor, size: parseFloat(s.fontSize),
            weight: parseInt(s.fontWeight, 10)};
})"""


def needed_contrast(size_px: float, weight: int) -> float:
    large = size_px >= 24 or (size_px >= 18.66 and weight >= 700)
    return LARGE_TEXT_CONTRAST if large else TEXT_CONTRAST


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_key_ink_has_contrast(open_page: Any, scheme: str) -> None:
    page = open_page(color_scheme=scheme).page
    keys = page.evaluate(COLOURS, "#keypad .key")
    assert len(keys) == 30
    low = [
        (k["name"], round(contrast(k["color"], k["background"]), 2))
        for k in keys
        if contrast(k["color"], k["background"]) < needed_contrast(k["size"], k["weight"])
    ]
    assert low == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_on_the_backdrop_gradient_has_contrast(open_page: Any, scheme: str) -> None:
    """The backdrop fades from --bg-glow to --bg: text on it must read on both ends."""
    page = open_page(color_scheme=scheme).page
    ends = page.evaluate(
        """() => { const s = getComputedStyle(document.documentElement);
                   return ['--bg', '--bg-glow'].map(name => s.getPropertyValue(name).trim()); }"""
    )
    texts = page.evaluate(COLOURS, ".masthead h1, .tagline, .footer p")
    assert len(texts) == 3
    for text in texts:
        for end in ends:
            ratio = contrast(text["color"], end)
            assert ratio >= needed_contrast(text["size"], text["weight"]), (text, end, ratio)


def test_every_control_is_named_by_its_visible_text(open_page: Any) -> None:
    """WCAG 2.5.3, Label in Name: each control's accessible name starts with the text it shows
    (so "x²" is "x² square", and a voice user can say what they see). Keys that show an icon
    have no text to contain; they must still have a name."""
    page = open_page().page
    compute(page, "3/8+1/4")
    compute(page, "sqrt(2)")
    expect(page.locator(".history-item")).to_have_count(2)
    controls = page.evaluate(
        """() => [...document.querySelectorAll('button, input')].filter(el => el.checkVisibility())
             .map(el => ({id: el.id || el.className, text: el.innerText.trim(),
                          label: el.getAttribute('aria-label')}))"""
    )
    assert len(controls) >= 30 + 4  # keypad, input, copy, clear, history items
    for control in controls:
        if control["label"] is not None:
            name = control["label"]
            assert name.startswith(control["text"]), control
            assert name.strip(), control
    # Names from content, as Chromium computes them for assistive technology.
    expect(page.locator("#history")).to_match_aria_snapshot(
        """
        - heading "History"
        - button "Clear history"
        - list:
          - listitem:
            - button /^sqrt\\(2\\) ≈ 1\\.41421/
          - listitem:
            - button "3/8+1/4 = 0.625 exactly 5/8"
        """
    )
    expect(key(page, "x² square")).to_have_text("x²")
    expect(key(page, "backspace").locator("svg")).to_have_attribute("aria-hidden", "true")
    expect(page.get_by_role("button", name="Copy", exact=True)).to_be_visible()


# ---- keyboard ------------------------------------------------------------------------------


def focused_key_index(page: Any) -> int:
    index: int = page.evaluate(
        "() => [...document.querySelectorAll('#keypad .key')].indexOf(document.activeElement)"
    )
    return index


def press_on_keypad(page: Any, name: str) -> None:
    """Walk the focus to the key named `name` with the arrow keys, then press Enter on it."""
    target: int = key(page, name).evaluate(
        "k => [...document.querySelectorAll('#keypad .key')].indexOf(k)"
    )
    for _ in range(30):
        here = focused_key_index(page)
        assert here >= 0, "the focus left the keypad"
        if here == target:
            break
        page.keyboard.press("ArrowRight" if target > here else "ArrowLeft")
    expect(key(page, name)).to_be_focused()
    page.keyboard.press("Enter")


def test_keyboard_alone_computes_on_the_keypad_and_hears_the_result(open_page: Any) -> None:
    p = open_page()
    page = p.page
    expect(page.locator("#expr")).to_be_focused()
    page.keyboard.press("Tab")  # the keypad is one tab stop; arrows move within it
    expect(key(page, "7")).to_be_focused()
    for name in ["3", "÷ divide", "8", "+ plus", "1", "÷ divide", "4"]:
        press_on_keypad(page, name)
    expect(page.locator("#expr")).to_have_value("3/8+1/4")
    press_on_keypad(page, "= equals")
    settled(page, "result")

    live = page.locator("#result")
    expect(live).to_have_attribute("aria-live", "polite")
    expect(live).to_have_attribute("aria-atomic", "true")
    # What a screen reader announces: the region's accessible text, "=" sign and the stacked
    # fraction hidden in favour of words.
    expect(live).to_match_aria_snapshot("- status: /equals 0\\.625 ?, exactly 5\\/8/")
    expect(key(page, "= equals")).to_be_focused()  # the keyboard user stays where they were

    # Tab on from the keypad: the history Clear button, then the new history item; Shift+Tab
    # back through the keypad (one stop) and Copy to the input.
    page.keyboard.press("Tab")
    expect(page.locator("#history-clear")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator(".history-item")).to_be_focused()
    for stop in ["#history-clear", "#keypad .key-eq", "#copy", "#expr"]:
        page.keyboard.press("Shift+Tab")
        expect(page.locator(stop)).to_be_focused()

    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(key(page, "= equals")).to_be_focused()
    page.keyboard.press("ArrowUp")
    expect(key(page, "3")).to_be_focused()
    p.shot("readme-focus")  # docs/screenshot-focus.png: the ring on a key, after the sum


FOCUS_STYLE = """() => {
    const el = document.activeElement;
    const s = getComputedStyle(el);
    const display = el.id === 'expr' ? getComputedStyle(el.closest('.display')) : null;
    // What the ring is drawn on: the nearest ancestor with a background of its own.
    let ground = el.parentElement;
    while (getComputedStyle(ground).backgroundColor === 'rgba(0, 0, 0, 0)') {
        ground = ground.parentElement;
    }
    // A scroll box between the control and its panel clips a ring drawn outside the control.
    let scroller = null;
    for (let node = el.parentElement; !node.matches('.calc, .history'); node = node.parentElement) {
        if (getComputedStyle(node).overflowY !== 'visible') {
            scroller = node;
            break;
        }
    }
    return {
        id: el.id || el.getAttribute('aria-label') || el.className,
        focusVisible: el.matches(':focus-visible'),
        outlineStyle: s.outlineStyle, outlineWidth: parseFloat(s.outlineWidth),
        outlineOffset: parseFloat(s.outlineOffset), outlineColor: s.outlineColor,
        inScrollBox: scroller !== null,
        ringShadow: display && display.boxShadow, ringBorder: display && display.borderTopColor,
        ground: getComputedStyle(ground).backgroundColor,
    };
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_focus_is_visible_on_every_control(open_page: Any, scheme: str) -> None:
    """Tab through the page and arrow through the keypad: every control that can take the
    focus shows a ring of at least MIN_OUTLINE_PX at 3:1 against what it is drawn on, and not
    where a scroll box would clip it."""
    page = open_page(color_scheme=scheme).page
    compute(page, "3/8+1/4")
    compute(page, "1/3")
    expect(page.locator(".history-item")).to_have_count(2)  # Copy, Clear and items are live
    focusable = page.evaluate(
        """() => [...document.querySelectorAll('button, input')]
             .filter(el => !el.disabled && el.checkVisibility({visibilityProperty: true}))
             .map(el => el.id || el.getAttribute('aria-label') || el.className)"""
    )
    seen = []
    page.locator("#expr").focus()
    seen.append(page.evaluate(FOCUS_STYLE))
    for _ in range(len(focusable)):
        page.keyboard.press("Tab")
        if page.evaluate("() => !document.activeElement.matches('button, input')"):
            break  # past the last control
        if focused_key_index(page) >= 0:
            page.keyboard.press("Home")
            seen.append(page.evaluate(FOCUS_STYLE))
            for _ in range(29):
                page.keyboard.press("ArrowRight")
                seen.append(page.evaluate(FOCUS_STYLE))
        else:
            seen.append(page.evaluate(FOCUS_STYLE))

    assert sorted(s["id"] for s in seen) == sorted(focusable)
    for style in seen:
        assert style["focusVisible"], style
        if style["id"] == "expr":
            # The input draws no outline of its own: the whole display lights up around it.
            assert style["ringShadow"] != "none", style
            assert contrast(style["ringBorder"], style["ground"]) >= NON_TEXT_CONTRAST, style
        else:
            assert style["outlineStyle"] == "solid", style
            assert style["outlineWidth"] >= MIN_OUTLINE_PX, style
            assert contrast(style["outlineColor"], style["ground"]) >= NON_TEXT_CONTRAST, style
            if style["inScrollBox"]:  # drawn inside the control, or the scroll box cuts it
                assert style["outlineOffset"] + style["outlineWidth"] <= 0, style


# ---- motion --------------------------------------------------------------------------------

MOVING = """() => [...document.querySelectorAll('*')].flatMap(el => [null, '::before', '::after']
    .map(pseudo => [el, pseudo, getComputedStyle(el, pseudo)])
    .filter(([el, pseudo, s]) => {
        const seconds = list => list.split(',').some(v => parseFloat(v) > 0);
        const transition = s.transitionProperty !== 'none' && seconds(s.transitionDuration);
        const animation = s.animationName !== 'none' && seconds(s.animationDuration);
        return transition || animation;
    })
    .map(([el, pseudo]) => (el.id || el.className || el.tagName) + (pseudo || '')))"""


def test_reduced_motion_stops_every_transition(open_page: Any) -> None:
    for motion in ["no-preference", "reduce"]:
        page = open_page(reduced_motion=motion).page
        compute(page, "1/7")
        page.locator("#expr").press_sequentially("+1")  # stale: the result fades
        expect(page.locator("#calc-form")).to_have_attribute("data-stale", "true")
        moving = page.evaluate(MOVING)
        if motion == "reduce":
            assert moving == []
        else:  # the check sees motion where there is some
            assert "result" in moving and any(name.startswith("key ") for name in moving), moving
