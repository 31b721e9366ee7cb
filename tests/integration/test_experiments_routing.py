"""Issue 7 on the local stack, beyond the REST life cycle (test_experiments.py): bot-first vs. human-first as
an experiment (a human-first visitor's new conversation skips the bot and reaches an agent at once, exposure
logged once, at the routing decision); the widget's visitor naming themself keeps their customer id (and so
their variants); a conversion after a chat shows in the experiment's results and in the chatted vs.
not-chatted report."""

from __future__ import annotations

import secrets

import pytest
import requests

from kefu import experiments as ab
from kefu.models import Agent

from .conftest import ALWAYS_ANSWER, Shop

MODES = [{"id": "bot", "weight": 1, "value": "bot_first"}, {"id": "human", "weight": 1, "value": "human_first"}]


@pytest.fixture(scope="module")
def shop(stack, store, signing_key):
    shop = Shop(stack, store, signing_key, ALWAYS_ANSWER)
    store.put_agent(Agent(shop.ws, "sue", "Sue", role="supervisor"))
    yield shop
    shop.close()


def _bearer(shop, kind: str, who: str, **kw) -> dict:
    return {"Authorization": f"Bearer {shop.token(kind, who, **kw)}"}


def _experiment(shop, kind: str, variants: list[dict]) -> dict:
    created = requests.post(shop.url("experiments"), json={"name": kind, "kind": kind, "variants": variants},
                            headers=shop.admin, timeout=10)
    assert created.status_code == 201, created.text
    eid = created.json()["experimentId"]
    started = requests.post(shop.url(f"experiments/{eid}/start"), headers=shop.admin, timeout=10)
    assert started.status_code == 200, started.text
    return started.json()


def _visitor_in(experiment: dict, variant: str) -> str:
    parsed = ab.Experiment.from_dict(experiment)
    return next(key for key in (f"c-{secrets.token_hex(4)}" for _ in range(1000))
                if ab.assign(parsed, key).id == variant)


def _results(shop, eid: str) -> dict:
    got = requests.get(shop.url(f"experiments/{eid}"), headers=_bearer(shop, "agent", "sue"), timeout=10)
    assert got.status_code == 200, got.text
    return {r["variantId"]: r for r in got.json()["results"]["variants"]}


def test_human_first_skips_the_bot_bot_first_keeps_it(shop):
    experiment = _experiment(shop, "routing_mode", MODES)
    eid = experiment["experimentId"]
    agent = shop.agent("agent-1")
    human, robot = _visitor_in(experiment, "human"), _visitor_in(experiment, "bot")

    customer = shop.connect(shop.token("visitor", human, name="Human First"))
    ack = customer.request({"action": "message", "clientMessageId": "h-1", "text": "我买的东西不想要了，怎么退货"},
                           type="ack")
    try:
        assigned = agent.expect(type="assigned", conversationId=ack["conversationId"])  # no bot turn before it
    except AssertionError:
        raise AssertionError(customer.request({"action": "inbox"}, type="inbox")) from None
    assert not [m for m in assigned["history"] if m["sender"]["role"] == "bot"]
    assert customer.request({"action": "inbox"}, type="inbox")["conversations"][0]["status"] == "assigned"

    other = shop.connect(shop.token("visitor", robot, name="Bot First"))
    ack = other.request({"action": "message", "clientMessageId": "b-1", "text": "我买的东西不想要了，怎么退货"},
                        type="ack")
    answer = other.expect(type="message", conversationId=ack["conversationId"],
                          match=lambda f: f["sender"]["role"] == "bot")
    assert answer["meta"]["decision"] == "answer"
    assert other.request({"action": "inbox"}, type="inbox")["conversations"][0]["status"] == "bot"

    rows = _results(shop, eid)
    assert (rows["bot"]["exposures"], rows["human"]["exposures"]) == (1, 1)
    # the human-first visitor's next conversation (another channel, same customer id) is no second exposure
    customer.request({"action": "close", "conversationId": assigned["conversationId"]}, type="closed")
    again = customer.request({"action": "message", "clientMessageId": "h-2", "text": "还有一个问题"}, type="ack")
    agent.expect(type="assigned", conversationId=again["conversationId"])
    assert _results(shop, eid)["human"]["exposures"] == 1
    requests.post(shop.url(f"experiments/{eid}/stop"), headers=shop.admin, timeout=10)  # leave the shop as found


def test_the_widgets_visitor_names_themself_and_stays_the_same_visitor(shop):
    url = shop.url("visitor-tokens")
    anonymous = requests.post(url, json={}, timeout=10).json()
    named = requests.post(url, json={"name": "路人甲"}, timeout=10,
                          headers={"Authorization": f"Bearer {anonymous['token']}"})
    assert named.status_code == 200, named.text
    assert named.json()["customerId"] == anonymous["customerId"]
    fresh = requests.post(url, json={"name": "路人乙"}, timeout=10).json()
    assert fresh["customerId"] != anonymous["customerId"]
    # a named token, an identified customer's, an agent's or another workspace's keeps nothing
    for token in (named.json()["token"], shop.token("visitor", "site-user-1"), shop.token("agent", "agent-1"),
                  shop.token("visitor", anonymous["customerId"], name="x")):
        refused = requests.post(url, json={"name": "冒充"}, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert refused.status_code == 403, refused.text
    assert requests.post(url, json={}, headers={"Authorization": "Bearer nonsense"}, timeout=10).status_code == 401


def test_a_conversion_after_a_chat_counts_in_the_experiment_and_the_chat_report(shop):
    greeting = _experiment(shop, "greeting", [{"id": "plain", "weight": 1, "value": "您好"},
                                              {"id": "warm", "weight": 1, "value": "欢迎光临！"}])
    eid = greeting["experimentId"]
    before = requests.get(shop.url("conversions"), headers=_bearer(shop, "agent", "sue"), timeout=10).json()
    buyer, browser = (requests.post(shop.url("visitor-tokens"), json={}, timeout=10).json() for _ in range(2))
    for visitor in (buyer, browser):  # the widget learns the variants and the chat shows the greeting
        auth = {"Authorization": f"Bearer {visitor['token']}"}
        assert requests.get(shop.url("experiments/assignments"), headers=auth, timeout=10).status_code == 200
        shown = requests.get(shop.url("experiments/assignments"), params={"expose": eid}, headers=auth, timeout=10)
        assert [a["exposed"] for a in shown.json()["assignments"] if a["experimentId"] == eid] == [True]
    # the buyer chats (with the bot), then orders: what kefuWidget.track sends
    chat = shop.connect(buyer["token"])
    ack = chat.request({"action": "message", "clientMessageId": "q-1", "text": "发货要多久"}, type="ack")
    order = requests.post(shop.url("events"), json={"eventId": "order-77", "type": "order_placed", "value": 128},
                          headers={"Authorization": f"Bearer {buyer['token']}"}, timeout=10)
    assert order.status_code == 200, order.text
    # (the routing experiment of the first test may count too: warm containers learn of its stop within 15 s)
    assert order.json()["conversationId"] == ack["conversationId"] and eid in order.json()["experiments"]

    rows = _results(shop, eid)
    variant = ab.assign(ab.Experiment.from_dict(greeting), buyer["customerId"]).id
    assert rows[variant]["conversions"] == 1
    assert sum(r["exposures"] for r in rows.values()) == 2 and sum(r["conversions"] for r in rows.values()) == 1
    after = requests.get(shop.url("conversions"), headers=_bearer(shop, "agent", "sue"), timeout=10).json()
    assert after["visitorsSeen"] == before["visitorsSeen"] + 2
    assert after["chatted"]["visitors"] == before["chatted"]["visitors"] + 1
    assert after["chatted"]["converted"] == before["chatted"]["converted"] + 1
    assert after["notChatted"]["visitors"] == before["notChatted"]["visitors"] + 1
    assert after["notChatted"]["converted"] == before["notChatted"]["converted"]
