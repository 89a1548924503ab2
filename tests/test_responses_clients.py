"""The Responses API against a real gateway process (CONTRACT.md §9): state kept across a
restart, and the real clients people point at it: the OpenAI Agents SDK (`openai-agents`, in a
virtualenv of its own, because it needs newer `pyjwt` and `websockets` than the zhipuai and
cozepy test oracles allow) and Codex CLI (npm `@openai/codex`, whose package brings its binary).

Both client installs are made on first use under `tests/.clients/` (git-ignored) from PyPI and
npm, and reused afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from tests.fakes.openai import FakeOpenAI
from tests.support.servers import serve_app

HERE = Path(__file__).resolve().parent
CLIENTS = HERE / ".clients"
AGENTS_VENV = CLIENTS / "agents-venv"
AGENTS_REQUIREMENT = "openai-agents>=0.24"
CODEX_DIR = CLIENTS / "codex"
CODEX_PACKAGE = "@openai/codex@0.171.0"


def _run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{cmd[:3]} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def agents_python() -> Path:
    """The Agents SDK virtualenv's python, created (virtualenv + pip install) when missing.
    `virtualenv` (requirements-dev.txt) brings its own pip, where `python -m venv` needs the
    distribution's ensurepip (Debian's python3-venv)."""
    python = AGENTS_VENV / "bin" / "python"
    stamp = AGENTS_VENV / ".installed"
    if not stamp.exists():
        _run([sys.executable, "-m", "virtualenv", "--clear", "--quiet", str(AGENTS_VENV)], 300)
        _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", AGENTS_REQUIREMENT], 900)
        stamp.write_text(AGENTS_REQUIREMENT)
    return python


def codex_binary() -> Path:
    """Codex CLI installed with npm (its platform package carries the binary)."""
    binary = CODEX_DIR / "node_modules" / ".bin" / "codex"
    if not binary.exists():
        CODEX_DIR.mkdir(parents=True, exist_ok=True)
        _run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(CODEX_DIR), CODEX_PACKAGE], 900)
    return binary


@pytest.fixture(scope="module")
def upstream():
    fake = FakeOpenAI()
    with serve_app(fake.app) as url:
        yield fake, url


def openai_token(url: str, fake: FakeOpenAI, token: str = "gw-openai") -> dict:
    return {"token": token, "type": "openai", "config": {"api_base": f"{url}/v1", "api_key": fake.api_key}}


def test_state_survives_a_restart(gateway_process, upstream, tmp_path):
    fake, url = upstream
    config = {"tokens": [openai_token(url, fake), {"token": "gw-mock", "type": "mock", "config": {}}]}
    first = gateway_process(config)
    client = openai.OpenAI(api_key="gw-openai", base_url=f"{first.base_url}/v1", max_retries=0)
    response = client.responses.create(model="gpt-4o-mini", input="remember me", instructions="Be brief.")
    conversation = client.conversations.create(items=[{"role": "user", "content": "kept"}], metadata={"k": "v"})
    first.stop()

    second = gateway_process(config)
    client = openai.OpenAI(api_key="gw-openai", base_url=f"{second.base_url}/v1", max_retries=0)
    assert client.responses.retrieve(response.id).output_text == response.output_text
    assert client.conversations.retrieve(conversation.id).metadata == {"k": "v"}
    assert [i.content[0].text for i in client.conversations.items.list(conversation.id)] == ["kept"]
    follow = client.responses.create(model="gpt-4o-mini", input="again", previous_response_id=response.id)
    assert follow.status == "completed"
    assert [m["content"] for m in fake.recorder.last.body["messages"]] == ["remember me", response.output_text, "again"]
    other = openai.OpenAI(api_key="gw-mock", base_url=f"{second.base_url}/v1", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(response.id)


def test_state_on_postgresql_across_a_restart(gateway_process, upstream, postgres_server):
    fake, url = upstream
    postgres_server.reset()
    config = {"settings": {"database": postgres_server.url}, "tokens": [openai_token(url, fake)]}
    first = gateway_process(config)
    client = openai.OpenAI(api_key="gw-openai", base_url=f"{first.base_url}/v1", max_retries=0)
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    conversation = client.conversations.create()
    turn = client.responses.create(model="gpt-4o-mini", input="weather?", tools=[tool], conversation=conversation.id)
    call = turn.output[0]
    first.stop()

    second = gateway_process(config)
    client = openai.OpenAI(api_key="gw-openai", base_url=f"{second.base_url}/v1", max_retries=0)
    client.responses.create(model="gpt-4o-mini", tools=[tool], conversation=conversation.id,
                            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rain"}])
    messages = fake.recorder.last.body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"] and messages[2]["tool_call_id"] == call.call_id
    assert [i.type for i in client.conversations.items.list(conversation.id, order="asc")] == [
        "message", "function_call", "function_call_output", "message"]
    assert client.responses.retrieve(turn.id).output[0].call_id == call.call_id


def test_openai_agents_sdk_with_a_function_tool_and_a_conversations_session(gateway_process, upstream):
    fake, url = upstream
    python = agents_python()
    gateway = gateway_process({"tokens": [openai_token(url, fake)]})
    env = {**os.environ, "GATEWAY_BASE_URL": f"{gateway.base_url}/v1", "GATEWAY_TOKEN": "gw-openai", "OPENAI_API_KEY": "unused"}
    env.pop("PYTHONPATH", None)
    result = _run([str(python), str(HERE / "clients" / "agents_run.py")], 300, env=env, cwd=HERE / "clients")
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    # the fake calls the tool while no tool result is in the history, then answers with the
    # last user text: the second run saw the first run's call and result (the session's items)
    assert outcome["calls"] == ["Paris"]
    assert outcome["first"] == "Echo: What is the weather in Paris?"
    assert outcome["second"] == "Echo: And tomorrow?"
    assert outcome["conversation"].startswith("conv_")
    types = outcome["item_types"]
    assert types.count("function_call") == 1 and types.count("function_call_output") == 1
    assert types[types.index("function_call") + 1] == "function_call_output"
    assert outcome["popped"] and outcome["after_pop"] == len(types) - 1
    # the second run's upstream request carried the first run's history, tool call and result paired
    messages = fake.recorder.last.body["messages"]
    roles = [m["role"] for m in messages]
    assert roles[0] == "system" and roles.count("tool") == 1
    assert [m["content"] for m in messages if m["role"] == "user"] == ["What is the weather in Paris?", "And tomorrow?"]
    for i, message in enumerate(messages):
        if message["role"] == "tool":
            assert messages[i - 1]["tool_calls"][0]["id"] == message["tool_call_id"]


def test_codex_cli_exec_against_a_token(gateway_process, upstream, tmp_path):
    fake, url = upstream
    codex = codex_binary()
    gateway = gateway_process({"tokens": [openai_token(url, fake, "gw-codex")]})
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        'model = "gpt-4o-mini"\nmodel_provider = "gateway"\n\n[model_providers.gateway]\nname = "gateway"\n'
        f'base_url = "{gateway.base_url}/v1"\nenv_key = "GATEWAY_TOKEN"\nwire_api = "responses"\nsupports_websockets = false\n')
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "CODEX_HOME": str(home), "GATEWAY_TOKEN": "gw-codex"}
    result = _run([str(codex), "exec", "--skip-git-repo-check", "Say hi"], 300, env=env, cwd=work, stdin=subprocess.DEVNULL)
    # Codex ran the fake's tool call (its arguments do not fit Codex's tool, so the tool output is
    # an error), sent the result back, and printed the final answer.
    assert result.stdout.strip() == "Echo: Say hi"
    messages = fake.recorder.last.body["messages"]
    assert messages[-2]["role"] == "assistant" and messages[-1]["role"] == "tool"
    assert messages[-1]["tool_call_id"] == messages[-2]["tool_calls"][0]["id"]
    assert messages[0]["role"] == "system"  # Codex's instructions
    names = [t["function"]["name"] for t in fake.recorder.last.body["tools"]]
    assert "exec_command" in names and all(n.replace("_", "").isalnum() for n in names)
