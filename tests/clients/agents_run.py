"""Run inside the Agents SDK's own virtualenv (tests/test_responses_clients.py makes it): an
agent with a function tool and an `OpenAIConversationsSession`, against the gateway given by
`$GATEWAY_BASE_URL` / `$GATEWAY_TOKEN`. Prints one JSON line with what happened."""

import asyncio
import json
import os

from agents import Agent, OpenAIConversationsSession, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

calls = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    calls.append(city)
    return f"sunny in {city}"


async def main() -> None:
    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=os.environ["GATEWAY_BASE_URL"], api_key=os.environ["GATEWAY_TOKEN"], max_retries=0)
    model = OpenAIResponsesModel(model=os.environ.get("GATEWAY_MODEL", "gpt-4o-mini"), openai_client=client)
    agent = Agent(name="weather", instructions="Answer with the tool.", tools=[get_weather], model=model)
    session = OpenAIConversationsSession(openai_client=client)
    first = await Runner.run(agent, "What is the weather in Paris?", session=session)
    second = await Runner.run(agent, "And tomorrow?", session=session)
    items = await session.get_items()
    popped = await session.pop_item()
    after_pop = await session.get_items()
    conversation_id = await session._get_session_id()
    await session.clear_session()
    print(json.dumps({
        "first": first.final_output, "second": second.final_output, "calls": calls,
        "item_types": [i.get("type", "message") for i in items], "popped": popped.get("id") if popped else None,
        "after_pop": len(after_pop), "conversation": conversation_id,
    }))


asyncio.run(main())
