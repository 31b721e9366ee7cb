"""Issue 8: anonymous consultation chosen by the visitor (the message frame's `anonymous`), and a customer's tokens
revoked at erasure (kefu.privacy.token_revoked, tokens' issue time, PrivacyService.delete recording the erasure)."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from kefu import frames, tokens
from kefu.channels import Inbound
from kefu.conversations import ConversationService
from kefu.delivery import Delivery
from kefu.errors import InvalidFrame, Unauthorized
from kefu.models import Agent, Principal, new_id
from kefu.privacy import ERASURE_KEEP_S, PrivacyService, customer_digest, token_revoked
from kefu.router import Router

from .fakes import FakeTimers, MemoryStore, RecordingNotifier
from .test_privacy import CUST, WS, FakeData

SECRET = "s" * 48


def parse(obj):
    return frames.parse(json.dumps(obj))


# ---------------------------------------------------------------- the frame


def test_anonymous_is_a_strict_boolean_and_false_by_default():
    assert parse({"action": "message", "clientMessageId": "m1", "text": "hi"}).anonymous is False
    assert parse({"action": "message", "clientMessageId": "m1", "text": "hi", "anonymous": True}).anonymous is True
    for bad in ("true", 1, 0, "yes", None, [], {}):
        with pytest.raises(InvalidFrame) as info:
            parse({"action": "message", "clientMessageId": "m1", "text": "hi", "anonymous": bad})
        assert "anonymous" in info.value.message and info.value.client_message_id == "m1"


def test_anonymous_only_opens_a_conversation():
    with pytest.raises(InvalidFrame, match="anonymous: only on a message that opens a conversation"):
        parse({"action": "message", "clientMessageId": "m1", "conversationId": "c_1", "text": "hi", "anonymous": True})
    # false is what every message says anyway
    assert parse({"action": "message", "clientMessageId": "m1", "conversationId": "c_1", "text": "hi",
                  "anonymous": False}).anonymous is False


def test_only_a_random_unnamed_untagged_visitor_id_is_an_anonymous_visitor():
    assert Principal("demo", "customer", new_id("v")).anonymous_visitor
    assert tokens.verify(SECRET, tokens.issue(SECRET, kind="visitor", workspace="demo")).anonymous_visitor
    assert not Principal("demo", "customer", new_id("v"), name="张三").anonymous_visitor
    assert not Principal("demo", "customer", new_id("v"), tags=("vip",)).anonymous_visitor
    assert not Principal("demo", "customer", "cust-42").anonymous_visitor  # an integrator's customer id
    assert not Principal("demo", "agent", new_id("v")).anonymous_visitor


# ---------------------------------------------------------------- the use case


@pytest.fixture
def world():
    store, notifier = MemoryStore(), RecordingNotifier()
    store.put_agent(Agent("demo", "alice", "Alice", max_concurrent=5))
    delivery = Delivery(store, notifier, threads=1)
    return store, notifier, ConversationService(store, delivery, Router(store, delivery, FakeTimers()))


def _message(cmid: str, **kw):
    return frames.MessageFrame.model_validate({"action": "message", "clientMessageId": cmid, "text": "你好", **kw})


def test_an_anonymous_visitor_opens_an_anonymous_conversation(world):
    store, _, service = world
    visitor = Principal("demo", "customer", new_id("v"))
    service.connect(visitor, "c1")
    ack = service.send_message(visitor, "c1", _message("m1", anonymous=True))
    conversation = store.get_conversation("demo", ack["conversationId"])
    assert conversation.anonymous is True and conversation.customer_id == visitor.id
    # a resend of the opening message (no ack seen) and the next one without conversationId go into it
    assert service.send_message(visitor, "c1", _message("m1", anonymous=True)) == ack
    again = service.send_message(visitor, "c1", _message("m2", anonymous=True))
    assert again["conversationId"] == ack["conversationId"] and again["seq"] > ack["seq"]
    # without the flag a visitor's conversation is not anonymous (unless the workspace says so: the store's part)
    other = Principal("demo", "customer", new_id("v"))
    service.connect(other, "c2")
    plain = service.send_message(other, "c2", _message("m1"))
    assert store.get_conversation("demo", plain["conversationId"]).anonymous is False


@pytest.mark.parametrize("who", [
    Principal("demo", "customer", "cust-42", "王小明", ("vip",)),  # an identified customer (the site's token)
    Principal("demo", "customer", "cust-42"),  # an integrator's id, even without name and tags
    Principal("demo", "customer", new_id("v"), "张三"),  # a visitor who gave a name
])
def test_a_token_that_names_the_customer_cannot_open_an_anonymous_conversation(world, who):
    store, _, service = world
    service.connect(who, "c1")
    with pytest.raises(InvalidFrame) as info:
        service.send_message(who, "c1", _message("m1", anonymous=True))
    assert info.value.client_message_id == "m1" and info.value.details[0]["field"] == "anonymous"
    assert store.open_conversation_id("demo", who.id) is None  # nothing stored


def test_an_agent_cannot_use_it(world):
    _, _, service = world
    alice = Principal("demo", "agent", "alice", "Alice", agent_role="agent")
    service.connect(alice, "a1")
    with pytest.raises(InvalidFrame):  # without conversationId an agent is refused, with one the frame is
        service.send_message(alice, "a1", _message("m1", anonymous=True))
    with pytest.raises(InvalidFrame, match="anonymous"):
        parse({"action": "message", "clientMessageId": "m2", "conversationId": "c_1", "text": "hi", "anonymous": True})


def test_never_into_an_open_conversation_that_is_not_anonymous(world):
    store, _, service = world
    visitor = Principal("demo", "customer", new_id("v"))
    service.connect(visitor, "c1")
    opened = service.send_message(visitor, "c1", _message("m1"))
    with pytest.raises(InvalidFrame, match="not anonymous"):
        service.send_message(visitor, "c1", _message("m2", anonymous=True))
    assert [m.text for m in store.messages_after("demo", opened["conversationId"], 0, 10)
            if m.sender["role"] == "customer"] == ["你好"]


def test_other_channels_are_unaffected(world):
    store, _, service = world
    ack, then = service.receive(Inbound(workspace="demo", channel="wechat", customer_id="wx:openid-1",
                                        customer_name="微信用户", external_id="w1", text="你好"))
    if then:
        then()
    conversation = store.get_conversation("demo", ack["conversationId"])
    assert conversation.anonymous is False and conversation.customer_name == "微信用户"


# ---------------------------------------------------------------- tokens and the erasure rule


def test_tokens_carry_their_issue_time_in_whole_seconds():
    at = time.time() - 100.7
    who = tokens.verify(SECRET, tokens.issue(SECRET, kind="visitor", workspace="demo", subject="c1", now=at))
    assert who.issued_at == int(at) and isinstance(who.issued_at, int)
    # the issue time is no part of who it is
    assert who == tokens.verify(SECRET, tokens.issue(SECRET, kind="visitor", workspace="demo", subject="c1"))


def test_no_token_lives_longer_than_the_erasure_record_is_kept():
    with pytest.raises(ValueError, match="ttl_s"):
        tokens.issue(SECRET, kind="visitor", workspace="demo", ttl_s=tokens.MAX_TTL_S + 1)
    now = int(time.time())
    long_lived = {"iss": tokens.ISSUER, "aud": tokens.AUDIENCE, "sub": "c1", "kind": "visitor", "ws": "demo",
                  "iat": now, "exp": now + tokens.MAX_TTL_S + 1}
    with pytest.raises(Unauthorized):
        tokens.verify(SECRET, jwt.encode(long_lived, SECRET, algorithm=tokens.ALGORITHM))
    fractional = {**long_lived, "iat": now + 0.5, "exp": now + 60}  # kefu writes whole seconds
    with pytest.raises(Unauthorized):
        tokens.verify(SECRET, jwt.encode(fractional, SECRET, algorithm=tokens.ALGORITHM))
    assert ERASURE_KEEP_S > tokens.MAX_TTL_S


def test_a_token_issued_at_or_before_the_erasure_is_revoked():
    erased = 1_800_000_000
    assert not token_revoked(erased - 10, None)  # never erased
    assert token_revoked(erased - 10, erased)  # before
    assert token_revoked(erased, erased)  # the same second: iat is whole seconds, it may be before
    assert not token_revoked(erased + 1, erased)  # a token issued after the erasure: a new visit
    assert token_revoked(None, erased)  # no issue time known: refused


def test_the_rule_on_real_tokens_around_an_erasure():
    erased_at = int(time.time()) - 100  # an erasure at erased_at + 0.4 s is recorded as this second

    def issued(at):
        return tokens.verify(SECRET, tokens.issue(SECRET, kind="visitor", workspace="demo", subject="c1",
                                                  now=at)).issued_at

    assert token_revoked(issued(erased_at - 3600), erased_at)
    assert token_revoked(issued(erased_at + 0.9), erased_at)  # minted in the erasure's second: refused
    assert not token_revoked(issued(erased_at + 1.0), erased_at)


def test_the_erasure_record_names_the_customer_by_a_digest():
    digest = customer_digest(WS, CUST)
    assert len(digest) == 32 and CUST not in digest
    assert digest != customer_digest("other", CUST) and digest == customer_digest(WS, CUST)


# ---------------------------------------------------------------- PrivacyService.delete records the erasure


def test_the_erasure_is_recorded_before_anything_goes_and_again_at_the_end():
    data, steps = FakeData(), []
    service = PrivacyService(data, revoke=lambda ws, cid, at: steps.append(("revoke", ws, cid, at)),
                             close=lambda ws, cid: steps.append(("close", cid)),
                             disconnect=lambda connection_id: steps.append(("disconnect", connection_id)))
    data.tables["conv"][(f"{WS}#C#c1", "META")]["status"] = "open"
    before = int(time.time())
    report = service.delete(WS, CUST)
    assert report["complete"] is True
    assert steps[0][:3] == ("revoke", WS, CUST) and steps[-1][:3] == ("revoke", WS, CUST)
    assert [s[0] for s in steps] == ["revoke", "close", "disconnect", "revoke"]
    assert before <= steps[0][3] <= steps[-1][3] <= int(time.time())


def test_a_failed_revocation_is_reported_and_a_retry_records_it():
    data, calls = FakeData(), []

    def revoke(ws, cid, at):
        calls.append(at)
        if len(calls) == 1:
            raise RuntimeError("dynamodb down")

    service = PrivacyService(data, revoke=revoke)
    with pytest.raises(Exception) as info:
        service.delete(WS, CUST)
    assert info.value.report["remaining"] == ["tokens"] and len(calls) == 1  # the rest went; not tried twice
    assert data.conversation_ids(WS, CUST) == []
    again = service.delete(WS, CUST)  # the retry: nothing left but the record, written before and after
    assert again["complete"] is True and len(calls) == 3
