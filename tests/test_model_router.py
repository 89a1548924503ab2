"""The `model-name-router` type (CONTRACT.md §4): a token that picks another token by the
request's `model`, driven with the official `openai` client against the gateway app served on
loopback, in front of the fake member upstream (tests/fakes/members.py)."""

from __future__ import annotations

import httpx
import openai
import pytest

from gateway.config import ConfigError, build_config, load_config
from tests.fakes.members import MemberFake
from tests.routing_harness import closed_base, member, router, running_gateway
from tests.support.servers import serve_app

HI = [{"role": "user", "content": "hi"}]


def by_model(token: str, name: str, mapping: dict, **extra) -> dict:
    return {"token": token, "name": name, "type": "model-name-router", "config": {"model-2-token": mapping}, **extra}


@pytest.fixture(scope="module")
def upstream():
    fake = MemberFake()
    with serve_app(fake) as url:
        yield fake, url


@pytest.fixture(scope="module")
def gw(upstream, tmp_path_factory):
    _, url = upstream
    tokens = [
        member("tok-a", "member-a", "ok-a", url),
        {"token": "tok-pass", "name": "passthrough", "type": "proxy", "internal": True, "config": {"api_base": f"{url}/v1"}},
        {"token": "tok-mock", "name": "mocked", "type": "mock", "internal": True, "config": {"reply": "default route"}},
        member("tok-b", "member-b", "ok-b", url),
        member("tok-c", "member-c", "ok-c", url),
        {**router("tok-rr", "inner-rr", "round-robin", ["tok-b", "tok-c"]), "internal": True},
        by_model("gw-mnr", "by-model", {"gpt-4": "tok-a", "claude-3": "tok-pass", "pooled": "tok-rr", "default": "tok-mock"}),
        by_model("gw-strict", "strict", {"gpt-4": "tok-a", "llama": "tok-pass"}),
        # a router whose first member is a model-name-router sending everything to a rate-limited member
        member("tok-limited", "limited", "status-429-mr", url),
        by_model("tok-mnr-limited", "mnr-limited", {"default": "tok-limited"}, internal=True),
        by_model("tok-mnr-ok", "mnr-ok", {"default": "tok-c"}, internal=True),
        router("gw-outer", "outer", "fallback", ["tok-mnr-limited", "tok-mnr-ok"]),
        {"token": "gw-alias", "name": "alias", "type": "model-name-router", "config": {"model_2_token": {"m": "tok-a"}}},
    ]
    with running_gateway(tmp_path_factory.mktemp("mnr"), tokens) as running:
        yield running


@pytest.fixture
def fake(upstream):
    fake, _ = upstream
    fake.reset()
    return fake


def test_routes_by_model_and_the_target_forced_model_applies(gw, fake):
    completion, headers = gw.chat("gw-mnr", model="gpt-4")
    assert completion.choices[0].message.content == "from ok-a"
    assert headers["x-gateway-token-name"] == "by-model"
    assert headers["x-gateway-served-by"] == "member-a"
    assert fake.recorder.last.body["model"] == "ok-a"


def test_the_target_receives_the_request_as_is(gw, fake):
    completion, headers = gw.chat("gw-mnr", model="claude-3", temperature=0.25, extra_body={"custom_field": {"x": 1}})
    assert completion.choices[0].message.content == "from claude-3"
    assert headers["x-gateway-served-by"] == "passthrough"
    body = fake.recorder.last.body
    assert (body["model"], body["temperature"], body["custom_field"], body["messages"]) == ("claude-3", 0.25, {"x": 1}, HI)


def test_default_catches_unlisted_models(gw, fake):
    completion, headers = gw.chat("gw-mnr", model="some-other-model")
    assert completion.choices[0].message.content == "default route"
    assert headers["x-gateway-served-by"] == "mocked"
    assert fake.recorder.requests == []


def test_unlisted_model_without_default_is_404_model_not_found(gw, fake):
    with pytest.raises(openai.NotFoundError) as exc:
        gw.chat("gw-strict", model="gpt-5")
    error = exc.value.response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "model_not_found", "model")
    assert "gpt-5" in error["message"]
    assert fake.recorder.requests == []


def post(gw, token: str, body: dict) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {token}"}, timeout=10)


def test_request_without_model_goes_to_default_else_400(gw, fake):
    response = post(gw, "gw-mnr", {"messages": HI})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "default route"
    response = post(gw, "gw-strict", {"messages": HI})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "model")
    assert fake.recorder.requests == []


def test_streams_are_routed_by_model(gw, fake):
    text, headers = gw.stream_text("gw-mnr", model="gpt-4")
    assert text == "from ok-a "
    assert headers["x-gateway-served-by"] == "member-a"
    text, headers = gw.stream_text("gw-mnr", model="anything")
    assert text == "default route"
    with pytest.raises(openai.NotFoundError):
        gw.stream_text("gw-strict", model="gpt-5")


def test_a_router_behind_a_model_name_reports_its_innermost_member(gw, fake):
    served = [gw.chat("gw-mnr", model="pooled")[1]["x-gateway-served-by"] for _ in range(4)]
    assert served == ["member-b", "member-c"] * 2
    assert (fake.hits("ok-b"), fake.hits("ok-c")) == (2, 2)


def test_a_router_fails_over_past_a_model_name_router_whose_target_failed(gw, fake):
    completion, headers = gw.chat("gw-outer", model="x")
    assert completion.choices[0].message.content == "from ok-c"
    assert headers["x-gateway-served-by"] == "member-c"
    assert fake.hits("status-429-mr") == 1


def test_models_are_the_mapping_keys_except_default(gw):
    client = gw.client("gw-mnr")
    assert [m.id for m in client.models.list()] == ["gpt-4", "claude-3", "pooled"]
    assert client.models.retrieve("claude-3").id == "claude-3"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("default")
    assert [m.id for m in gw.client("gw-strict").models.list()] == ["gpt-4", "llama"]


def test_internal_targets_serve_but_are_refused_to_clients(gw):
    assert gw.chat("gw-mnr", model="gpt-4")[0].choices[0].message.content == "from ok-a"
    for token in ("tok-a", "tok-rr", "tok-mnr-ok"):
        with pytest.raises(openai.AuthenticationError) as exc:
            gw.chat(token)
        assert exc.value.response.json()["error"]["code"] == "invalid_api_key"


def test_the_underscore_spelling_of_the_mapping_is_accepted(gw):
    assert gw.chat("gw-alias", model="m")[1]["x-gateway-served-by"] == "member-a"


# -- config errors at load --------------------------------------------------------------------

MOCK = {"token": "m", "type": "mock", "config": {}}


def issues_of(tokens) -> list[dict]:
    with pytest.raises(ConfigError) as exc:
        build_config(tokens)
    return [i.as_dict() for i in exc.value.issues]


def test_dangling_target_is_a_load_error_naming_the_model():
    [issue] = issues_of([MOCK, by_model("n", "n", {"gpt-4": "missing", "default": "m"})])
    assert (issue["entry"], issue["field"]) == ("n", "config.model-2-token.gpt-4")
    assert "missing" in issue["message"]


@pytest.mark.parametrize(
    "config, field",
    [
        ({"model-2-token": {}}, "config.model-2-token"),
        ({}, "config.model-2-token"),
        ({"model-2-token": {"a": "m"}, "model": "x"}, "config.model"),
        ({"model-2-token": {"a": ""}}, "config.model-2-token.a"),
    ],
)
def test_model_name_router_config_errors(config, field):
    issues = issues_of([MOCK, {"token": "n", "type": "model-name-router", "config": config}])
    assert field in [i["field"] for i in issues]


def test_the_seed_config_shape_loads(tmp_path):
    """The seed's (002) JSON list with a round-robin router inside a model-name-router."""
    path = tmp_path / "model_config.json"
    path.write_text("""[
      {"token": "7c7aa4a3549f11", "type": "mock", "config": {"reply": "one"}},
      {"token": "7c7aa4a3549f5", "type": "mock", "config": {"reply": "five"}},
      {"token": "7c7aa4a3549f12", "type": "router",
       "config": {"router_strategy": "round-robin", "token_pool": ["7c7aa4a3549f11", "7c7aa4a3549f5"]}},
      {"token": "7c7aa4a3549f13", "type": "model-name-router",
       "config": {"model-2-token": {"spark-api-v2.0": "7c7aa4a3549f11", "chatglm_lite": "7c7aa4a3549f5",
                                     "router-round-robin": "7c7aa4a3549f12"}}}
    ]""")
    config = load_config(path)
    assert config.entries["7c7aa4a3549f13"].config.model_2_token["router-round-robin"] == "7c7aa4a3549f12"


def test_a_member_at_a_closed_port_is_only_an_error_for_its_model(tmp_path):
    """A broken target does not affect the other routes (no failover inside a model-name-router)."""
    tokens = [MOCK, member("down", "down", "ok-down", closed_base()), by_model("gw", "by", {"a": "down", "b": "m"})]
    with running_gateway(tmp_path, tokens) as running:
        with pytest.raises(openai.APIStatusError) as exc:
            running.chat("gw", model="a")
        assert exc.value.status_code == 502 and exc.value.response.json()["error"]["code"] == "upstream_error"
        assert running.chat("gw", model="b")[1]["x-gateway-served-by"] == "mock#0"
