"""Step-up verification in the agent console (docs/protocol.md, "Step-up verification"): a customer's history
needs a fresh authenticator code. The console asks in an accessible dialog, refuses a wrong code with a
message, keeps the step-up token in memory (5 minutes) and retries; an agent without an authenticator sets one
up from the dialog."""

from __future__ import annotations

import re

import pytest
from kefu.models import Agent
from kefu_local.wsclient import Socket
from playwright.sync_api import expect

from .conftest import Authenticator, Desk, axe_violations, screenshot


@pytest.fixture(scope="module")
def desk(stack, store, signing_key):
    desk = Desk(stack, store, signing_key)
    store.put_agent(Agent(desk.ws, "agent-1", "Agent One", max_concurrent=50))
    return desk


@pytest.fixture(scope="module")
def customers(desk):
    """Two customers, each with an earlier closed conversation and one waiting now (no agent online yet: the
    first agent to come online gets them)."""
    sockets = []
    for customer_id, name in (("cust-jia", "甲先生"), ("cust-yi", "乙女士")):
        socket = Socket(f"{desk.stack.ws_url}?token={desk.token('visitor', customer_id, name=name)}")
        sockets.append(socket)
        ack = socket.request({"action": "message", "clientMessageId": "old-1", "text": "上次的问题"}, type="ack")
        socket.request({"action": "close", "conversationId": ack["conversationId"]}, type="closed")
        socket.request({"action": "message", "clientMessageId": "new-1", "text": "转人工"}, type="ack")
    yield
    for socket in sockets:
        socket.close()


def console(new_page, desk, agent_id: str, presence: str):
    page = new_page(locale="en-US")
    page.goto(f"{desk.stack.base_url}/agent.html#token={desk.token('agent', agent_id)}")
    expect(page.locator("#presence")).to_be_enabled()
    page.select_option("#presence", presence)
    expect(page.locator("#presence")).to_have_attribute("data-status", presence)
    return page


def test_the_profile_asks_for_a_code_once_in_five_minutes(new_page, desk, customers):
    authenticator = desk.authenticator("agent-1")  # enrolled through REST
    alice = console(new_page, desk, "agent-1", "online")
    alice.locator("#convs button", has_text="甲先生").click(timeout=20_000)
    dialog = alice.get_by_role("dialog", name="Verify it's you")
    expect(dialog).to_be_hidden()  # picking a conversation asks nothing
    alice.click("#profile summary")
    expect(dialog).to_be_visible()
    expect(alice.locator("#su-code")).to_be_focused()  # focus moved into the dialog
    code = alice.locator("#su-code")
    assert code.get_attribute("inputmode") == "numeric" and code.get_attribute("autocomplete") == "one-time-code"
    assert alice.evaluate("() => document.getElementById('su-code').labels[0].textContent") == "6-digit code"
    assert axe_violations(alice) == []
    screenshot(alice, "agent-step-up-dialog")

    # a wrong code: refused with a message, the dialog stays
    alice.fill("#su-code", authenticator.wrong_code())
    alice.keyboard.press("Enter")
    expect(alice.locator("#su-error")).to_contain_text("Wrong or already used code")
    expect(code).to_have_attribute("aria-invalid", "true")
    expect(dialog).to_be_visible()
    expect(code).to_be_focused()
    expect(code).to_have_value("")
    screenshot(alice, "agent-step-up-wrong-code")
    assert axe_violations(alice) == []

    # the right code: the previous conversations and tickets show, focus comes back to the panel
    code.fill(authenticator.code())
    alice.click("#su-submit")
    expect(dialog).to_be_hidden()
    expect(alice.locator("#profile summary")).to_be_focused()
    expect(alice.locator("#profile-conversations li")).to_have_count(1)
    expect(alice.locator("#profile-conversations")).to_contain_text("closed")
    expect(alice.locator("#profile-step-up")).to_be_hidden()
    # in memory only: nothing about the step-up in the browser's storage
    jwts = alice.evaluate("""() => [localStorage, sessionStorage].flatMap((s) => Object.values(s))
        .filter((v) => /^[\\w-]+\\.[\\w-]+\\.[\\w-]+$/.test(v))""")
    assert len(jwts) == 1, jwts  # the agent token (sessionStorage) only: the step-up token stays in memory

    # another customer's profile within the 5 minutes: no question asked
    alice.locator("#convs button", has_text="乙女士").click()
    expect(alice.locator("#customer-name")).to_have_text("乙女士")
    expect(alice.locator("#profile-conversations li")).to_have_count(1)
    expect(alice.locator("#profile-conversations")).to_contain_text("closed")
    expect(dialog).to_be_hidden()
    screenshot(alice, "agent-step-up-profile")


def test_escape_cancels_and_an_agent_without_an_authenticator_sets_one_up(new_page, desk, customers):
    console(new_page, desk, "agent-1", "online")  # holds the customers' conversations
    boss = console(new_page, desk, "admin", "away")  # an admin without an authenticator, reading them
    boss.get_by_role("tab", name="All").click(timeout=20_000)  # shown after the first snapshot
    boss.locator("#convs button", has_text="甲先生").click(timeout=20_000)
    summary = boss.locator("#profile summary")
    summary.click()
    dialog = boss.get_by_role("dialog", name="Verify it's you")
    expect(dialog).to_be_visible()
    boss.keyboard.press("Escape")  # cancels: no history, an offer to verify, focus back where it was
    expect(dialog).to_be_hidden()
    expect(summary).to_be_focused()
    expect(boss.locator("#profile-step-up")).to_contain_text("need a verification")
    expect(boss.locator("#profile-conversations li")).to_have_count(0)

    boss.get_by_role("button", name="Verify it's you").click()
    expect(dialog).to_be_visible()
    boss.fill("#su-code", "123456")  # no authenticator yet: 409, explained, with the way to set one up
    boss.keyboard.press("Enter")
    expect(boss.locator("#su-error")).to_contain_text("no authenticator set up")
    setup = boss.get_by_role("button", name="Set up an authenticator")
    expect(setup).to_be_focused()
    setup.press("Enter")
    uri = boss.locator("#su-uri")
    expect(uri).to_be_visible()
    assert uri.input_value().startswith("otpauth://totp/")
    secret = boss.locator("#su-secret").input_value().replace(" ", "")
    assert f"secret={secret}" in uri.input_value()
    expect(boss.locator("#su-secret")).to_be_focused()
    assert axe_violations(boss) == []
    screenshot(boss, "agent-step-up-enrol")
    boss.fill("#su-code", Authenticator(secret).code())
    boss.click("#su-submit")
    expect(dialog).to_be_hidden()
    expect(boss.locator("#profile-conversations li")).to_have_count(1)
    expect(boss.locator("#profile-step-up")).to_be_hidden()


def test_too_many_wrong_codes_lock_the_dialog_with_the_wait(new_page, desk):
    import requests

    authenticator = desk.authenticator("agent-2")
    bob = console(new_page, desk, "agent-2", "away")
    # any sensitive call the console makes asks (here through the API the console's views share)
    bob.evaluate("""() => { window.kefuConsole.api('/customers/cust-jia')
        .then(() => { window.__outcome = 'ok'; }, (e) => { window.__outcome = e.code; }); }""")
    dialog = bob.get_by_role("dialog", name="Verify it's you")
    expect(dialog).to_be_visible()
    headers = {"Authorization": "Bearer " + desk.token("agent", "agent-2")}
    for _ in range(5):  # five wrong codes (through REST, quicker): step-up is locked for the rest of the window
        answer = requests.post(desk.url("step-up"), json={"code": authenticator.wrong_code()}, headers=headers, timeout=10)
        assert answer.status_code == 403, answer.text
    bob.fill("#su-code", authenticator.code())
    bob.keyboard.press("Enter")
    expect(bob.locator("#su-error")).to_contain_text(re.compile(r"Too many wrong codes\. Try again in (\d+ min )?\d+ s"))
    expect(bob.locator("#su-submit")).to_be_disabled()
    screenshot(bob, "agent-step-up-locked")
    bob.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    bob.wait_for_function("() => window.__outcome")
    assert bob.evaluate("() => window.__outcome") == "step_up_required"  # the cancelled call: the server's error
