"""The customer chat's quick replies in the browser (issue 7's quick-reply wording): two visitors in different
variants of a quick_reply_wording experiment see different wording (and their own language for the other chips);
a chip is reached with the keyboard, sends its text as the customer's message and the bot answers it; the chips
hide while the customer types and come back after the bot's answer; the exposure is counted once per visitor;
the sent message carries the chip and the variant in its meta; axe-core finds nothing serious."""

from __future__ import annotations


import pytest
import requests
from playwright.sync_api import expect

from kefu import experiments as ab
from tests.integration.conftest import ALWAYS_ANSWER, Shop

from .conftest import axe_violations, screenshot

CHIPS = [{"id": "track-order", "text": {"zh": "查订单", "en": "Track my order"}},
         {"id": "return", "text": {"zh": "退货", "en": "Return an item"}},
         {"id": "human", "text": {"zh": "转人工", "en": "Talk to a person"}}]
WORDING = [{"id": "A", "weight": 1, "value": {"track-order": "Track my order"}},
           {"id": "B", "weight": 1, "value": {"track-order": "Where is my parcel?"}}]


def bot_shop(stack, store, signing_key) -> Shop:
    """Shop(..., ALWAYS_ANSWER): the bot answers everything."""
    return Shop(stack, store, signing_key, ALWAYS_ANSWER)


@pytest.fixture(scope="module")
def shop(stack, store, signing_key):
    shop = bot_shop(stack, store, signing_key)
    put = requests.put(shop.url("customer-quick-replies"), json={"items": CHIPS}, headers=shop.admin, timeout=10)
    assert put.status_code == 200, put.text
    created = requests.post(shop.url("experiments"), headers=shop.admin, timeout=10,
                            json={"name": "chip wording", "kind": "quick_reply_wording", "variants": WORDING})
    assert created.status_code == 201, created.text
    started = requests.post(shop.url(f"experiments/{created.json()['experimentId']}/start"), headers=shop.admin,
                            timeout=10)
    assert started.status_code == 200, started.text
    shop.experiment = ab.Experiment.from_dict(started.json())
    yield shop
    shop.close()


def customer_in(shop, variant: str) -> str:
    return next(f"shopper-{i}" for i in range(10_000) if ab.assign(shop.experiment, f"shopper-{i}").id == variant)


def exposures(shop) -> dict:
    got = requests.get(shop.url(f"experiments/{shop.experiment.id}"), headers=shop.admin, timeout=10)
    assert got.status_code == 200, got.text
    return {r["variantId"]: r["exposures"] for r in got.json()["results"]["variants"]}


def chat(new_page, shop, customer: str, locale: str):
    page = new_page(locale=locale)
    page.goto(f"{shop.stack.base_url}/customer.html?workspace={shop.ws}#token={shop.token('visitor', customer)}")
    expect(page.locator("#text")).to_be_enabled()
    return page


def chip_texts(page) -> list[str]:
    chips = page.get_by_role("group", name=CHIP_GROUP[page.evaluate("() => KefuI18n.lang")]).get_by_role("button")
    expect(chips).to_have_count(len(CHIPS))
    return chips.all_inner_texts()


CHIP_GROUP = {"zh": "常见问题，点一下即可发送", "en": "Common questions: tap one to send it"}


def test_two_visitors_see_their_variant_and_a_chip_sends_its_text(new_page, shop):
    a_id, b_id = customer_in(shop, "A"), customer_in(shop, "B")
    a = chat(new_page, shop, a_id, "zh-CN")
    b = chat(new_page, shop, b_id, "en-US")
    # each visitor's variant words the first chip; the others are in the visitor's language
    assert chip_texts(a) == ["Track my order", "退货", "转人工"]
    assert chip_texts(b) == ["Where is my parcel?", "Return an item", "Talk to a person"]
    expect(b.locator("#chips")).to_have_attribute("data-variant", "B")
    screenshot(b, "customer-quick-replies")
    assert axe_violations(b) == []
    b.wait_for_timeout(500)
    assert exposures(shop) == {"A": 1, "B": 1}  # shown: exposed
    # hidden while the customer types, back when the box is empty again
    b.locator("#text").fill("hello")
    expect(b.locator("#chips")).to_be_hidden()
    b.locator("#text").fill("")
    expect(b.locator("#chips")).to_be_visible()
    # the keyboard: from the message list, Tab reaches the first chip; Enter sends it
    b.locator("#log").focus()
    b.keyboard.press("Tab")
    expect(b.locator("#chips button").first).to_be_focused()
    b.keyboard.press("Tab")
    expect(b.locator("#chips button").nth(1)).to_be_focused()
    b.keyboard.press("Shift+Tab")
    b.keyboard.press("Enter")
    mine = b.locator("#log li.msg.mine")
    expect(mine).to_have_count(1)
    expect(mine.first.locator(".text")).to_have_text("Where is my parcel?")
    expect(b.locator("#text")).to_be_focused()
    # the bot answers it like any message; then the chips are offered again
    expect(b.locator("#log li.msg.bot").first).to_be_visible(timeout=20_000)
    expect(b.locator("#chips")).to_be_visible()
    screenshot(b, "customer-quick-replies-answered")
    assert axe_violations(b) == []
    # the message says which chip and which variant (the server decided the variant)
    session = b.evaluate(f"() => JSON.parse(localStorage.getItem('kefu.session.{shop.ws}'))")
    history = requests.get(f"{shop.stack.api_url}/conversations/{session['conversationId']}/messages",
                           headers={"Authorization": "Bearer " + shop.token("visitor", b_id)}, timeout=10).json()
    sent = history["items"][0]
    assert sent["text"] == "Where is my parcel?"
    assert sent["meta"] == {"quickReply": "track-order", "experiment": shop.experiment.id, "variant": "B"}
    assert history["items"][1]["sender"]["role"] == "bot"
    # a click works as well; a reload shows the same wording and counts no second exposure
    a.locator("#chips button", has_text="退货").click()
    expect(a.locator("#log li.msg.mine .text")).to_have_text("退货")
    expect(a.locator("#log li.msg.bot").first).to_be_visible(timeout=20_000)
    a.reload()
    expect(a.locator("#text")).to_be_enabled()
    expect(a.locator("#log li.msg.bot").first).to_be_visible()
    assert chip_texts(a) == ["Track my order", "退货", "转人工"]  # the last message is the bot's answer
    again = chat(new_page, shop, b_id, "en-US")  # another browser, the same customer
    expect(again.locator("#log li.msg.bot").first).to_be_visible()
    assert chip_texts(again)[0] == "Where is my parcel?"
    again.wait_for_timeout(500)
    assert exposures(shop) == {"A": 1, "B": 1}
    # a language switch redraws them; the variant's wording stays
    a.get_by_role("button", name="Switch to English").click()
    assert chip_texts(a) == ["Track my order", "Return an item", "Talk to a person"]
