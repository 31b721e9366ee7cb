"""The bot's use cases: answer a question (Answerer) and rebuild a workspace's model (Trainer).

Answering: signals first (a request for a person, anger, a safety risk hand off whatever the
match), then the workspace's model ranks the articles and gives a calibrated confidence, then
one search-index round trip brings the favourites' content (and lexical candidates); the
thresholds turn the confidence into answer / review / handoff. Always a decision, never an error.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from ..knowledge import Article, FollowUp
from ..models import new_id, now_iso
from . import signals, text
from .model import Example, Model, train

log = logging.getLogger(__name__)

ANSWER_AT = 0.9
REVIEW_AT = 0.7
POINTER_TTL_S = 15.0  # how stale a cached model may be after a retrain

# Questions no store article answers, in both languages: calibration sees that unknown topics
# must not look confident (the KB's own examples only teach it about confusions between articles).
OFF_TOPIC = (
    "今天天气怎么样", "你是谁", "讲个笑话", "你叫什么名字", "明天会下雨吗", "股票今天涨了吗", "推荐一部电影",
    "附近有什么好吃的", "帮我写一首诗", "一加一等于几", "你喜欢什么颜色", "现在几点了", "我想学英语",
    "世界杯谁赢了", "怎么做红烧肉", "你们公司招人吗", "帮我订一张机票", "你会唱歌吗", "月亮为什么是圆的",
    "what's the weather like today", "who are you", "tell me a joke", "what time is it", "recommend a movie",
    "how do i cook pasta", "who won the game last night", "write me a poem", "what is the meaning of life",
    "how tall is mount everest", "do you like music", "what is two plus two", "book me a flight to paris",
    "are you hiring", "how do i learn python", "what's the capital of france", "translate hello to spanish",
)


# Decision.code: the reason as a stable identifier (Decision.reason says it in English)
REASON_CODES = ("confident", "likely", "not_confident", "asked_for_person", "safety", "anger", "no_words",
                "model_unavailable", "no_model", "search_unavailable", "no_article",
                "bot_off", "not_helpful")  # the last two: the bot's own (bot.py)
MISSED = ("likely", "not_confident", "no_article")


@dataclass(frozen=True)
class Thresholds:
    answer_at: float = ANSWER_AT
    review_at: float = REVIEW_AT

    @classmethod
    def from_dict(cls, data: dict | None) -> Thresholds:
        from ..errors import InvalidRequest

        data = data or {}
        answer_at, review_at = data.get("answerAt", ANSWER_AT), data.get("reviewAt", REVIEW_AT)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (answer_at, review_at)):
            raise InvalidRequest("answerAt and reviewAt must be numbers")
        answer_at, review_at = float(answer_at), float(review_at)
        if not 0.0 <= review_at <= answer_at <= 1.0:
            raise InvalidRequest("thresholds need 0 <= reviewAt <= answerAt <= 1")
        return cls(answer_at, review_at)


@dataclass
class Decision:
    decision: str  # answer | review | handoff
    confidence: float
    article_id: str | None
    answer: str | None
    reason: str
    title: str | None = None
    lang: str | None = None
    candidates: list = field(default_factory=list)
    slots: dict = field(default_factory=dict)
    model_version: str | None = None
    code: str = ""  # why, for programs and translations: see REASON_CODES

    def public(self) -> dict:
        return {"decision": self.decision, "confidence": round(self.confidence, 4), "article_id": self.article_id,
                "answer": self.answer, "reason": self.reason}

    def detail(self) -> dict:
        return {**self.public(), "reasonCode": self.code, "title": self.title, "lang": self.lang,
                "candidates": self.candidates, "slots": self.slots, "modelVersion": self.model_version}

    @property
    def missed(self) -> bool:
        """A question the knowledge base could not answer with confidence (not a request for a person,
        anger, a text without words or an outage): maintenance groups these into candidate articles."""
        return self.code in MISSED


class KnowledgeStore(Protocol):
    def list_articles(self, workspace: str) -> list[Article]: ...
    def model_pointer(self, workspace: str) -> dict | None: ...
    def set_model_pointer(self, workspace: str, pointer: dict) -> None: ...


class ModelBlobs(Protocol):
    def save(self, workspace: str, version: str, blob: bytes) -> str: ...
    def load(self, key: str) -> bytes: ...


class Candidates(Protocol):
    def candidates(self, workspace: str, text: str, boost_ids: list[str], size: int = 5) -> list[dict]: ...


class Models:
    """The current model per workspace, cached in the process; the pointer is re-read every
    POINTER_TTL_S so a retrain reaches warm containers within seconds."""

    def __init__(self, store: KnowledgeStore, blobs: ModelBlobs, ttl_s: float = POINTER_TTL_S):
        self.store, self.blobs, self.ttl_s = store, blobs, ttl_s
        self._cache: dict[str, tuple[float, str | None, Model | None]] = {}
        self._lock = threading.Lock()

    def current(self, workspace: str) -> tuple[str | None, Model | None]:
        now = time.monotonic()
        cached = self._cache.get(workspace)
        if cached and now - cached[0] < self.ttl_s:
            return cached[1], cached[2]
        pointer = self.store.model_pointer(workspace)
        version = pointer.get("version") if pointer else None
        model = cached[2] if cached and cached[1] == version else None
        if version and model is None:
            model = Model.loads(self.blobs.load(pointer["key"]))
        with self._lock:
            self._cache[workspace] = (now, version, model)
        return version, model

    def forget(self, workspace: str) -> None:
        self._cache.pop(workspace, None)


class Answerer:
    def __init__(self, models: Models, index: Candidates):
        self.models = models
        self.index = index

    def answer(self, workspace: str, question: str, *, slots: dict | None = None,
               thresholds: Thresholds | None = None) -> Decision:
        limits = thresholds or Thresholds()
        known = {**(slots or {}), **signals.slots(question)}
        question = question[: text.MAX_CHARS]
        if signals.wants_human(question):
            return Decision("handoff", 0.0, None, None, "the customer asked for a person", slots=known, code="asked_for_person")
        if signals.safety_risk(question):
            return Decision("handoff", 0.0, None, None, "a possible safety risk", slots=known, code="safety")
        if signals.anger(question) >= signals.ANGER_THRESHOLD:
            return Decision("handoff", 0.0, None, None, "strong negative sentiment", slots=known, code="anger")
        if text.language(question) is None:
            return Decision("handoff", 0.0, None, None, "no words to match (empty, or only digits, emoji or symbols)", slots=known,
                            code="no_words")
        try:
            version, model = self.models.current(workspace)
        except Exception:  # noqa: BLE001 - a broken model store must not break the conversation
            log.exception("answering model unavailable")
            return Decision("handoff", 0.0, None, None, "the answering model is unavailable", slots=known,
                            code="model_unavailable")
        if model is None:
            return Decision("handoff", 0.0, None, None, "the knowledge base has no trained model yet", slots=known,
                            code="no_model")

        try:
            prediction = model.predict(question)
        except Exception:  # noqa: BLE001 - a model that cannot score this text: a human can
            log.exception("answering model failed on a question")
            return Decision("handoff", 0.0, None, None, "the answering model is unavailable", slots=known,
                            model_version=version, code="model_unavailable")
        favourites = [article_id for article_id, _ in prediction.ranked]
        try:
            found = {c["id"]: c for c in self.index.candidates(workspace, question, favourites)}
        except Exception:  # noqa: BLE001 - search down: degrade to a human, the conversation goes on
            log.exception("knowledge search unavailable")
            return Decision("handoff", 0.0, None, None, "the knowledge search is unavailable", slots=known,
                            model_version=version, code="search_unavailable")
        ranked = [(a, p) for a, p in prediction.ranked if a in found]  # retired or deleted since training
        candidates = [{"id": a, "p": round(p, 4)} for a, p in ranked]
        if not ranked:
            return Decision("handoff", 0.0, None, None, "no active article matches", slots=known,
                            candidates=candidates, model_version=version, code="no_article")
        article_id = ranked[0][0]
        confidence = prediction.confidence if article_id == prediction.ranked[0][0] else 0.0
        hit = found[article_id]
        article = Article(workspace, article_id, hit["lang"], hit["title"], hit["answer"],
                          followups=tuple(FollowUp(dict(f.get("if", {})), f["say"]) for f in hit["followups"]))
        reply = article.reply(known)
        if confidence >= limits.answer_at:
            kind, code, reason = "answer", "confident", f"confident match ({confidence:.2f} >= {limits.answer_at})"
        elif confidence >= limits.review_at:
            kind, code, reason = "review", "likely", f"likely match ({confidence:.2f}): an agent reviews the suggested answer"
        else:
            kind, code, reason = "handoff", "not_confident", f"no confident match ({confidence:.2f} < {limits.review_at})"
        return Decision(kind, confidence, article_id, reply, reason, title=article.title, lang=article.lang,
                        candidates=candidates, slots=known, model_version=version, code=code)


class Trainer:
    """Rebuilds a workspace's model from its active articles and points the workspace at it."""

    def __init__(self, store: KnowledgeStore, blobs: ModelBlobs):
        self.store, self.blobs = store, blobs

    def rebuild(self, workspace: str) -> dict | None:
        articles = [a for a in self.store.list_articles(workspace) if a.status == "active"]
        examples = [Example(t, a.id) for a in articles for t in a.examples()]
        if not examples:
            self.store.set_model_pointer(workspace, {"version": None, "trainedAt": now_iso(), "info": {"articles": 0}})
            return None
        started = time.monotonic()
        model = train(examples + [Example(t, None) for t in OFF_TOPIC])
        version = new_id("m")
        key = self.blobs.save(workspace, version, model.dumps())
        pointer = {"version": version, "key": key, "trainedAt": now_iso(),
                   "trainSeconds": round(time.monotonic() - started, 2), "info": model.info}
        self.store.set_model_pointer(workspace, pointer)
        return pointer
