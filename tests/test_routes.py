"""Routes.handle over real Request values, parsed from bytes by the protocol core."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app import routes
from app.calculator import Result, evaluate
from app.protocol import Connection, Request, Response, render
from app.routes import STATIC_DIR, Routes, _result_json, build_assets, load_assets, parse_form

ROUTES = Routes(load_assets())
FORM = "application/x-www-form-urlencoded"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def request(method: str, target: str, body: bytes = b"", **headers: str) -> Request:
    lines = [f"{method} {target} HTTP/1.1", "Host: test"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    conn = Connection()
    conn.receive_data("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body)
    event = conn.next_event()
    assert isinstance(event, Request)
    return event


def handle(method: str, target: str, body: bytes = b"", **headers: str) -> Response:
    return ROUTES.handle(request(method, target, body, **headers))


def header(resp: Response, name: str) -> str | None:
    return next((v for k, v in resp.headers if k.lower() == name.lower()), None)


def as_json(resp: Response) -> object:
    assert header(resp, "content-type") == "application/json"
    return json.loads(resp.body)


# --- page, health, static ---


def test_page() -> None:
    resp = handle("GET", "/")
    assert resp.status == 200 and header(resp, "content-type") == "text/html; charset=utf-8"
    assert b"<form" in resp.body and b"{{" not in resp.body
    # No inline script or style: the page forbids both, rendered results included.
    for page in (resp, handle("POST", "/calculate", b"expr=1", Content_Type=FORM,
                              Accept=BROWSER_ACCEPT)):
        csp = header(page, "content-security-policy") or ""
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp


def test_head_page_has_same_length_and_no_body_on_the_wire() -> None:
    req = request("HEAD", "/")
    resp = ROUTES.handle(req)
    wire = render(req, resp)
    assert wire.endswith(b"\r\n\r\n") and f"Content-Length: {len(resp.body)}".encode() in wire


def test_healthz() -> None:
    resp = handle("GET", "/healthz")
    assert (resp.status, resp.body) == (200, b"ok")


def test_static_asset_with_etag_and_304() -> None:
    resp = handle("GET", "/static/app.css")
    assert resp.status == 200 and header(resp, "content-type") == "text/css; charset=utf-8"
    assert resp.body == (STATIC_DIR / "app.css").read_bytes()
    etag = header(resp, "etag")
    assert etag is not None and etag.startswith('"') and len(etag) == 18
    assert header(resp, "cache-control") == "no-cache"
    again = handle("GET", "/static/app.css", If_None_Match=f'W/"nope", {etag}')
    assert again.status == 304 and again.body == b"" and header(again, "etag") == etag
    assert handle("GET", "/static/app.css", If_None_Match='"other"').status == 200
    assert handle("GET", "/static/app.css", If_None_Match="*").status == 304


@pytest.mark.parametrize(
    "target",
    [
        "/static/../pyproject.toml",
        "/static/%2e%2e/routes.py",
        "/static/..%2fprotocol.py",
        "/static/.hidden",
        "/static/",
        "/static//etc/passwd",
        "/static/app.css/",
        "/static/app.css%00",
        "/static/nope.js",
        "/nope",
        "/calculate/",
        "/STATIC/app.css",
        # Escapes of reserved characters and of "%" itself are never decoded (RFC 3986 6.2.2.2),
        # and "." / ".." are plain names here, never dot-segments.
        "/static/%2e%2e/pyproject.toml",
        "/static/%2E%2E/%2E%2E/pyproject.toml",
        "/static/..%2Fpyproject.toml",
        "/static/..%2froutes.py",
        "/static%2Fapp.css",
        "/static/%2Fetc%2Fpasswd",
        "/static/app.css%2F",
        "/%2568ealthz",
        "/healthz%00",
        "/static/%2e",
        "/static/.%2e",
    ],
)
def test_unknown_and_traversal_paths_are_404(target: str) -> None:
    resp = handle("GET", target)
    assert resp.status == 404 and resp.body == b"404 Not Found\n"


@pytest.mark.parametrize(
    ("target", "same_as"),
    [
        ("/%63alculate?expr=1%2B2", "/calculate?expr=1%2B2"),
        ("/%68%65%61%6C%74%68%7a", "/healthz"),
        ("/st%61tic/app.css", "/static/app.css"),
        ("/static/app%2ecss", "/static/app.css"),
        ("/static/app%2Ecss", "/static/app.css"),
        ("/%73%74%61%74%69%63/%61%70%70.css", "/static/app.css"),
        ("/static/favicon%2Esvg", "/static/favicon.svg"),
        ("/h%65althz?x=%7E", "/healthz?x=%7E"),
    ],
)
def test_escaped_unreserved_characters_are_the_characters(target: str, same_as: str) -> None:
    """RFC 3986 6.2.2.2: %-encoded unreserved characters are equivalent to the characters."""
    got, want = handle("GET", target), handle("GET", same_as)
    assert got.status == want.status == 200 and got.body == want.body


def test_no_request_ever_reads_outside_the_static_folder() -> None:
    # Every asset is a file loaded from STATIC_DIR at start-up, and matching can only pick one of
    # them: whatever a traversal names, the body served is one of those files or an error text.
    bodies = {path.read_bytes() for path in STATIC_DIR.iterdir() if path.is_file()}
    for target in ["/static/%2e%2e/routes.py", "/static/%2e%2e%2froutes.py", "/static/..",
                   "/st%61tic/%2E%2E/__init__.py", "/static/%2e%2e/%2e%2e/pyproject.toml"]:
        resp = handle("GET", target)
        assert resp.status == 404 and resp.body not in bodies
    assert handle("GET", "/st%61tic/app%2ecss").body in bodies


def test_build_assets_types_and_etags() -> None:
    assets = build_assets({"a.js": b"x", "b.svg": b"<svg/>", "c.bin": b"\0", "index.html": b"h"})
    assert assets["a.js"].content_type == "text/javascript; charset=utf-8"
    assert assets["b.svg"].content_type == "image/svg+xml"
    assert assets["c.bin"].content_type == "application/octet-stream"
    assert assets["a.js"].etag != assets["c.bin"].etag


@pytest.mark.parametrize(
    ("method", "target", "allow"),
    [
        ("POST", "/", "GET, HEAD, OPTIONS"),
        ("DELETE", "/calculate", "GET, HEAD, POST, OPTIONS"),
        ("PUT", "/healthz", "GET, HEAD, OPTIONS"),
        ("POST", "/static/app.css", "GET, HEAD, OPTIONS"),
        ("TRACE", "/", "GET, HEAD, OPTIONS"),
        ("PATCH", "/%63alculate", "GET, HEAD, POST, OPTIONS"),
    ],
)
def test_known_path_wrong_method_is_405(method: str, target: str, allow: str) -> None:
    """RFC 9110 15.5.6: a method the server knows but the resource does not take; MUST Allow."""
    resp = handle(method, target)
    assert resp.status == 405 and header(resp, "allow") == allow


@pytest.mark.parametrize(
    ("method", "target"),
    [("BREW", "/"), ("-BLARGH", "/foo"), ("get", "/healthz"), ("FROB", "/calculate"),
     ("BREW", "/static/app.css"), ("M-SEARCH", "/nowhere"), ("PROPFIND", "/static/nope.css")],
)
def test_unrecognised_method_is_501_on_any_path(method: str, target: str) -> None:
    """RFC 9110 9.1: methods are case-sensitive tokens ("-" is a tchar); an unrecognised one
    SHOULD get 501, whether or not the path exists."""
    resp = handle(method, target)
    assert resp.status == 501 and header(resp, "allow") is None and not resp.close


def test_known_method_on_unknown_path_is_404() -> None:
    assert handle("DELETE", "/nowhere").status == 404
    assert handle("OPTIONS", "/nowhere").status == 404


@pytest.mark.parametrize(
    ("target", "allow"),
    [
        ("*", "GET, HEAD, POST, OPTIONS"),
        ("/", "GET, HEAD, OPTIONS"),
        ("/calculate", "GET, HEAD, POST, OPTIONS"),
        ("/calculate?expr=1", "GET, HEAD, POST, OPTIONS"),
        ("/%63alculate", "GET, HEAD, POST, OPTIONS"),
        ("/healthz", "GET, HEAD, OPTIONS"),
        ("/static/app.css", "GET, HEAD, OPTIONS"),
    ],
)
def test_options_says_what_is_allowed(target: str, allow: str) -> None:
    """RFC 9110 9.3.7: Allow, and Content-Length: 0 when there is no content (so 200, as 8.6
    forbids Content-Length in a 204)."""
    req = request("OPTIONS", target)
    resp = ROUTES.handle(req)
    assert (resp.status, resp.body, header(resp, "allow")) == (200, b"", allow)
    wire = render(req, resp)
    assert wire.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nContent-Length: 0\r\n" in wire


# --- /calculate ---


def test_get_calculate_json_and_text() -> None:
    resp = handle("GET", "/calculate?expr=1%2F3")
    assert resp.status == 200
    body = as_json(resp)
    assert isinstance(body, dict) and body["expr"] == "1/3" and body["fraction"] == "1/3"
    text = handle("GET", "/calculate?expr=1%2B2", Accept="text/plain")
    assert (text.status, text.body) == (200, b"3\n")
    assert handle("GET", "/calculate?expr=2", Accept="text/plain;q=0.5, */*").status == 200
    assert (
        header(handle("GET", "/calculate?expr=2", Accept="text/plain;q=0.5, */*"), "content-type")
        == "application/json"
    )


def test_form_post_prefers_html_for_browsers_and_json_otherwise() -> None:
    html = handle("POST", "/calculate", b"expr=1+%2B+2", Content_Type=FORM, Accept=BROWSER_ACCEPT)
    assert html.status == 200 and header(html, "content-type") == "text/html; charset=utf-8"
    assert b"3" in html.body and b'value="1 + 2"' in html.body
    api = handle("POST", "/calculate", b"expr=1+%2B+2", Content_Type=FORM, Accept="*/*")
    assert as_json(api) == {"expr": "1 + 2", "result": "3", "exact": True, "fraction": None}
    plain = handle("POST", "/calculate", b"expr=2*3", Content_Type=FORM)
    assert isinstance(as_json(plain), dict)


def test_form_error_in_html_mode_is_422_page() -> None:
    resp = handle("POST", "/calculate", b"expr=1%2F0", Content_Type=FORM, Accept="text/html")
    assert resp.status == 422 and header(resp, "content-type") == "text/html; charset=utf-8"
    assert b"error" in resp.body


def test_json_post_with_charset() -> None:
    resp = handle(
        "POST", "/calculate", b'{"expr": "2^10"}', Content_Type="application/json; charset=UTF-8"
    )
    assert resp.status == 200
    body = as_json(resp)
    assert isinstance(body, dict) and body["result"] == "1024"


def test_text_post() -> None:
    resp = handle("POST", "/calculate", b"6*7", Content_Type="text/plain; charset=utf-8")
    assert (resp.status, resp.body) == (200, b"42\n")


def test_calculator_error_is_422_with_position() -> None:
    resp = handle("POST", "/calculate", b'{"expr": "1 + sqr(2)"}', Content_Type="application/json")
    assert resp.status == 422
    body = as_json(resp)
    assert isinstance(body, dict)
    err = body["error"]
    assert err["kind"] == "unknown_name" and err["position"] == 4 and err["length"] >= 1
    assert isinstance(err["message"], str)
    text = handle("POST", "/calculate", b"1/0", Content_Type="text/plain")
    assert text.status == 422 and text.body.startswith(b"error: division_by_zero")
    page = handle("POST", "/calculate", b"expr=2pi", Content_Type=FORM, Accept="text/html")
    assert page.status == 422 and page.body.startswith(b"<!doctype html>")
    # The kind rides along unsent, for the driver's metrics, in every shape of the answer.
    assert (resp.reason, text.reason, page.reason) == ("unknown_name", "division_by_zero", "syntax")
    assert handle("GET", "/calculate?expr=1").reason is None


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"expr=1%2", FORM, 400),
        (b"expr=%zz", FORM, 400),
        (b"expr=%ff", FORM, 400),  # not UTF-8
        (b"x=1", FORM, 400),
        (b"", FORM, 400),
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'{"expr": 12}', "application/json", 400),
        (b"[" * 100_000, "application/json", 400),
        (b"\xff", "application/json", 400),
        (b"\xff", "text/plain", 400),
        (b"1+1", "application/xml", 415),
        (b"1+1", "text/plain; charset=latin-1", 415),
        (b"1+1", "not a media type", 415),
        (b"1+1", "multipart/form-data; boundary=x", 415),
    ],
)
def test_malformed_calculate_requests(body: bytes, content_type: str, status: int) -> None:
    assert handle("POST", "/calculate", body, Content_Type=content_type).status == status


def test_post_without_content_type_is_415() -> None:
    assert handle("POST", "/calculate", b"1+1").status == 415


def test_get_without_expr_or_bad_escape_is_400() -> None:
    assert handle("GET", "/calculate").status == 400
    # The core already refuses "%G1" in a target (RFC 3986); a Request built by hand still gets
    # its 400 from the form decoder.
    bad = Request("GET", "/calculate?expr=%G1", "/calculate", "expr=%G1", "1.1",
                  (("host", "test"),), b"", True)
    assert ROUTES.handle(bad).status == 400


def test_html_escaping_of_echoed_expression() -> None:
    resp = handle("POST", "/calculate", b"expr=%3Cscript%3E", Content_Type=FORM, Accept="text/html")
    assert resp.status == 422 and b"<script>" not in resp.body and b"&lt;script&gt;" in resp.body


# --- form decoding ---


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"expr=1+2", {"expr": ["1 2"]}),
        (b"expr=1%2B2", {"expr": ["1+2"]}),
        (b"a=1&&a=2&b", {"a": ["1", "2"], "b": [""]}),
        (b"expr=%E2%88%9A2", {"expr": ["\u221a2"]}),
        (b"e%78pr=x%3Dy", {"expr": ["x=y"]}),
        (b"", {}),
    ],
)
def test_parse_form(data: bytes, expected: dict[str, list[str]]) -> None:
    assert parse_form(data) == expected


@pytest.mark.parametrize("data", [b"a=%", b"a=%4", b"a=%4g", b"a=%C3", b"a=\xff"])
def test_parse_form_rejects_bad_escapes(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_form(data)


@pytest.mark.parametrize(
    "body",
    [b"expr=%", b"expr=%4", b"expr=%4g", b"expr=%%41", b"expr=%C3", b"expr=\xff", b"expr=a%2"],
)
def test_single_field_form_rejects_what_parse_form_rejects(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_form(body)
    assert handle("POST", "/calculate", body, Content_Type=FORM).status == 400


@pytest.mark.parametrize(
    "body", [b"expr=1%2B2", b"expr=1+%2B+2", b"expr=%31%2b%32", b"expr=", b"expr=2&expr=3"]
)
def test_single_field_form_reads_as_parse_form(body: bytes) -> None:
    expr = parse_form(body)["expr"][0]
    resp = handle("POST", "/calculate", body, Content_Type=FORM)
    if expr.strip():
        assert resp.status == 200 and as_json(resp) == {**evaluate(expr).to_json()}
    else:
        assert resp.status == 422


@pytest.mark.parametrize(
    "text", ['"quoted" \\ back', "tab\tnl\nnul\x00", "caf\xe9 \u2028 \U0001f600", "plain"]
)
def test_result_json_is_json_dumps_of_to_json(text: str) -> None:
    for result in (Result(text, text, True, None), Result(text, "1", False, text)):
        expected = json.dumps(result.to_json(), ensure_ascii=False, separators=(",", ":"))
        assert _result_json(result) == expected.encode("utf-8") + b"\n"


def test_negotiation_is_the_same_when_remembered_and_memos_are_bounded() -> None:
    for _ in range(2):  # the second round answers from the memos
        assert handle("GET", "/calculate?expr=1", Accept="text/plain").body == b"1\n"
        assert header(handle("GET", "/calculate?expr=1", Accept="text/plain;q=0.1, */*"),
                      "content-type") == "application/json"
        assert handle("POST", "/calculate", b"1", Content_Type="text/plain; charset=latin-1"
                      ).status == 415
    for i in range(routes.MEMO_SIZE + 10):
        accept = f"text/plain;q=0.{i % 10}, application/json;q=0.5, x/{i}"
        mode = header(handle("GET", "/calculate?expr=1", Accept=accept), "content-type")
        assert mode == ("text/plain; charset=utf-8" if i % 10 > 5 else "application/json")
        handle("POST", "/calculate", b"expr=1", Content_Type=f"{FORM}; x={i}")
    assert len(routes._PREFERENCES) <= routes.MEMO_SIZE
    assert len(routes._MEDIA_TYPES) <= routes.MEMO_SIZE


def _reference_form_decode(data: bytes) -> str:
    """Form decoding as the WHATWG URL standard's application/x-www-form-urlencoded parser
    and RFC 3986 §2.1 put it, one byte at a time ("+" is a space, "%" HEXDIG HEXDIG a byte);
    strict here: a "%" without two hex digits, or bytes that are not UTF-8, are refused."""
    out = bytearray()
    i = 0
    while i < len(data):
        byte = data[i]
        if byte == ord("%"):
            pair = data[i + 1 : i + 3]
            if len(pair) < 2 or not all(c in b"0123456789abcdefABCDEF" for c in pair):
                raise ValueError("malformed percent-escape")
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(ord(" ") if byte == ord("+") else byte)
            i += 1
    return out.decode("utf-8")


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=40) |
       st.lists(st.sampled_from([b"%", b"%4", b"%41", b"%e9", b"%C3", b"%A9", b"=", b"+", b"a",
                                 b"\r", b"\n", b"%0D%0A", b"%3D", b"\xc3\xa9", b"\xff", b"%zz"]),
                max_size=20).map(b"".join))
def test_form_decoding_agrees_with_the_byte_by_byte_reference(value: bytes) -> None:
    value = value.replace(b"&", b"")  # one field; "=" inside a value is the value's own
    try:
        expected: object = {"expr": [_reference_form_decode(value)]}
    except ValueError:
        expected = ValueError
    try:
        got: object = parse_form(b"expr=" + value)
    except ValueError:
        got = ValueError
    assert got == expected
