"""app/config.py: one dataclass, one parser; argv over CALCSERVE_* environment over defaults."""

from __future__ import annotations

import dataclasses

import pytest

from app.config import Config, build_parser, env_name, parse_config


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
