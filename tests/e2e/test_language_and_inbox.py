"""Chinese and English in a real browser (the browser's language, the switch, remembered), and the console's
inbox tabs: the queue every agent sees (and takes from), and the supervisors' "all"."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .conftest import Desk, axe_violations, screenshot
from .test_chat import customer_page, say


@pytest.fixture(scope="module")
def shop(stack, store, signing_key):
    return Desk(stack, store, signing_key)


def every_key_in_both_languages(page) -> None:
    keys = page.evaluate("() => KefuI18n.keys()")
    assert set(keys["zh"]) == set(keys["en"]), set(keys["zh"]) ^ set(keys["en"])
    assert len(keys["zh"]) > 50


def test_the_chat_follows_the_browser_and_switches_language(new_page, shop):
    page = new_page(locale="en-US")
    page.goto(f"{shop.stack.base_url}/customer.html?workspace={shop.ws}")
    expect(page.locator("h1")).to_have_text("Customer service")
    expect(page.locator("#start button[type=submit]")).to_have_text("Start chat")
    assert page.evaluate("() => document.documentElement.lang") == "en"
    assert page.title() == "Customer service"
    every_key_in_both_languages(page)
    assert axe_violations(page) == []
    page.get_by_role("button", name="切换到中文").click()
    expect(page.locator("h1")).to_have_text("在线客服")
    assert page.evaluate("() => document.documentElement.lang") == "zh-CN"
    page.reload()  # the choice is remembered
    expect(page.locator("#start button[type=submit]")).to_have_text("开始咨询")
    # in a conversation: what is on screen changes language with the switch, the messages stay
    page.get_by_role("button", name="Switch to English").click()
    page.fill("#name", "Ann")
    page.click("#start button[type=submit]")
    say(page, "how do I return an item")
    expect(page.locator("#log li.msg.mine")).to_contain_text("Me")
    expect(page.locator("#human")).to_have_text("Talk to a human")
    page.get_by_role("button", name="切换到中文").click()
    expect(page.locator("#human")).to_have_text("转人工")
    expect(page.locator("#log li.msg.mine")).to_contain_text("我")
    expect(page.locator("#log li.msg.mine .text")).to_have_text("how do I return an item")
    # the widget's data-lang (passed as ?lang=) wins over the browser and the last choice
    other = new_page(locale="zh-CN")
    other.goto(f"{shop.stack.base_url}/customer.html?workspace={shop.ws}&lang=en")
    expect(other.locator("h1")).to_have_text("Customer service")


def test_the_queue_tab_and_taking_a_conversation(new_page, shop):
    boss = new_page(locale="en-US")
    boss.goto(f"{shop.stack.base_url}/agent.html#token={shop.token('agent', 'admin')}")
    expect(boss.locator("#presence")).to_be_enabled()
    boss.select_option("#presence", "away")  # nothing arrives by itself
    expect(boss.locator("#presence")).to_have_attribute("data-status", "away")
    expect(boss.get_by_role("tab", name="All")).to_be_visible()  # an admin: the workspace's conversations
    expect(boss.get_by_role("button", name="Dashboard")).to_be_visible()
    every_key_in_both_languages(boss)

    customer = customer_page(new_page, shop, name="排队的人")
    say(customer, "转人工")
    expect(customer.locator("#queue-position")).to_be_visible()
    queue_tab = boss.get_by_role("tab", name="Queue")
    queue_tab.click()
    waiting = boss.locator("#convs li.queued", has_text="排队的人")  # the snapshot poll: every 5 s
    expect(waiting).to_be_visible(timeout=20_000)
    screenshot(boss, "agent-queue-tab")
    assert axe_violations(boss) == []
    # keyboard: arrows move between the tabs
    queue_tab.focus()
    boss.keyboard.press("ArrowLeft")
    expect(boss.get_by_role("tab", name="Mine")).to_have_attribute("aria-selected", "true")
    boss.keyboard.press("ArrowRight")
    expect(queue_tab).to_have_attribute("aria-selected", "true")

    boss.get_by_role("button", name="Take 排队的人's conversation").click()
    expect(boss.get_by_role("tab", name="Mine")).to_have_attribute("aria-selected", "true")
    expect(boss.locator("#customer-name")).to_have_text("排队的人")
    expect(customer.locator("#agent-line")).to_contain_text("Admin")
    expect(customer.locator("#queue")).to_be_hidden()
    boss.fill("#text", "I'm here to help")
    boss.press("#text", "Enter")
    expect(customer.locator("#log li.msg.theirs", has_text="I'm here to help")).to_be_visible()

    boss.get_by_role("tab", name="All").click()  # a REST list: slow on a loaded machine, retried on errors
    expect(boss.locator("#convs")).to_contain_text("with Admin", timeout=20_000)
    boss.get_by_role("button", name="中文").click()
    expect(boss.get_by_role("tab", name="全部")).to_be_visible()
    expect(boss.locator("#convs")).to_contain_text("由 Admin 接待")
    screenshot(boss, "agent-all-tab-zh")


def test_the_supervisors_dashboard(new_page, shop):
    boss = new_page(locale="en-US")
    boss.goto(f"{shop.stack.base_url}/agent.html#token={shop.token('agent', 'admin')}")
    expect(boss.locator("#presence")).to_be_enabled()
    customer = customer_page(new_page, shop, name="看板客户")
    say(customer, "有人吗")  # nobody online: it waits (the admin is away since the test above, or online)
    boss.get_by_role("button", name="Dashboard").click()
    expect(boss.get_by_role("heading", name="Dashboard")).to_be_focused()
    cards = boss.locator("#db-cards")
    expect(cards).to_contain_text("Conversations, 24 h")
    expect(boss.locator("#db-agents table")).to_contain_text("Agent One")
    expect(boss.locator("#db-agents table")).to_contain_text("Admin")
    # the hourly counters: at least the conversations of this module's tests, in the last hour's bar
    expect(boss.locator("#db-opened-plot canvas")).to_have_count(1)
    expect(boss.locator("#db-bot-plot canvas")).to_have_count(1)
    expect(boss.locator("#db-daily-plot canvas")).to_have_count(1)  # from /metrics (the analytics aggregates)
    expect(cards).to_contain_text("Average handle time")
    expect(cards).to_contain_text("First contact resolution")
    expect(boss.locator("#db-daily-table tbody tr")).to_have_count(7)
    boss.locator("#view-dashboard").evaluate("el => el.scrollTo(0, 0)")
    screenshot(boss, "supervisor-dashboard")
    boss.locator("#db-opened-table").locator("xpath=..").locator("summary").click()
    rows = boss.locator("#db-opened-table tbody tr")
    expect(rows).to_have_count(24)
    assert int(rows.last.locator("td").inner_text()) >= 1
    assert "in all" in boss.locator("#db-opened-plot").get_attribute("aria-label")
    assert axe_violations(boss) == []
    boss.get_by_role("button", name="中文").click()
    expect(boss.get_by_role("heading", name="数据看板")).to_be_visible()
    expect(boss.locator("#db-cards")).to_contain_text("24 小时会话量")
    # agents do not see the dashboard
    agent = new_page(locale="en-US")
    agent.goto(f"{shop.stack.base_url}/agent.html#token={shop.token('agent', 'agent-1')}")
    expect(agent.get_by_role("tab", name="Queue")).to_be_visible()
    agent.wait_for_timeout(6000)  # a snapshot poll has answered
    expect(agent.get_by_role("button", name="Dashboard")).to_be_hidden()
    expect(agent.get_by_role("tab", name="All")).to_be_hidden()


TABBABLE = """() => Array.from(document.querySelectorAll(
    'a[href], button, input, select, textarea, summary, [tabindex]:not([tabindex="-1"])'))
  .filter((el) => !el.disabled && el.tabIndex >= 0 && el.getClientRects().length > 0
                  && getComputedStyle(el).visibility !== 'hidden' && !el.closest('[hidden], details:not([open]) > :not(summary)'))
  .map((el) => el.id || el.dataset.view || el.dataset.tab || el.textContent.trim().slice(0, 30))"""


def tab_through(page, limit=80) -> list[str]:
    """What Tab reaches, in order, from the top of the page (until it comes back round)."""
    page.evaluate("""() => { let start = document.getElementById('__tab-start');
        if (!start) { start = document.createElement('span'); start.id = '__tab-start'; start.tabIndex = -1;
                      document.body.prepend(start); }
        start.focus(); }""")
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        current = page.evaluate("""() => { const el = document.activeElement;
            return el && el !== document.body ? (el.id || el.dataset.view || el.dataset.tab || el.textContent.trim().slice(0, 30)) : null; }""")
        if current is None or current in seen:
            break
        seen.append(current)
    return seen


def test_every_control_is_reachable_with_the_keyboard(new_page, shop):
    customer = customer_page(new_page, shop, name="键盘")
    say(customer, "hello")
    expect(customer.locator("#human")).to_be_enabled()  # once the conversation is open
    expect(customer.locator("#queue-cancel")).to_be_visible()  # nobody online here: it waits,
    expect(customer.locator("#of-send")).to_be_visible()  # with the offline form offered
    reached = tab_through(customer)
    missing = set(customer.evaluate(TABBABLE)) - set(reached)
    assert not missing, f"not reachable with Tab: {missing} (reached {reached})"
    assert {"text", "send", "human", "restart", "lang"} <= set(reached)

    boss = new_page(locale="en-US")  # agent-2 comes online here: the waiting conversations come to them
    boss.goto(f"{shop.stack.base_url}/agent.html#token={shop.token('agent', 'agent-2')}")
    expect(boss.locator("#presence")).to_be_enabled()
    boss.locator("#convs button", has_text="键盘").click(timeout=20_000)
    reached = tab_through(boss)
    # the inbox's tabs are one stop (arrows move between them: the ARIA tabs pattern)
    expected = set(boss.evaluate(TABBABLE)) - {"tab-queue", "tab-all"}
    missing = expected - set(reached)
    assert not missing, f"not reachable with Tab: {missing} (reached {reached})"
    assert {"presence", "lang", "tab-mine", "conv-search", "text", "close-conv"} <= set(reached)


def test_signing_in_with_a_token_or_as_a_demo_agent(new_page, shop, stack):
    page = new_page(locale="en-US")
    page.goto(f"{stack.base_url}/agent.html")
    expect(page.get_by_role("heading", name="Sign in to the console")).to_be_visible()
    expect(page.locator("#console")).to_be_hidden()
    assert axe_violations(page) == []
    page.fill("#token-input", "not-a-token")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#sign-in-status")).to_have_text("This is not an agent token")
    visitor = shop.token("visitor", "someone")
    page.fill("#token-input", visitor)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#sign-in-status")).to_have_text("This is not an agent token")
    page.fill("#token-input", shop.token("agent", "agent-1"))
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#presence")).to_be_enabled()
    expect(page.locator("#me")).to_contain_text(f"agent-1 @ {shop.ws}")
    # the local stack lists the demo workspace's agents (as a sign-on would issue their tokens)
    demo = new_page(locale="zh-CN")
    demo.goto(f"{stack.base_url}/agent.html")
    demo.get_by_role("button", name="Alice 王 · 主管").click()
    expect(demo.locator("#me")).to_contain_text("alice @ demo")
    expect(demo.get_by_role("tab", name="全部")).to_be_visible(timeout=20_000)  # a supervisor
