"""Masked personal data in the agent console (issue 8, kefu.pii): in a workspace with maskPii a customer's phone and
card numbers reach the console masked, tagged as such; "Show original" asks the server, which refuses an agent
while only supervisors may see originals (the refusal shows in the bubble) and shows it once the workspace lets
the conversation's agent see them; "Hide original" masks it again. The customer's own chat, reopened, shows the
masked text with a note saying why."""

from __future__ import annotations

import pytest
import requests
from kefu.models import Agent
from kefu_local.wsclient import Socket
from playwright.sync_api import expect

from .conftest import Desk, axe_violations, screenshot

TEXT = "我的手机 13812345678，卡号 4111 1111 1111 1111"
MASKED = "我的手机 138****5678，卡号 **** **** **** 1111"


@pytest.fixture(scope="module")
def desk(stack, store, signing_key):
    desk = Desk(stack, store, signing_key)
    store.put_agent(Agent(desk.ws, "agent-1", "Agent One", max_concurrent=50))
    for path, body in (("bot", {"enabled": False}), ("privacy", {"maskPii": True})):
        assert requests.put(desk.url(path), json=body, headers=desk.admin, timeout=10).ok
    return desk


def test_an_agent_sees_masked_text_and_the_original_only_when_allowed(new_page, desk):
    customer = Socket(f"{desk.stack.ws_url}?token={desk.token('visitor', 'cust-pii', name='王五')}")
    try:
        ack = customer.request({"action": "message", "clientMessageId": "m1", "text": TEXT}, type="ack")
        page = new_page(locale="en-US")
        page.goto(f"{desk.stack.base_url}/agent.html#token={desk.token('agent', 'agent-1')}")
        expect(page.locator("#presence")).to_be_enabled()
        page.select_option("#presence", "online")
        page.locator("#convs button", has_text="王五").click(timeout=20_000)
        bubble = page.locator(f"#log li.msg[data-seq='{ack['seq']}']")
        expect(bubble.locator(".text")).to_have_text(MASKED)
        expect(bubble.locator(".masked")).to_have_text("personal data masked")
        show = bubble.get_by_role("button", name="Show original")
        show.click()
        expect(bubble.locator(".reveal-error")).to_contain_text("needs the supervisor role")
        expect(bubble.locator(".text")).to_have_text(MASKED)

        assert requests.put(desk.url("privacy"), json={"maskPii": True, "piiRevealRole": "agent"},
                            headers=desk.admin, timeout=10).ok
        show.click()
        expect(bubble.locator(".text")).to_have_text(TEXT)
        expect(bubble.locator(".reveal-error")).to_have_text("")
        screenshot(page, "agent-masked-message-revealed")
        assert axe_violations(page) == []
        bubble.get_by_role("button", name="Hide original").click()
        expect(bubble.locator(".text")).to_have_text(MASKED)

        # the customer's own chat (reopened: its history comes from the server) says why the numbers show as ****
        chat = new_page(locale="en-US")
        chat.goto(f"{desk.stack.base_url}/customer.html?workspace={desk.ws}#token={desk.token('visitor', 'cust-pii', name='王五')}")
        own = chat.locator(f"#log li.msg[data-seq='{ack['seq']}']")
        expect(own.locator(".text")).to_have_text(MASKED, timeout=20_000)
        expect(own.locator(".masked-note")).to_have_text(
            "For your privacy, phone, ID and card numbers and e-mail addresses are stored masked")
        screenshot(chat, "customer-masked-message")
    finally:
        customer.close()
