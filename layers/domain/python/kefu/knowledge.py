"""Knowledge-base articles: what they hold, how a JSON line becomes one, and follow-up steps.

The KB file format is JSON Lines, one article per line:
``{"id", "lang", "title", "answer", "questions": [...], "tags": [...]}`` plus optional
``status`` ("active" | "retired") and ``followups`` (below); other fields are ignored.

A follow-up step is ``{"if": {slot: value, ...}, "say": template}``: value true / false (false
also matches an absent slot), "*" (present, any value) or null (absent). The first step whose
conditions hold and whose ``{slot}`` placeholders are all known is appended to the answer.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field

from .errors import InvalidRequest
from .models import now_iso

LANGUAGES = ("zh", "en")
STATUSES = ("active", "retired")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
MAX_TITLE = 200
MAX_ANSWER = 4000
MAX_QUESTIONS = 500
MAX_QUESTION = 500
MAX_TAGS = 20
MAX_FOLLOWUPS = 10
MAX_IMPORT_LINES = 5000


@dataclass(frozen=True)
class FollowUp:
    conditions: dict
    say: str

    def applies(self, slots: dict) -> bool:
        for slot, wanted in self.conditions.items():
            have = slots.get(slot)
            if wanted == "*" and have is None:
                return False
            if wanted is None and have is not None:
                return False
            if isinstance(wanted, bool) and bool(have) != wanted:
                return False
        return all(slots.get(name) is not None for name in _placeholders(self.say))

    def render(self, slots: dict) -> str:
        return self.say.format_map({name: slots[name] for name in _placeholders(self.say)})

    def to_dict(self) -> dict:
        return {"if": dict(self.conditions), "say": self.say}


@dataclass(frozen=True)
class Article:
    workspace: str
    id: str
    lang: str
    title: str
    answer: str
    questions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    status: str = "active"
    followups: tuple[FollowUp, ...] = ()
    helpful: int = 0
    not_helpful: int = 0
    updated_at: str = field(default_factory=now_iso)

    def reply(self, slots: dict) -> str:
        """The answer, with the first follow-up step the conversation's slots allow."""
        for step in self.followups:
            if step.applies(slots):
                return f"{self.answer}\n{step.render(slots)}"
        return self.answer

    def examples(self) -> list[str]:
        """What the answering model learns this article from."""
        return [self.title, *self.questions]

    def public(self) -> dict:
        return {"id": self.id, "lang": self.lang, "title": self.title, "answer": self.answer,
                "questions": list(self.questions), "tags": list(self.tags), "status": self.status,
                "followups": [f.to_dict() for f in self.followups],
                "rating": {"helpful": self.helpful, "notHelpful": self.not_helpful}, "updatedAt": self.updated_at}


def _placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _text(value, name: str, limit: int, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise InvalidRequest(f"{name} must be a non-empty string")
    if len(value) > limit:
        raise InvalidRequest(f"{name} is longer than {limit} characters")
    return value.strip()


def _texts(value, name: str, limit: int, each: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest(f"{name} must be a list of strings")
    if len(value) > limit:
        raise InvalidRequest(f"{name} has more than {limit} entries")
    cleaned = [_text(v, f"{name}[{i}]", each) for i, v in enumerate(value)]
    return tuple(dict.fromkeys(cleaned))  # drop repeats, keep order


def _followups(value) -> tuple[FollowUp, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_FOLLOWUPS:
        raise InvalidRequest(f"followups must be a list of at most {MAX_FOLLOWUPS} steps")
    steps = []
    for i, step in enumerate(value):
        if not isinstance(step, dict) or not isinstance(step.get("if", {}), dict):
            raise InvalidRequest(f"followups[{i}] must be {{\"if\": {{slot: value}}, \"say\": text}}")
        conditions = step.get("if", {})
        for slot, wanted in conditions.items():
            if not isinstance(slot, str) or not (wanted is None or isinstance(wanted, bool) or wanted == "*"):
                raise InvalidRequest(f"followups[{i}].if.{slot}: a condition is true, false, \"*\" or null")
        say = _text(step.get("say"), f"followups[{i}].say", MAX_ANSWER)
        try:
            _placeholders(say)
        except ValueError as bad:
            raise InvalidRequest(f"followups[{i}].say: {bad}") from None
        steps.append(FollowUp(dict(conditions), say))
    return tuple(steps)


def parse_article(workspace: str, data, *, article_id: str | None = None) -> Article:
    """An Article from its JSON form (a KB line or a REST body); InvalidRequest says what is wrong."""
    if not isinstance(data, dict):
        raise InvalidRequest("an article is a JSON object")
    found_id = article_id or data.get("id")
    if not isinstance(found_id, str) or not ID_PATTERN.match(found_id):
        raise InvalidRequest("id must be 1-128 letters, digits, '_', '.', ':' or '-'")
    lang = data.get("lang")
    if lang not in LANGUAGES:
        raise InvalidRequest(f"lang must be one of {', '.join(LANGUAGES)}")
    status = data.get("status", "active")
    if status not in STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}")
    return Article(
        workspace=workspace,
        id=found_id,
        lang=lang,
        title=_text(data.get("title"), "title", MAX_TITLE),
        answer=_text(data.get("answer"), "answer", MAX_ANSWER),
        questions=_texts(data.get("questions"), "questions", MAX_QUESTIONS, MAX_QUESTION),
        tags=_texts(data.get("tags"), "tags", MAX_TAGS, 50),
        status=status,
        followups=_followups(data.get("followups")),
    )


def parse_jsonl(workspace: str, lines) -> tuple[list[Article], list[dict]]:
    """Articles from KB lines, and the errors of the lines that are not ({"line", "error"}).
    Blank lines are skipped; a later line with the same id replaces an earlier one."""
    articles: dict[str, Article] = {}
    errors: list[dict] = []
    for number, line in enumerate(lines, start=1):
        if number > MAX_IMPORT_LINES:
            errors.append({"line": number, "error": f"an import holds at most {MAX_IMPORT_LINES} articles"})
            break
        if not line.strip():
            continue
        try:
            article = parse_article(workspace, json.loads(line))
        except json.JSONDecodeError as bad:
            errors.append({"line": number, "error": f"not JSON: {bad.msg} at column {bad.colno}"})
            continue
        except InvalidRequest as bad:
            errors.append({"line": number, "error": bad.message})
            continue
        articles[article.id] = article
    return list(articles.values()), errors
