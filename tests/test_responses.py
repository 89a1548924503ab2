"""The Responses and Conversations API (CONTRACT.md §9) through `mock` tokens and the fake OpenAI
upstream, driven by the official `openai` SDK (`client.responses`, `client.conversations`,
sync, async and streaming helpers) and by raw HTTP for the wire details and error cases."""

import asyncio

import httpx
import openai
import pytest
import yaml

from gateway.app import create_app
from tests.support.responses import check_sequence, read_events
from tests.support.servers import serve_app, wait_until

FLAT_TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
MOCK_REPLY = "Hello! I am the gateway's mock model. You said: "


@pytest.fixture(scope="module")
def gateway(fake_openai, tmp_path_factory):
    fake, url = fake_openai
    config = {"tokens": [
        {"token": "gw-mock", "type": "mock", "config": {}},
        {"token": "gw-mock-other", "type": "mock", "config": {}},
        {"token": "gw-mock-slow", "type": "mock", "config": {"latency_ms": 60000}},
        {"token": "gw-openai", "type": "openai", "config": {"api_base": f"{url}/v1", "api_key": fake.api_key}},
    ]}
    path = tmp_path_factory.mktemp("responses") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with serve_app(create_app(path), lifespan="on") as base:
        yield base


def client_for(base, token="gw-mock"):
    return openai.OpenAI(api_key=token, base_url=f"{base}/v1", max_retries=0)


@pytest.fixture(scope="module")
def client(gateway):
    return client_for(gateway)


def post(base, path, body, token="gw-mock"):
    return httpx.post(f"{base}/v1{path}", headers={"authorization": f"Bearer {token}"}, json=body, timeout=30)


# -- create, retrieve, delete ------------------------------------------------------------------


def test_create_retrieve_input_items_delete(client):
    response = client.responses.create(model="mock", input="hello there", instructions="Be brief.",
                                       metadata={"ticket": "42"}, temperature=0.5)
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    assert response.output_text == MOCK_REPLY + "hello there"
    message = response.output[0]
    assert message.type == "message" and message.id.startswith("msg_") and message.role == "assistant"
    assert message.content[0].type == "output_text" and message.content[0].annotations == []
    assert response.usage.input_tokens == 4 and response.usage.output_tokens == 11 and response.usage.total_tokens == 15
    assert response.metadata == {"ticket": "42"} and response.instructions == "Be brief." and response.temperature == 0.5
    assert response.store is True and response.background is False and response.error is None
    assert response.tool_choice == "auto" and response.tools == [] and response.parallel_tool_calls is True

    again = client.responses.retrieve(response.id)
    assert again.model_dump() == response.model_dump()
    items = client.responses.input_items.list(response.id)
    assert [(i.type, i.role, i.content[0].text) for i in items.data] == [("message", "user", "hello there")]
    assert items.data[0].id.startswith("msg_")

    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve(response.id)
    assert caught.value.body["code"] == "not_found" and caught.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(response.id)


def test_async_client_streaming_helper_and_chaining(gateway):
    async def run():
        client = openai.AsyncOpenAI(api_key="gw-mock", base_url=f"{gateway}/v1", max_retries=0)
        deltas = []
        async with client.responses.stream(model="mock", input="stream me") as stream:
            async for event in stream:
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
            final = await stream.get_final_response()
        assert "".join(deltas) == final.output_text == MOCK_REPLY + "stream me"
        assert len(deltas) == 4  # the mock's chunk_count
        # stored before response.completed reached us: readable and chainable at once
        assert (await client.responses.retrieve(final.id)).output_text == final.output_text
        follow = await client.responses.create(input="and now?", previous_response_id=final.id)
        assert follow.previous_response_id == final.id and follow.model == "mock"
        await client.close()

    asyncio.run(run())


def test_stream_event_sequence_on_the_wire(gateway):
    events, raw = read_events(gateway, "gw-mock", {"model": "mock", "input": "wire"})
    check_sequence(events)
    types = [data["type"] for _, data in events]
    assert types == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
                     *["response.output_text.delta"] * 4, "response.output_text.done", "response.content_part.done",
                     "response.output_item.done", "response.completed"]
    created = events[0][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["id"].startswith("resp_")
    added = events[2][1]["item"]
    assert added == {"type": "message", "id": added["id"], "role": "assistant", "status": "in_progress", "content": []}
    part = events[3][1]
    assert part["content_index"] == 0 and part["part"] == {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    assert all(data["logprobs"] == [] for _, data in events if data["type"].startswith("response.output_text."))
    assert events[-3][1]["part"]["text"] == MOCK_REPLY + "wire"
    final = events[-1][1]["response"]
    assert final["status"] == "completed" and final["id"] == created["id"] and final["usage"]["total_tokens"] > 0
    assert "[DONE]" not in raw


def test_upstream_chunk_and_completion_ids_never_leak(gateway, fake_openai):
    _, raw = read_events(gateway, "gw-openai", {"model": "gpt-4o-mini", "input": "leak?"})
    assert "chatcmpl" not in raw and "fp_fake" not in raw
    body = post(gateway, "/responses", {"model": "gpt-4o-mini", "input": "leak?"}, token="gw-openai").text
    assert "chatcmpl" not in body


def test_input_items_paging_and_order(client):
    inputs = [{"role": "user", "content": f"message {n}"} for n in range(5)]
    response = client.responses.create(model="mock", input=inputs)
    page = client.responses.input_items.list(response.id, limit=2, order="asc")
    assert [i.content[0].text for i in page.data] == ["message 0", "message 1"] and page.has_more is True
    everything = [i.content[0].text for i in client.responses.input_items.list(response.id, limit=2, order="asc")]
    assert everything == [f"message {n}" for n in range(5)]  # the SDK paged through `after`
    newest_first = client.responses.input_items.list(response.id)
    assert [i.content[0].text for i in newest_first.data] == [f"message {n}" for n in reversed(range(5))]
    assert newest_first.has_more is False
    ids = [i.id for i in newest_first.data]
    assert len(set(ids)) == 5


# -- tools ------------------------------------------------------------------------------------


def test_built_in_tools_are_left_out_and_forcing_one_is_unsupported_tool(gateway, fake_openai):
    fake, _ = fake_openai
    response = post(gateway, "/responses", {"model": "gpt-4o-mini", "input": "hi", "tools": [{"type": "web_search"}, FLAT_TOOL]},
                    token="gw-openai")
    assert response.status_code == 200, response.text
    sent = fake.recorder.last.body
    assert sent["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                                               "parameters": FLAT_TOOL["parameters"]}}]
    only_builtin = post(gateway, "/responses", {"model": "gpt-4o-mini", "input": "hi", "tools": [{"type": "web_search"}], "tool_choice": "auto"},
                        token="gw-openai")
    assert only_builtin.status_code == 200 and "tools" not in fake.recorder.last.body and "tool_choice" not in fake.recorder.last.body

    client = client_for(gateway, "gw-openai")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-4o-mini", input="hi", tools=[{"type": "web_search"}], tool_choice={"type": "web_search"})
    assert caught.value.status_code == 400
    assert caught.value.body["code"] == "unsupported_tool" and caught.value.body["type"] == "invalid_request_error"
    assert "web_search" in caught.value.body["message"]


def test_namespace_and_custom_tools_as_codex_sends_them(gateway, fake_openai):
    fake, _ = fake_openai
    client = client_for(gateway, "gw-openai")
    namespace = {"type": "namespace", "name": "crm", "description": "CRM", "tools": [FLAT_TOOL]}
    response = client.responses.create(model="gpt-4o-mini", input="weather?", tools=[namespace], tool_choice="required")
    sent = fake.recorder.last.body
    assert [t["function"]["name"] for t in sent["tools"]] == ["crm__get_weather"] and sent["tool_choice"] == "required"
    call = response.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.namespace == "crm"
    assert call.id.startswith("fc_") and call.call_id == "call_fake1" and call.arguments == '{"city": "Paris"}'

    custom = {"type": "custom", "name": "apply_patch", "description": "Apply a patch", "format": {"type": "text"}}
    response = client.responses.create(model="gpt-4o-mini", input="patch it", tools=[custom])
    function = fake.recorder.last.body["tools"][0]["function"]
    assert function["name"] == "apply_patch" and function["parameters"]["properties"]["input"]["type"] == "string"
    call = response.output[0]
    assert call.type == "custom_tool_call" and call.name == "apply_patch" and call.call_id == "call_fake1"

    # the custom call and its output go back upstream as a tool call and its tool message
    client.responses.create(model="gpt-4o-mini", previous_response_id=response.id, tools=[custom],
                            input=[{"type": "custom_tool_call_output", "call_id": call.call_id, "output": "patched"}])
    messages = fake.recorder.last.body["messages"]
    assert messages[-2]["role"] == "assistant" and messages[-2]["tool_calls"][0]["id"] == "call_fake1"
    assert messages[-2]["tool_calls"][0]["function"]["name"] == "apply_patch"
    assert messages[-1] == {"role": "tool", "tool_call_id": "call_fake1", "content": "patched"}


# -- errors -----------------------------------------------------------------------------------


def test_error_cases(gateway, client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="mock", input="x", previous_response_id="resp_doesnotexist")
    assert caught.value.body["code"] == "previous_response_not_found" and caught.value.body["param"] == "previous_response_id"

    conversation = client.conversations.create()
    first = client.responses.create(model="mock", input="x")
    both = post(gateway, "/responses", {"input": "x", "previous_response_id": first.id, "conversation": conversation.id})
    assert both.status_code == 400 and both.json()["error"]["type"] == "invalid_request_error"

    unknown_conversation = post(gateway, "/responses", {"input": "x", "conversation": "conv_nope"})
    assert unknown_conversation.status_code == 404 and unknown_conversation.json()["error"]["code"] == "not_found"

    reference = post(gateway, "/responses", {"input": [{"type": "item_reference", "id": "msg_nope"}]})
    assert reference.status_code == 404 and "msg_nope" in reference.json()["error"]["message"]

    assert post(gateway, "/responses", {"input": 5}).status_code == 400
    assert post(gateway, "/responses", {"input": [{"type": "message", "role": "robot", "content": "x"}]}).status_code == 400
    assert post(gateway, "/responses", {"input": "x", "tools": [{"type": "function"}]}).json()["error"]["param"] == "tools[0].name"
    assert post(gateway, "/responses", {"model": "mock"}).status_code == 400  # no input at all
    bad_json = httpx.post(f"{gateway}/v1/responses", headers={"authorization": "Bearer gw-mock"}, content=b"{nope", timeout=10)
    assert bad_json.status_code == 400 and bad_json.json()["error"]["type"] == "invalid_request_error"
    assert post(gateway, "/responses", {"input": "x"}, token="gw-unknown").status_code == 401

    ignored = post(gateway, "/responses", {"input": "x", "client_metadata": {"a": 1}, "prompt_cache_key": "k", "service_tier": "auto",
                                            "safety_identifier": "s", "brand_new_field": True})
    assert ignored.status_code == 200, ignored.text


def test_store_false_keeps_nothing(client):
    response = client.responses.create(model="mock", input="secret", store=False)
    assert response.status == "completed" and response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="mock", input="x", previous_response_id=response.id)
    assert caught.value.body["code"] == "previous_response_not_found"
    conversation = client.conversations.create()
    client.responses.create(model="mock", input="not kept", conversation=conversation.id, store=False)
    assert client.conversations.items.list(conversation.id).data == []


def test_isolation_between_tokens(gateway, client):
    mine = client.responses.create(model="mock", input="mine")
    conversation = client.conversations.create(items=[{"role": "user", "content": "mine"}])
    other = client_for(gateway, "gw-mock-other")
    for call in (lambda: other.responses.retrieve(mine.id), lambda: other.responses.delete(mine.id),
                 lambda: other.responses.input_items.list(mine.id), lambda: other.conversations.retrieve(conversation.id),
                 lambda: other.conversations.items.list(conversation.id), lambda: other.conversations.delete(conversation.id),
                 lambda: other.conversations.update(conversation.id, metadata={"x": "y"}),
                 lambda: other.responses.create(input="x", conversation=conversation.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises(openai.BadRequestError):
        other.responses.create(input="x", previous_response_id=mine.id)
    item_id = client.conversations.items.list(conversation.id).data[0].id
    assert post(gateway, "/responses", {"input": [{"type": "item_reference", "id": item_id}]}, token="gw-mock-other").status_code == 404
    assert client.responses.retrieve(mine.id).id == mine.id  # still there for its owner


# -- conversations ----------------------------------------------------------------------------


def test_conversations_crud_and_turns(client):
    conversation = client.conversations.create(items=[{"type": "message", "role": "user", "content": "Hi, I am Ada."}],
                                               metadata={"topic": "intro"})
    assert conversation.id.startswith("conv_") and conversation.object == "conversation" and conversation.metadata == {"topic": "intro"}
    assert client.conversations.retrieve(conversation.id).created_at == conversation.created_at
    assert client.conversations.update(conversation.id, metadata={"topic": "changed"}).metadata == {"topic": "changed"}

    turn = client.responses.create(model="mock", input="What is my name?", conversation=conversation.id)
    assert turn.conversation.id == conversation.id
    items = client.conversations.items.list(conversation.id, order="asc")
    assert [(i.type, i.role) for i in items.data] == [("message", "user"), ("message", "user"), ("message", "assistant")]
    assert items.data[2].id == turn.output[0].id

    added = client.conversations.items.create(conversation.id, items=[{"role": "user", "content": "one"}, {"role": "user", "content": "two"}])
    assert [i.content[0].text for i in added.data] == ["one", "two"]
    newest = client.conversations.items.list(conversation.id, limit=1)
    assert newest.data[0].content[0].text == "two" and newest.has_more is True
    assert [i.id for i in client.conversations.items.list(conversation.id, limit=2)] == [
        i.id for i in reversed(client.conversations.items.list(conversation.id, order="asc").data)]
    fetched = client.conversations.items.retrieve(added.data[0].id, conversation_id=conversation.id)
    assert fetched.content[0].text == "one"
    after_delete = client.conversations.items.delete(added.data[0].id, conversation_id=conversation.id)
    assert after_delete.id == conversation.id and after_delete.object == "conversation"
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(added.data[0].id, conversation_id=conversation.id)
    deleted = client.conversations.delete(conversation.id)
    assert deleted.deleted is True and deleted.id == conversation.id
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)


def test_conversation_streamed_turn_is_appended(gateway, client):
    conversation = client.conversations.create()
    with client.responses.stream(model="mock", input="streamed turn", conversation={"id": conversation.id}) as stream:
        final = stream.get_final_response()
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [i.id for i in items][1:] == [final.output[0].id]
    assert items[0].content[0].text == "streamed turn"


# -- background -------------------------------------------------------------------------------


def test_background_poll_and_cancel(gateway, client):
    queued = client.responses.create(model="mock", input="later", background=True)
    assert queued.status in ("queued", "in_progress") and queued.background is True
    done = wait_until(lambda: (r := client.responses.retrieve(queued.id)).status == "completed" and r, what="background response")
    assert done.output_text == MOCK_REPLY + "later"

    slow = client_for(gateway, "gw-mock-slow")
    running = slow.responses.create(input="never", background=True)
    cancelled = slow.responses.cancel(running.id)
    assert cancelled.status == "cancelled" and cancelled.id == running.id
    assert slow.responses.retrieve(running.id).status == "cancelled"

    foreground = client.responses.create(model="mock", input="now")
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(foreground.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_unknown")


def test_retrieve_with_stream_replays_the_events(gateway, client):
    created = client.responses.create(model="mock", input="replay me")
    events = list(client.responses.retrieve(created.id, stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == created.output_text
    assert events[-1].response.id == created.id
    later = list(client.responses.retrieve(created.id, stream=True, starting_after=3))
    assert [e.sequence_number for e in later] == list(range(4, len(events)))


def test_client_leaving_mid_stream_closes_the_upstream_request(gateway, fake_openai):
    fake, _ = fake_openai
    before = fake.recorder.events.count("disconnect")
    with httpx.stream("POST", f"{gateway}/v1/responses", headers={"authorization": "Bearer gw-openai"},
                      json={"model": "slow-stream", "input": "go on", "stream": True}, timeout=30) as response:
        lines = response.iter_lines()
        deltas = 0
        for line in lines:
            if line == "event: response.output_text.delta":
                deltas += 1
                if deltas == 3:
                    break
    wait_until(lambda: fake.recorder.events.count("disconnect") > before, what="the upstream to see the disconnect")
