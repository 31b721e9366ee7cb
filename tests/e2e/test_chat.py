"""The customer page and the agent console in a real browser, on the local stack: a conversation end to end,
hostile text shown as text, and axe-core on each screen."""

from __future__ import annotations

import json
import re

import pytest
import requests
from kefu.models import Agent
from playwright.sync_api import expect

from tests.integration.conftest import ALWAYS_ANSWER, ALWAYS_REVIEW, Shop

from .conftest import axe_violations, enrol_totp, screenshot, signed_in, verify_in_console

XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def roomy(shop: Shop, store) -> Shop:
    """The shop's agents take any number of conversations: the tests of a module share them, and what one
    test leaves open must not send the next test's customer to the queue."""
    for agent_id, name in (("agent-1", "Agent One"), ("agent-2", "Agent Two")):
        store.put_agent(Agent(shop.ws, agent_id, name, max_concurrent=50))
    return shop


@pytest.fixture(scope="module")
def shop(stack, store, signing_key):
    shop = roomy(Shop(stack, store, signing_key, ALWAYS_ANSWER), store)
    yield shop
    shop.close()


def customer_page(new_page, shop, name: str = "张三"):
    page = new_page()
    page.goto(f"{shop.stack.base_url}/customer.html?workspace={shop.ws}")
    page.fill("#name", name)
    page.click("#start button[type=submit]")
    expect(page.locator("#composer")).to_be_visible()
    expect(page.locator("#text")).to_be_enabled()
    return page


def identified_page(new_page, shop, token: str):
    """The customer page opened with a site's token: no name form, straight to the chat."""
    page = new_page()
    page.goto(f"{shop.stack.base_url}/customer.html?workspace={shop.ws}#token={token}")
    expect(page.locator("#text")).to_be_enabled()
    return page


def agent_page(new_page, shop, agent_id: str):
    page = new_page()
    page.goto(f"{shop.stack.base_url}/agent.html#token={shop.token('agent', agent_id)}")
    expect(page.locator("#presence")).to_be_enabled()
    page.select_option("#presence", "online")
    return page


def say(page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def test_a_conversation_from_the_bot_to_a_human_and_a_transfer(new_page, shop, store):
    customer = customer_page(new_page, shop)
    screenshot(customer, "customer-start")
    say(customer, "怎么申请退货")
    bot = customer.locator("#log li.msg.bot").first
    expect(bot).to_be_visible()
    expect(bot.locator(".who")).to_contain_text("🤖")
    expect(bot.locator(".rate")).to_be_visible()
    bot.get_by_role("button", name=re.compile("有帮助")).click()
    expect(bot.locator(".rate-status")).to_contain_text("谢谢")
    mine = customer.locator("#log li.msg.mine")
    expect(mine).to_have_count(1)
    expect(mine.first.locator(".text")).to_have_text("怎么申请退货")
    screenshot(customer, "customer-bot-answer")

    # a person, please: nobody is online, so the customer waits in line and sees where
    expect(customer.locator("#human")).to_be_enabled()
    customer.click("#human")
    expect(customer.locator("#queue-position")).to_contain_text("第 1 位")
    screenshot(customer, "customer-queue")

    # an agent comes online and gets the conversation with its history
    alice = agent_page(new_page, shop, "agent-1")
    conversation = alice.locator("#convs button").first
    expect(conversation).to_be_visible()
    conversation.click()
    expect(alice.locator("#log")).to_contain_text("怎么申请退货")
    expect(customer.locator("#queue")).to_be_hidden()
    say(alice, "您好，我是客服，请问订单号是多少？")
    expect(customer.locator("#log li.msg.theirs").last).to_contain_text("请问订单号是多少")
    say(customer, "订单号 A1234567")
    expect(alice.locator("#log")).to_contain_text("订单号 A1234567")
    screenshot(alice, "agent-conversation")

    # a transfer to a colleague, with a note
    bob = agent_page(new_page, shop, "agent-2")
    alice.click(".transfer summary")
    alice.select_option("#to-kind", "agentId")
    alice.fill("#to-id", "agent-2")
    alice.fill("#note", "客户要退货，订单 A1234567")
    alice.click("#transfer-go")
    expect(bob.locator("#convs button").first).to_be_visible()
    bob.locator("#convs button").first.click()
    expect(bob.locator("#log")).to_contain_text("订单号 A1234567")
    expect(bob.locator("#thread-note")).to_contain_text("客户要退货")
    say(bob, "退货申请已为您提交")
    expect(customer.locator("#log")).to_contain_text("退货申请已为您提交")

    # the colleague closes it; both sides see the end
    bob.once("dialog", lambda dialog: dialog.accept())  # "Close this conversation?"
    bob.click("#close-conv")
    expect(customer.locator("#banner-text")).to_contain_text("会话已结束")
    expect(customer.locator("#human")).to_be_disabled()  # the next message starts a new conversation
    # the satisfaction survey
    expect(customer.locator("#csat")).to_be_visible()
    screenshot(customer, "customer-closed")
    customer.click("label[for=csat-4]")
    customer.fill("#csat-comment", "处理得很快")
    customer.click("#csat-send")
    expect(customer.locator("#csat-status")).to_contain_text("感谢")
    customer_id = bob.locator("#customer-id").inner_text().strip()
    (closed,) = store.conversations_of_customer(shop.ws, customer_id, 5)
    assert closed.csat["score"] == 4 and closed.csat["comment"] == "处理得很快"
    # every message exactly once on the customer's side
    texts = customer.locator("#log li.msg .text").all_inner_texts()
    for line in ("怎么申请退货", "订单号 A1234567", "退货申请已为您提交"):
        assert texts.count(line) == 1, (line, texts)


def test_hostile_text_in_messages_names_and_articles_is_shown_as_text(new_page, shop):
    article = {"lang": "zh", "title": "XSS 测试", "answer": f"答案 {XSS}", "questions": ["跨站脚本测试问题"]}
    put = requests.put(shop.url("kb/articles/xss"), json=article, headers=shop.admin, timeout=10)
    assert put.status_code == 200, put.text
    customer = customer_page(new_page, shop, name=XSS)
    say(customer, XSS)
    expect(customer.locator("#log li.msg.mine .text").first).to_have_text(XSS)
    expect(customer.locator("#log li.msg.bot").first).to_be_visible()
    say(customer, "转人工")  # the bot hands over; the agent sees the customer's name and messages
    alice = agent_page(new_page, shop, "agent-1")
    alice.locator("#convs button", has_text="<img").click()
    expect(alice.locator("#log")).to_contain_text(XSS)
    expect(alice.locator("#customer-name")).to_have_text(XSS)
    # the article's answer, when the bot gives it, is text too (the model retrains within seconds)
    for page in (customer, alice):
        assert page.evaluate("() => window.__xss") is None
        assert page.locator("#log img, #log script, #customer-name img").count() == 0


def test_the_screens_have_no_serious_accessibility_violations(new_page, shop, stack):
    found = {}
    home = new_page()
    home.goto(f"{stack.base_url}/")
    found["home"] = axe_violations(home)
    start = new_page()
    start.goto(f"{stack.base_url}/customer.html?workspace={shop.ws}")
    found["customer start"] = axe_violations(start)
    customer = customer_page(new_page, shop, name="无障碍")
    say(customer, "怎么申请退货")
    expect(customer.locator("#log li.msg.bot").first).to_be_visible()
    found["customer chat"] = axe_violations(customer)
    alice = agent_page(new_page, shop, "agent-1")
    found["agent console"] = axe_violations(alice)
    say(customer, "转人工")
    alice.locator("#convs button", has_text="无障碍").click()
    expect(alice.locator("#log")).to_contain_text("怎么申请退货")
    screenshot(alice, "agent-thread")
    found["agent thread"] = axe_violations(alice)
    alice.once("dialog", lambda dialog: dialog.accept())
    alice.click("#close-conv")
    expect(customer.locator("#csat")).to_be_visible()
    found["customer survey"] = axe_violations(customer)
    phone = new_page(viewport={"width": 375, "height": 740})
    phone.goto(f"{stack.base_url}/customer.html?workspace={shop.ws}")
    screenshot(phone, "customer-phone")
    found["customer on a phone"] = axe_violations(phone)
    bad = {screen: v for screen, v in found.items() if v}
    assert not bad, json.dumps(bad, ensure_ascii=False, indent=1)


def _drop(stack, workspace: str) -> list[str]:
    reply = requests.post(f"{stack.base_url}/_local/drop", params={"workspace": workspace}, timeout=10)
    return reply.json()["dropped"]


def _lines(page) -> list[tuple[int, str]]:
    """(seq, text) of the stored messages on the page, in page order."""
    return [(int(seq), text) for seq, text in page.evaluate(
        "() => Array.from(document.querySelectorAll('#log li.msg[data-seq]'))"
        ".map(li => [li.dataset.seq, li.querySelector('.text').textContent])")]


def test_sockets_killed_on_both_sides_lose_and_duplicate_nothing(new_page, shop, stack):
    customer = customer_page(new_page, shop, name="断线测试")
    say(customer, "转人工")
    alice = agent_page(new_page, shop, "agent-1")
    alice.locator("#convs button", has_text="断线测试").click()
    say(alice, "在的，请讲")
    expect(customer.locator("#log")).to_contain_text("在的，请讲")

    assert len(_drop(stack, shop.ws)) >= 2  # both sockets cut without a close frame
    say(customer, "断线时发的第一条")
    say(alice, "断线时的回复")
    say(customer, "断线时发的第二条")
    expect(customer.locator("#conn")).to_have_attribute("data-state", "open", timeout=20_000)
    expect(alice.locator("#conn")).to_have_attribute("data-state", "open", timeout=20_000)
    for page in (customer, alice):
        for line in ("断线时发的第一条", "断线时的回复", "断线时发的第二条"):
            # resent one by one after the reconnect, each after the previous one's ack: allow a loaded machine
            expect(page.locator("#log li.msg[data-seq] .text", has_text=line)).to_have_count(1, timeout=20_000)

    # a second cut, then a reload: the conversation survives and the history is whole
    _drop(stack, shop.ws)
    say(alice, "重连之后的消息")
    customer.reload()
    expect(customer.locator("#log")).to_contain_text("重连之后的消息", timeout=20_000)
    for page in (customer, alice):
        lines = _lines(page)
        seqs = [seq for seq, _ in lines]
        assert seqs == sorted(set(seqs)), lines  # in order, none twice
        texts = [text for _, text in lines]
        for line in ("转人工", "在的，请讲", "断线时发的第一条", "断线时的回复", "断线时发的第二条", "重连之后的消息"):
            assert texts.count(line) == 1, (line, texts)
    screenshot(customer, "customer-after-reconnects")


@pytest.fixture(scope="module")
def reviewing(stack, store, signing_key):
    shop = roomy(Shop(stack, store, signing_key, ALWAYS_REVIEW), store)
    yield shop
    shop.close()


def test_the_agent_approves_the_bots_suggested_answer_in_one_click(new_page, reviewing):
    alice = agent_page(new_page, reviewing, "agent-1")
    customer = customer_page(new_page, reviewing, name="审核测试")
    say(customer, "怎么申请退货")
    alice.locator("#convs button", has_text="审核测试").click()
    panel = alice.locator("#suggestion")
    expect(panel).to_be_visible()
    expect(alice.locator("#sg-question")).to_have_text("怎么申请退货")
    suggested = alice.locator("#sg-text").input_value()
    assert "退货" in suggested
    screenshot(alice, "agent-suggestion")
    assert axe_violations(alice) == []
    alice.click("#sg-send")
    expect(panel).to_be_hidden()
    answer = customer.locator("#log li.msg.theirs", has_text=suggested.splitlines()[0][:20])
    expect(answer).to_have_count(1)
    expect(answer.locator(".who")).to_contain_text("Agent One")  # sent by the agent, not the bot


def test_the_console_shows_the_customers_profile_and_opens_a_ticket(new_page, shop, store):
    _, token = signed_in(shop, "vip-7", "钱七", tags=("vip",))
    # an earlier, closed conversation of the same customer
    earlier = shop.connect(token)
    ack = earlier.request({"action": "message", "clientMessageId": "e1", "text": "上次的问题"}, type="ack")
    earlier.request({"action": "close", "conversationId": ack["conversationId"]}, type="closed")
    customer = identified_page(new_page, shop, token)
    say(customer, "转人工")
    alice = agent_page(new_page, shop, "agent-1")
    alice.locator("#convs button", has_text="钱七").click()
    alice.click("#profile summary")
    verify_in_console(alice, enrol_totp(shop, "agent-1"))  # the customer's history needs a step-up
    expect(alice.locator("#profile-vip")).to_be_visible()
    expect(alice.locator("#profile-conversations li")).to_have_count(1)
    expect(alice.locator("#profile-conversations")).to_contain_text("已结束")  # closed, in the console's language
    alice.click(".ticket-new summary")
    alice.fill("#ticket-subject", "会员积分没到账")
    alice.select_option("#ticket-priority", "high")
    alice.click("#ticket-go")
    expect(alice.locator("#ticket-status")).to_contain_text("t_")
    expect(alice.locator("#profile-tickets")).to_contain_text("会员积分没到账")
    screenshot(alice, "agent-profile-and-ticket")
    assert axe_violations(alice) == []
    ticket_id = re.search(r"t_\w+", alice.locator("#ticket-status").inner_text()).group(0)
    ticket = requests.get(shop.url(f"tickets/{ticket_id}"), headers=shop.admin, timeout=10).json()
    assert ticket["priority"] == "high" and ticket["customer"]["id"] == "vip-7" and len(ticket["conversations"]) == 1


def test_the_console_rings_counts_unread_in_the_title_and_searches_customers(new_page, shop):
    alice = agent_page(new_page, shop, "agent-1")
    alice.click("#conv-search")  # an interaction: browsers play sound only after one
    first = customer_page(new_page, shop, name="甲客户")
    say(first, "转人工")
    expect(alice.locator("#convs button", has_text="甲客户")).to_be_visible()
    second = customer_page(new_page, shop, name="乙客户")
    say(second, "转人工")
    expect(alice.locator("#convs button", has_text="乙客户")).to_be_visible()
    assert alice.evaluate("() => window.__kefuChimes") >= 2
    say(second, "还在吗")
    expect(alice).to_have_title(re.compile(r"^\(\d+\) "))  # unread messages in the tab's title
    alice.fill("#conv-search", "乙")
    expect(alice.locator("#convs button", has_text="乙客户")).to_be_visible()
    expect(alice.locator("#convs button", has_text="甲客户")).to_have_count(0)
    alice.fill("#conv-search", "")
    expect(alice.locator("#convs button", has_text="甲客户")).to_be_visible()


def test_the_console_shows_the_channel_of_each_message(new_page, shop):
    key, token = signed_in(shop, "app-user-3", "孙三")
    customer = identified_page(new_page, shop, token)
    say(customer, "转人工")
    alice = agent_page(new_page, shop, "agent-1")
    alice.locator("#convs button", has_text="孙三").click()
    reply = requests.post(f"{shop.stack.api_url}/integrations/channels/rest/messages", headers={"x-api-key": key},
                          json={"customerId": "app-user-3", "text": "我在 App 里继续问", "messageId": "m-1"}, timeout=10)
    assert reply.status_code == 202, reply.text
    line = alice.locator("#log li.msg", has_text="我在 App 里继续问")
    expect(line.locator(".channel")).to_have_text("App")
    expect(alice.locator("#log li.msg", has_text="转人工").locator(".channel")).to_have_count(0)  # the widget's


def test_outside_business_hours_the_customer_leaves_a_question_that_becomes_a_ticket(new_page, stack, store,
                                                                                    signing_key):
    closed_shop = Shop(stack, store, signing_key, ALWAYS_ANSWER)
    try:
        hours = requests.put(closed_shop.url("routing"), headers=closed_shop.admin, timeout=10,
                             json={"businessHours": {"timezone": "Asia/Shanghai", "weekly": {}}})  # closed all week
        assert hours.status_code == 200, hours.text
        customer = customer_page(new_page, closed_shop, name="夜猫子")
        say(customer, "转人工")
        expect(customer.locator("#offline")).to_be_visible()
        customer.fill("#of-name", "夜猫子")
        customer.fill("#of-contact", "night@example.com")
        customer.fill("#of-question", "明天能发货吗？")
        screenshot(customer, "customer-offline-form")
        assert axe_violations(customer) == []
        customer.click("#of-send")
        expect(customer.locator("#offline-text")).to_contain_text("已收到")
        tickets = requests.get(closed_shop.url("tickets"), headers=closed_shop.admin, timeout=10).json()["items"]
        assert [(t["source"], t["description"], t["contact"]) for t in tickets] == [
            ("offline_form", "明天能发货吗？", "night@example.com")]
    finally:
        closed_shop.close()


def test_quick_replies_come_up_with_a_slash(new_page, shop):
    library = {"items": [
        {"category": "售后", "title": "退货流程", "text": "请在「我的订单」里点“申请退货”，审核后寄回即可。"},
        {"category": "物流", "title": "发货时间", "text": "现货 24 小时内发出。"},
    ]}
    assert requests.put(shop.url("quick-replies"), json=library, headers=shop.admin, timeout=10).status_code == 200
    too_many = {"items": [{"title": "x", "text": "y"}] * 301}
    assert requests.put(shop.url("quick-replies"), json=too_many, headers=shop.admin, timeout=10).status_code == 422
    customer = customer_page(new_page, shop, name="快捷回复")
    say(customer, "转人工")
    alice = agent_page(new_page, shop, "agent-1")
    alice.locator("#convs button", has_text="快捷回复").click()
    alice.fill("#text", "")
    alice.type("#text", "/退货")
    options = alice.locator("#quick [role=option]")
    expect(options).to_have_count(1)
    expect(options.first).to_contain_text("退货流程")
    assert axe_violations(alice) == []
    alice.press("#text", "Backspace")
    alice.press("#text", "Backspace")  # just "/": the whole library
    expect(options).to_have_count(2)
    alice.press("#text", "ArrowDown")
    expect(options.nth(1)).to_have_attribute("aria-selected", "true")
    alice.press("#text", "ArrowUp")
    alice.press("#text", "Enter")  # inserts, does not send
    expect(alice.locator("#text")).to_have_value(library["items"][0]["text"])
    expect(alice.locator("#quick")).to_be_hidden()
    alice.press("#text", "Enter")  # sends
    expect(customer.locator("#log")).to_contain_text("审核后寄回即可")
