"""The rate limiter's pure logic (kefu.ratelimit) over in-memory counters, and its gate in the message path."""

import pytest

from kefu import frames, schema
from kefu.conversations import ConversationService
from kefu.delivery import Delivery
from kefu.errors import RateLimited
from kefu.models import Agent, Principal
from kefu.ratelimit import (ALLOWED, DEFAULT_LIMITS, GatedStore, Limit, Limits, MemoryCounters, RateLimiter, Verdict,
                            limits_from_env, source_key)
from kefu.router import Router

from .fakes import FakeTimers, MemoryStore, RecordingNotifier

CUSTOMER = Principal("shop", "customer", "v-1", "Zhang")
SAME_ID_OTHER_WORKSPACE = Principal("other", "customer", "v-1", "Zhang")
AGENT = Principal("shop", "agent", "v-1", "Alice", agent_role="agent")  # same id as the customer, other role


class Clock:
    def __init__(self, now: float = 999_960.0):  # a multiple of 60 and of 10: the start of both windows
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(**limits):
    clock = Clock()
    return RateLimiter(MemoryCounters(), Limits(**limits), clock=clock), clock


# ---------------------------------------------------------------- settings


def test_limits_parse_from_text():
    assert Limit.parse("10/10s") == Limit(10, 10)
    assert Limit.parse("30/1m") == Limit(30, 60)
    assert Limit.parse(" 100 / 1h ") == Limit(100, 3600)
    assert str(Limit(10, 10)) == "10/10s"
    for bad in ("", "ten/10s", "10/0s", "0/10s", "10", "10/10d"):
        with pytest.raises(ValueError):
            Limit.parse(bad)


def test_defaults_are_stricter_for_customers_than_agents():
    d = DEFAULT_LIMITS
    assert d.customer_connection == Limit(10, 10) and d.customer_person == Limit(30, 60)
    assert d.agent_connection.count / d.agent_connection.window_s > d.customer_connection.count / d.customer_connection.window_s
    assert d.agent_person.count > d.customer_person.count
    assert d.connect_person == Limit(20, 60)


def test_environment_overrides_some_limits_and_switches_others_off():
    limits = Limits.parse('{"customer.connection": "50/10s", "agent.person": null, "connect.source": "off"}')
    assert limits.customer_connection == Limit(50, 10)
    assert limits.customer_person == DEFAULT_LIMITS.customer_person  # untouched
    assert limits.agent_person is None and limits.connect_source is None
    assert Limits.parse("") == DEFAULT_LIMITS
    assert all(getattr(Limits.parse("off"), f) is None for f in ("customer_connection", "customer_person",
                                                                  "agent_connection", "connect_person"))
    for bad in ("{", "[1]", '{"customer.everything": "1/1s"}', '{"customer.connection": "fast"}',
                '{"customer.connection": "10/7s"}'):  # 60 s is not a multiple of 7 s: windows must nest
        with pytest.raises(ValueError):
            Limits.parse(bad)


def test_a_broken_environment_setting_falls_back_to_the_defaults():
    assert limits_from_env({schema.ENV_RATE_LIMITS: "{not json"}) == DEFAULT_LIMITS
    assert limits_from_env({schema.ENV_RATE_LIMITS: '{"customer.person": "5/60s"}'}).customer_person == Limit(5, 60)
    assert limits_from_env({}) == DEFAULT_LIMITS


# ---------------------------------------------------------------- messages


def test_a_connection_gets_its_limit_then_a_retry_after_until_its_window_ends():
    rl, clock = limiter(customer_connection=Limit(10, 10), customer_person=Limit(30, 60))
    assert all(rl.message(CUSTOMER, "conn-a") == ALLOWED for _ in range(10))
    clock.now += 3.2
    refused = rl.message(CUSTOMER, "conn-a")
    assert refused == Verdict(False, 7, "connection")  # 6.8 s left, rounded up


def test_window_rollover_gives_a_fresh_budget_and_refusals_count_nothing():
    rl, clock = limiter(customer_connection=Limit(3, 10), customer_person=None)
    for _ in range(3):
        assert rl.message(CUSTOMER, "c").allowed
    for _ in range(5):  # refused attempts do not use up the next window, nor this one
        assert not rl.message(CUSTOMER, "c").allowed
    clock.now += 9.999
    assert rl.message(CUSTOMER, "c").retry_after == 1  # never 0: "now" would just be refused again
    clock.now += 0.001  # the next window
    assert [rl.message(CUSTOMER, "c").allowed for _ in range(4)] == [True, True, True, False]


def test_the_person_limit_spans_their_connections():
    rl, clock = limiter(customer_connection=Limit(10, 10), customer_person=Limit(25, 60))
    for connection in ("a", "b"):
        assert all(rl.message(CUSTOMER, connection).allowed for _ in range(10))
    assert all(rl.message(CUSTOMER, "c").allowed for _ in range(5))
    clock.now += 12  # a new connection window, the same person window
    refused = rl.message(CUSTOMER, "d")
    assert refused == Verdict(False, 48, "person")
    clock.now += 48  # the person window rolls over
    assert rl.message(CUSTOMER, "d").allowed


def test_when_both_are_full_the_longer_wait_is_given():
    rl, _ = limiter(customer_connection=Limit(5, 10), customer_person=Limit(5, 60))
    for _ in range(5):
        rl.message(CUSTOMER, "a")
    assert rl.message(CUSTOMER, "a") == Verdict(False, 60, "person")


def test_agents_and_other_workspaces_have_their_own_buckets():
    rl, _ = limiter(customer_connection=Limit(2, 10), customer_person=Limit(2, 60),
                    agent_connection=Limit(5, 10), agent_person=Limit(5, 60))
    for _ in range(2):
        assert rl.message(CUSTOMER, "c").allowed
    assert not rl.message(CUSTOMER, "c").allowed
    # an agent with the very same id, and a visitor of another workspace with the same id, are not limited
    assert all(rl.message(AGENT, "a").allowed for _ in range(5))
    assert not rl.message(AGENT, "a").allowed
    assert all(rl.message(SAME_ID_OTHER_WORKSPACE, "c").allowed for _ in range(2))


def test_no_limits_no_counting():
    class Untouchable:
        def hit(self, *args):
            raise AssertionError("counted")

    rl = RateLimiter(Untouchable(), Limits.parse("off"))
    assert rl.message(CUSTOMER, "c") == ALLOWED and rl.connect(CUSTOMER, "203.0.113.9") == ALLOWED


def test_counters_that_fail_let_messages_through():
    class Down:
        def hit(self, *args):
            raise TimeoutError("DynamoDB is slow today")

    assert RateLimiter(Down(), DEFAULT_LIMITS).message(CUSTOMER, "c") == ALLOWED


def test_counters_expire_after_their_window():
    counters = MemoryCounters()
    rl = RateLimiter(counters, Limits(customer_connection=Limit(10, 10), customer_person=Limit(30, 60)),
                     clock=Clock(1_000_030.0))
    rl.message(CUSTOMER, "c")
    [(key, expires)] = counters.expiry.items()
    assert key == ("shop#customer#v-1", "MSG#60#1000020") and expires == 1_000_020 + 60 + 60


# ---------------------------------------------------------------- connections


def test_connections_are_limited_per_person_and_per_source_address():
    rl, clock = limiter(connect_person=Limit(3, 60), connect_source=Limit(5, 60))
    assert all(rl.connect(CUSTOMER, "203.0.113.9").allowed for _ in range(3))
    assert rl.connect(CUSTOMER, "203.0.113.9") == Verdict(False, 60, "person")
    others = [Principal("shop", "customer", f"v-{i}") for i in range(10, 13)]
    assert rl.connect(others[0], "203.0.113.9").allowed and rl.connect(others[1], "203.0.113.9").allowed
    assert rl.connect(others[2], "203.0.113.9") == Verdict(False, 60, "source")
    assert rl.connect(others[2], "198.51.100.7").allowed  # another address
    assert rl.connect(SAME_ID_OTHER_WORKSPACE, "203.0.113.9").allowed  # another workspace
    clock.now += 60
    assert rl.connect(CUSTOMER, "203.0.113.9").allowed


def test_source_addresses_are_counted_under_a_digest():
    key = source_key("shop", "203.0.113.9")
    assert "203" not in key and len(key) == 20 and key != source_key("other", "203.0.113.9")


# ---------------------------------------------------------------- the gate in the message path


def _service(store, verdict):
    delivery = Delivery(store, RecordingNotifier(), threads=1)
    return ConversationService(GatedStore(store, lambda: verdict, "m1"), delivery,
                               Router(store, delivery, FakeTimers()))


def _msg(cmid, conversation_id=None, text="hi"):
    data = {"action": "message", "clientMessageId": cmid, "text": text}
    if conversation_id:
        data["conversationId"] = conversation_id
    return frames.MessageFrame.model_validate(data)


def test_a_refused_message_is_not_stored_and_opens_no_conversation():
    store = MemoryStore()
    store.put_agent(Agent("shop", "alice", "Alice"))
    refused = _service(store, Verdict(False, 4, "connection"))
    with pytest.raises(RateLimited) as info:
        refused.accept_message(CUSTOMER, "c1", _msg("m1"))
    assert info.value.code == "rate_limited" and info.value.retry_after == 4
    assert info.value.client_message_id == "m1"
    assert store.open_conversation_id("shop", "v-1") is None
    # allowed: opens it; refused later in the same conversation: nothing appended
    ack, _ = _service(store, ALLOWED).accept_message(CUSTOMER, "c1", _msg("m1"))
    with pytest.raises(RateLimited):
        refused.accept_message(CUSTOMER, "c1", _msg("m2", ack["conversationId"]))
    assert [m.client_message_id for m in store.messages_after("shop", ack["conversationId"], 0, 10)] == ["m1"]


def test_a_resend_of_a_stored_message_gets_its_ack_even_when_over_the_limit():
    store = MemoryStore()
    store.put_agent(Agent("shop", "alice", "Alice"))
    first, _ = _service(store, ALLOWED).accept_message(CUSTOMER, "c1", _msg("m1"))
    second, _ = _service(store, ALLOWED).accept_message(CUSTOMER, "c1", _msg("m2", first["conversationId"]))
    again, _ = _service(store, Verdict(False, 9, "person")).accept_message(CUSTOMER, "c1",
                                                                         _msg("m2", first["conversationId"]))
    assert again == second
