"""The agent console's tickets view (console-tickets.js) in a real browser: the list with SLA countdowns and
filters, one ticket's page (comment, status change, history, a stale write), both languages, axe-core."""

from __future__ import annotations

import re
import time

import pytest
import requests
from playwright.sync_api import expect

from .conftest import Desk, axe_violations, screenshot


@pytest.fixture(scope="module")
def shop(stack, store, signing_key):
    return Desk(stack, store, signing_key)


def agent_page(new_page, shop, agent_id: str, locale: str = "zh-CN"):
    page = new_page(locale=locale)
    page.goto(f"{shop.stack.base_url}/agent.html#token={shop.token('agent', agent_id)}")
    expect(page.locator("#presence")).to_be_enabled()
    return page


def create_ticket(shop, **body) -> dict:
    response = requests.post(shop.url("tickets"), json=body, headers=shop.admin, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def ticket_settings(shop, body: dict) -> None:
    response = requests.put(shop.url("ticket-settings"), json=body, headers=shop.admin, timeout=10)
    assert response.status_code == 200, response.text


def row(page, subject: str):
    return page.locator("#view-tickets tbody tr", has=page.get_by_role("button", name=subject, exact=True))


def test_the_tickets_list_and_one_ticket(new_page, shop):
    low = create_ticket(shop, subject="打印发票失败", priority="low", customerId="c-low", customerName="李四")
    high = create_ticket(shop, subject="退款还没到账", priority="high", customerId="c-high", customerName="王五",
                         description="订单 1234 退款\n已经一周了 <b>不是 HTML</b>", contact="wang@example.com")
    # an urgent ticket whose SLA is one second: overdue by the time the console shows it
    ticket_settings(shop, {"slaSeconds": {"urgent": 1}, "maxLevel": 1})
    urgent = create_ticket(shop, subject="支付页面打不开", priority="urgent", customerId="c-urgent")
    # the SLA machine escalates it one level (with a deadline by these settings, a second later): wait for
    # that before the settings go back to the defaults, so that it stays overdue
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = requests.get(shop.url(f"tickets/{urgent['ticketId']}"), headers=shop.admin, timeout=10).json()
        if now["escalationLevel"] >= 1:
            break
        time.sleep(0.5)
    ticket_settings(shop, {})
    time.sleep(1.5)

    page = agent_page(new_page, shop, "agent-1")
    page.click("#view-tickets-tab")
    view = page.locator("#view-tickets")
    expect(view).to_be_visible()
    expect(view.locator("tbody tr")).to_have_count(3)
    # newest first
    expect(view.locator("tbody tr").first).to_contain_text(urgent["subject"])
    expect(row(page, urgent["subject"])).to_have_class(re.compile(r"tk-overdue"))
    expect(row(page, urgent["subject"]).locator(".tk-sla")).to_contain_text("已超时")
    expect(row(page, high["subject"]).locator(".tk-sla")).to_contain_text(re.compile(r"剩余 23 小时 5\d 分钟"))
    expect(row(page, high["subject"])).not_to_have_class(re.compile(r"tk-overdue"))
    expect(row(page, low["subject"])).to_contain_text("李四")
    expect(row(page, low["subject"])).to_contain_text("低")
    screenshot(page, "tickets-list")
    assert axe_violations(page) == []

    # filters: by priority, then "assigned to me" (none yet), then back to everyone
    page.select_option("#tk-f-priority", "high")
    expect(view.locator("tbody tr")).to_have_count(1)
    expect(view.locator("tbody tr")).to_contain_text(high["subject"])
    page.select_option("#tk-f-assignee", "mine")
    expect(view.locator(".tk-list-status")).to_have_text("没有符合条件的工单")
    page.select_option("#tk-f-assignee", "")
    expect(view.locator("tbody tr")).to_have_count(1)

    # one ticket
    row(page, high["subject"]).get_by_role("button", name=high["subject"]).click()
    detail = view.locator(".tk-detail")
    expect(detail.locator("h2")).to_have_text(high["subject"])
    expect(detail.locator("h2")).to_be_focused()
    expect(detail.locator(".tk-description")).to_have_text("订单 1234 退款\n已经一周了 <b>不是 HTML</b>")
    expect(detail.locator(".tk-facts")).to_contain_text("wang@example.com")
    expect(detail.locator(".tk-facts")).to_contain_text("王五")
    expect(detail.locator(".tk-facts .tk-sla")).to_contain_text("剩余")
    # only the moves the API allows from open
    assert page.locator("#tk-new-status option").evaluate_all("os => os.map(o => o.value)") == [
        "pending", "resolved", "closed"]

    # an internal note
    page.fill("#tk-comment", "已联系财务 <i>核实</i>")
    page.check("#tk-internal")
    page.click(".tk-comment-form button[type=submit]")
    note = detail.locator(".tk-comments li.internal")
    expect(note).to_have_count(1)
    expect(note.locator(".tk-text")).to_have_text("已联系财务 <i>核实</i>")
    expect(note).to_contain_text("内部备注")
    expect(detail.locator(".tk-history")).to_contain_text("添加了内部备注")

    # a status change, checked over REST, and its history entry
    page.select_option("#tk-new-status", "pending")
    page.get_by_role("button", name="应用").click()
    expect(detail.locator(".tk-message")).to_have_text("已保存")
    expect(detail.locator(".tk-facts")).to_contain_text("挂起")
    expect(detail.locator(".tk-history li").last).to_contain_text("把状态从「待处理」改为「挂起」")
    expect(detail.locator(".tk-history li").last).to_contain_text("agent-1")
    stored = requests.get(shop.url(f"tickets/{high['ticketId']}"), headers=shop.admin, timeout=10).json()
    assert stored["status"] == "pending"
    comments = requests.get(shop.url(f"tickets/{high['ticketId']}/comments"), headers=shop.admin, timeout=10).json()
    assert [(c["text"], c["internal"]) for c in comments["items"]] == [("已联系财务 <i>核实</i>", True)]

    # someone else changes the ticket meanwhile: "assign to me" sends the old version, gets a 409, reloads
    patched = requests.patch(shop.url(f"tickets/{high['ticketId']}"), json={"priority": "urgent"},
                             headers=shop.admin, timeout=10)
    assert patched.status_code == 200, patched.text
    page.get_by_role("button", name="分配给我").click()
    expect(detail.locator(".tk-message")).to_contain_text("已重新加载")
    expect(detail.locator(".tk-facts")).to_contain_text("紧急")
    page.get_by_role("button", name="分配给我").click()
    expect(detail.locator(".tk-message")).to_have_text("已保存")
    expect(page.get_by_role("button", name="已分配给您")).to_be_disabled()
    stored = requests.get(shop.url(f"tickets/{high['ticketId']}"), headers=shop.admin, timeout=10).json()
    assert stored["assignee"]["id"] == "agent-1"
    assert page.evaluate("() => window.__xss") is None
    screenshot(page, "ticket-view")
    assert axe_violations(page) == []

    # back: the filters kept, the row updated, the keyboard on it
    page.click(".tk-back")
    expect(page.locator("#tk-f-priority")).to_have_value("high")
    expect(view.locator("tbody tr")).to_have_count(1)
    expect(row(page, high["subject"])).to_contain_text("挂起")
    expect(row(page, high["subject"]).get_by_role("button")).to_be_focused()
    # the priority moved to urgent, so under "high" it is only there until the list is reloaded
    page.select_option("#tk-f-priority", "urgent")
    expect(view.locator("tbody tr")).to_have_count(2)
    page.select_option("#tk-f-assignee", "mine")
    expect(view.locator("tbody tr")).to_have_count(1)
    expect(view.locator("tbody tr")).to_contain_text(high["subject"])


def test_the_tickets_view_in_english(new_page, shop):
    create_ticket(shop, subject="Parcel never arrived", priority="normal", customerId="c-en", customerName="Ann")
    page = agent_page(new_page, shop, "agent-2", locale="en-US")
    page.click("#view-tickets-tab")
    view = page.locator("#view-tickets")
    expect(view.locator("h2")).to_have_text("Tickets")
    expect(view.locator("thead th")).to_have_text(["Subject", "Customer", "Priority", "Status", "Assignee", "SLA"])
    expect(view.locator("label[for=tk-f-priority]")).to_have_text("Priority")
    parcel = row(page, "Parcel never arrived")
    expect(parcel.locator(".tk-sla")).to_contain_text(re.compile(r"^2 d 23 h left$|^3 d left$"))
    expect(parcel).to_contain_text("Normal")
    # the language switch redraws the view
    page.click("#lang")
    expect(view.locator("thead th").first).to_have_text("主题")
    expect(parcel.locator(".tk-sla")).to_contain_text("剩余")
    page.click("#lang")
    parcel.get_by_role("button", name="Parcel never arrived").click()
    expect(view.locator(".tk-detail")).to_contain_text("SLA deadline")
    expect(page.get_by_role("button", name="Assign to me")).to_be_enabled()
    assert axe_violations(page) == []
