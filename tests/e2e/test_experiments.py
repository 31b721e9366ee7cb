"""A/B experiments in the browser (issue 7): the widget on a shop's page applies the visitor's variants —
the chat's greeting and the proactive invitation's delay — the same after a reload, with each exposure counted
once; an anonymous visitor keeps one customer id from the host page into the chat; kefuWidget.track reports an
order that counts as the variant's conversion."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect

from kefu import experiments as ab

from .conftest import Desk, axe_violations, screenshot
from .test_widget import host_page

GREETINGS = [{"id": "plain", "weight": 1, "value": "您好，有什么可以帮您？"},
             {"id": "warm", "weight": 1, "value": "欢迎光临！今天想找点什么？"}]
DELAYS = [{"id": "now", "weight": 1, "value": 0}, {"id": "later", "weight": 1, "value": 4}]
RULES = {"rules": [{"id": "hello", "message": "需要帮忙挑选吗？", "trigger": {"timeOnPageSeconds": 1}}]}


@pytest.fixture(scope="module")
def shop(stack, store, signing_key):
    desk = Desk(stack, store, signing_key)
    assert requests.put(desk.url("proactive"), json=RULES, headers=desk.admin, timeout=10).status_code == 200
    desk.experiments = {}
    for kind, variants in (("greeting", GREETINGS), ("proactive_delay", DELAYS)):
        created = requests.post(desk.url("experiments"), json={"name": kind, "kind": kind, "variants": variants},
                                headers=desk.admin, timeout=10)
        assert created.status_code == 201, created.text
        eid = created.json()["experimentId"]
        started = requests.post(desk.url(f"experiments/{eid}/start"), headers=desk.admin, timeout=10)
        assert started.status_code == 200, started.text
        desk.experiments[kind] = ab.Experiment.from_dict(started.json())
    return desk


def customer_in(shop, greeting: str, delay: str) -> str:
    """An identified customer id with these variants (assignment is a pure function of the ids)."""
    return next(f"buyer-{i}" for i in range(10_000)
                if ab.assign(shop.experiments["greeting"], f"buyer-{i}").id == greeting
                and ab.assign(shop.experiments["proactive_delay"], f"buyer-{i}").id == delay)


def results(shop, kind: str) -> dict:
    eid = shop.experiments[kind].id
    got = requests.get(shop.url(f"experiments/{eid}"), headers=shop.admin, timeout=10)
    assert got.status_code == 200, got.text
    return {r["variantId"]: (r["exposures"], r["conversions"]) for r in got.json()["results"]["variants"]}


def open_chat(page):
    page.get_by_role("button", name="在线客服").click()
    return page.frame_locator("#kefu-frame")


def test_two_visitors_see_their_own_greeting_and_delay_and_keep_them(new_page, shop):
    fast, slow = customer_in(shop, "plain", "now"), customer_in(shop, "warm", "later")
    fast_page = host_page(new_page, shop, token=shop.token("visitor", fast, name="快"))
    slow_page = host_page(new_page, shop, token=shop.token("visitor", slow, name="慢"))
    # the delay: "now" invites at once (the rule's own 1 s replaced by 0), "later" after 4 s
    expect(fast_page.locator(".kefu-invite")).to_have_attribute("data-rule", "hello", timeout=2_500)
    expect(slow_page.locator(".kefu-invite")).to_have_count(0)
    slow_page.wait_for_timeout(1_500)
    expect(slow_page.locator(".kefu-invite")).to_have_count(0)  # ~2.5 s on the page: the rule alone says 1 s
    expect(slow_page.locator(".kefu-invite")).to_have_attribute("data-rule", "hello", timeout=6_000)
    # the greeting, in the chat
    fast_chat, slow_chat = open_chat(fast_page), open_chat(slow_page)
    expect(fast_chat.locator("#greeting")).to_have_text(GREETINGS[0]["value"])
    expect(slow_chat.locator("#greeting")).to_have_text(GREETINGS[1]["value"])
    screenshot(slow_page, "widget-experiment-greeting")
    assert axe_violations(slow_page) == []
    # a reload keeps the variants; nothing is counted twice
    slow_page.reload()
    expect(open_chat(slow_page).locator("#greeting")).to_have_text(GREETINGS[1]["value"])
    again = host_page(new_page, shop, token=shop.token("visitor", slow, name="慢"))  # another browser, same customer
    expect(open_chat(again).locator("#greeting")).to_have_text(GREETINGS[1]["value"])
    again.wait_for_timeout(500)
    assert results(shop, "greeting") == {"plain": (1, 0), "warm": (1, 0)}
    assert results(shop, "proactive_delay") == {"now": (1, 0), "later": (1, 0)}


def test_an_anonymous_visitor_keeps_one_id_and_an_order_converts(new_page, shop):
    seen = requests.get(shop.url("conversions"), headers=shop.admin, timeout=10).json()
    page = host_page(new_page, shop)
    page.wait_for_function("() => window.kefuWidget")
    mine = page.evaluate("() => kefuWidget.experiments()")
    kept = page.evaluate(f"() => JSON.parse(localStorage.getItem('kefu.visitor.{shop.ws}'))")
    variant = {a["kind"]: a["variantId"] for a in mine}
    assert variant["greeting"] == ab.assign(shop.experiments["greeting"], kept["customerId"]).id
    page.reload()
    page.wait_for_function("() => window.kefuWidget")
    assert page.evaluate(f"() => JSON.parse(localStorage.getItem('kefu.visitor.{shop.ws}'))")["customerId"] == \
        kept["customerId"]  # stable across reloads
    assert {a["kind"]: a["variantId"] for a in page.evaluate("() => kefuWidget.experiments()")} == variant
    before = results(shop, "greeting")
    chat = open_chat(page)
    greeting = next(g["value"] for g in GREETINGS if g["id"] == variant["greeting"])
    expect(chat.locator("#greeting")).to_have_text(greeting)  # already on the name form
    chat.locator("#name").fill("路人丙")
    chat.locator("#start button[type=submit]").click()
    expect(chat.locator("#composer")).to_be_visible()
    frame = next(f for f in page.frames if "customer.html" in f.url)
    session = frame.evaluate(f"() => JSON.parse(localStorage.getItem('kefu.session.{shop.ws}'))")
    assert session["customerId"] == kept["customerId"] and session["name"] == "路人丙"  # one visitor, named
    chat.locator("#text").fill("这件有红色的吗")
    chat.locator("#text").press("Enter")
    frame.wait_for_function(f"() => (JSON.parse(localStorage.getItem('kefu.session.{shop.ws}')) || {{}}).conversationId")
    # the shop's page reports the order; it counts for the visitor's variant (once, however often it is sent)
    answer = page.evaluate("() => kefuWidget.track('order_placed', {value: 199, eventId: 'order-anon-1'})")
    assert shop.experiments["greeting"].id in answer["experiments"] and answer["conversationId"], answer
    assert page.evaluate("() => kefuWidget.track('order_placed', {value: 199, eventId: 'order-anon-1'})")["duplicate"]
    refused = page.evaluate("() => kefuWidget.track('refund', {value: 1}).then(() => 'ok', (e) => e.code)")
    assert refused == "invalid_request"
    after = results(shop, "greeting")
    n, c = before[variant["greeting"]]
    assert after[variant["greeting"]] == (n + 1, c + 1)
    report = requests.get(shop.url("conversions"), headers=shop.admin, timeout=10).json()
    assert report["visitorsSeen"] == seen["visitorsSeen"] + 1  # seen by the widget, chatted, converted
    assert report["chatted"]["visitors"] == seen["chatted"]["visitors"] + 1
    assert report["chatted"]["converted"] == seen["chatted"]["converted"] + 1
    assert report["notChatted"] == seen["notChatted"]
