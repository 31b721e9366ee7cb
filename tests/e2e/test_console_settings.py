"""The console's Settings view (console-settings.js; admins) in a real browser: privacy & data (retention, anonymous
consultation, masking of personal data and who sees the originals), the satisfaction survey's NPS question and
the customer chat's quick replies, each loaded with GET and saved with PUT; what the page checks itself and what
the server refuses ({"error": {...}}, the fields it names marked) are shown; the values survive a reload and are
what the REST API returns; both languages; axe-core; agents and supervisors do not see the tab."""

from __future__ import annotations

import json

import pytest
import requests
from playwright.sync_api import expect

from kefu.models import Agent

from .conftest import Desk, axe_violations, open_console, open_view, screenshot


@pytest.fixture(scope="module")
def shop(stack, store, signing_key):
    desk = Desk(stack, store, signing_key)
    store.put_agent(Agent(desk.ws, "sue", "Sue", role="supervisor"))
    return desk


def open_settings(page, name="Settings"):
    open_view(page, name, "#st-title")


def rest(shop, path: str) -> dict:
    answer = requests.get(shop.url(path), headers=shop.admin, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_an_admin_changes_privacy_survey_and_quick_replies(new_page, shop):
    # the screenshots show it all
    page = open_console(new_page, shop, agent_id="admin", viewport={"width": 1280, "height": 1900})
    open_settings(page)
    view = page.locator("#view-settings")

    # ---- privacy & data: the defaults, as GET has them
    expect(page.locator("#st-retention")).to_have_value("365")
    expect(page.locator("#st-anonymous")).not_to_be_checked()
    expect(page.locator("#st-mask")).not_to_be_checked()
    expect(page.locator("#st-reveal")).to_have_value("supervisor")
    expect(page.locator("#st-privacy-hint")).to_contain_text("Changes apply to conversations opened from then on")
    expect(page.get_by_label("Mask personal data in customers' messages")).to_be_visible()
    expect(page.get_by_label("Who may see the originals")).to_be_visible()

    # checked in the page: a retention out of range is not sent
    page.fill("#st-retention", "5000")
    page.click("#st-privacy-save")
    errors = page.locator("#st-privacy-errors")
    expect(errors).to_be_focused()
    expect(errors).to_contain_text("Please fix 1 problem(s):")
    expect(errors).to_contain_text("Retention: a whole number of days, 1 to 1830")
    expect(page.locator("#st-retention")).to_have_attribute("aria-invalid", "true")
    assert rest(shop, "privacy")["retentionDays"] == 365

    # what the server refuses (here a value the page would not send, changed on the way) is shown as it says it
    def tamper(route):
        if route.request.method != "PUT":
            return route.continue_()
        body = json.loads(route.request.post_data)
        body["retentionDays"] = 0
        route.fulfill(response=route.fetch(post_data=json.dumps(body)))

    page.route("**/privacy", tamper)
    page.fill("#st-retention", "30")
    page.click("#st-privacy-save")
    expect(errors).to_contain_text("The server refused the change (invalid_request):")
    expect(errors).to_contain_text("retentionDays")
    expect(page.locator("#st-privacy-status")).to_have_text("Not saved")
    expect(page.locator("#st-retention")).to_have_attribute("aria-invalid", "true")
    page.unroute("**/privacy", tamper)
    assert rest(shop, "privacy")["retentionDays"] == 365

    page.check("#st-mask")
    page.select_option("#st-reveal", "admin")
    page.click("#st-privacy-save")
    expect(page.locator("#st-privacy-status")).to_contain_text("Saved")
    expect(errors).to_have_count(0)
    expect(page.locator("#st-privacy-save")).to_be_focused()  # the keyboard stays where it was
    assert rest(shop, "privacy") == {"retentionDays": 30, "anonymous": False, "maskPii": True, "piiRevealRole": "admin"}
    page.fill("#st-retention", "31")  # an edit after saving: the confirmation goes
    expect(page.locator("#st-privacy-status")).to_have_text("Unsaved changes")
    page.fill("#st-retention", "30")  # back to what is stored
    expect(page.locator("#st-privacy-status")).to_have_text("")

    # ---- the satisfaction survey
    expect(page.locator("#st-nps")).not_to_be_checked()
    page.check("#st-nps")
    page.click("#st-survey-save")
    expect(page.locator("#st-survey-status")).to_contain_text("Saved")
    assert rest(shop, "survey") == {"nps": True}

    # ---- the customer chat's quick replies
    expect(page.locator("#st-qr-empty")).to_have_text("No quick replies: the chat shows no suggestions.")
    page.click("#st-qr-add")
    expect(page.locator("#st-qr0-zh")).to_be_focused()
    expect(page.locator("#st-qr0-id")).to_have_value("reply-1")
    page.fill("#st-qr0-zh", "查订单")
    page.fill("#st-qr0-en", "Track my order")
    page.fill("#st-qr0-id", "track-order")
    page.click("#st-qr-add")
    expect(page.locator("#st-qr1-zh")).to_be_focused()
    # checked in the page: lengths, ids, at least one language
    page.fill("#st-qr1-en", "x" * 41)
    page.fill("#st-qr1-id", "Return!")
    page.click("#st-chips-save")
    chip_errors = page.locator("#st-chips-errors")
    expect(chip_errors).to_be_focused()
    expect(chip_errors).to_contain_text("Please fix 2 problem(s):")
    expect(chip_errors).to_contain_text("Quick reply 2 id: 1 to 32 of a-z, 0-9 or -")
    expect(chip_errors).to_contain_text("Quick reply 2 English: at most 40 characters (now 41)")
    chip_errors.get_by_role("button", name="Quick reply 2 English: at most 40 characters (now 41)").click()
    expect(page.locator("#st-qr1-en")).to_be_focused()
    expect(page.locator("#st-qr1-en")).to_have_attribute("aria-invalid", "true")
    # refused by the server (markup: the chat shows text), shown with the field it names
    page.fill("#st-qr1-id", "return")
    page.fill("#st-qr1-en", "Return an item")
    page.fill("#st-qr1-zh", "<b>退货</b>")
    page.click("#st-chips-save")
    expect(chip_errors).to_contain_text("The server refused the change (invalid_request):")
    expect(chip_errors).to_contain_text("items[1].text.zh: plain text, not markup")
    expect(page.locator("#st-qr1-zh")).to_have_attribute("aria-invalid", "true")
    assert rest(shop, "customer-quick-replies") == {"items": []}
    page.fill("#st-qr1-zh", "退货")
    # reorder: the second one up (the keyboard follows it)
    page.click("#st-qr1-up")
    expect(page.locator("#st-qr0-down")).to_be_focused()
    expect(page.locator("#st-qr0-id")).to_have_value("return")
    page.click("#st-chips-save")
    expect(page.locator("#st-chips-status")).to_contain_text("Saved")
    assert rest(shop, "customer-quick-replies") == {"items": [
        {"id": "return", "text": {"zh": "退货", "en": "Return an item"}},
        {"id": "track-order", "text": {"zh": "查订单", "en": "Track my order"}}]}
    screenshot(page, "console-settings")
    assert axe_violations(page) == []

    # ---- a reload shows what is stored
    page.reload()
    expect(page.locator("#presence")).to_be_enabled()
    open_settings(page)
    expect(page.locator("#st-retention")).to_have_value("30")
    expect(page.locator("#st-mask")).to_be_checked()
    expect(page.locator("#st-anonymous")).not_to_be_checked()
    expect(page.locator("#st-reveal")).to_have_value("admin")
    expect(page.locator("#st-nps")).to_be_checked()
    expect(view.locator(".st-chip")).to_have_count(2)
    expect(page.locator("#st-qr0-zh")).to_have_value("退货")
    expect(page.locator("#st-qr1-en")).to_have_value("Track my order")

    # the survey toggle goes back off; a quick reply is removed
    page.uncheck("#st-nps")
    page.click("#st-survey-save")
    expect(page.locator("#st-survey-status")).to_contain_text("Saved")
    assert rest(shop, "survey") == {"nps": False}
    page.click("#st-qr0-remove")
    expect(page.locator("#st-qr0-remove")).to_be_focused()
    expect(view.locator(".st-chip")).to_have_count(1)
    page.click("#st-chips-save")
    expect(page.locator("#st-chips-status")).to_contain_text("Saved")
    assert [c["id"] for c in rest(shop, "customer-quick-replies")["items"]] == ["track-order"]

    # Chinese (every console string is in both languages)
    keys = page.evaluate("() => KefuI18n.keys()")
    assert set(keys["zh"]) == set(keys["en"]), set(keys["zh"]) ^ set(keys["en"])
    page.get_by_role("button", name="中文").click()
    expect(page.get_by_role("button", name="设置", exact=True)).to_be_visible()
    expect(page.locator("#st-privacy-title")).to_have_text("隐私与数据")
    expect(page.locator("#st-survey-title")).to_have_text("满意度调查")
    expect(page.locator("#st-chips-title")).to_have_text("客户快捷回复")
    expect(page.locator("#st-reveal option:checked")).to_have_text("仅管理员")
    expect(page.locator("#st-privacy-hint")).to_contain_text("此后新开始的会话")
    screenshot(page, "console-settings-zh")
    assert axe_violations(page) == []


def test_agents_and_supervisors_do_not_see_settings(new_page, shop):
    sue = open_console(new_page, shop, agent_id="sue")
    expect(sue.get_by_role("button", name="Experiments", exact=True)).to_be_visible(timeout=20_000)
    expect(sue.get_by_role("button", name="Settings", exact=True)).to_be_hidden()

    agent = open_console(new_page, shop, agent_id="agent-1")
    expect(agent.get_by_role("tab", name="Queue")).to_be_visible()
    agent.wait_for_timeout(6000)  # a snapshot poll has answered
    expect(agent.get_by_role("button", name="Settings", exact=True)).to_be_hidden()
    expect(agent.get_by_role("button", name="Tickets")).to_be_visible()
    # and the routes behind it refuse them anyway
    assert requests.get(shop.url("privacy"), timeout=10,
                        headers={"Authorization": "Bearer " + shop.token("agent", "agent-1")}).status_code == 403
