"""Proactive invitations on someone else's page: the workspace's rules (REST, admins) evaluated by the widget
— time on page and URL, exit intent, cart value — shown as text, capped per visit, opening the chat."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect

from .conftest import Desk, axe_violations, screenshot
from .test_widget import host_page

RULES = {"rules": [
    {"id": "browsing", "message": "需要帮您挑选吗？<b>限时</b>优惠", "trigger": {"timeOnPageSeconds": 1, "urlPattern": "*/products*"}},
    {"id": "big-cart", "message": "满 500 元包邮，有问题随时问我们", "trigger": {"minCartValue": 500}},
    {"id": "leaving", "message": "走之前，还有什么可以帮您？", "trigger": {"exitIntent": True, "returningVisitor": True}},
]}


@pytest.fixture(scope="module")
def shop(stack, store, signing_key):
    desk = Desk(stack, store, signing_key)
    put = requests.put(desk.url("proactive"), json=RULES, headers=desk.admin, timeout=10)
    assert put.status_code == 200, put.text
    return desk


def test_rules_are_validated_and_public(shop):
    url = shop.url("proactive")
    assert [r["id"] for r in requests.get(url, timeout=10).json()["rules"]] == ["browsing", "big-cart", "leaving"]
    agent = {"Authorization": "Bearer " + shop.token("agent", "agent-1")}
    assert requests.put(url, json=RULES, headers=agent, timeout=10).status_code == 403  # admins only
    for bad in ({"rules": [{"id": "x", "message": "hi", "trigger": {}}]},  # no condition
                {"rules": [RULES["rules"][0], RULES["rules"][0]]},  # the same id twice
                {"rules": [{"id": "Bad Id", "message": "hi", "trigger": {"exitIntent": True}}]},
                {"rules": [{"id": "x", "message": "", "trigger": {"exitIntent": True}}]}):
        refused = requests.put(url, json=bad, headers=shop.admin, timeout=10)
        assert refused.status_code == 422, (bad, refused.text)
    assert requests.get(f"{shop.stack.api_url}/workspaces/no-such-shop/proactive", timeout=10).status_code == 404


def test_invitations_on_a_shops_page(new_page, shop):
    page = host_page(new_page, shop)
    invite = page.locator(".kefu-invite")
    expect(invite).to_have_attribute("data-rule", "browsing", timeout=10_000)  # after a second on /products
    expect(invite.locator(".kefu-invite-text")).to_have_text("需要帮您挑选吗？<b>限时</b>优惠")  # as text
    assert page.locator(".kefu-invite b").count() == 0
    screenshot(page, "widget-proactive-invitation")
    assert axe_violations(page) == []
    invite.locator(".kefu-invite-text").click()  # opens the chat
    expect(invite).to_have_count(0)
    expect(page.locator("iframe.kefu-frame")).to_be_visible()
    page.get_by_role("button", name="关闭客服窗口").click()
    page.evaluate("() => kefuWidget.setCart(200)")
    page.wait_for_timeout(300)
    expect(page.locator(".kefu-invite")).to_have_count(0)  # below the rule's 500
    page.evaluate("() => kefuWidget.setCart(650)")
    expect(page.locator(".kefu-invite")).to_have_attribute("data-rule", "big-cart")
    page.get_by_role("button", name="关闭邀请").click()
    expect(page.locator(".kefu-invite")).to_have_count(0)
    page.evaluate("() => kefuWidget.setCart(700)")
    page.wait_for_timeout(300)
    expect(page.locator(".kefu-invite")).to_have_count(0)  # once per visit
    # the exit-intent rule is for returning visitors: not on this first visit
    page.evaluate("() => document.dispatchEvent(new MouseEvent('mouseout', {clientY: 0, relatedTarget: null}))")
    page.wait_for_timeout(300)
    expect(page.locator(".kefu-invite")).to_have_count(0)
    # a reload is the same visit: nothing again
    page.reload()
    page.wait_for_timeout(1500)
    expect(page.locator(".kefu-invite")).to_have_count(0)


def test_a_returning_visitor_about_to_leave(new_page, shop):
    page = host_page(new_page, shop)
    expect(page.locator(".kefu-invite")).to_have_attribute("data-rule", "browsing", timeout=10_000)
    page.keyboard.press("Escape")
    expect(page.locator(".kefu-invite")).to_have_count(0)
    # a new visit of the same browser (a new session: the page's sessionStorage is gone)
    page.evaluate("() => { sessionStorage.clear(); }")
    page.reload()
    page.wait_for_timeout(1500)
    expect(page.locator(".kefu-invite")).to_have_count(0)  # "browsing": once a day, shown already today
    page.evaluate("() => document.dispatchEvent(new MouseEvent('mouseout', {clientY: 0, relatedTarget: null}))")
    expect(page.locator(".kefu-invite")).to_have_attribute("data-rule", "leaving")
