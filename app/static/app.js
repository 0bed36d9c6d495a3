// calcserve calculator page: progressive enhancement over a plain HTML form.
//
// Without this script the form posts `expr` to /calculate and the server answers with the whole
// page (app/page.py). With it, the same form is sent as JSON with fetch and the answer is drawn
// in place, using the very same markup that app/page.py renders; the keypad, the keyboard
// shortcuts, the copy button and the history (kept in localStorage) come alive.
//
// No inline scripts or styles, no eval, no innerHTML of anything the user or the server said:
// the page runs under a strict Content-Security-Policy.

"use strict";

(() => {
  const HISTORY_KEY = "calcserve.history.v1";
  const HISTORY_MAX = 50;
  // Same titles and size cut-offs as app/page.py.
  const ERROR_TITLES = {
    syntax: "Syntax error",
    unknown_name: "Unknown name",
    domain: "Outside the domain",
    division_by_zero: "Division by zero",
    limit: "Too large",
    too_many_requests: "Too many at once",
    unavailable: "Server busy",
    internal: "Server error",
  };
  const MIN_FONT_PX = 14;
  const LONG_FRACTION = 16; // longer fractions are written on one line, not stacked
  const SIZES = [
    [28, " result-value--huge"],
    [18, " result-value--longer"],
    [12, " result-value--long"],
  ];
  // Characters that, typed anywhere on the page, go to the expression.
  const TYPABLE = /^[0-9A-Za-z.,+\-*/^%!()\s]$/;

  const $ = (selector) => document.querySelector(selector);
  const form = $("#calc-form");
  const input = $("#expr");
  const caretRow = $("#caret-row");
  const output = $("#result");
  const copyButton = $("#copy");
  const copyLabel = copyButton.querySelector(".copy-label");
  const statusLine = $("#status");
  const keypad = $("#keypad");
  const keys = Array.from(keypad.querySelectorAll(".key"));
  const historyList = $("#history-list");
  const historyEmpty = $("#history-empty");
  const historyClear = $("#history-clear");
  const finePointer = window.matchMedia("(pointer: fine)");

  let shown = null; // {expr, result, exact, fraction} on display, or null
  let inflight = null; // AbortController of the request being waited for
  let copiedTimer = 0;

  // ---- small DOM helpers ---------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function announce(message) {
    statusLine.textContent = "";
    // A fresh text node after a tick makes screen readers announce a repeated message too.
    window.setTimeout(() => {
      statusLine.textContent = message;
    }, 50);
  }

  // ---- display states (markup mirrors app/page.py) -------------------------------------

  function setState(state) {
    form.dataset.state = state;
    input.setAttribute("aria-invalid", state === "error" ? "true" : "false");
    delete form.dataset.stale;
    copyButton.disabled = state !== "result";
    resetCopyLabel();
  }

  function showIdle() {
    shown = null;
    setState("idle");
    caretRow.replaceChildren();
    output.replaceChildren();
  }

  function sizeClass(display) {
    const size = SIZES.find(([limit]) => display.length > limit);
    return size ? size[1] : "";
  }

  function showResult(data) {
    shown = {
      expr: String(data.expr),
      result: String(data.result),
      exact: Boolean(data.exact),
      fraction: data.fraction ? String(data.fraction) : null,
    };
    const exact = shown.exact;
    const parts = [];
    const sign = el("span", "result-sign", exact ? "=" : "≈");
    sign.setAttribute("aria-hidden", "true");
    const value = el("span", "result-value" + sizeClass(shown.result), shown.result);
    value.id = "result-value";
    const main = el("span", "result-main");
    main.append(sign, el("span", "visually-hidden", exact ? "equals " : "approximately "), value);
    parts.push(main);
    if (shown.fraction) {
      const [numerator, denominator = ""] = shown.fraction.split("/");
      const long = shown.fraction.length > LONG_FRACTION;
      const pill = el("span", "result-fraction" + (long ? " result-fraction--long" : ""));
      pill.title = "exact fraction";
      const frac = el("span", "frac");
      frac.setAttribute("aria-hidden", "true");
      frac.append(el("span", "frac-num", numerator), el("span", "frac-den", denominator));
      pill.append(el("span", "visually-hidden", ", exactly " + shown.fraction), frac);
      parts.push(pill);
    }
    if (!exact) parts.push(el("span", "result-badge", "approx."));
    setState("result");
    caretRow.replaceChildren();
    output.replaceChildren(...parts);
    fitResult();
  }

  // Shrink a long number until it fits on one line; below MIN_FONT_PX let it wrap instead.
  function fitResult() {
    const value = output.querySelector(".result-value");
    if (!value) return;
    value.style.fontSize = "";
    value.style.maxWidth = "";
    value.classList.remove("result-value--wrap");
    const main = value.parentElement;
    const room = output.clientWidth - 1;
    const needed = main.scrollWidth;
    if (room <= 0 || needed <= room) return;
    const width = value.getBoundingClientRect().width; // inline: scrollWidth would be 0
    const fixed = needed - width; // the sign and its gap
    const size = parseFloat(window.getComputedStyle(value).fontSize);
    const fitted = Math.floor(((size * (room - fixed)) / width) * 10) / 10;
    if (fitted >= MIN_FONT_PX) {
      value.style.fontSize = `${fitted}px`;
    } else {
      // Too long even at the smallest size: wrap it into lines of equal length (in ch, which
      // is exact for the monospaced face that long numbers use) so no digits dangle alone.
      value.style.fontSize = `${MIN_FONT_PX}px`;
      value.classList.add("result-value--wrap");
      const lines = Math.ceil((width * MIN_FONT_PX) / size / (room - fixed));
      const length = value.textContent.length;
      value.style.maxWidth = `${Math.ceil(length / Math.max(lines, 1))}ch`;
    }
  }

  function caretParts(expr, position, length) {
    const strip = (text) => text.replace(/[\r\n]/g, "");
    const start = Math.min(Math.max(position, 0), expr.length);
    const end = Math.min(start + Math.max(length, 1), expr.length);
    return [
      el("span", "caret-before", strip(expr.slice(0, start))),
      el("span", "caret-mark", strip(expr.slice(start, end)) || " "),
      el("span", "caret-after", strip(expr.slice(end))),
    ];
  }

  function showError(expr, error) {
    shown = null;
    const hasPosition = Number.isInteger(error.position);
    const box = el("span", "error");
    box.id = "error-message";
    box.dataset.kind = String(error.kind || "error");
    const where = !hasPosition
      ? ""
      : error.position >= expr.length
        ? "at the end"
        : "at character " + (error.position + 1);
    const title = ERROR_TITLES[error.kind] || "Error";
    const message = String(error.message || "Something went wrong.");
    // Drop a leading repeat of the title: "Unknown name" + " 'sqr' — did you mean 'sqrt'?"
    const rest = message.toLowerCase().startsWith(title.toLowerCase())
      ? message.slice(title.length)
      : " " + message;
    box.append(el("span", "error-title", title), el("span", "error-text", rest));
    if (where) {
      box.dataset.position = String(error.position);
      box.dataset.length = String(error.length || 1);
      box.append(" ", el("span", "error-where", where));
    }
    setState("error");
    if (hasPosition) {
      caretRow.replaceChildren(...caretParts(expr, error.position, error.length || 1));
    } else {
      caretRow.replaceChildren();
    }
    output.replaceChildren(box);
    syncCaretScroll();
  }

  function syncCaretScroll() {
    caretRow.scrollLeft = input.scrollLeft;
  }

  // ---- talking to the server -----------------------------------------------------------

  async function calculate() {
    const expr = input.value;
    if (inflight) inflight.abort();
    if (!expr.trim()) {
      showIdle();
      return;
    }
    const controller = new AbortController();
    inflight = controller;
    form.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(form.action, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ expr }),
        signal: controller.signal,
      });
      let data = null;
      try {
        data = await response.json();
      } catch {
        data = null;
      }
      if (controller.signal.aborted) return;
      if (response.ok && data && typeof data.result === "string") {
        showResult(data);
        addToHistory(shown);
      } else if (data && data.error && typeof data.error === "object") {
        showError(expr, data.error);
      } else {
        showError(expr, {
          kind: "server",
          message: `The server answered ${response.status} ${response.statusText}.`.trim(),
        });
      }
    } catch (err) {
      if (err && err.name === "AbortError") return;
      showError(expr, {
        kind: "network",
        message: "Could not reach the server. Check the connection and try again.",
      });
    } finally {
      if (inflight === controller) {
        inflight = null;
        form.removeAttribute("aria-busy");
      }
    }
  }

  // ---- editing -------------------------------------------------------------------------

  function afterEdit() {
    if (form.dataset.state === "error") {
      // The caret pointed into the old text; once the text changes it would point at nonsense.
      showIdle();
    } else if (shown && input.value !== shown.expr) {
      form.dataset.stale = "true";
    } else {
      delete form.dataset.stale;
    }
    syncCaretScroll();
  }

  function replaceSelection(text, wrapSelection) {
    const value = input.value;
    const start = input.selectionStart ?? value.length;
    const end = input.selectionEnd ?? start;
    let inserted = text;
    if (wrapSelection && end > start && text.endsWith("(")) {
      inserted = text + value.slice(start, end) + ")";
    }
    input.value = value.slice(0, start) + inserted + value.slice(end);
    const caret = start + inserted.length;
    input.setSelectionRange(caret, caret);
    afterEdit();
  }

  function backspace() {
    const value = input.value;
    let start = input.selectionStart ?? value.length;
    const end = input.selectionEnd ?? start;
    if (start === end) {
      if (start === 0) return;
      start -= 1;
    }
    input.value = value.slice(0, start) + value.slice(end);
    input.setSelectionRange(start, start);
    afterEdit();
  }

  function clearAll() {
    if (inflight) inflight.abort();
    input.value = "";
    showIdle();
  }

  // ---- copy ----------------------------------------------------------------------------

  function resetCopyLabel() {
    window.clearTimeout(copiedTimer);
    delete copyButton.dataset.copied;
    copyLabel.textContent = "Copy";
  }

  async function copyResult() {
    if (!shown) return;
    const text = shown.result;
    let ok = false;
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch {
      // No async clipboard (plain http on a LAN address): fall back to a selected textarea.
      const area = el("textarea", "visually-hidden");
      area.value = text;
      area.setAttribute("readonly", "");
      document.body.append(area);
      area.select();
      try {
        ok = document.execCommand("copy");
      } catch {
        ok = false;
      }
      area.remove();
    }
    window.clearTimeout(copiedTimer);
    if (ok) {
      copyButton.dataset.copied = "";
      copyLabel.textContent = "Copied";
      announce("Result copied to the clipboard");
    } else {
      copyLabel.textContent = "Copy failed";
      announce("Could not copy; select the result and copy it by hand");
    }
    copiedTimer = window.setTimeout(resetCopyLabel, 1600);
  }

  // ---- history -------------------------------------------------------------------------

  function validEntry(entry) {
    return (
      entry &&
      typeof entry.expr === "string" &&
      typeof entry.result === "string" &&
      entry.expr.length <= 10000
    );
  }

  function loadHistory() {
    try {
      const parsed = JSON.parse(window.localStorage.getItem(HISTORY_KEY) || "[]");
      return Array.isArray(parsed) ? parsed.filter(validEntry).slice(0, HISTORY_MAX) : [];
    } catch {
      return [];
    }
  }

  function saveHistory(entries) {
    try {
      window.localStorage.setItem(HISTORY_KEY, JSON.stringify(entries));
    } catch {
      // Private mode or a full quota: the history just does not survive the reload.
    }
  }

  function addToHistory(entry) {
    const entries = loadHistory().filter((old) => old.expr !== entry.expr);
    entries.unshift({
      expr: entry.expr,
      result: entry.result,
      exact: entry.exact,
      fraction: entry.fraction,
    });
    saveHistory(entries.slice(0, HISTORY_MAX));
    renderHistory();
  }

  function renderHistory() {
    const entries = loadHistory();
    const items = entries.map((entry, index) => {
      const item = el("li");
      const button = el("button", "history-item");
      button.type = "button";
      button.dataset.index = String(index);
      // The name is the text on the button (WCAG 2.5.3, Label in Name): "1/4 = 0.25 exactly
      // 1/4"; what pressing it does is its description.
      button.setAttribute("aria-describedby", "history-use");
      const result = el("span", "history-result");
      const sign = entry.exact === false ? "≈ " : "= ";
      result.append(el("span", "history-value", sign + entry.result));
      if (entry.fraction) {
        const fraction = el("span", "history-fraction");
        fraction.append(el("span", "visually-hidden", "exactly "), entry.fraction);
        result.append(fraction);
      }
      button.append(el("span", "history-expr", entry.expr), " ", result);
      item.append(button);
      return item;
    });
    historyList.replaceChildren(...items);
    historyEmpty.hidden = entries.length > 0;
    historyClear.disabled = entries.length === 0;
  }

  function reuseHistory(index) {
    const entry = loadHistory()[index];
    if (!entry) return;
    if (inflight) inflight.abort();
    input.value = entry.expr;
    showResult(entry);
    input.focus();
    input.setSelectionRange(entry.expr.length, entry.expr.length);
    syncCaretScroll();
  }

  // ---- keypad: pointer and roving focus ------------------------------------------------

  function pressKey(key, fromKeyboard) {
    const action = key.dataset.action;
    if (action === "clear") clearAll();
    else if (action === "backspace") backspace();
    else if (key.dataset.insert !== undefined) replaceSelection(key.dataset.insert, true);
    // With a mouse, keep typing where you were. On touch screens leave the focus alone, so the
    // on-screen keyboard does not cover the keypad. From the keyboard, stay on the key.
    if (!fromKeyboard && finePointer.matches) input.focus();
  }

  function flash(key) {
    key.dataset.pressed = "";
    window.setTimeout(() => delete key.dataset.pressed, 90);
  }

  function setRovingKey(target) {
    for (const key of keys) key.tabIndex = key === target ? 0 : -1;
  }

  function neighbour(from, direction) {
    const index = keys.indexOf(from);
    if (direction === "ArrowLeft") return keys[index - 1];
    if (direction === "ArrowRight") return keys[index + 1];
    if (direction === "Home") return keys[0];
    if (direction === "End") return keys[keys.length - 1];
    // Up and down: the nearest row above or below, then the key closest in x.
    const here = from.getBoundingClientRect();
    const cx = here.left + here.width / 2;
    const rows = keys
      .filter((key) => key !== from)
      .map((key) => ({ key, rect: key.getBoundingClientRect() }))
      .filter(({ rect }) =>
        direction === "ArrowUp" ? rect.bottom <= here.top + 1 : rect.top >= here.bottom - 1,
      );
    if (rows.length === 0) return undefined;
    const rowY =
      direction === "ArrowUp"
        ? Math.max(...rows.map(({ rect }) => rect.top))
        : Math.min(...rows.map(({ rect }) => rect.top));
    const row = rows.filter(({ rect }) => Math.abs(rect.top - rowY) < 2);
    row.sort(
      (a, b) =>
        Math.abs(a.rect.left + a.rect.width / 2 - cx) -
        Math.abs(b.rect.left + b.rect.width / 2 - cx),
    );
    return row[0].key;
  }

  // ---- wiring --------------------------------------------------------------------------

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    calculate();
  });

  input.addEventListener("input", afterEdit);
  input.addEventListener("scroll", syncCaretScroll);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      clearAll();
    } else if (event.key === "=" && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      calculate();
    }
  });

  // Pressing a key with the mouse must not steal the focus (or the selection) from the input.
  keypad.addEventListener("mousedown", (event) => {
    if (event.target.closest(".key")) event.preventDefault();
  });

  keypad.addEventListener("click", (event) => {
    const key = event.target.closest(".key");
    if (!key || key.type === "submit") return; // "=" submits the form
    // detail is 0 when the click came from Enter or Space on a focused key.
    pressKey(key, event.detail === 0);
    flash(key);
  });

  keypad.addEventListener("focusin", (event) => {
    if (event.target.classList.contains("key")) setRovingKey(event.target);
  });

  keypad.addEventListener("keydown", (event) => {
    const key = event.target.closest(".key");
    if (!key) return;
    if (["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End"].includes(event.key)) {
      const next = neighbour(key, event.key);
      event.preventDefault();
      if (next) next.focus();
    }
  });

  copyButton.addEventListener("click", copyResult);

  historyList.addEventListener("click", (event) => {
    const item = event.target.closest(".history-item");
    if (item) reuseHistory(Number(item.dataset.index));
  });

  historyClear.addEventListener("click", () => {
    saveHistory([]);
    renderHistory();
    announce("History cleared");
    input.focus();
  });

  window.addEventListener("storage", (event) => {
    if (event.key === HISTORY_KEY || event.key === null) renderHistory();
  });

  // Typing anywhere on the page edits the expression; Enter and Escape work from anywhere
  // that is not itself a control.
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target === input || target.closest("input, textarea, select, [contenteditable]")) return;
    const onControl = Boolean(target.closest("button, a, summary"));
    if (event.key === "Escape") {
      event.preventDefault();
      clearAll();
      input.focus();
    } else if (event.key === "Backspace" && !onControl) {
      event.preventDefault();
      backspace();
    } else if ((event.key === "Enter" && !onControl) || event.key === "=") {
      event.preventDefault();
      calculate();
    } else if (TYPABLE.test(event.key) && !(onControl && event.key === " ")) {
      event.preventDefault();
      input.focus();
      replaceSelection(event.key, false);
    }
  });

  // ---- start ---------------------------------------------------------------------------

  output.dataset.fit = "";
  if (window.ResizeObserver) {
    let width = output.clientWidth;
    new ResizeObserver(() => {
      if (output.clientWidth !== width) {
        width = output.clientWidth;
        fitResult();
      }
    }).observe(output);
  }

  setRovingKey(keys.find((key) => key.dataset.insert === "7") || keys[0]);
  renderHistory();
  const end = input.value.length;
  input.setSelectionRange(end, end);
  const initial = form.dataset.state;
  if (initial === "result") {
    // Rendered by the server after a form post: adopt it so that Copy works.
    const value = $("#result-value");
    shown = value ? { expr: input.value, result: value.textContent, exact: true, fraction: null } : null;
    copyButton.disabled = !shown;
    fitResult();
  }
  syncCaretScroll();
})();
