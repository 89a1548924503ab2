"""The fake Coze upstream is faithful: the official `cozepy` SDK parses its chat stream events,
the create → retrieve → message list flow, workflow runs and streams, and raises CozeAPIError
for its error codes, as it would with Coze."""

import pytest
from cozepy import (
    COZE_CN_BASE_URL,
    ChatEventType,
    ChatStatus,
    Coze,
    CozeAPIError,
    Message,
    MessageObjectString,
    MessageType,
    TokenAuth,
    WorkflowEventType,
)

from tests.fakes.coze import API_KEY, USAGE, FakeCoze
from tests.support.servers import serve_app

assert COZE_CN_BASE_URL == "https://api.coze.cn"  # the adapter's documented default


@pytest.fixture(scope="module")
def fake_coze():
    fake = FakeCoze()
    with serve_app(fake.app) as url:
        yield fake, url


@pytest.fixture
def coze(fake_coze):
    _, url = fake_coze
    return Coze(auth=TokenAuth(API_KEY), base_url=url)


def test_chat_stream_events(coze, fake_coze):
    fake, _ = fake_coze
    events = list(coze.chat.stream(bot_id="bot-1", user_id="u1", additional_messages=[Message.build_user_question_text("hi there")], auto_save_history=False))
    kinds = [e.event for e in events]
    assert kinds[:2] == [ChatEventType.CONVERSATION_CHAT_CREATED, ChatEventType.CONVERSATION_CHAT_IN_PROGRESS]
    assert kinds[-1] == ChatEventType.CONVERSATION_CHAT_COMPLETED
    text = "".join(e.message.content for e in events if e.event == ChatEventType.CONVERSATION_MESSAGE_DELTA)
    assert text == "Echo: hi there "
    completed = [e.message for e in events if e.event == ChatEventType.CONVERSATION_MESSAGE_COMPLETED]
    assert [m.type for m in completed] == [MessageType.ANSWER, MessageType.VERBOSE, MessageType.FOLLOW_UP]
    usage = events[-1].chat.usage
    assert (usage.token_count, usage.input_count, usage.output_count) == (30, 20, 10)
    received = fake.recorder.last
    assert received.path == "/v3/chat" and received.headers["authorization"] == f"Bearer {API_KEY}"
    sent = received.body["additional_messages"][0]
    assert {k: sent[k] for k in ("role", "type", "content", "content_type")} == {"role": "user", "type": "question", "content": "hi there", "content_type": "text"}


def test_chat_stream_object_string_and_failure(coze):
    objects = [MessageObjectString.build_text("look"), MessageObjectString.build_image(file_url="https://example.com/cat.png")]
    events = list(coze.chat.stream(bot_id="bot-1", user_id="u1", additional_messages=[Message.build_user_question_objects(objects)]))
    text = "".join(e.message.content for e in events if e.event == ChatEventType.CONVERSATION_MESSAGE_DELTA)
    assert text == "Echo: look [image https://example.com/cat.png] "
    failed = list(coze.chat.stream(bot_id="failed-4013", user_id="u1", additional_messages=[Message.build_user_question_text("x")]))
    assert failed[-1].event == ChatEventType.CONVERSATION_CHAT_FAILED
    assert failed[-1].chat.last_error.code == 4013
    with pytest.raises(Exception, match="error event"):
        list(coze.chat.stream(bot_id="event-error-5000", user_id="u1", additional_messages=[Message.build_user_question_text("x")]))


def test_chat_create_retrieve_and_list_messages(coze, fake_coze):
    fake, _ = fake_coze
    chat = coze.chat.create(bot_id="bot-1", user_id="u1", additional_messages=[Message.build_user_question_text("hello")])
    assert chat.status == ChatStatus.IN_PROGRESS
    chat = coze.chat.retrieve(conversation_id=chat.conversation_id, chat_id=chat.id)
    assert chat.status == ChatStatus.COMPLETED and chat.usage.output_count == USAGE["output_count"]
    messages = coze.chat.messages.list(conversation_id=chat.conversation_id, chat_id=chat.id)
    answers = [m.content for m in messages if m.type == MessageType.ANSWER]
    assert answers == ["Echo: hello"]
    assert fake.recorder.last.path == "/v3/chat/message/list"
    with pytest.raises(CozeAPIError) as info:
        coze.chat.create(bot_id="bot-1", user_id="u1", additional_messages=[Message.build_user_question_text("x")], auto_save_history=False)
    assert info.value.code == 4007


def test_workflow_run_and_stream(coze, fake_coze):
    fake, _ = fake_coze
    result = coze.workflows.runs.create(workflow_id="wf-1", parameters={"input": "hi"})
    assert result.data == '{"output": "Echo: hi"}' and result.usage.token_count == 30
    assert fake.recorder.last.path == "/v1/workflow/run"
    events = list(coze.workflows.runs.stream(workflow_id="wf-1", parameters={"input": "a b"}))
    assert all(e.event == WorkflowEventType.MESSAGE for e in events)
    assert "".join(e.message.content for e in events) == "Echo: a b"
    assert events[-1].message.node_is_finish and events[-1].message.usage.output_count == 10
    errors = list(coze.workflows.runs.stream(workflow_id="event-error-4200", parameters={"input": "x"}))
    assert errors[0].event == WorkflowEventType.ERROR and errors[0].error.error_code == 4200
    interrupted = list(coze.workflows.runs.stream(workflow_id="interrupt", parameters={"input": "x"}))
    assert interrupted[-1].event == WorkflowEventType.INTERRUPT and interrupted[-1].interrupt.node_title == "Question"


@pytest.mark.parametrize("code", [4100, 4006, 4008])
def test_error_codes_raise_coze_api_error(coze, code):
    with pytest.raises(CozeAPIError) as info:
        list(coze.chat.stream(bot_id=f"error-{code}", user_id="u1", additional_messages=[Message.build_user_question_text("x")]))
    assert info.value.code == code
    with pytest.raises(CozeAPIError) as info:
        coze.workflows.runs.create(workflow_id=f"error-{code}", parameters={"input": "x"})
    assert info.value.code == code


def test_wrong_token_is_4100(fake_coze):
    _, url = fake_coze
    bad = Coze(auth=TokenAuth("pat_wrong"), base_url=url)
    with pytest.raises(CozeAPIError) as info:
        bad.workflows.runs.create(workflow_id="wf-1", parameters={"input": "x"})
    assert info.value.code == 4100
    with pytest.raises(CozeAPIError):
        list(bad.workflows.runs.stream(workflow_id="wf-1", parameters={"input": "x"}))


def test_reasoning_bot_streams_reasoning_content(coze):
    """A deep-thinking bot's deltas carry `reasoning_content` (cozepy `Message.reasoning_content`)
    before the answer's `content`."""
    events = list(coze.chat.stream(bot_id="reasoning", user_id="u1", additional_messages=[Message.build_user_question_text("hi there")]))
    deltas = [e.message for e in events if e.event == ChatEventType.CONVERSATION_MESSAGE_DELTA]
    assert deltas[0].reasoning_content == "The " and deltas[0].content == ""
    assert "".join(m.reasoning_content or "" for m in deltas) == "The user greets me; I echo. "
    assert "".join(m.content for m in deltas) == "Echo: hi there "
    completed = next(e.message for e in events if e.event == ChatEventType.CONVERSATION_MESSAGE_COMPLETED)
    assert completed.reasoning_content == "The user greets me; I echo."
