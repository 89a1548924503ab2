"""Claude Code itself (`claude -p`) answering through a gateway process whose token maps Claude
model names to a non-Anthropic upstream (the fake OpenAI), as the README's Claude Code section
sets it up. Claude Code is installed from npm on first run (tests/support/claude_code.py)."""

import subprocess

from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI
from tests.support import claude_code
from tests.support.servers import serve_app

OPENAI_KEY = "sk-upstream-secret-key-0123456789"


def test_claude_code_answers_through_an_openai_token(gateway_process, tmp_path):
    binary = claude_code.install()
    fake = FakeOpenAI(api_key=OPENAI_KEY)
    with serve_app(fake.app) as upstream:
        gateway = gateway_process({"tokens": [
            {"token": "gw-openai", "type": "openai", "name": "openai", "internal": True,
             "config": {"api_base": f"{upstream}/v1", "api_key": OPENAI_KEY, "model": "text-only-model"}},
            {"token": "gw-claude-code", "type": "model-name-router", "name": "claude-code",
             "config": {"model-2-token": {"default": "gw-openai"}}},
        ]})
        home = tmp_path / "home"
        home.mkdir()
        result = subprocess.run(
            [str(binary), "-p", "Reply with the word pineapple"], cwd=tmp_path, capture_output=True, text=True, timeout=100,
            env=claude_code.offline_env(home, gateway.base_url, "gw-claude-code"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Echo: ") and "Reply with the word pineapple" in result.stdout
    chats = [r for r in fake.recorder.requests if r.path == "/v1/chat/completions"]
    assert chats, "Claude Code's request never reached the upstream"
    body = chats[-1].body
    assert body["model"] == "text-only-model" and body["stream"] is True
    assert body["messages"][0]["role"] == "system" and "Claude" in body["messages"][0]["content"]
    assert {t["type"] for t in body["tools"]} == {"function"} and any(t["function"]["name"] == "Bash" for t in body["tools"])
    assert "authorization" in chats[-1].headers and chats[-1].headers["authorization"] == f"Bearer {OPENAI_KEY}"


def test_claude_code_tool_round_trip_through_a_gemini_token(gateway_process, tmp_path):
    """The fake Gemini calls Claude Code's first tool (`Agent`) with arguments it does not take;
    Claude Code answers with a `tool_result` error, which must reach Gemini as a
    `functionResponse`, whose echo is Claude Code's final answer."""
    binary = claude_code.install()
    fake = FakeGemini()
    with serve_app(fake.app) as upstream:
        gateway = gateway_process({"tokens": [
            {"token": "gw-gemini", "type": "gemini", "name": "gemini", "config": {"api_base": upstream, "api_key": fake.api_key, "model": "gemini-2.5-flash"}},
        ]})
        home = tmp_path / "home"
        home.mkdir()
        result = subprocess.run(
            [str(binary), "-p", "Use a tool"], cwd=tmp_path, capture_output=True, text=True, timeout=100,
            env=claude_code.offline_env(home, gateway.base_url, "gw-gemini"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Result: ") and "tool_use_error" in result.stdout
    first, second = [r.body for r in fake.recorder.requests if r.path.endswith(":streamGenerateContent")][-2:]
    call = first["contents"][-1]["parts"]
    assert any("text" in p and "Use a tool" in p["text"] for p in call)
    assert second["contents"][-2]["parts"][-1]["functionCall"]["name"] == "Agent"
    assert second["contents"][-1]["parts"][0]["functionResponse"]["name"] == "Agent"
