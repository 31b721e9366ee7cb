"""In a real browser: the survey after a close with the workspace's NPS question on, answered with the keyboard
only (stars, then 0–10, then the comment and the button), checked by axe-core, and the supervisors' NPS card."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect

from .conftest import Desk, axe_violations, screenshot
from .test_chat import agent_page, customer_page, say


@pytest.fixture(scope="module")
def shop(stack, store, signing_key):
    desk = Desk(stack, store, signing_key)
    on = requests.put(desk.url("survey"), json={"nps": True}, headers=desk.admin, timeout=10)
    assert on.status_code == 200 and on.json() == {"nps": True}, on.text
    return desk


def test_the_survey_asks_nps_and_is_answered_with_the_keyboard(new_page, shop, store):
    alice = agent_page(new_page, shop, "agent-1")
    customer = customer_page(new_page, shop, name="推荐的人")
    say(customer, "我想问一下发票的事")
    alice.locator("#convs button", has_text="推荐的人").click()
    expect(alice.locator("#log")).to_contain_text("发票")
    say(alice, "已经为您开好了")
    expect(customer.locator("#log")).to_contain_text("已经为您开好了")
    alice.once("dialog", lambda dialog: dialog.accept())  # "Close this conversation?"
    alice.click("#close-conv")

    # the survey: stars and, as the workspace asks it, the 0–10 question (a labelled group of radios)
    expect(customer.locator("#csat")).to_be_visible()
    nps = customer.get_by_role("group", name="您有多大可能把我们推荐给朋友？（0–10）")
    expect(nps).to_be_visible()
    expect(nps.get_by_role("radio")).to_have_count(11)
    expect(nps.get_by_role("radio", name="0 完全不可能")).to_be_visible()
    expect(nps.get_by_role("radio", name="10 非常可能")).to_be_visible()
    assert axe_violations(customer) == []

    # keyboard only: the arrows pick within a group, Tab goes on to the next
    customer.locator("#csat-1").focus()
    for _ in range(3):
        customer.keyboard.press("ArrowRight")
    expect(customer.locator("#csat-4")).to_be_checked()
    customer.keyboard.press("Tab")  # into the 0–10 scale (nothing picked yet: its first radio)
    expect(customer.locator("#nps-0")).to_be_focused()
    for _ in range(9):
        customer.keyboard.press("ArrowRight")
    expect(customer.locator("#nps-9")).to_be_checked()
    customer.keyboard.press("Tab")
    expect(customer.locator("#csat-comment")).to_be_focused()
    customer.keyboard.type("开票很快")
    customer.keyboard.press("Tab")
    expect(customer.locator("#csat-send")).to_be_focused()
    screenshot(customer, "customer-survey-nps")
    customer.keyboard.press("Enter")
    expect(customer.locator("#csat-status")).to_contain_text("感谢")
    expect(customer.locator("#nps-9")).to_be_disabled()  # answered: the survey is done
    assert axe_violations(customer) == []

    customer_id = alice.locator("#customer-id").inner_text().strip()
    (closed,) = store.conversations_of_customer(shop.ws, customer_id, 5)
    assert (closed.csat["score"], closed.csat["nps"], closed.csat["comment"]) == (4, 9, "开票很快")

    # in English, the same question
    customer.click("#lang")
    expect(customer.locator("#nps-title")).to_have_text("How likely are you to recommend us to a friend? (0–10)")

    # the supervisors' dashboard: an NPS card once the answer is counted (one promoter: +100)
    import time

    from kefu.adapters.analytics_store import AnalyticsStore
    from kefu.models import now_iso

    day, deadline = now_iso()[:10], time.monotonic() + 60
    while AnalyticsStore().read(shop.ws, "D", day, day).get((day, "all"), {}).get("npsCount") != 1:
        assert time.monotonic() < deadline, "the NPS answer was not counted within 60 s"
        time.sleep(0.5)
    boss = new_page(locale="en-US")
    boss.goto(f"{shop.stack.base_url}/agent.html#token={shop.token('agent', 'admin')}")
    expect(boss.locator("#presence")).to_be_enabled()
    boss.get_by_role("button", name="Dashboard").click()
    card = boss.locator("#db-cards .db-card", has_text="Net Promoter Score")
    expect(card).to_contain_text("+100")
    expect(card).to_contain_text("answers: 1 · promoters 1 · passives 0 · detractors 0")
    boss.get_by_role("button", name="中文").click()
    expect(boss.locator("#db-cards .db-card", has_text="净推荐值")).to_contain_text("回答 1 个")
