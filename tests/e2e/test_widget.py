"""The widget on someone else's page: one script tag, a launcher, the chat in an iframe from kefu's host;
anonymous or identified by a token from the site's backend; full screen on a phone."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.integration.conftest import ALWAYS_ANSWER, Shop

from .conftest import axe_violations, screenshot, signed_in


@pytest.fixture(scope="module")
def shop(stack, store, signing_key):
    shop = Shop(stack, store, signing_key, ALWAYS_ANSWER)
    yield shop
    shop.close()


def host_page(new_page, shop, token: str | None = None, viewport=None):
    """A page of another site with the one script tag. The site is another origin than kefu's (localhost vs
    127.0.0.1; both loopback, which Chromium's private-network rules require of a plain-http page)."""
    site = shop.stack.base_url.replace("127.0.0.1", "localhost") + "/__site__"
    page = new_page(viewport=viewport)
    attributes = f'data-workspace="{shop.ws}"' + (f' data-token="{token}"' if token else "")
    html = (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>别人的商店</title></head>'
            f'<body><main><h1>别人的商店</h1><p>商品列表</p></main>'
            f'<script src="{shop.stack.base_url}/widget.js" {attributes} async></script></body></html>')
    page.route(f"{site}/**", lambda route: route.fulfill(status=200, content_type="text/html", body=html))
    page.goto(f"{site}/products")
    return page


def test_an_anonymous_visitor_chats_through_the_launcher(new_page, shop):
    page = host_page(new_page, shop)
    launcher = page.get_by_role("button", name="在线客服")
    expect(launcher).to_have_attribute("aria-expanded", "false")
    assert axe_violations(page) == []
    launcher.click()
    expect(page.locator("#kefu-frame")).to_be_visible()
    chat = page.frame_locator("#kefu-frame")
    chat.locator("#name").fill("路人甲")
    chat.locator("#start button[type=submit]").click()
    chat.locator("#text").fill("怎么申请退货")
    chat.locator("#text").press("Enter")
    expect(chat.locator("#log li.msg.bot").first).to_contain_text("路人甲您好")
    screenshot(page, "widget-open")
    # Escape (or the chat's own ×) closes it; reopening shows the same conversation
    page.keyboard.press("Escape")
    expect(page.locator("#kefu-frame")).to_be_hidden()
    expect(launcher).to_have_attribute("aria-expanded", "false")
    launcher.click()
    expect(chat.locator("#log li.msg.mine")).to_have_count(1)
    chat.locator("#embed-close").click()
    expect(page.locator("#kefu-frame")).to_be_hidden()
    # the host page cannot read the conversation: the frame is another origin
    assert page.evaluate("() => { try { return !!document.getElementById('kefu-frame').contentDocument; } "
                         "catch (e) { return false; } }") is False


def test_an_identified_customer_is_greeted_by_name_and_keeps_one_conversation(new_page, shop):
    _, token = signed_in(shop, "site-user-9", "王五")
    page = host_page(new_page, shop, token=token)
    page.get_by_role("button", name="在线客服").click()
    chat = page.frame_locator("#kefu-frame")
    expect(chat.locator("#start")).to_be_hidden()  # no name to ask: the site vouches for the customer
    chat.locator("#text").fill("发货要多久")
    chat.locator("#text").press("Enter")
    expect(chat.locator("#log li.msg.bot").first).to_contain_text("王五您好")
    # the same customer on another page of the site continues the same conversation
    again = host_page(new_page, shop, token=token)
    again.get_by_role("button", name="在线客服").click()
    expect(again.frame_locator("#kefu-frame").locator("#log")).to_contain_text("发货要多久")
    expect(again.frame_locator("#kefu-frame").locator("#log li.msg.bot")).to_have_count(1)


def test_on_a_phone_the_chat_fills_the_screen(new_page, shop):
    page = host_page(new_page, shop, viewport={"width": 375, "height": 700})
    page.get_by_role("button", name="在线客服").click()
    box = page.locator("#kefu-frame").bounding_box()
    assert box == {"x": 0, "y": 0, "width": 375, "height": 700}
    chat = page.frame_locator("#kefu-frame")
    expect(chat.locator("#embed-close")).to_be_visible()
    screenshot(page, "widget-phone")
