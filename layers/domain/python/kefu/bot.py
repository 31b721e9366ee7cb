"""The bot's part in a conversation: it owns a new conversation while the workspace has a bot and a
trained knowledge base, answers what it is sure of, hands over what it is not, and learns from
customers' ratings and agents' edits.

Per customer message (status "bot"), one decision from the Answerer (answering/answerer.py):
- answer: the article's answer as a bot message the customer can rate;
- review: the conversation goes to a human with the suggested answer, which the agent sends,
  edits or rejects in one action (`suggestion` frame);
- handoff: the conversation goes to a human (requests for a person, anger, no confident match).
Low-confidence questions are kept (misses) for maintenance to group into candidate articles.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .answering.answerer import Answerer, Decision, Thresholds
from .answering.signals import redact
from .answering.text import language as language_of
from .delivery import Delivery
from .errors import Conflict, ConversationClosed, Forbidden, InvalidFrame, InvalidRequest, NotFound
from .models import Conversation, Message, Principal, new_id, now_iso
from .ports import StateConflict, Store

if TYPE_CHECKING:
    from . import frames
    from .knowledge import Article
    from .router import Router

log = logging.getLogger(__name__)

SETTINGS_TTL_S = 15.0  # how long a changed bot setting may take to reach warm containers
MAX_NAME = 40
MAX_TEXT = 500
BOT_KEY = "bot"  # the bot's sender key: its clientMessageIds are unique per conversation

TEXTS = {
    "greeting": {"zh": "{name}您好！我是智能助手（机器人）。", "en": "Hi {name}, I'm the automated assistant."},
    "greetingAnonymous": {"zh": "您好！我是智能助手（机器人）。", "en": "Hi, I'm the automated assistant."},
    "handoff": {"zh": "正在为您转接人工客服，请稍候。", "en": "Let me connect you with a colleague — one moment, please."},
    "review": {"zh": "这个问题我请同事帮您确认一下，请稍候。",
               "en": "Let me have a colleague confirm this for you — one moment, please."},
    "notHelpful": {"zh": "抱歉没能帮到您，正在为您转接人工客服。",
                   "en": "Sorry that didn't help. I'm connecting you with a colleague."},
}


@dataclass(frozen=True)
class BotSettings:
    """A workspace's bot (kept on its WORKSPACE item; admins change it through the REST API)."""

    enabled: bool = True  # the bot only takes conversations once the knowledge base has a trained model
    name: str = "智能助手"
    thresholds: Thresholds = field(default_factory=Thresholds)
    handoff_on_not_helpful: bool = True
    texts: dict = field(default_factory=lambda: {k: dict(v) for k, v in TEXTS.items()})

    @classmethod
    def from_dict(cls, data: dict | None) -> BotSettings:
        data = data or {}
        if not isinstance(data, dict):
            raise InvalidRequest("bot settings must be an object")
        name = data.get("name", cls.name)
        if not isinstance(name, str) or not 0 < len(name.strip()) <= MAX_NAME:
            raise InvalidRequest(f"name must be 1 to {MAX_NAME} characters")
        texts = {k: dict(v) for k, v in TEXTS.items()}
        given = data.get("texts", {})
        if not isinstance(given, dict):
            raise InvalidRequest("texts must be an object")
        for key, by_lang in given.items():
            if key not in TEXTS or not isinstance(by_lang, dict):
                raise InvalidRequest(f"texts.{key}: not one of {', '.join(TEXTS)} (each {{\"zh\": ..., \"en\": ...}})")
            for lang, value in by_lang.items():
                if lang not in ("zh", "en") or not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
                    raise InvalidRequest(f"texts.{key}.{lang}: zh or en, 1 to {MAX_TEXT} characters")
                if key == "greeting" and "{name}" not in value:
                    raise InvalidRequest("texts.greeting needs the {name} placeholder (greetingAnonymous has none)")
                texts[key][lang] = value
        for flag in ("enabled", "handoffOnNotHelpful"):
            if flag in data and not isinstance(data[flag], bool):
                raise InvalidRequest(f"{flag} must be true or false")
        try:
            thresholds = Thresholds.from_dict(data)
        except (TypeError, ValueError):
            raise InvalidRequest("answerAt and reviewAt must be numbers") from None
        return cls(enabled=data.get("enabled", True), name=name.strip(), thresholds=thresholds,
                   handoff_on_not_helpful=data.get("handoffOnNotHelpful", True), texts=texts)

    @classmethod
    def stored(cls, data: dict | None) -> BotSettings:
        """The settings as stored; the defaults if they no longer validate (stored before a rule existed)."""
        try:
            return cls.from_dict(data)
        except InvalidRequest as error:
            log.warning("bot settings unusable, using defaults: %s", error.message)
            return cls()

    def to_dict(self) -> dict:
        return {"enabled": self.enabled, "name": self.name, "answerAt": self.thresholds.answer_at,
                "reviewAt": self.thresholds.review_at, "handoffOnNotHelpful": self.handoff_on_not_helpful,
                "texts": self.texts}

    def text(self, key: str, lang: str, **values) -> str:
        return self.texts[key].get(lang, self.texts[key]["zh"]).replace("{name}", values.get("name", ""))

    def sender(self) -> dict:
        return {"role": "bot", "id": "bot", "name": self.name}


class Bot:
    def __init__(self, store: Store, delivery: Delivery, router: Router, answerer: Answerer, knowledge,
                 ttl_s: float = SETTINGS_TTL_S):
        self.store = store
        self.delivery = delivery
        self.router = router
        self.answerer = answerer
        self.knowledge = knowledge
        self.ttl_s = ttl_s
        self._settings: dict[str, tuple[float, BotSettings]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ settings

    def settings(self, workspace: str) -> BotSettings:
        cached = self._settings.get(workspace)
        if cached and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        settings = BotSettings.stored(self.store.bot_settings(workspace))
        with self._lock:
            self._settings[workspace] = (time.monotonic(), settings)
        return settings

    def forget(self, workspace: str) -> None:
        self._settings.pop(workspace, None)

    def takes(self, workspace: str) -> bool:
        """Whether a new conversation of this workspace starts with the bot."""
        if not self.settings(workspace).enabled:
            return False
        try:
            return self.answerer.models.current(workspace)[1] is not None
        except Exception:  # noqa: BLE001 - no model store, no bot: the humans take it
            log.exception("answering model unavailable; the conversation goes to a human")
            return False

    # ------------------------------------------------------------ a customer's message

    def on_customer_message(self, conversation: Conversation, message: Message) -> Decision | None:
        """Answer, suggest or hand over. Never raises for the bot's own troubles: the customer's message
        is stored already, and a failing bot hands the conversation to a human instead."""
        try:
            return self._turn(conversation, message)
        except StateConflict:
            return None  # routed, taken over or closed meanwhile: not the bot's any more
        except Exception:  # noqa: BLE001
            log.exception("bot turn failed; handing over")
            self._hand_over(conversation, None, "the bot failed (bot_failed)")
            return None

    def _turn(self, conversation: Conversation, message: Message) -> Decision:
        ws = conversation.workspace
        settings = self.settings(ws)
        memory = dict(conversation.bot or {})
        if settings.enabled:
            decision = self.answerer.answer(ws, message.text, slots=memory.get("slots") or {},
                                            thresholds=settings.thresholds)
        else:  # switched off while it had this conversation: the humans take over
            decision = Decision("handoff", 0.0, None, None, "the bot is switched off", slots=memory.get("slots") or {},
                                code="bot_off")
        lang = decision.lang or _language(message.text, conversation.language)
        greeting = "" if memory.get("turns") else self._greeting(settings, conversation, lang)
        remembered = {"slots": decision.slots, "turns": int(memory.get("turns", 0)) + 1}
        meta = {"decision": decision.decision, "reasonCode": decision.code,
                "confidence": round(decision.confidence, 4), "questionSeq": message.seq}
        if decision.article_id is not None:
            meta |= {"articleId": decision.article_id, "title": decision.title}

        if decision.decision == "answer":
            self.store.remember(conversation, remembered)  # StateConflict: someone else has it now
            self.delivery.post(conversation, settings.sender(), _join(greeting, decision.answer),
                               client_message_id=f"bot-{message.seq}", sender_key=BOT_KEY,
                               meta={**meta, "rateable": True})
            return decision  # counted from the stream (metrics.counters_for), like every decision

        if decision.missed:
            self._miss(ws, message.text, decision)
        suggestion = None
        if decision.decision == "review":
            suggestion = {"id": new_id("s"), "articleId": decision.article_id, "title": decision.title,
                          "answer": decision.answer, "confidence": round(decision.confidence, 4),
                          "question": message.text, "questionSeq": message.seq, "lang": lang,
                          "createdAt": now_iso()}
        self.store.remember(conversation, remembered)
        note = settings.text("review" if suggestion else "handoff", lang)
        self.delivery.post(conversation, settings.sender(), _join(greeting, note),
                           client_message_id=f"bot-{message.seq}", sender_key=BOT_KEY, meta=meta)
        self._hand_over(conversation, suggestion, decision.reason)
        return decision

    def _hand_over(self, conversation: Conversation, suggestion: dict | None, reason: str) -> None:
        try:
            self.store.leave_bot(conversation, suggestion)
        except StateConflict:
            return  # the customer or a supervisor routed it meanwhile
        conversation.status, conversation.suggestion = "open", suggestion
        self.router.dispatch(conversation, note=f"bot: {reason}")

    def _greeting(self, settings: BotSettings, conversation: Conversation, lang: str) -> str:
        name = conversation.customer_name.strip()
        return settings.text("greeting", lang, name=name) if name else settings.text("greetingAnonymous", lang)

    def _miss(self, workspace: str, question: str, decision: Decision) -> None:
        try:
            text = redact(question)[:500]
            if not text:
                return
            self.store.record_miss(workspace, {"text": text, "decision": decision.decision,
                                               "confidence": round(decision.confidence, 4),
                                               "articleId": decision.article_id, "at": now_iso()})
        except Exception:  # noqa: BLE001 - a lost miss costs a statistic, not the conversation
            log.exception("could not record a missed question")

    def _participant(self, who: Principal, conversation_id: str) -> Conversation:
        """The conversation if the caller takes part in it; the same NotFound for any other id."""
        conversation = self.store.get_conversation(who.workspace, conversation_id)
        if conversation is None or not conversation.is_participant(who):
            raise NotFound("no such conversation")
        return conversation

    # ------------------------------------------------------------ ratings

    def rate(self, who: Principal, frame: frames.RateFrame) -> dict:
        if who.role != "customer":
            raise Forbidden("only the customer rates the bot's answers")
        conversation = self._participant(who, frame.conversationId)
        answer = self.store.get_message(who.workspace, conversation.id, frame.seq)
        if answer is None or answer.sender.get("role") != "bot" or not (answer.meta or {}).get("rateable"):
            raise InvalidFrame(f"message {frame.seq} is not an answer of the bot")
        article_id = answer.meta["articleId"]
        reply = {"type": "rated", "conversationId": conversation.id, "seq": frame.seq, "helpful": frame.helpful,
                 "handoff": False}
        first = self.store.record_rating(conversation, frame.seq, article_id, frame.helpful)
        if not first and self.store.rating(conversation, frame.seq) != frame.helpful:
            raise Conflict("this answer was already rated the other way")
        if first:  # a resend of the same vote counts once
            self.knowledge.rate(who.workspace, article_id, frame.helpful)
            self.store.add_counter(who.workspace, "bot.helpful" if frame.helpful else "bot.not_helpful")
        settings = self.settings(who.workspace)
        # (on a resend too: if the handover failed the first time, the customer still gets a human)
        if not frame.helpful and settings.handoff_on_not_helpful and conversation.status == "bot":
            question = self.store.get_message(who.workspace, conversation.id, int(answer.meta.get("questionSeq", 0)))
            if question is not None and first:
                self._miss(who.workspace, question.text, Decision("handoff", float(answer.meta.get("confidence", 0)),
                                                                  article_id, None, "rated not helpful",
                                                                  code="not_helpful"))
            lang = _language(question.text if question else "", conversation.language)
            self.delivery.post(conversation, settings.sender(), settings.text("notHelpful", lang),
                               client_message_id=f"bot-rated-{frame.seq}", sender_key=BOT_KEY,
                               meta={"decision": "handoff"})
            self._hand_over(conversation, None, "the customer found an answer unhelpful")
            reply["handoff"] = True
        return reply

    # ------------------------------------------------------------ the agent's review

    def act_on_suggestion(self, who: Principal, frame: frames.SuggestionFrame) -> dict:
        if who.role != "agent":
            raise Forbidden("suggestions are for agents")
        conversation = self._participant(who, frame.conversationId)
        if conversation.status == "closed":
            raise ConversationClosed("the conversation is closed")
        suggestion = conversation.suggestion
        sent_as = f"sug-{frame.suggestionId}"  # one message per suggestion, however often it is sent
        if not suggestion or suggestion.get("id") != frame.suggestionId:
            earlier = self.store.find_message(who.workspace, conversation.id, who.key, sent_as)
            if earlier is not None and frame.decision != "reject":  # a retry after a lost reply: same result
                return self._acted(conversation, frame, earlier.seq, None)
            raise NotFound("no such suggestion waiting (already sent or rejected?)")
        message = None
        if frame.decision != "reject":
            text = suggestion["answer"] if frame.decision == "send" else frame.text
            message = self.delivery.post(
                conversation, who.sender(), text, client_message_id=sent_as, sender_key=who.key,
                meta={"suggestion": {"articleId": suggestion.get("articleId"), "edited": frame.decision == "edit"}})
            if message is None:
                raise ConversationClosed("the conversation closed meanwhile")
        try:  # only now: a send that failed above leaves the suggestion waiting for another try
            self.store.clear_suggestion(conversation, frame.suggestionId)
        except StateConflict:
            if message is None:
                raise Conflict("this suggestion was already sent or rejected") from None
            return self._acted(conversation, frame, message.seq, None)  # a concurrent send of the same
        saved = self._save(who.workspace, suggestion, frame) if frame.saveAs else None
        self.store.add_counter(who.workspace, f"bot.suggestion.{frame.decision}")
        return self._acted(conversation, frame, message.seq if message else None, saved)

    @staticmethod
    def _acted(conversation: Conversation, frame: frames.SuggestionFrame, seq: int | None, saved: str | None) -> dict:
        return {"type": "suggestion", "conversationId": conversation.id, "suggestionId": frame.suggestionId,
                "decision": frame.decision, "seq": seq, "savedArticleId": saved}

    def _save(self, workspace: str, suggestion: dict, frame: frames.SuggestionFrame) -> str:
        """Save as answer: the customer's question joins the article's examples; an edit becomes its answer
        (improve) or a new article's (new). The model retrains from the stream within seconds."""
        from .knowledge import MAX_QUESTIONS, MAX_TITLE, parse_article

        question = redact(str(suggestion.get("question") or ""))[:500]  # the article keeps no one's order number
        answer = redact(frame.text) if frame.decision == "edit" else ""  # a send keeps the article's answer
        current: Article | None = None
        if frame.saveAs == "improve" and suggestion.get("articleId"):
            current = self.knowledge.get_article(workspace, suggestion["articleId"])
        if current is not None:
            questions = tuple(dict.fromkeys([*current.questions, *([question] if question else [])]))[-MAX_QUESTIONS:]
            updated = replace(current, answer=answer or current.answer,
                              questions=questions, updated_at=now_iso())
            return self.knowledge.put_article(updated).id
        if not answer:  # the suggested article is gone, or the edit was nothing but personal data
            raise InvalidFrame("nothing to save: the article no longer exists or the answer is empty once "
                               "personal data is removed")
        lang = suggestion.get("lang") if suggestion.get("lang") in ("zh", "en") else _language(question, None)
        article = parse_article(workspace, {"id": new_id("saved"), "lang": lang, "title": question[:MAX_TITLE] or answer[:80],
                                            "answer": answer, "questions": [question] if question else [],
                                            "tags": ["saved-by-agent"]})
        return self.knowledge.put_article(article).id


def _join(greeting: str, text: str) -> str:
    return f"{greeting}\n{text}" if greeting else text


def _language(text: str, fallback: str | None) -> str:
    found = language_of(text) if text else None
    if found:
        return found
    base = (fallback or "zh").split("-")[0].lower()
    return base if base in ("zh", "en") else "zh"
