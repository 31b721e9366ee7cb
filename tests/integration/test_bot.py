"""The bot inside conversations, on the local stack with real WebSocket clients: it answers (greeting the
customer by name, remembering slots), takes ratings, hands over to humans with or without a suggested
answer, and agents send, edit or reject that answer in one action, saving it for next time."""

from __future__ import annotations

import secrets

import pytest
import requests

from kefu import tokens

from .conftest import ALWAYS_ANSWER, ALWAYS_REVIEW, Shop, Socket

@pytest.fixture(scope="module")
def answering_shop(stack, store, signing_key):
    shop = Shop(stack, store, signing_key, ALWAYS_ANSWER)
    yield shop
    shop.close()


@pytest.fixture(scope="module")
def reviewing_shop(stack, store, signing_key):
    shop = Shop(stack, store, signing_key, {**ALWAYS_REVIEW, "name": "小K"})
    yield shop
    shop.close()


def say(customer: Socket, text: str, conversation_id: str | None = None, cmid: str | None = None) -> dict:
    frame = {"action": "message", "clientMessageId": cmid or "m-" + secrets.token_hex(4), "text": text}
    if conversation_id:
        frame["conversationId"] = conversation_id
    return customer.request(frame, type="ack")


def bot_reply(customer: Socket, conversation_id: str) -> dict:
    return customer.expect(type="message", conversationId=conversation_id,
                           match=lambda f: f["sender"]["role"] == "bot")


def test_the_bot_answers_greets_by_name_once_and_says_it_is_a_bot(answering_shop):
    customer = answering_shop.customer("Zhang San")
    ack = say(customer, "我买的东西不想要了，怎么退货")
    first = bot_reply(customer, ack["conversationId"])
    assert first["seq"] == ack["seq"] + 1
    assert first["text"].startswith("Zhang San您好！我是智能助手（机器人）。\n")
    assert first["sender"] == {"role": "bot", "id": "bot", "name": "智能助手"}
    assert first["meta"]["decision"] == "answer" and first["meta"]["rateable"] is True
    assert first["meta"]["articleId"] == "zh-returns-apply"
    assert "7 天无理由退货" in first["text"]

    second_ack = say(customer, "退款多久到账", ack["conversationId"])
    second = bot_reply(customer, ack["conversationId"])
    assert second["seq"] == second_ack["seq"] + 1
    assert not second["text"].startswith("Zhang San")  # greeted once
    inbox = customer.request({"action": "inbox"}, type="inbox")
    assert inbox["conversations"][0]["status"] == "bot"
    assert "suggestion" not in inbox["conversations"][0] and "note" not in inbox["conversations"][0]


def test_english_questions_get_english_answers_and_an_anonymous_greeting(answering_shop):
    customer = answering_shop.customer(name="")
    ack = say(customer, "How do I return something I bought?")
    reply = bot_reply(customer, ack["conversationId"])
    assert reply["text"].startswith("Hi, I'm the automated assistant.\n")
    assert reply["meta"]["articleId"].startswith("en-")


def test_slots_from_earlier_messages_shape_the_follow_up_step(answering_shop):
    customer = answering_shop.customer()
    ack = say(customer, "我已经申请退货了，退货单号是 SF1234567890")
    bot_reply(customer, ack["conversationId"])
    say(customer, "怎么退货", ack["conversationId"])  # no slot in this message: the conversation remembers
    reply = bot_reply(customer, ack["conversationId"])
    assert reply["meta"]["articleId"] == "zh-returns-apply"
    assert "SF1234567890" in reply["text"]


def test_a_resent_message_gets_one_bot_answer(answering_shop):
    customer = answering_shop.customer()
    ack = say(customer, "退货入口在哪里", cmid="same-1")
    bot_reply(customer, ack["conversationId"])
    again = say(customer, "退货入口在哪里", ack["conversationId"], cmid="same-1")
    assert again["seq"] == ack["seq"]
    assert not [f for f in customer.quiet(1.0) if f.get("type") == "message"]


def test_ratings_count_once_per_answer_and_reach_the_article(answering_shop):
    customer = answering_shop.customer()
    ack = say(customer, "退款进度在哪看")
    answer = bot_reply(customer, ack["conversationId"])
    article_url = answering_shop.url(f"kb/articles/{answer['meta']['articleId']}")
    before = requests.get(article_url, headers=answering_shop.admin, timeout=10).json()["rating"]["helpful"]
    frame = {"action": "rate", "conversationId": ack["conversationId"], "seq": answer["seq"], "helpful": True}
    assert customer.request(frame, type="rated")["handoff"] is False
    assert customer.request(frame, type="rated")["helpful"] is True  # a resend: counted once
    after = requests.get(article_url, headers=answering_shop.admin, timeout=10).json()["rating"]["helpful"]
    assert after == before + 1
    other_way = customer.request({**frame, "helpful": False}, type="error")
    assert other_way["code"] == "conflict"


def test_an_unhelpful_answer_hands_over_to_a_human_with_the_history(answering_shop):
    agent = answering_shop.agent("agent-2")
    customer = answering_shop.customer()
    ack = say(customer, "发票怎么开")
    answer = bot_reply(customer, ack["conversationId"])
    rated = customer.request({"action": "rate", "conversationId": ack["conversationId"], "seq": answer["seq"],
                              "helpful": False}, type="rated")
    assert rated["handoff"] is True
    sorry = bot_reply(customer, ack["conversationId"])
    assert "转接人工" in sorry["text"] and "rateable" not in sorry["meta"]
    assigned = agent.expect(type="assigned", conversationId=ack["conversationId"])
    assert "unhelpful" in assigned["note"]
    assert [m["sender"]["role"] for m in assigned["history"]][:2] == ["customer", "bot"]
    assert customer.expect(type="routed", conversationId=ack["conversationId"])["status"] == "assigned"
    # the human has it now: the bot stays quiet
    say(customer, "你好？", ack["conversationId"])
    assert not [f for f in customer.quiet(1.0) if f.get("type") == "message" and f["sender"]["role"] == "bot"]


def test_asking_for_a_person_hands_over_whatever_the_match(answering_shop):
    agent = answering_shop.agent("agent-1")
    customer = answering_shop.customer()
    ack = say(customer, "退货太麻烦了，转人工")
    note = bot_reply(customer, ack["conversationId"])
    assert note["meta"]["decision"] == "handoff"
    assert "转接人工" in note["text"]
    assigned = agent.expect(type="assigned", conversationId=ack["conversationId"])
    assert "person" in assigned["note"] and "suggestion" not in assigned


def test_rating_refusals(answering_shop):
    customer = answering_shop.customer()
    ack = say(customer, "退货流程是怎样的")
    answer = bot_reply(customer, ack["conversationId"])
    cid = ack["conversationId"]
    own = customer.request({"action": "rate", "conversationId": cid, "seq": ack["seq"], "helpful": True}, type="error")
    assert own["code"] == "invalid_frame"  # the customer's own message is not a bot answer
    missing = customer.request({"action": "rate", "conversationId": cid, "seq": 999, "helpful": True}, type="error")
    assert missing["code"] == "invalid_frame"
    bad = customer.request({"action": "rate", "conversationId": cid, "seq": 0, "helpful": "yes"}, type="error")
    assert bad["code"] == "invalid_frame"
    stranger = answering_shop.customer()
    theirs = stranger.request({"action": "rate", "conversationId": cid, "seq": answer["seq"], "helpful": False},
                              type="error")
    assert theirs["code"] == "not_found"
    agent = answering_shop.connect(answering_shop.token("agent", "agent-1"))
    assert agent.request({"action": "rate", "conversationId": cid, "seq": answer["seq"], "helpful": True},
                         type="error")["code"] == "forbidden"


def _suggested(shop, agent: Socket, text: str) -> tuple[Socket, str, dict]:
    customer = shop.customer()
    ack = say(customer, text)
    note = bot_reply(customer, ack["conversationId"])
    assert note["meta"]["decision"] == "review" and note["sender"]["name"] == "小K"
    assigned = agent.expect(type="assigned", conversationId=ack["conversationId"])
    suggestion = assigned["suggestion"]
    assert suggestion["question"] == text and suggestion["answer"] and suggestion["articleId"]
    return customer, ack["conversationId"], suggestion


def test_the_agent_sends_a_suggested_answer_in_one_action(reviewing_shop):
    agent = reviewing_shop.agent("agent-1")
    customer, cid, suggestion = _suggested(reviewing_shop, agent, "退款多久能到账")
    done = agent.request({"action": "suggestion", "conversationId": cid, "suggestionId": suggestion["id"],
                          "decision": "send"}, type="suggestion")
    sent = customer.expect(type="message", conversationId=cid, seq=done["seq"])
    assert sent["text"] == suggestion["answer"] and sent["sender"]["role"] == "agent"
    assert sent["meta"]["suggestion"] == {"articleId": suggestion["articleId"], "edited": False}
    again = agent.request({"action": "suggestion", "conversationId": cid, "suggestionId": suggestion["id"],
                           "decision": "send"}, type="suggestion")
    assert again["seq"] == done["seq"]  # a retry (the reply was lost): the same result, nothing sent twice
    assert not [f for f in customer.quiet(0.8) if f.get("type") == "message" and f["seq"] > done["seq"]]
    late = agent.request({"action": "suggestion", "conversationId": cid, "suggestionId": suggestion["id"],
                          "decision": "reject"}, type="error")
    assert late["code"] == "not_found"
    inbox = agent.request({"action": "inbox"}, type="inbox")
    mine = next(c for c in inbox["conversations"] if c["conversationId"] == cid)
    assert mine["suggestion"] is None and mine["note"].startswith("bot: likely match")
    # the customer never sees what the bot suggested
    assert "suggestion" not in customer.request({"action": "inbox"}, type="inbox")["conversations"][0]


def test_an_edited_answer_is_sent_and_saved_into_the_article(reviewing_shop):
    agent = reviewing_shop.agent("agent-1")
    customer, cid, suggestion = _suggested(reviewing_shop, agent, "订单号 2024112100123 的包裹寄回去好几天了钱还没退")
    edited = "您好，仓库签收后 1–3 个工作日内退款，请再稍等一下。"
    done = agent.request({"action": "suggestion", "conversationId": cid, "suggestionId": suggestion["id"],
                          "decision": "edit", "text": edited, "saveAs": "improve"}, type="suggestion")
    assert customer.expect(type="message", conversationId=cid, seq=done["seq"])["text"] == edited
    assert done["savedArticleId"] == suggestion["articleId"]
    article = requests.get(reviewing_shop.url(f"kb/articles/{suggestion['articleId']}"),
                           headers=reviewing_shop.admin, timeout=10).json()
    assert article["answer"] == edited and "订单号 的包裹寄回去好几天了钱还没退" in article["questions"]
    assert article["rating"] == {"helpful": 0, "notHelpful": 0}  # a new answer starts without votes
    assert not [q for q in article["questions"] if "2024112100123" in q]  # no customer's order number


def test_a_new_article_from_an_edit_and_a_rejected_suggestion_sends_nothing(reviewing_shop):
    agent = reviewing_shop.agent("agent-1")
    customer, cid, suggestion = _suggested(reviewing_shop, agent, "能开增值税专用发票吗")
    done = agent.request({"action": "suggestion", "conversationId": cid, "suggestionId": suggestion["id"],
                          "decision": "edit", "text": "可以，在订单详情页申请专票。", "saveAs": "new"}, type="suggestion")
    saved = requests.get(reviewing_shop.url(f"kb/articles/{done['savedArticleId']}"), headers=reviewing_shop.admin,
                         timeout=10).json()
    assert saved["answer"] == "可以，在订单详情页申请专票。" and saved["questions"] == ["能开增值税专用发票吗"]
    assert saved["lang"] == "zh" and "saved-by-agent" in saved["tags"]

    customer2, cid2, suggestion2 = _suggested(reviewing_shop, agent, "优惠券怎么用")
    done = agent.request({"action": "suggestion", "conversationId": cid2, "suggestionId": suggestion2["id"],
                          "decision": "reject"}, type="suggestion")
    assert done["seq"] is None
    assert not [f for f in customer2.quiet(0.8) if f.get("type") == "message" and f["sender"]["role"] == "agent"]
    inbox = agent.request({"action": "inbox"}, type="inbox")
    assert next(c for c in inbox["conversations"] if c["conversationId"] == cid2)["suggestion"] is None


def test_suggestion_refusals(reviewing_shop):
    agent = reviewing_shop.agent("agent-1")
    customer, cid, suggestion = _suggested(reviewing_shop, agent, "怎么查物流")
    base = {"action": "suggestion", "conversationId": cid, "suggestionId": suggestion["id"]}
    assert agent.request({**base, "decision": "edit"}, type="error")["code"] == "invalid_frame"  # no text
    assert agent.request({**base, "decision": "reject", "saveAs": "new"}, type="error")["code"] == "invalid_frame"
    assert agent.request({**base, "decision": "send", "saveAs": "new"}, type="error")["code"] == "invalid_frame"
    assert agent.request({**base, "decision": "send", "text": "x"}, type="error")["code"] == "invalid_frame"
    assert agent.request({**base, "suggestionId": "s_other", "decision": "send"}, type="error")["code"] == "not_found"
    other_agent = reviewing_shop.connect(reviewing_shop.token("agent", "agent-2"))
    assert other_agent.request({**base, "decision": "send"}, type="error")["code"] == "not_found"
    assert customer.request({**base, "decision": "send"}, type="error")["code"] == "forbidden"
    outsider = reviewing_shop.connect(tokens.issue(reviewing_shop.key, kind="agent", workspace="demo", subject="alice"))
    assert outsider.request({**base, "decision": "send"}, type="error")["code"] == "not_found"
    # nothing was used up by the refusals: the real one still works
    assert agent.request({**base, "decision": "send"}, type="suggestion")["seq"]


def test_bot_settings_are_validated_and_need_an_admin(stack, answering_shop):
    url, admin = answering_shop.url("bot"), answering_shop.admin
    current = requests.get(url, headers=admin, timeout=10).json()
    assert current["answerAt"] == 0.0 and current["enabled"] is True
    for bad in ({"answerAt": 1.5}, {"answerAt": 0.5, "reviewAt": 0.8}, {"answerAt": "high"}, {"name": ""},
                {"texts": {"farewell": {"zh": "再见"}}}, {"texts": {"greeting": {"zh": "您好"}}}, {"enabled": "yes"}):
        response = requests.put(url, json=bad, headers=admin, timeout=10)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["code"] == "invalid_request"
    agent = {"Authorization": "Bearer " + answering_shop.token("agent", "agent-1")}
    assert requests.put(url, json={"enabled": False}, headers=agent, timeout=10).status_code == 403
    assert requests.get(url, headers=agent, timeout=10).status_code == 403
    assert requests.get(url, headers=admin, timeout=10).json() == current  # nothing changed


def test_a_workspace_with_the_bot_off_routes_straight_to_humans(stack, store, signing_key):
    shop = Shop(stack, store, signing_key, {"enabled": False})
    try:
        agent = shop.agent("agent-1")
        customer = shop.customer()
        ack = say(customer, "怎么退货")
        assigned = agent.expect(type="assigned", conversationId=ack["conversationId"])
        assert "suggestion" not in assigned
        assert not [f for f in customer.quiet(0.8) if f.get("type") == "message" and f["sender"]["role"] == "bot"]
    finally:
        shop.close()


def test_switching_the_bot_off_hands_its_conversations_to_humans(answering_shop):
    from kefu import wiring

    answering_shop.agent("agent-1")
    customer = answering_shop.customer()
    ack = say(customer, "怎么申请退货")
    assert bot_reply(customer, ack["conversationId"])["meta"]["decision"] == "answer"
    url, admin = answering_shop.url("bot"), answering_shop.admin
    assert requests.put(url, json={**ALWAYS_ANSWER, "enabled": False}, headers=admin, timeout=10).status_code == 200
    wiring.bot().forget(answering_shop.ws)  # warm functions see it within bot.SETTINGS_TTL_S; this one at once
    try:
        say(customer, "退款多久到账", ack["conversationId"])
        note = bot_reply(customer, ack["conversationId"])
        assert note["meta"]["decision"] == "handoff" and note["meta"]["reasonCode"] == "bot_off"
        routed = customer.expect(type="routed", conversationId=ack["conversationId"])
        assert routed["status"] == "assigned"  # to whichever agent of the shop is least busy
        taken = answering_shop.store.get_conversation(answering_shop.ws, ack["conversationId"])
        assert "switched off" in taken.routing["note"]
    finally:
        requests.put(url, json=ALWAYS_ANSWER, headers=admin, timeout=10)
        wiring.bot().forget(answering_shop.ws)


def test_maintenance_retires_unhelpful_articles_and_groups_unanswered_questions(answering_shop):
    """Last in this module: it retires an article of the answering shop."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    for _ in range(2):
        customer = answering_shop.customer()
        ack = say(customer, "优惠券怎么用")
        answer = bot_reply(customer, ack["conversationId"])
        assert answer["meta"]["articleId"] == "zh-coupons"
        customer.request({"action": "rate", "conversationId": ack["conversationId"], "seq": answer["seq"],
                          "helpful": False}, type="rated")
    url, admin = answering_shop.url("kb/maintain"), answering_shop.admin
    dry = requests.post(url, json={"dryRun": True, "minVotes": 2, "minHelpfulRate": 0.5}, headers=admin, timeout=30)
    assert dry.status_code == 200, dry.text
    report = dry.json()
    assert [a["id"] for a in report["retired"]] == ["zh-coupons"] and report["dryRun"] is True
    coupons = next(c for c in report["candidates"] if c["question"] == "优惠券怎么用")
    assert coupons["count"] == 2 and coupons["lang"] == "zh"
    article_url = answering_shop.url("kb/articles/zh-coupons")
    assert requests.get(article_url, headers=admin, timeout=10).json()["status"] == "active"  # a dry run
    assert requests.get(answering_shop.url("kb/maintenance"), headers=admin, timeout=10).json()["report"] is None

    kefu = Path(sys.executable).with_name("kefu")
    result = subprocess.run([str(kefu), "kb", "maintain", "--url", answering_shop.stack.base_url, "--workspace",
                             answering_shop.ws, "--agent", "admin", "--min-votes", "2"],
                            capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert "retired 1 article(s)" in result.stdout and "zh-coupons" in result.stdout
    assert "2x  优惠券怎么用" in result.stdout
    assert requests.get(article_url, headers=admin, timeout=10).json()["status"] == "retired"
    last = requests.get(answering_shop.url("kb/maintenance"), headers=admin, timeout=10).json()["report"]
    assert last["retired"][0]["id"] == "zh-coupons" and last["dryRun"] is False

    agent = {"Authorization": "Bearer " + answering_shop.token("agent", "agent-1")}
    assert requests.post(url, json={}, headers=agent, timeout=10).status_code == 403
    assert requests.post(url, json={"minVotes": 0}, headers=admin, timeout=10).status_code == 422
    assert requests.post(url, json={"dryRun": "yes"}, headers=admin, timeout=10).status_code == 422
