"""The `router` type (CONTRACT.md §4, Routers and Cooldown) driven as users drive it: the official
`openai` client against the gateway app served on loopback, in front of a fake upstream whose
members (proxy entries with different forced models) succeed, fail, stall or break on demand.
Cooldowns run on an injected fake clock (gateway.health), never on sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter

import httpx
import openai
import pytest

from gateway import health
from gateway.config import ConfigError, Cooldown, build_config, load_config
from gateway.errors import GatewayError, rate_limited, upstream_timeout, upstream_unreachable
from gateway.http import UpstreamHTTP
from gateway.runtime import Runtime
from tests.fakes.members import MemberFake
from tests.routing_harness import MEMBER_KEY, FakeClock, closed_base, member, router, running_gateway
from tests.support.servers import GatewayProcess, serve_app

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def upstream():
    fake = MemberFake()
    with serve_app(fake) as url:
        yield fake, url


@pytest.fixture
def members(upstream):
    """The shared fake member upstream, its records cleared: (fake, base_url)."""
    fake, url = upstream
    fake.reset()
    return fake, url


@pytest.fixture
def start(tmp_path):
    """start(tokens, settings=None) -> RunningGateway, stopped at teardown."""
    counter = itertools.count()
    with contextlib.ExitStack() as stack:

        def run(tokens, settings=None):
            directory = tmp_path / f"gw{next(counter)}"
            directory.mkdir()
            return stack.enter_context(running_gateway(directory, tokens, settings))

        yield run


def error_of(exc_info) -> dict:
    return exc_info.value.response.json()["error"]


def router_logs(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gateway.router"]


def assert_no_secrets(text: str, *tokens: str) -> None:
    assert MEMBER_KEY not in text
    for token in tokens:
        assert token not in text


# -- the fake is faithful ---------------------------------------------------------------------


def test_member_fake_speaks_openai(members):
    """The official SDK parses the fake's answers, streams and errors."""
    fake, url = members
    client = openai.OpenAI(api_key="x", base_url=f"{url}/v1", max_retries=0)
    assert client.chat.completions.create(model="ok-a", messages=HI).choices[0].message.content == "from ok-a"
    stream = client.chat.completions.create(model="delay-10-a", messages=HI, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "from delay-10-a "
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="status-429-ra30-a", messages=HI)
    assert limited.value.response.headers["retry-after"] == "30"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="status-500-a", messages=HI)
    assert [m.id for m in client.models.list()] == ["fake-model-1", "fake-model-2"]
    assert fake.hits("ok-a") == 1


# -- strategies -------------------------------------------------------------------------------


def pool_of(url, n, prefix):
    return [member(f"{prefix}-tok-{i}", f"{prefix}-{i}", f"ok-{prefix}{i}", url) for i in range(n)]


def parallel_router(token, url, models):
    pool = [member(f"{token}-m{i}", f"{token}-{i}", m, url) for i, m in enumerate(models)]
    return [*pool, router(token, token, "parallel", [t["token"] for t in pool])]


def shared_tokens(url: str) -> list[dict]:
    """The config of the gateway most tests here share (default timeouts and cooldown)."""
    mock = lambda token, name, **config: {"token": token, "name": name, "type": "mock", "internal": True, "config": config}  # noqa: E731
    return [
        # strategies
        *pool_of(url, 3, "rr"), router("gw-rr", "rr", "round-robin", [f"rr-tok-{i}" for i in range(3)]),
        *pool_of(url, 4, "cc"), router("gw-cc", "cc", "round-robin", [f"cc-tok-{i}" for i in range(4)]),
        *pool_of(url, 2, "fb"), router("gw-fb", "fb", "fallback", ["fb-tok-0", "fb-tok-1"]),
        mock("w-light", "light", reply="light"), mock("w-heavy", "heavy", reply="heavy"),
        router("gw-w", "weighted", "weighted", ["w-light", "w-heavy"], weights=[1, 3]),
        *(mock(f"r{i}", f"rand-{i}") for i in range(3)), router("gw-rand", "rand", "random", ["r0", "r1", "r2"]),
        # parallel
        *parallel_router("gw-par-fast", url, ["delay-5000-slow", "delay-50-fast"]),
        *parallel_router("gw-par-stream", url, ["delay-3000-late", "slowstream-s"]),
        *parallel_router("gw-par-fo", url, ["status-500-pf", "delay-100-pf"]),
        *parallel_router("gw-par-400", url, ["status-400-pr", "delay-5000-pr"]),
        *parallel_router("gw-par-all", url, ["status-500-pa", "status-429-pa", "status-401-pa"]),
        # nesting
        member("tok-nbad", "bad", "ok-nested-bad", closed_base()),
        member("tok-n1", "inner-ok", "ok-n1", url),
        member("tok-n2", "outer-ok", "ok-n2", url),
        {**router("tok-inner", "inner-router", "fallback", ["tok-nbad", "tok-n1"]), "internal": True},
        router("gw-outer", "outer-router", "round-robin", ["tok-inner", "tok-n2"]),
        router("gw-par-nested", "par-router", "parallel", ["tok-inner"]),
        member("tok-x", "x", "status-429-nf", url),
        member("tok-y", "y", "status-500-nf", url),
        member("tok-z", "z", "ok-nf", url),
        router("tok-in", "in", "fallback", ["tok-x", "tok-y"]),
        router("gw-out", "out", "fallback", ["tok-in", "tok-z"]),
        router("gw-out2", "out2", "fallback", ["tok-in"]),
        # internal entries, /v1/models, direct tokens
        member("tok-int", "internal-member", "ok-int", url),
        router("gw-int", "int", "fallback", ["tok-int"]),
        member("tok-forced", "forced", "ok-forced", url),
        {"token": "tok-listed", "name": "listed", "type": "proxy", "internal": True, "config": {"api_base": f"{url}/v1"}},
        {"token": "tok-down", "name": "down", "type": "proxy", "internal": True, "config": {"api_base": f"{closed_base()}/v1"}},
        mock("tok-mock", "mocked"),
        router("tok-sub", "sub", "random", ["tok-mock", "tok-forced"]),
        router("gw-models", "models", "fallback", ["tok-forced", "tok-listed", "tok-down", "tok-sub"]),
        member("tok-direct", "direct", "ok-direct", url, internal=False),
    ]


@pytest.fixture(scope="module")
def shared_gw(upstream, tmp_path_factory):
    _, url = upstream
    with running_gateway(tmp_path_factory.mktemp("shared"), shared_tokens(url)) as gw:
        yield gw


def test_round_robin_rotates_exactly(shared_gw, members):
    fake, _ = members
    served = [shared_gw.chat("gw-rr")[1]["x-gateway-served-by"] for _ in range(12)]
    served += [shared_gw.stream_text("gw-rr")[1]["x-gateway-served-by"] for _ in range(6)]
    assert served == ["rr-0", "rr-1", "rr-2"] * 6
    assert [fake.hits(f"ok-rr{i}") for i in range(3)] == [6, 6, 6]


def test_round_robin_splits_200_concurrent_requests_exactly(shared_gw, members):
    """200 simultaneous requests through a round-robin of 4: exactly 50 each (one shared counter)."""
    fake, _ = members

    async def run():
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=shared_gw.url, limits=limits, timeout=30) as client:
            body = {"model": "x", "messages": HI}
            responses = await asyncio.gather(*(
                client.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer gw-cc"}) for _ in range(200)
            ))
        return responses

    responses = asyncio.run(run())
    assert all(r.status_code == 200 for r in responses)
    assert Counter(r.headers["x-gateway-served-by"] for r in responses) == {f"cc-{i}": 50 for i in range(4)}
    assert [fake.hits(f"ok-cc{i}") for i in range(4)] == [50, 50, 50, 50]


def test_weighted_follows_the_weights(shared_gw):
    """120 requests, weights 1:3. The heavy member's count is Binomial(120, 0.75): mean 90,
    sd 4.74; the bounds are 5 sd either side (a false failure has probability < 1e-6), and
    exclude an even split (60). The exact proportions are checked on 20000 draws below."""
    client = shared_gw.client("gw-w")
    replies = Counter(client.chat.completions.create(model="m", messages=HI).choices[0].message.content for _ in range(120))
    assert set(replies) == {"light", "heavy"}
    assert 67 <= replies["heavy"] <= 113


def standalone_router(config: dict, n: int = 3) -> tuple[Runtime, object]:
    tokens = [{"token": f"t{i}", "type": "mock", "config": {}} for i in range(n)]
    tokens.append({"token": "r", "type": "router", "config": config})
    cfg = build_config(tokens)
    runtime = Runtime(cfg, UpstreamHTTP(cfg.settings))
    return runtime, runtime.adapter("r")


def test_weighted_draws_without_replacement_in_proportion():
    """20000 draws of weights 1:2:5. First pick: 1/8, 2/8, 5/8. Second pick of t0:
    (2/8)(1/6) + (5/8)(1/3) = 1/4. Tolerance 0.015 is more than 4 sd (sd <= 0.0035)."""
    _, adapter = standalone_router({"router_strategy": "weighted", "token_pool": ["t0", "t1", "t2"], "weights": [1, 2, 5]})
    orders = [adapter.strategy_order() for _ in range(20000)]
    assert all(sorted(o) == ["t0", "t1", "t2"] for o in orders)
    first = Counter(o[0] for o in orders)
    for token, p in (("t0", 1 / 8), ("t1", 2 / 8), ("t2", 5 / 8)):
        assert abs(first[token] / 20000 - p) < 0.015
    assert abs(sum(o[1] == "t0" for o in orders) / 20000 - 0.25) < 0.015


def test_random_covers_every_member(shared_gw):
    """45 requests over 3 members: each is picked (a miss has probability 3 * (2/3)**45 < 1e-7),
    and the order is not a rotation."""
    served = [shared_gw.chat("gw-rand")[1]["x-gateway-served-by"] for _ in range(45)]
    assert set(served) == {"rand-0", "rand-1", "rand-2"}
    assert served != ["rand-0", "rand-1", "rand-2"] * 15
    _, adapter = standalone_router({"router_strategy": "random", "token_pool": ["t0", "t1", "t2"]})
    assert {adapter.strategy_order()[0] for _ in range(200)} == {"t0", "t1", "t2"}


def test_fallback_uses_the_first_member_while_it_works(shared_gw, members):
    fake, _ = members
    assert {shared_gw.chat("gw-fb")[1]["x-gateway-served-by"] for _ in range(5)} == {"fb-0"}
    assert (fake.hits("ok-fb0"), fake.hits("ok-fb1")) == (5, 0)


# -- failover ---------------------------------------------------------------------------------
# One gateway (request_timeout 0.5 s) holds a fallback router per scenario, so these tests
# share its start-up.

FAILURES = {
    # kind: (the failing member's model, True when it points at a closed port, the code it fails with)
    "connection-refused": ("ok-refused", True, "upstream_error"),
    "first-byte-timeout": ("delay-5000-timeout", False, "upstream_timeout"),
    "429": ("status-429-f", False, "rate_limit_exceeded"),
    "500": ("status-500-f", False, "upstream_error"),
    "503": ("status-503-f", False, "upstream_error"),
    "401-own-credentials": ("status-401-f", False, "upstream_auth_error"),
    "403-own-credentials": ("status-403-f", False, "upstream_auth_error"),
}
REQUEST_ERRORS = (400, 422)
ALL_FAIL = {
    # case: (members' models, status, code); "refused" is a member at a closed port
    "429-wins": (["refused", "status-429-x", "delay-5000-x"], 429, "rate_limit_exceeded"),
    "504-over-502": (["refused", "delay-5000-y", "status-500-y"], 504, "upstream_timeout"),
    "auth-over-upstream": (["refused", "status-500-z", "status-401-z"], 502, "upstream_auth_error"),
    "upstream": (["refused", "status-503-w"], 502, "upstream_error"),
}


@pytest.fixture(scope="module")
def failover_gw(upstream, tmp_path_factory):
    _, url = upstream
    tokens = []
    for kind, (model, refused, _) in FAILURES.items():
        tokens += [member(f"tok-bad-{kind}", f"bad-{kind}", model, closed_base() if refused else url),
                   member(f"tok-good-{kind}", f"good-{kind}", f"ok-good-{kind}", url),
                   router(f"gw-fo-{kind}", f"fo-{kind}", "fallback", [f"tok-bad-{kind}", f"tok-good-{kind}"])]
    for status in REQUEST_ERRORS:
        tokens += [member(f"tok-rq-{status}", f"rq-{status}", f"status-{status}-rq", url),
                   member(f"tok-rq-ok-{status}", f"rq-ok-{status}", f"ok-rq{status}", url),
                   router(f"gw-rq-{status}", f"rq-router-{status}", "fallback", [f"tok-rq-{status}", f"tok-rq-ok-{status}"])]
    for case, (models, _, _) in ALL_FAIL.items():
        pool = [member(f"tok-{case}-{i}", f"{case}-{i}", m, closed_base() if m == "refused" else url) for i, m in enumerate(models)]
        tokens += [*pool, router(f"gw-all-{case}", f"all-fail-{case}", "fallback", [t["token"] for t in pool])]
    tokens += [member("tok-mid", "mid", "midstream-m", url), member("tok-mid-ok", "mid-ok", "ok-m", url),
               router("gw-mid", "mid-router", "fallback", ["tok-mid", "tok-mid-ok"])]
    with running_gateway(tmp_path_factory.mktemp("failover"), tokens, {"request_timeout": 0.5}) as gw:
        yield gw


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("kind", list(FAILURES))
def test_failover_to_the_next_member(kind, streamed, failover_gw, members, caplog):
    fake, _ = members
    model, refused, code = FAILURES[kind]
    caplog.set_level(logging.WARNING, logger="gateway.router")
    if streamed:
        text, headers = failover_gw.stream_text(f"gw-fo-{kind}")
        assert text == f"from ok-good-{kind} "
    else:
        completion, headers = failover_gw.chat(f"gw-fo-{kind}")
        assert completion.choices[0].message.content == f"from ok-good-{kind}"
    assert headers["x-gateway-token-name"] == f"fo-{kind}"
    assert headers["x-gateway-served-by"] == f"good-{kind}"
    assert fake.hits(f"ok-good-{kind}") == 1
    assert fake.hits(model) == (0 if refused else 1)
    [record] = router_logs(caplog)
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert f"fo-{kind}" in message and f"bad-{kind}" in message and code in message
    assert_no_secrets(caplog.text, f"tok-bad-{kind}", f"tok-good-{kind}", f"gw-fo-{kind}")
    if kind == "first-byte-timeout":  # the abandoned upstream request was closed
        assert fake.recorder.wait_for_event(f"disconnect:{model}", timeout=5)


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("status", REQUEST_ERRORS)
def test_request_error_is_returned_at_once(status, streamed, failover_gw, members):
    """A 400-class rejection is the request's fault: no other member is tried."""
    fake, _ = members
    with pytest.raises(openai.APIStatusError) as exc:
        if streamed:
            failover_gw.stream_text(f"gw-rq-{status}")
        else:
            failover_gw.chat(f"gw-rq-{status}")
    assert exc.value.status_code == status
    assert error_of(exc)["type"] == "invalid_request_error"
    assert (fake.hits(f"status-{status}-rq"), fake.hits(f"ok-rq{status}")) == (1, 0)


@pytest.mark.parametrize("case", list(ALL_FAIL))
def test_all_members_failed_gives_the_most_telling_error(case, failover_gw, members):
    models, status, code = ALL_FAIL[case]
    with pytest.raises(openai.APIStatusError) as exc:
        failover_gw.chat(f"gw-all-{case}")
    assert exc.value.status_code == status
    error = error_of(exc)
    assert error["code"] == code
    assert f"all-fail-{case}" in error["message"]
    assert_no_secrets(exc.value.response.text, *(f"tok-{case}-{i}" for i in range(len(models))))


def test_no_failover_after_the_first_byte(failover_gw, members):
    """A stream that breaks after its first chunk ends with an SSE error event; no second member."""
    fake, _ = members
    with httpx.stream("POST", f"{failover_gw.url}/v1/chat/completions", headers={"authorization": "Bearer gw-mid"},
                      json={"model": "x", "messages": HI, "stream": True}, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["x-gateway-served-by"] == "mid"
        text = response.read().decode()
    assert "partial" in text
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert '"code":"upstream_error"' in events[-2] and events[-1] == "[DONE]"
    assert (fake.hits("midstream-m"), fake.hits("ok-m")) == (1, 0)


# -- parallel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
def test_parallel_returns_the_fastest_and_closes_the_others(streamed, shared_gw, members):
    fake, _ = members
    began = time.monotonic()
    if streamed:
        text, headers = shared_gw.stream_text("gw-par-fast")
        assert text == "from delay-50-fast "
    else:
        completion, headers = shared_gw.chat("gw-par-fast")
        assert completion.choices[0].message.content == "from delay-50-fast"
    assert time.monotonic() - began < 3
    assert headers["x-gateway-served-by"] == "gw-par-fast-1"
    assert fake.hits("delay-5000-slow") == 1
    assert fake.recorder.wait_for_event("disconnect:delay-5000-slow", timeout=5)


def test_parallel_stream_winner_keeps_streaming_and_the_client_closing_it_closes_upstream(shared_gw, members):
    """The member whose first chunk comes first wins; the losers' requests are closed, and
    closing the client's stream closes the winner's upstream stream too."""
    fake, _ = members
    client = shared_gw.client("gw-par-stream")
    with client.chat.completions.with_streaming_response.create(model="x", messages=HI, stream=True) as response:
        assert response.headers["x-gateway-served-by"] == "gw-par-stream-1"
        stream = response.parse()
        parts = [next(stream).choices[0].delta.content for _ in range(4)]
        assert parts[1:] == ["0 ", "1 ", "2 "]
    assert fake.recorder.wait_for_event("disconnect:delay-3000-late", timeout=5)
    assert fake.recorder.wait_for_event("disconnect:slowstream-s", timeout=5)


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
def test_parallel_fails_over_to_the_members_that_succeed(streamed, shared_gw, members, caplog):
    caplog.set_level(logging.WARNING, logger="gateway.router")
    if streamed:
        text, headers = shared_gw.stream_text("gw-par-fo")
        assert text == "from delay-100-pf "
    else:
        completion, headers = shared_gw.chat("gw-par-fo")
        assert completion.choices[0].message.content == "from delay-100-pf"
    assert headers["x-gateway-served-by"] == "gw-par-fo-1"
    assert any("gw-par-fo-0" in r.getMessage() and "upstream_error" in r.getMessage() for r in router_logs(caplog))


def test_parallel_request_error_returns_at_once_and_cancels_the_rest(shared_gw, members):
    fake, _ = members
    began = time.monotonic()
    with pytest.raises(openai.BadRequestError):
        shared_gw.chat("gw-par-400")
    assert time.monotonic() - began < 3
    assert fake.recorder.wait_for_event("disconnect:delay-5000-pr", timeout=5)


def test_parallel_all_failed_gives_the_most_telling_error(shared_gw, members):
    with pytest.raises(openai.RateLimitError) as exc:
        shared_gw.chat("gw-par-all")
    assert error_of(exc)["code"] == "rate_limit_exceeded"


# -- cooldown ---------------------------------------------------------------------------------

COOLDOWN = {"cooldown": {"failures": 3, "window": 60, "seconds": 5, "max_seconds": 20}}


def cooldown_gateway(start, url, first_model, settings=COOLDOWN):
    return start([member("tok-c1", "first", first_model, url), member("tok-c2", "second", "ok-cd", url),
                  router("gw-cd", "cd", "fallback", ["tok-c1", "tok-c2"])], settings)


def test_cooldown_enters_doubles_caps_and_leaves(start, members, caplog):
    fake, url = members
    caplog.set_level(logging.WARNING, logger="gateway.router")
    fake.failing.add("cd")
    gw = cooldown_gateway(start, url, "flaky-cd")

    def ask() -> str:
        return gw.chat("gw-cd")[1]["x-gateway-served-by"]

    def tries() -> int:
        return fake.hits("flaky-cd")

    for expected in (1, 2, 3):  # three failures within the window: tried each time, then cooling
        assert ask() == "second" and tries() == expected
    assert any("cools down for 5 s" in r.getMessage() for r in router_logs(caplog))
    assert ask() == "second" and tries() == 3  # skipped
    gw.clock.advance(4.9)
    assert ask() == "second" and tries() == 3
    gw.clock.advance(0.2)  # cooldown over: tried again, fails again -> 10 s
    assert ask() == "second" and tries() == 4
    gw.clock.advance(9.9)
    assert ask() == "second" and tries() == 4
    gw.clock.advance(0.2)  # fails again -> 20 s (the cap)
    assert ask() == "second" and tries() == 5
    gw.clock.advance(20.1)  # fails again -> still 20 s
    assert ask() == "second" and tries() == 6
    gw.clock.advance(19.9)
    assert ask() == "second" and tries() == 6
    fake.failing.clear()
    gw.clock.advance(0.2)  # recovered: a success clears failures and backoff
    assert ask() == "first" and tries() == 7
    fake.failing.add("cd")
    for expected in (8, 9, 10):  # counting starts over: three failures before cooling again
        assert ask() == "second" and tries() == expected
    assert ask() == "second" and tries() == 10
    gw.clock.advance(5.1)  # and the backoff started over at 5 s
    assert ask() == "second" and tries() == 11


def test_retry_after_sets_the_cooldown(start, members):
    fake, url = members
    gw = cooldown_gateway(start, url, "status-429-ra15-cd")
    assert gw.chat("gw-cd")[1]["x-gateway-served-by"] == "second"
    assert fake.hits("status-429-ra15-cd") == 1
    gw.clock.advance(14.5)  # one 429 with Retry-After: 15 cools it down for 15 s at once
    gw.chat("gw-cd")
    assert fake.hits("status-429-ra15-cd") == 1
    gw.clock.advance(0.6)
    gw.chat("gw-cd")
    assert fake.hits("status-429-ra15-cd") == 2


def test_all_members_cooling_down_are_all_tried_soonest_first(start, members):
    fake, url = members
    gw = start([member("tok-s1", "s1", "status-429-ra10-s", url), member("tok-s2", "s2", "status-429-ra8-s", url),
                router("gw-s", "soon", "fallback", ["tok-s1", "tok-s2"])], COOLDOWN)
    with pytest.raises(openai.RateLimitError):
        gw.chat("gw-s")
    assert (fake.hits("status-429-ra10-s"), fake.hits("status-429-ra8-s")) == (1, 1)
    gw.clock.advance(1)  # both cooling: s2's ends first (8 s), so it is tried first, then s1 (§4)
    with pytest.raises(openai.RateLimitError) as exc:
        gw.chat("gw-s")
    assert (fake.hits("status-429-ra10-s"), fake.hits("status-429-ra8-s")) == (2, 2)
    assert "(2 tried)" in error_of(exc)["message"]


def test_cooling_members_are_tried_until_one_answers(start, members):
    """Issue #14 item 7: cooldown orders, it never excludes. Both members cooling, the one whose
    cooldown ends first still failing: the other (cooling too, but recovered) answers."""
    fake, url = members
    fake.failing.update({"ca", "cb"})
    gw = start([member("tok-ca", "ca", "flaky-ca", url), member("tok-cb", "cb", "flaky-cb", url),
                router("gw-cab", "cab", "fallback", ["tok-ca", "tok-cb"])], COOLDOWN)
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            gw.chat("gw-cab")
    assert (fake.hits("flaky-ca"), fake.hits("flaky-cb")) == (3, 3)  # both cooling now
    fake.failing.discard("cb")
    completion, headers = gw.chat("gw-cab")
    assert headers["x-gateway-served-by"] == "cb" and completion.choices[0].message.content == "from flaky-cb"
    assert (fake.hits("flaky-ca"), fake.hits("flaky-cb")) == (4, 4)  # ca (cooldown ends first) tried, then cb
    assert gw.chat("gw-cab")[1]["x-gateway-served-by"] == "cb"  # cb is healthy again, ca still cooling: cb first
    assert fake.hits("flaky-ca") == 4


def test_parallel_router_tries_cooling_members_after_the_others_fail(start, members):
    fake, url = members
    fake.failing.update({"pc"})
    gw = start([member("tok-p1", "p1", "flaky-pc", url), member("tok-p2", "p2", "status-429-ra2-pd", url),
                router("gw-pc", "pc", "parallel", ["tok-p1", "tok-p2"])], COOLDOWN)
    for _ in range(3):
        with pytest.raises(openai.RateLimitError):
            gw.chat("gw-pc")
    gw.clock.advance(1)
    fake.failing.clear()  # both cooling: p2 (ends first) still failing, p1 recovered
    assert gw.chat("gw-pc")[1]["x-gateway-served-by"] == "p1"
    assert fake.hits("status-429-ra2-pd") == 4


def test_cooldown_zero_turns_it_off(start, members):
    fake, url = members
    gw = cooldown_gateway(start, url, "status-429-ra30-off", {"cooldown": {"seconds": 0}})
    for _ in range(5):
        gw.chat("gw-cd")
    assert fake.hits("status-429-ra30-off") == 5


def test_request_errors_do_not_count_towards_cooldown(start, members):
    fake, url = members
    gw = cooldown_gateway(start, url, "status-400-nc")
    for _ in range(5):
        with pytest.raises(openai.BadRequestError):
            gw.chat("gw-cd")
    assert fake.hits("status-400-nc") == 5


def test_member_health_survives_a_config_reload(start, members, tmp_path):
    fake, url = members
    gw = cooldown_gateway(start, url, "status-500-rl")
    for _ in range(3):
        gw.chat("gw-cd")
    old = gw.runtime
    gw.app.state.gateway.apply(load_config(next(tmp_path.glob("gw*/config.yaml"))))
    assert gw.runtime is not old
    gw.chat("gw-cd")
    assert fake.hits("status-500-rl") == 3  # still cooling after the reload


POLICY = Cooldown(failures=3, window=60, seconds=5, max_seconds=300)
FAIL = upstream_unreachable("refused")


def test_health_counts_failures_only_within_the_window():
    clock = FakeClock(0)
    book = health.HealthBook(clock)
    for at in (0, 30, 61):  # the first one has left the window when the third arrives
        clock.now = at
        assert book.record_failure("m", FAIL, POLICY) is None
    clock.now = 62
    assert book.record_failure("m", FAIL, POLICY) == 5
    assert book.is_cooling("m", POLICY) and book.cooling_until("m", POLICY) == 67


def test_health_ignores_request_errors_and_failures_already_under_way():
    clock = FakeClock(0)
    book = health.HealthBook(clock)
    for _ in range(5):
        assert book.record_failure("m", GatewayError(400, "bad request"), POLICY) is None
    assert not book.is_cooling("m", POLICY)
    for _ in range(3):
        book.record_failure("m", upstream_timeout("first byte"), POLICY)
    assert book.cooling_until("m", POLICY) == 5
    assert book.record_failure("m", FAIL, POLICY) is None  # an attempt that began before the cooldown
    assert book.cooling_until("m", POLICY) == 5
    book.record_failure("m", rate_limited(retry_after=12), POLICY)  # a longer Retry-After extends it
    assert book.cooling_until("m", POLICY) == 12


def test_health_retry_after_is_capped_at_max_seconds():
    book = health.HealthBook(FakeClock(0))
    assert book.record_failure("m", rate_limited(retry_after=86400), POLICY) == 300
    assert book.record_failure("n", rate_limited(retry_after=0), POLICY) == 0
    assert not book.is_cooling("n", POLICY)


def test_health_backoff_resets_after_a_quiet_window_and_on_success():
    clock = FakeClock(0)
    book = health.HealthBook(clock)
    for _ in range(3):
        book.record_failure("m", FAIL, POLICY)
    clock.now = 6
    assert book.record_failure("m", FAIL, POLICY) == 10  # still failing: doubled
    clock.now = 16 + 61  # nothing for longer than the window after the cooldown ended
    assert book.record_failure("m", FAIL, POLICY) is None
    book.record_success("m")
    assert not book.is_cooling("m", POLICY)
    for _ in range(3):
        last = book.record_failure("m", FAIL, POLICY)
    assert last == 5


def test_health_plan_puts_cooling_members_last_soonest_first():
    clock = FakeClock(0)
    book = health.HealthBook(clock)
    book.record_failure("a", rate_limited(retry_after=30), POLICY)
    assert book.plan(["a", "b", "a"], POLICY) == ["b", "a"]
    book.record_failure("b", rate_limited(retry_after=20), POLICY)
    assert book.plan(["a", "b"], POLICY) == ["b", "a"]
    assert book.plan(["a", "b", "c"], POLICY) == ["c", "b", "a"]
    clock.now = 25
    assert book.plan(["a", "b"], POLICY) == ["b", "a"]
    assert book.plan(["a", "b"], Cooldown(seconds=0)) == ["a", "b"]


# -- nesting, internal entries, /v1/models ----------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
def test_nested_routers_name_the_innermost_member(streamed, shared_gw, members):
    ask = shared_gw.stream_text if streamed else shared_gw.chat
    first, second = ask("gw-outer")[1], ask("gw-outer")[1]  # a round-robin: one request each way
    assert first["x-gateway-token-name"] == "outer-router"
    assert {first["x-gateway-served-by"], second["x-gateway-served-by"]} == {"inner-ok", "outer-ok"}
    assert ask("gw-par-nested")[1]["x-gateway-served-by"] == "inner-ok"


def test_nested_router_failure_lets_the_outer_router_fail_over(shared_gw, members):
    assert shared_gw.chat("gw-out")[1]["x-gateway-served-by"] == "z"
    with pytest.raises(openai.RateLimitError):
        shared_gw.chat("gw-out2")


def test_internal_members_serve_but_are_refused_to_clients(shared_gw, members):
    assert shared_gw.chat("gw-int")[0].choices[0].message.content == "from ok-int"
    with pytest.raises(openai.AuthenticationError) as exc:
        shared_gw.chat("tok-int")
    assert error_of(exc)["code"] == "invalid_api_key"


def test_models_of_a_router_are_the_union_of_its_members(shared_gw, members):
    client = shared_gw.client("gw-models")
    assert [m.id for m in client.models.list()] == ["ok-forced", "fake-model-1", "fake-model-2", "mock"]
    assert client.models.retrieve("fake-model-2").id == "fake-model-2"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_direct_tokens_have_no_served_by_header(shared_gw, members):
    headers = shared_gw.chat("tok-direct")[1]
    assert headers["x-gateway-token-name"] == "direct"
    assert "x-gateway-served-by" not in headers


# -- config errors at load --------------------------------------------------------------------


def issues_of(tokens) -> list[dict]:
    with pytest.raises(ConfigError) as exc:
        build_config(tokens)
    return [i.as_dict() for i in exc.value.issues]


MOCK = {"token": "m", "type": "mock", "config": {}}


def test_dangling_pool_reference_is_a_load_error():
    [issue] = issues_of([MOCK, router("r", "r", "fallback", ["m", "nope"])])
    assert (issue["entry"], issue["field"]) == ("r", "config.token_pool[1]")
    assert "nope" in issue["message"]


def test_disabled_member_is_a_dangling_reference():
    [issue] = issues_of([{**MOCK, "enabled": False}, router("r", "r", "fallback", ["m"])])
    assert issue["field"] == "config.token_pool[0]"


@pytest.mark.parametrize(
    "tokens",
    [
        [router("r", "self", "fallback", ["r"])],
        [MOCK, router("r1", "one", "fallback", ["m", "r2"]), router("r2", "two", "round-robin", ["r1"])],
        [MOCK, router("r1", "one", "fallback", ["m", "n1"]),
         {"token": "n1", "name": "by-model", "type": "model-name-router", "config": {"model-2-token": {"a": "m", "default": "r1"}}}],
    ],
    ids=["self", "two-routers", "through-model-name-router"],
)
def test_routing_cycles_are_load_errors(tokens):
    issues = issues_of(tokens)
    assert any("routing cycle" in i["message"] for i in issues)


@pytest.mark.parametrize(
    "config, field, words",
    [
        ({"router_strategy": "weighted", "token_pool": ["m", "m"]}, "config.weights", "needs 'weights'"),
        ({"router_strategy": "weighted", "token_pool": ["m", "m"], "weights": [1]}, "config.weights", "parallel"),
        ({"router_strategy": "weighted", "token_pool": ["m", "m"], "weights": [1, 0]}, "config.weights[1]", "greater than 0"),
        ({"router_strategy": "weighted", "token_pool": ["m", "m"], "weights": [1, -2]}, "config.weights[1]", "greater than 0"),
        ({"router_strategy": "fastest", "token_pool": ["m"]}, "config.router_strategy", "round-robin"),
        ({"token_pool": []}, "config.token_pool", "at least 1"),
        ({"token_pool": ["m"], "api_key": "x"}, "config.api_key", "unknown field"),
    ],
)
def test_router_config_errors(config, field, words):
    [issue] = issues_of([MOCK, {"token": "r", "type": "router", "config": config}])
    assert issue["field"] == field and words in issue["message"]


def test_router_strategy_defaults_to_round_robin_as_in_the_seed():
    cfg = build_config([MOCK, {"token": "r", "type": "router", "config": {"token_pool": ["m"]}}])
    assert cfg.entries["r"].config.router_strategy == "round-robin"


def test_a_routing_cycle_stops_start_up_with_exit_code_2(write_config):
    path = write_config({"tokens": [MOCK, router("r1", "one", "fallback", ["r2"]), router("r2", "two", "fallback", ["r1"])]})
    with pytest.raises(RuntimeError) as exc:
        GatewayProcess(path).start()
    assert "exited with 2" in str(exc.value) and "routing cycle" in str(exc.value)
