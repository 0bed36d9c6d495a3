"""The calculator as every peer serves it.

The peers answer `POST /calculate` (form-encoded `expr=...`) with the same JSON our routes give a
client that does not ask for HTML, through the same `app.calculator.evaluate`, so the benchmark
compares the servers and not the arithmetic. `GET /` answers the same page (rendered by
`app.page.render_page` when the page helper's code is present, else a constant stand-in).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qs

import common  # noqa: F401  (puts the project root on sys.path)

from app.calculator import CalcError, evaluate

JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"


def calculate_form(body: bytes) -> tuple[int, bytes]:
    """Evaluate `expr` of a form body; return (status, JSON body) like our routes do."""
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return 400, _error("bad_request", "the form is not UTF-8")
    values = fields.get("expr")
    if not values:
        return 400, _error("bad_request", "missing field 'expr'")
    try:
        result = evaluate(values[0])
    except CalcError as err:
        return 422, _json({"error": err.to_json()})
    return 200, _json(result.to_json())


def _error(kind: str, message: str) -> bytes:
    return _json({"error": {"kind": kind, "message": message}})


def _json(value: object) -> bytes:
    # The same serialisation as app/routes.py, so every server sends the same bytes.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def page_renderer() -> Callable[[], bytes]:
    """Return a function producing the `GET /` page the way our routes do."""
    try:
        from app.page import render_page
        from app.routes import load_assets
    except ImportError:  # the page helper's code is not there yet: a constant stand-in
        constant = b"<!doctype html><title>calculator</title><form method=post></form>\n"
        return lambda: constant
    template = load_assets()["index.html"].body.decode()
    return lambda: render_page(template)
