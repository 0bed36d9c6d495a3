"""app/config.py: one dataclass, one parser; argv over CALCSERVE_* environment over defaults."""

from __future__ import annotations

import dataclasses

import pytest

from app.config import Config, build_parser, env_name, flag_name, parse_config
from tests.support import ROOT


def test_defaults() -> None:
    config = parse_config([], {})
    assert config == Config()
    assert (config.host, config.port, config.loop, config.access_log) == (
        "127.0.0.1", 8000, "auto", True)
    assert config.header_timeout == 10.0 and config.keepalive_timeout == 5.0


def test_every_field_is_an_option_and_an_environment_variable() -> None:
    help_text = build_parser().format_help()
    for field in dataclasses.fields(Config):
        assert "--" + field.name.replace("_", "-") in help_text
        assert env_name(field.name) in help_text


def test_environment_then_command_line() -> None:
    env = {"CALCSERVE_PORT": "9000", "CALCSERVE_MAX_CONNECTIONS": "7",
           "CALCSERVE_ACCESS_LOG": "no", "CALCSERVE_LOOP": "ASYNCIO",
           "CALCSERVE_HEADER_TIMEOUT": "0.25"}
    config = parse_config([], env)
    assert (config.port, config.max_connections, config.access_log, config.loop,
            config.header_timeout) == (9000, 7, False, "asyncio", 0.25)
    config = parse_config(["--port", "0", "--access-log", "--loop", "uvloop"], env)
    assert (config.port, config.access_log, config.loop, config.max_connections) == (
        0, True, "uvloop", 7)


@pytest.mark.parametrize(("argv", "env"), [
    (["--port", "70000"], {}),
    (["--port", "x"], {}),
    (["--header-timeout", "0"], {}),
    (["--keepalive-timeout", "-1"], {}),
    (["--max-connections", "0"], {}),
    (["--loop", "trio"], {}),
    (["--log-level", "loud"], {}),
    ([], {"CALCSERVE_PORT": "x"}),
    ([], {"CALCSERVE_ACCESS_LOG": "maybe"}),
    ([], {"CALCSERVE_BODY_TIMEOUT": "nan"}),
    (["--uds-mode", "999"], {}),
    (["--uds-mode", "rw"], {}),
    (["--ssl-cert-reqs", "maybe"], {}),
    (["--fd", "-1"], {}),
    (["--max-requests", "-1"], {}),
    (["--max-requests-jitter", "x"], {}),
    ([], {"CALCSERVE_FORWARDED_ALLOW_IPS": "10.0.0.0/8, nope"}),
])
def test_invalid_values_are_usage_errors(
    argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_config(argv, env)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().port = 1  # type: ignore[misc]


def test_production_options_parse_like_uvicorn() -> None:
    config = parse_config(["--ssl-cert-reqs", "2", "--uds-mode", "0o600", "--fd", "3",
                           "--forwarded-allow-ips", " 10.0.0.0/8 ,::1 ", "--no-proxy-headers"],
                          {"CALCSERVE_SSL_CERTFILE": "", "CALCSERVE_MAX_REQUESTS": "1000"})
    assert (config.ssl_cert_reqs, config.uds_mode, config.fd, config.forwarded_allow_ips,
            config.proxy_headers, config.ssl_certfile, config.max_requests) == (
        "required", 0o600, 3, "10.0.0.0/8,::1", False, None, 1000)
    assert parse_config(["--uds-mode", "660"], {}).uds_mode == 0o660
    assert "(default: 0o660;" in " ".join(build_parser().format_help().split())  # octal


def test_every_option_has_a_row_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Options of `python -m app`", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `--")]
    for field in dataclasses.fields(Config):
        matching = [row for row in rows if f"`{flag_name(field.name)}`" in row.split("|")[1]]
        assert len(matching) == 1, f"README: no options row for {flag_name(field.name)}"
        assert f"`{env_name(field.name)}`" in matching[0], matching[0]
