"""Loading the config file (CONTRACT.md §1–§2): both shapes, both formats, interpolation, flags,
and load errors that exit 2 with one line naming file, entry and field."""

import subprocess
import sys

import pytest

from gateway.config import ConfigError, build_config, load_config
from tests.support.servers import ROOT

MOCK = {"token": "t-mock", "type": "mock", "config": {}}


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "open-api.py", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=30)


def test_seed_list_shape_and_mapping_shape_load_alike():
    as_list = build_config([MOCK])
    as_mapping = build_config({"settings": {"request_timeout": 5}, "tokens": [MOCK]})
    assert list(as_list.entries) == list(as_mapping.entries) == ["t-mock"]
    assert as_mapping.settings.request_timeout == 5
    assert as_list.settings.request_timeout == 300


@pytest.mark.parametrize("name", ["config.yaml", "config.yml", "config.json"])
def test_yaml_and_json_chosen_by_extension(write_config, name):
    config = load_config(write_config({"tokens": [MOCK]}, name))
    assert config.entries["t-mock"].type == "mock"


def test_shipped_configs_load():
    default = load_config(ROOT / "configs" / "model_config.yaml")
    assert any(e.type == "mock" for e in default.entries.values())
    seed = load_config(ROOT / "configs" / "model_config.example.json")
    assert "f2b7295fc440db7f" in seed.entries


def test_env_interpolation_with_and_without_default():
    entry = {"token": "${TOK}", "type": "openai", "config": {"api_key": "${KEY}", "api_base": "${BASE:-http://x/v1}"}}
    config = build_config([entry], environ={"TOK": "abc", "KEY": "sk-secret"})
    assert config.entries["abc"].config.api_key == "sk-secret"
    assert config.entries["abc"].config.api_base == "http://x/v1"
    assert config.raw[0]["config"]["api_key"] == "${KEY}"  # the file's data keeps the reference


def test_missing_env_variable_is_a_load_error():
    with pytest.raises(ConfigError) as err:
        build_config([{"token": "a", "type": "openai", "config": {"api_key": "${NOPE}"}}], environ={})
    assert err.value.issues[0].field == "config.api_key"
    assert "NOPE" in err.value.issues[0].message


def test_disabled_entries_are_not_served_and_internal_is_kept():
    config = build_config([MOCK, {**MOCK, "token": "off", "enabled": False}, {**MOCK, "token": "in", "internal": True}])
    assert set(config.entries) == {"t-mock", "in"}
    assert config.entries["in"].internal


def test_declined_seed_type_is_skipped_with_a_warning(caplog):
    config = build_config([MOCK, {"token": "cw", "type": "claude-web", "config": {"cookie": "x"}}])
    assert set(config.entries) == {"t-mock"}
    assert any("claude-web" in w and "cw" in w for w in config.warnings)


@pytest.mark.parametrize(
    "entries, entry, field, words",
    [
        ([{"token": "a", "type": "nope", "config": {}}], "a", "type", "unknown adapter type"),
        ([{"token": "a", "type": "azure", "config": {"api_base": "http://x", "api_key": "k"}}], "a", "config.deployment_id", "required"),
        ([{"token": "a", "type": "proxy", "config": {"api_key": "k"}}], "a", "config.api_base", "required"),
        ([{"token": "a", "type": "openai", "config": {"api_bse": "http://x"}}], "a", "config.api_bse", "unknown field"),
        ([MOCK, MOCK], "t-mock", "token", "duplicate token"),
        ([{"type": "mock", "config": {}}], 0, "token", "required"),
        ([{"token": "a", "type": "mock", "config": {"latency_ms": "slow"}}], "a", "config.latency_ms", "number"),
    ],
)
def test_load_errors_name_entry_and_field(entries, entry, field, words):
    with pytest.raises(ConfigError) as err:
        build_config(entries, source="f.yaml")
    issue = err.value.issues[0]
    assert (issue.entry, issue.field) == (entry, field)
    assert words in issue.message.lower()
    assert "f.yaml" in str(err.value)


def test_bad_settings_are_load_errors():
    with pytest.raises(ConfigError) as err:
        build_config({"settings": {"request_timeout": -1}, "tokens": []})
    assert err.value.issues[0].field == "settings.request_timeout"


def test_cli_exits_2_with_one_line_naming_file_entry_and_field(write_config):
    path = write_config({"tokens": [{"token": "team-a", "type": "openai", "config": {"api_key": "k", "modle": "x"}}]})
    result = run_cli("--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and "team-a" in lines[0] and "config.modle" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "text, name, words",
    [("tokens: [\n  - token: a\n   type: x", "bad.yaml", "invalid YAML at line"), ('[{"token": ', "bad.json", "invalid JSON at line")],
)
def test_cli_reports_syntax_errors_with_position(tmp_path, text, name, words):
    path = tmp_path / name
    path.write_text(text)
    result = run_cli("--config", str(path))
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr


def test_cli_missing_file_and_help():
    result = run_cli("--config", "/nonexistent/x.yaml")
    assert result.returncode == 2 and "/nonexistent/x.yaml" in result.stderr
    help_text = run_cli("--help").stdout
    for flag in ("--config", "--host", "--port", "--workers", "GATEWAY_CONFIG", "8090"):
        assert flag in help_text


def test_config_path_from_environment(write_config):
    path = write_config({"tokens": [{"token": "a", "type": "nope"}]})
    import os

    result = run_cli(env={**os.environ, "GATEWAY_CONFIG": str(path)})
    assert result.returncode == 2 and str(path) in result.stderr


def test_admin_token_from_environment():
    config = build_config({"tokens": []}, environ={"GATEWAY_ADMIN_TOKEN": "adm"})
    assert config.settings.admin_token == "adm"
