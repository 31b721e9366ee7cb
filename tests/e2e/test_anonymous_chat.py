"""Anonymous consultation chosen by the visitor in the chat (issue 8), in a real browser: tick "chat anonymously"
(or, identified by the site's token, choose it from the chat's foot), send, and the stored conversation keeps no
name and not the site's customer id."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect

from .conftest import Desk, axe_violations, screenshot
from .test_chat import say


@pytest.fixture(scope="module")
def desk(stack, store, signing_key):
    return Desk(stack, store, signing_key)


def _stored(desk, store, text: str):
    """The conversation whose first message is `text` (read as the admin, then from the store)."""
    import time

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        listed = requests.get(desk.url("conversations"), headers=desk.admin, timeout=10).json()["items"]
        for item in listed:
            first = store.messages_after(desk.ws, item["conversationId"], 0, 1)
            if first and first[0].text == text:
                return store.get_conversation(desk.ws, item["conversationId"])
        time.sleep(0.2)
    raise AssertionError(f"no conversation starting with {text!r}")


def test_ticking_anonymous_starts_a_chat_that_keeps_no_identity(new_page, desk, store):
    page = new_page()
    page.goto(f"{desk.stack.base_url}/customer.html?workspace={desk.ws}")
    page.fill("#name", "张三")
    page.get_by_label("匿名咨询").check()
    expect(page.locator("#name")).to_be_disabled()  # no name: that is the point
    assert axe_violations(page) == []
    screenshot(page, "customer-start-anonymous")
    page.click("#start button[type=submit]")
    expect(page.locator("#anonymous-note")).to_be_visible()
    expect(page.locator("#go-anonymous")).to_be_hidden()  # chosen already
    say(page, "匿名问一下退货")
    expect(page.locator("#log li.msg.mine .text")).to_have_text("匿名问一下退货")
    screenshot(page, "customer-anonymous")
    conversation = _stored(desk, store, "匿名问一下退货")
    assert conversation.anonymous is True
    assert conversation.customer_name == "" and conversation.customer_tags == ()
    assert conversation.customer_id.startswith("v_")


def test_an_identified_visitor_switches_to_anonymous_before_a_conversation(new_page, desk, store):
    site_token = desk.token("visitor", "site-e2e", name="王五", tags=["vip"])
    page = new_page()
    page.goto(f"{desk.stack.base_url}/customer.html?workspace={desk.ws}#token={site_token}")
    expect(page.locator("#text")).to_be_enabled()
    switch = page.locator("#go-anonymous")
    expect(switch).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    switch.click()
    expect(page.locator("#anonymous-note")).to_be_visible()  # after the reload, as the fresh anonymous visitor
    expect(page.locator("#text")).to_be_enabled()
    say(page, "换成匿名再问")
    expect(page.locator("#log li.msg.mine .text")).to_have_text("换成匿名再问")
    conversation = _stored(desk, store, "换成匿名再问")
    assert conversation.anonymous is True and conversation.customer_id != "site-e2e"
    assert conversation.customer_name == "" and conversation.customer_tags == ()
    assert store.open_conversation_id(desk.ws, "site-e2e") is None


def test_a_widget_visitor_whose_data_was_erased_comes_back_as_a_new_visitor(new_page, desk, store):
    """Erasure revokes the visitor's tokens: the widget's kept token is refused (401), so the widget and the chat
    get a new anonymous visitor instead of failing."""
    from kefu import step_up

    from .test_widget import host_page

    page = host_page(new_page, desk)
    key = f"kefu.visitor.{desk.ws}"
    read = f"() => (JSON.parse(localStorage.getItem('{key}') || 'null') || {{}}).customerId || null"
    page.wait_for_function(read)
    old = page.evaluate(read)
    erased = requests.delete(desk.url(f"customers/{old}"), timeout=30, headers={
        **desk.admin, step_up.HEADER: step_up.issue(desk.key, workspace=desk.ws, agent_id="admin", method="totp")})
    assert erased.status_code == 200, erased.text
    revoked = page.evaluate(f"() => JSON.parse(localStorage.getItem('{key}')).token")
    assert requests.post(desk.url("visitor-tokens"), json={}, timeout=10,
                         headers={"Authorization": f"Bearer {revoked}"}).status_code == 401

    page.reload()
    page.wait_for_function(f"() => ({read})() && ({read})() !== '{old}'")
    page.get_by_role("button", name="在线客服").click()
    chat = page.frame_locator("#kefu-frame")
    chat.locator("#name").fill("回头客")
    chat.locator("#start button[type=submit]").click()
    chat.locator("#text").fill("我又来了")
    chat.locator("#text").press("Enter")
    expect(chat.locator("#log li.msg.mine .text")).to_have_text("我又来了")
    conversation = _stored(desk, store, "我又来了")
    assert conversation.customer_id != old and conversation.customer_name == "回头客"
