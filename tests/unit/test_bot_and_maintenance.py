"""Pure parts of the bot and of knowledge-base maintenance: settings, frames, retiring, grouping questions."""

from __future__ import annotations

import pytest

from kefu import frames
from kefu.answering.maintenance import Policy, cluster_questions, retire_candidates
from kefu.bot import BotSettings, _language
from kefu.errors import InvalidFrame, InvalidRequest
from kefu.knowledge import Article


# ---------------------------------------------------------------- bot settings


def test_bot_settings_default_to_the_spec_thresholds_and_round_trip():
    settings = BotSettings.from_dict({})
    assert settings.enabled and settings.thresholds.answer_at == 0.9 and settings.thresholds.review_at == 0.7
    assert BotSettings.from_dict(settings.to_dict()) == settings
    custom = BotSettings.from_dict({"name": "小K", "answerAt": 0.95, "reviewAt": 0.6,
                                    "texts": {"greeting": {"en": "Hello {name}! I am a bot."}}})
    assert custom.text("greeting", "en", name="Ann") == "Hello Ann! I am a bot."
    assert custom.text("greeting", "zh", name="张三").startswith("张三您好")  # the default kept for zh
    assert custom.sender() == {"role": "bot", "id": "bot", "name": "小K"}


@pytest.mark.parametrize("bad", [
    {"answerAt": 1.2}, {"answerAt": 0.6, "reviewAt": 0.7}, {"reviewAt": "low"}, {"answerAt": "0.95"},
    {"reviewAt": True}, {"name": " "}, {"name": "x" * 41},
    {"texts": {"farewell": {"zh": "再见"}}}, {"texts": {"handoff": {"fr": "un instant"}}},
    {"texts": {"handoff": {"zh": ""}}}, {"texts": {"greeting": {"en": "Hello!"}}}, {"enabled": 1}, {"texts": []},
])
def test_bad_bot_settings_are_refused_with_a_reason(bad):
    with pytest.raises(InvalidRequest) as refused:
        BotSettings.from_dict(bad)
    assert refused.value.message


def test_the_reply_language_follows_the_text_then_the_conversation():
    assert _language("How do I return this?", "zh") == "en"
    assert _language("怎么退货", "en") == "zh"
    assert _language("😀", "en-US") == "en"
    assert _language("", None) == "zh"
    assert _language("!!!", "fr") == "zh"


# ---------------------------------------------------------------- frames


def test_rate_and_suggestion_frames_are_validated():
    rate = frames.parse('{"action":"rate","conversationId":"c_1","seq":3,"helpful":false}')
    assert isinstance(rate, frames.RateFrame) and rate.helpful is False
    for body in ('{"action":"rate","conversationId":"c_1","seq":0,"helpful":true}',
                 '{"action":"rate","conversationId":"c_1","seq":2}',
                 '{"action":"suggestion","conversationId":"c_1","suggestionId":"s_1","decision":"edit"}',
                 '{"action":"suggestion","conversationId":"c_1","suggestionId":"s_1","decision":"send","text":"x"}',
                 '{"action":"suggestion","conversationId":"c_1","suggestionId":"s_1","decision":"reject","saveAs":"new"}',
                 '{"action":"suggestion","conversationId":"c_1","suggestionId":"s_1","decision":"maybe"}',
                 '{"action":"suggestion","conversationId":"c_1","suggestionId":"s_1","decision":"send","saveAs":"new"}',
                 '{"action":"suggestion","conversationId":"c_1","suggestionId":"s_1","decision":"edit","text":"   "}'):
        with pytest.raises(InvalidFrame):
            frames.parse(body)
    edit = frames.parse('{"action":"suggestion","conversationId":"c_1","suggestionId":"s_1","decision":"edit",'
                        '"text":" better ","saveAs":"improve"}')
    assert edit.text == "better" and edit.saveAs == "improve"


# ---------------------------------------------------------------- maintenance


def _article(article_id: str, helpful: int, not_helpful: int, status: str = "active") -> Article:
    return Article("ws", article_id, "zh", article_id, "answer", status=status, helpful=helpful,
                   not_helpful=not_helpful)


def test_articles_retire_below_the_helpful_rate_only_with_enough_votes():
    articles = [_article("bad", 2, 8), _article("few-votes", 0, 9), _article("good", 9, 1),
                _article("borderline", 5, 5), _article("already", 0, 20, status="retired"), _article("worse", 1, 19)]
    found = retire_candidates(articles, Policy(min_votes=10, min_helpful_rate=0.5))
    assert [a["id"] for a in found] == ["worse", "bad"]  # worst first
    assert found[1] == {"id": "bad", "title": "bad", "helpful": 2, "notHelpful": 8, "helpfulRate": 0.2}
    assert [a["id"] for a in retire_candidates(articles, Policy(min_votes=9, min_helpful_rate=0.6))] == [
        "few-votes", "worse", "bad", "borderline"]


def test_unanswered_questions_group_by_similarity_most_asked_first():
    questions = (["能开增值税专用发票吗"] * 3 + ["可以开专用发票吗", "增值税专用发票怎么开"]
                 + ["do you ship to canada", "Do you ship to Canada?", "shipping to canada"]
                 + ["会员生日有礼物吗", "", "😀", "   "])
    groups = cluster_questions(questions, Policy(similarity=0.3))
    assert groups[0]["count"] == 5 and groups[0]["question"] == "能开增值税专用发票吗" and groups[0]["lang"] == "zh"
    assert set(groups[0]["examples"]) == {"能开增值税专用发票吗", "可以开专用发票吗", "增值税专用发票怎么开"}
    assert groups[1]["count"] == 3 and groups[1]["lang"] == "en" and groups[1]["wordings"] == 2
    assert groups[2] == {"count": 1, "question": "会员生日有礼物吗", "lang": "zh", "examples": ["会员生日有礼物吗"],
                         "wordings": 1}
    assert len(groups) == 3  # empty and emoji-only questions are not candidates
    assert len(cluster_questions(questions, Policy(similarity=0.3, max_candidates=1))) == 1
    assert cluster_questions([]) == []


@pytest.mark.parametrize("bad", [{"minVotes": 0}, {"minHelpfulRate": 1.5}, {"days": 365}, {"similarity": 0},
                                 {"maxCandidates": "many"}, {"minVotes": 2.5}, {"minVotes": "3"},
                                 {"minHelpfulRate": "0.4"}, {"days": True}])
def test_bad_maintenance_policies_are_refused(bad):
    with pytest.raises(InvalidRequest):
        Policy.from_dict(bad)


def test_personal_data_is_redacted_from_what_the_bot_keeps():
    from kefu.answering.signals import redact

    assert redact("我的订单号是2024112100123，怎么退货") == "我的订单号是，怎么退货"
    assert redact("退货单号SF1234567890到哪了") == "退货单号到哪了"
    assert redact("mail a.b@example.com or call +86 138 0013 8000") == "mail or call"
    assert redact("order ABC-12345 late") == "order late"
    for kept in ("iPhone 15 Pro 保修多久", "买了2件，退1件", "RTX4090 warranty", "7天无理由退货"):
        assert redact(kept) == kept
