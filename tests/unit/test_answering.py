"""The bot's pure parts: text features, signals, slots, articles, the model and the Answerer."""

from __future__ import annotations

import io
import itertools
import json

import numpy as np
import pytest

from kefu.answering import signals, text
from kefu.answering.answerer import Answerer, Decision, Models, Thresholds, Trainer
from kefu.answering.model import ANSWER_AT, REVIEW_AT, SURE, Example, Model, _fit_logistic, _reshape, train
from kefu.errors import InvalidRequest
from kefu.knowledge import Article, FollowUp, parse_article, parse_jsonl


# ------------------------------------------------------------------ text and signals

def test_features_cover_chinese_bigrams_and_english_char_grams():
    grams = text.grams("我想退货 Refunds")
    assert grams["w:退"] == 1 and grams["w:退 货"] == 1 and grams["w:refunds"] == 1
    assert grams["c:ref"] == 1 and grams["c: re"] == 1
    assert text.grams("ＡＢＣ") == text.grams("abc")  # full-width folds to ASCII


@pytest.mark.parametrize("sample,expected", [("怎么退货", "zh"), ("how do I return it", "en"), ("退货 please", "zh"),
                                             ("😀😀", None), ("", None), ("12345 !!", None)])
def test_language(sample, expected):
    assert text.language(sample) == expected


@pytest.mark.parametrize("sample", ["转人工", "人工客服", "我要找经理", "叫你们主管来", "不要机器人", "Talk to a human please",
                                    "can I speak with a real person", "connect me to an agent", "agent please"])
def test_requests_for_a_person(sample):
    assert signals.wants_human(sample)


@pytest.mark.parametrize("sample", ["退货怎么申请", "人生苦短", "how do I reset my password", "what are your opening hours"])
def test_ordinary_questions_are_not_requests_for_a_person(sample):
    assert not signals.wants_human(sample)


@pytest.mark.parametrize("sample", ["你们就是骗子，我要投诉", "再不退款我就起诉你们", "I will sue you", "This is a scam, I'm filing a complaint",
                                    "terrible service, still not delivered!!"])
def test_strong_negative_sentiment(sample):
    assert signals.anger(sample) >= signals.ANGER_THRESHOLD


@pytest.mark.parametrize("sample", ["谢谢，怎么退货", "thanks, how long does delivery take?", "还没收到货，可以查一下吗"])
def test_mild_text_is_not_anger(sample):
    assert signals.anger(sample) < signals.ANGER_THRESHOLD


def test_slots_from_messages():
    assert signals.slots("订单号 2024061812345 想退货") == {"order_id": "2024061812345"}
    assert signals.slots("my order number is AB123456") == {"order_id": "AB123456"}
    found = signals.slots("我已经申请了退货，退货单号 SF1234567890")
    assert found == {"return_requested": True, "return_tracking": "SF1234567890"}
    assert signals.slots("I already requested a return") == {"return_requested": True}
    assert signals.slots("你好") == {}


# ------------------------------------------------------------------ articles

def test_parse_article_validates_every_field():
    good = {"id": "a1", "lang": "zh", "title": "退货", "answer": "七天无理由", "questions": ["怎么退", "怎么退"], "tags": ["售后"]}
    article = parse_article("ws", good)
    assert article.questions == ("怎么退",)
    for bad, word in (({**good, "id": "a b"}, "id"), ({**good, "lang": "fr"}, "lang"), ({**good, "title": ""}, "title"),
                      ({**good, "answer": "x" * 5000}, "answer"), ({**good, "questions": "x"}, "questions"),
                      ({**good, "status": "gone"}, "status"), ({**good, "followups": [{"if": {"a": 3}, "say": "x"}]}, "followups"),
                      ({**good, "followups": [{"say": "{unclosed"}]}, "followups")):
        with pytest.raises(InvalidRequest, match=word):
            parse_article("ws", bad)


def test_jsonl_reports_bad_lines_and_keeps_the_good_ones():
    lines = [json.dumps({"id": "a", "lang": "en", "title": "T", "answer": "A"}), "", "{oops",
             json.dumps({"id": "b", "lang": "xx", "title": "T", "answer": "A"}),
             json.dumps({"id": "a", "lang": "en", "title": "T2", "answer": "A2", "extra": 1})]
    articles, errors = parse_jsonl("ws", lines)
    assert [a.title for a in articles] == ["T2"]
    assert [e["line"] for e in errors] == [3, 4]


def test_followups_pick_the_first_step_the_slots_allow():
    steps = (FollowUp({"return_requested": True, "return_tracking": "*"}, "tracking {return_tracking}"),
             FollowUp({"return_requested": True}, "see your returns"),
             FollowUp({"return_requested": False, "order_id": "*"}, "apply for {order_id}"),
             FollowUp({"return_requested": False}, "tell me your order number"))
    article = Article("ws", "r", "en", "Returns", "7 days.", followups=steps)
    assert article.reply({}) == "7 days.\ntell me your order number"
    assert article.reply({"order_id": "X1"}).endswith("apply for X1")
    assert article.reply({"return_requested": True}).endswith("see your returns")
    assert article.reply({"return_requested": True, "return_tracking": "SF1"}).endswith("tracking SF1")


# ------------------------------------------------------------------ the model

TOPICS = {
    "returns": ["how do I return an item", "I want to send this back", "return policy", "can I return my shoes",
                "returning a product", "send back the jacket", "how to return goods", "start a return"],
    "delivery": ["when will my parcel arrive", "delivery time", "how long does shipping take", "where is my package",
                 "shipping takes how many days", "track my delivery", "has my order shipped", "parcel arrival date"],
    "password": ["I forgot my password", "reset password", "can't log in", "change my password",
                 "login problem password", "recover my account password", "password not working", "new password please"],
}


@pytest.fixture(scope="module")
def model() -> Model:
    examples = [Example(q, topic) for topic, qs in TOPICS.items() for q in qs]
    return train(examples + [Example("what's the weather", None), Example("tell me a joke", None)])


def test_model_ranks_the_right_topic_and_round_trips(model):
    prediction = model.predict("how long until my parcel is delivered")
    assert prediction.ranked[0][0] == "delivery"
    assert 0.0 <= prediction.confidence <= 1.0
    again = Model.loads(model.dumps())
    assert again.predict("how long until my parcel is delivered").ranked[0][0] == "delivery"
    assert again.info == model.info


def test_unknown_words_get_no_confidence(model):
    assert model.predict("zxqv blorf").confidence == 0.0
    assert model.predict("").confidence == 0.0


def test_model_refuses_to_train_on_nothing():
    with pytest.raises(ValueError):
        train([Example("hello", None)])


def test_model_format_is_checked(model):
    with pytest.raises(Exception):
        Model.loads(b"not a model")
    with pytest.raises(ValueError, match="format"):
        Model.loads(_rewritten(model.dumps(), format=np.asarray([99])))


def _rewritten(blob: bytes, drop: tuple = (), **fields) -> bytes:
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k not in drop}
    out = io.BytesIO()
    np.savez_compressed(out, **{**arrays, **fields})
    return out.getvalue()


def test_format_1_models_still_load(model):
    old = Model.loads(_rewritten(model.dumps(), drop=("sure",), format=np.asarray([1]), calibrator=model.calibrator[[0, 1, 2, 3, -1]]))
    assert old.sure == ANSWER_AT  # no reshaping: the confidence is the old calibrator's
    prediction = old.predict("how long until my parcel is delivered")
    assert prediction.ranked[0][0] == "delivery" and 0.0 <= prediction.confidence <= 1.0


def test_small_knowledge_bases_are_trained_to_convergence(model):
    # MIN_STEPS: 26 examples are one batch, twenty epochs would leave every probability near 1/3
    assert model.predict("reset password").ranked[0][1] > 0.8


def test_confidence_is_reshaped_so_the_answer_threshold_means_sure():
    assert _reshape(0.5) == 0.5 and _reshape(REVIEW_AT) == REVIEW_AT
    assert _reshape(SURE) == pytest.approx(ANSWER_AT) and _reshape(1.0) == pytest.approx(1.0)
    grid = [i / 1000 for i in range(1001)]
    assert all(_reshape(x) <= _reshape(y) for x, y in itertools.pairwise(grid))
    assert all(_reshape(x, sure=ANSWER_AT) == pytest.approx(x) for x in grid)  # format-1 models: unchanged


def test_calibrator_weights_samples():
    x = np.asarray([[0.0], [1.0], [2.0], [3.0], [1.5], [1.5]])
    y = np.asarray([0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    ignored = _fit_logistic(x, y, weights=np.asarray([1.0, 1.0, 1.0, 1.0, 1.0, 0.0]))
    plain = _fit_logistic(x[:5], y[:5])
    assert np.allclose(ignored, plain, atol=1e-6)


def test_unseen_articles_teach_the_calibrator_doubt():
    # twelve articles: each fold also leaves whole articles out, whose questions it must get wrong
    topics = {f"t{i}": [f"question {w} number {i}" for w in ("one", "two", "three", "four", "five", "six")] for i in range(12)}
    trained = train([Example(q, t) for t, qs in topics.items() for q in qs])
    assert trained.info["heldOutAccuracy"] < 1.0
    assert trained.predict("question two number 7").ranked[0][0] == "t7"


# ------------------------------------------------------------------ the Answerer with in-memory ports

class MemoryKnowledge:
    def __init__(self, articles):
        self.articles, self.pointers = articles, {}

    def list_articles(self, workspace):
        return [a for a in self.articles if a.workspace == workspace]

    def model_pointer(self, workspace):
        return self.pointers.get(workspace)

    def set_model_pointer(self, workspace, pointer):
        self.pointers[workspace] = pointer


class MemoryBlobs:
    def __init__(self):
        self.blobs = {}

    def save(self, workspace, version, blob):
        self.blobs[f"{workspace}/{version}"] = blob
        return f"{workspace}/{version}"

    def load(self, key):
        return self.blobs[key]


class MemoryIndex:
    def __init__(self, knowledge, fail=False):
        self.knowledge, self.fail = knowledge, fail

    def candidates(self, workspace, text_, boost_ids, size=5):
        if self.fail:
            raise ConnectionError("search down")
        by_id = {a.id: a for a in self.knowledge.list_articles(workspace) if a.status == "active"}
        return [{"id": i, "lang": by_id[i].lang, "title": by_id[i].title, "answer": by_id[i].answer,
                 "followups": [f.to_dict() for f in by_id[i].followups], "rank": n}
                for n, i in enumerate(boost_ids) if i in by_id]


@pytest.fixture()
def bot():
    articles = [Article("ws", topic, "en", topic.title(), f"About {topic}.", questions=tuple(qs))
                for topic, qs in TOPICS.items()]
    knowledge = MemoryKnowledge(articles)
    blobs = MemoryBlobs()
    assert Trainer(knowledge, blobs).rebuild("ws")["info"]["articles"] == 3
    return Answerer(Models(knowledge, blobs), MemoryIndex(knowledge)), knowledge, blobs


def test_answerer_decides_by_thresholds(bot):
    answerer = bot[0]
    decision = answerer.answer("ws", "how long does delivery take")
    assert decision.article_id == "delivery" and decision.answer == "About delivery."
    always = answerer.answer("ws", "how long does delivery take", thresholds=Thresholds(0.0, 0.0))
    assert always.decision == "answer"
    never = answerer.answer("ws", "how long does delivery take", thresholds=Thresholds(1.0, 1.0))
    assert never.decision == "handoff" and never.article_id == "delivery"


@pytest.mark.parametrize("sample,reason", [("talk to a human", "person"), ("I will sue you, this is a scam", "sentiment"),
                                           ("😀", "no words"), ("", "no words"), ("the charger caught fire", "safety")])
def test_answerer_hands_off_on_signals(bot, sample, reason):
    decision = bot[0].answer("ws", sample)
    assert decision.decision == "handoff" and reason in decision.reason


def test_answerer_degrades_to_handoff_without_search_or_model(bot):
    answerer, knowledge, blobs = bot
    down = Answerer(answerer.models, MemoryIndex(knowledge, fail=True))
    assert "unavailable" in down.answer("ws", "reset password").reason
    assert "no trained model" in answerer.answer("other", "reset password").reason


def test_thresholds_are_validated():
    assert Thresholds.from_dict({"answerAt": 0.95, "reviewAt": 0.6}) == Thresholds(0.95, 0.6)
    with pytest.raises(InvalidRequest):
        Thresholds.from_dict({"answerAt": 0.5, "reviewAt": 0.6})


def test_decision_public_shape():
    assert set(Decision("handoff", 0.1234567, None, None, "x").public()) == {
        "decision", "confidence", "article_id", "answer", "reason"}


def test_a_one_article_kb_never_answers_alone():
    model = train([Example("怎么退货", "returns"), Example("退货流程是怎样的", "returns"),
                   Example("how do i return an item", "returns"), Example("今天天气怎么样", None)])
    assert model.predict("怎么退货").confidence < ANSWER_AT  # at most a review: an agent confirms
    assert model.predict("怎么退货").confidence >= REVIEW_AT
    assert model.predict("推荐一部好看的电影").confidence < REVIEW_AT  # off topic: a human
