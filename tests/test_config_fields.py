"""Config errors name the exact field (issue #9 item 9): every adapter type's required fields,
reported as `config.<field>` by the loader, by the admin API (which puts the error next to that
field on the page) and in the gateway process's one-line exit message."""

import httpx
import pytest

from gateway import registry
from gateway.admin.forms import describe_type
from gateway.config import ConfigError, build_config

ADMIN = "admin-token-for-field-tests-0123456789"

# A complete, valid `config` per adapter type; each required field is removed in turn below.
VALID = {
    "openai": {"api_key": "sk-x"},
    "proxy": {"api_base": "http://127.0.0.1:9/v1"},
    "azure": {"api_base": "https://r.openai.azure.com", "deployment_id": "d", "api_key": "k"},
    "claude": {"api_key": "k"},
    "gemini": {"api_key": "k"},
    "zhipu-api": {"api_key": "id.secret"},
    "xunfei-spark-api": {"app_id": "a", "api_key": "k", "api_secret": "s"},
    "coze": {"api_key": "k", "bot_id": "b"},
    "coze-workflow": {"api_key": "k", "workflow_id": "w"},
    "mock": {},
    "router": {"token_pool": ["member"]},
    "model-name-router": {"model-2-token": {"default": "member"}},
}
MEMBER = {"token": "member", "type": "mock", "config": {}}


def required_fields(type_name):
    return [f["name"] for f in describe_type(type_name)["fields"] if f["required"]]


def test_every_type_is_covered():
    assert set(VALID) == {registry.canonical_type(t) for t in registry.type_names()}


def test_proxy_api_base_is_marked_required_on_the_page():
    assert required_fields("proxy") == ["api_base"]


@pytest.mark.parametrize(("type_name", "field"), [(t, f) for t in VALID for f in required_fields(t)])
def test_missing_required_field_is_named(type_name, field):
    config = {k: v for k, v in VALID[type_name].items() if k != field}
    with pytest.raises(ConfigError) as err:
        build_config([{"token": "t", "type": type_name, "config": config}, MEMBER], environ={})
    assert [(i.entry, i.field) for i in err.value.issues] == [("t", f"config.{field}")]
    build_config([{"token": "t", "type": type_name, "config": VALID[type_name]}, MEMBER], environ={})


def test_empty_proxy_api_base_is_named():
    with pytest.raises(ConfigError) as err:
        build_config([{"token": "t", "type": "proxy", "config": {"api_base": ""}}], environ={})
    assert err.value.issues[0].field == "config.api_base"


def test_routing_cycle_names_the_reference_that_closes_it():
    with pytest.raises(ConfigError) as err:
        build_config([
            {"token": "a", "type": "router", "config": {"token_pool": ["m", "b"]}},
            {"token": "b", "type": "model-name-router", "config": {"model-2-token": {"default": "a"}}},
            {"token": "m", "type": "mock", "config": {}},
        ], environ={})
    cycle = [i for i in err.value.issues if "routing cycle" in i.message]
    assert cycle and cycle[0].field in ("config.token_pool[1]", "config.model-2-token.default")


def test_admin_api_and_process_exit_name_the_field(gateway_process, write_config):
    from tests.support.servers import GatewayProcess

    process = gateway_process({"settings": {"admin_token": ADMIN}, "tokens": [MEMBER]})
    bad = {"settings": {"admin_token": ADMIN}, "tokens": [MEMBER, {"token": "p", "type": "proxy", "config": {"model": "m"}}]}
    answer = httpx.put(f"{process.base_url}/admin/api/config", json=bad, headers={"authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 400
    assert [(d["entry"], d["field"]) for d in answer.json()["error"]["details"]] == [("p", "config.api_base")]
    with pytest.raises(RuntimeError) as exc:
        GatewayProcess(write_config(bad, "bad.yaml")).start()
    assert "entry 'p': field 'config.api_base'" in str(exc.value)
