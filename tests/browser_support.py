"""The calculator page in a real browser: headless Debian Chromium driven by Playwright.

Shared by the browser test modules (test_browser.py: behaviour; test_accessibility.py: axe-core
audits, keyboard, focus, motion). Each module launches one Chromium and one asyncio-mode server
(`python -m app`) for all its tests, and every test gets a fresh browser context (own
localStorage, own viewport). Screenshots land in test-artifacts/.

Chromium, the playwright package or (for the audits) npm missing: skipped with the reason on a
developer machine, a failure when CI is set (.ci/run installs Chromium and npm).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, ServerProcess, running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
DESKTOP = {"width": 1200, "height": 820}
PHONE = {"width": 375, "height": 740}
TIMEOUT_MS = 15_000  # generous: two cores shared with the rest of the suite

playwright_api: Any
try:
    playwright_api = importlib.import_module("playwright.sync_api")
    playwright_api.expect.set_options(timeout=TIMEOUT_MS)
except ImportError:  # the test extra is not installed: the browser fixture says so
    playwright_api = None


def expect(target: Any) -> Any:
    return playwright_api.expect(target)


def cannot_run(reason: str) -> None:
    """Skip on a developer machine; fail under CI, where every browser test must run."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so browser tests must run, but {reason}")
    pytest.skip(reason)


# ---- fixtures: a test module takes them with `browser = browser_support.browser` etc., and gets
# one Chromium and one server for all of its tests --------------------------------------------


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    """One Playwright per module: the sync API cannot run two at once (a test that needs a
    Chromium with other flags launches it from this one)."""
    missing = []
    if playwright_api is None:
        missing.append("the playwright package is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} is not installed (apt-get install chromium)")
    if missing:
        cannot_run("; ".join(missing))
    with playwright_api.sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    chromium = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with running_server("asyncio") as srv:
        yield srv


class Page:
    """A page in its own context, collecting console errors and uncaught exceptions.

    `scripts=False` loads the page the way a browser without JavaScript does (the <noscript>
    stylesheet applies, app.js never runs) while still letting the test evaluate scripts of its
    own afterwards: see `scripts_on`.
    """

    def __init__(self, browser: Any, url: str, *, scripts: bool = True, **context: Any) -> None:
        self.context = browser.new_context(**{"viewport": DESKTOP, **context})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))
        self.page.on("console", self._console)
        self.url = url
        self._cdp: Any = None
        if not scripts:
            self._cdp = self.context.new_cdp_session(self.page)
            self.scripts_on(False)
        self.page.goto(url)

    def scripts_on(self, on: bool) -> None:
        """Switch the page's script execution (Chromium's, through the DevTools protocol).

        Playwright's `java_script_enabled=False` also stops the timers and promises that an
        evaluated script needs (axe.run never settles), so the no-JavaScript pages are loaded
        with execution off and it is switched back on only to audit them: a document parsed
        without scripts stays so (<noscript> was rendered, deferred app.js was skipped).
        """
        assert self._cdp is not None, "open the page with scripts=False"
        self._cdp.send("Emulation.setScriptExecutionDisabled", {"value": not on})

    def _console(self, message: Any) -> None:
        # A 422 for an expression that does not evaluate is expected; anything else is not.
        if message.type == "error" and "422" not in message.text:
            self.problems.append(f"console: {message.text}")

    def shot(self, name: str, *, full_page: bool = False) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        assert path.stat().st_size > 1000
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser: Any, server: ServerProcess) -> Iterator[Callable[..., Page]]:
    """Open pages of the calculator; at the end, close them and fail the test if any of them
    logged a console error or threw."""
    pages: list[Page] = []

    def _open(**context: Any) -> Page:
        page = Page(browser, server.url + "/", **context)
        pages.append(page)
        return page

    yield _open
    for page in pages:
        problems = page.problems
        page.close()
        assert problems == [], problems


def calculate(page: Any, expr: str) -> None:
    """Type an expression into the (focused) input and press Enter."""
    field = page.locator("#expr")
    field.fill("")
    field.press_sequentially(expr)
    field.press("Enter")


def settled(page: Any, state: str) -> None:
    """Wait until the display shows `state` for the expression in the input, and no request is
    in flight (a request sent while one is pending cancels it)."""
    form = page.locator("#calc-form")
    expect(form).to_have_attribute("data-state", state)
    expect(form).not_to_have_attribute("aria-busy", "true")
    expect(form).not_to_have_attribute("data-stale", "true")


def compute(page: Any, expr: str) -> None:
    """calculate() and wait for its result."""
    calculate(page, expr)
    settled(page, "result")


def key(page: Any, name: str) -> Any:
    return page.locator("#keypad").get_by_role("button", name=name, exact=True)


# ---- colour ----------------------------------------------------------------------------------


def rgb(css_color: str) -> tuple[float, float, float]:
    """The channels (0-1) of a computed colour, "rgb(r, g, b)" or "#rrggbb"."""
    if css_color.startswith("#"):
        values = [int(css_color[i : i + 2], 16) for i in (1, 3, 5)]
    else:
        values = [int(v) for v in re.findall(r"\d+", css_color)[:3]]
    r, g, b = (v / 255 for v in values)
    return r, g, b


def relative_luminance(css_color: str) -> float:
    """WCAG 2.2's relative luminance (the definition under "contrast ratio")."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb(css_color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two opaque colours, 1 to 21."""
    light, dark = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


# ---- axe-core --------------------------------------------------------------------------------

# axe-core, the engine behind Lighthouse's accessibility score, at the version issue 17 was
# audited with. Not the PyPI wrapper axe-playwright-python: its 0.1.8 bundles axe 4.12.1, where
# the Label-in-Name rule (label-content-name-mismatch) is still "experimental" and a run by WCAG
# tags skips it, so it passes the very keypad the issue reported.
AXE_VERSION = "4.14.1"
# npm's dist.integrity of axe-core@4.14.1: the tarball is checked against it before use.
AXE_INTEGRITY = (
    "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
)
AXE_CACHE = ROOT / ".cache" / f"axe-core-{AXE_VERSION}"
NPM_TIMEOUT = 120  # seconds for `npm pack`: one 600 kB download, on a shared machine


def axe_source() -> str:
    """axe.min.js of AXE_VERSION: fetched once with `npm pack`, verified, kept in .cache/."""
    script = AXE_CACHE / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            cannot_run("npm is not installed (apt-get install npm): it fetches axe-core")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                subprocess.run(
                    [npm, "pack", f"axe-core@{AXE_VERSION}", "--pack-destination", tmp],
                    check=True,
                    capture_output=True,
                    timeout=NPM_TIMEOUT,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                stderr = getattr(exc, "stderr", b"") or b""
                cannot_run(f"npm pack axe-core@{AXE_VERSION} failed: {stderr.decode()[-500:]}")
            tarball = (Path(tmp) / f"axe-core-{AXE_VERSION}.tgz").read_bytes()
        digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
        assert digest == AXE_INTEGRITY, f"axe-core tarball does not match: {digest}"
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
            member = archive.extractfile("package/axe.min.js")
            assert member is not None
            text = member.read().decode("utf-8")
        AXE_CACHE.mkdir(parents=True, exist_ok=True)
        partial = script.with_suffix(".partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(script)  # atomic: a concurrent run never reads half a file
    text = script.read_text(encoding="utf-8")
    assert text.startswith(f"/*! axe v{AXE_VERSION}"), "unexpected file in " + str(AXE_CACHE)
    return text
