"""Keeping the knowledge base healthy: retire what customers keep rating unhelpful, and group the
questions the bot could not answer into candidate new articles.

Runs on a schedule (EventBridge → kb_maintain on AWS) and on demand (`kefu kb maintain`, REST
POST /kb/maintain). Pure planning here (policy, retire_candidates, cluster_questions); the
Maintainer applies a plan and keeps its report on the Knowledge table.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol

from ..errors import InvalidRequest
from ..knowledge import Article
from ..models import now_iso
from . import text

MAX_CLUSTER_EXAMPLES = 5
MAX_MISSES = 5000  # the most recent unanswered questions a run groups (keeps a run within seconds)


@dataclass(frozen=True)
class Policy:
    min_votes: int = 10  # fewer votes say nothing about an article
    min_helpful_rate: float = 0.5  # below this share of helpful votes, the article retires
    days: int = 30  # how far back unanswered questions count
    similarity: float = 0.5  # cosine at which two questions are "the same question"
    max_candidates: int = 20

    @classmethod
    def from_dict(cls, data: dict | None) -> Policy:
        data = data or {}
        integers = {k: data.get(k, d) for k, d in (("minVotes", cls.min_votes), ("days", cls.days),
                                                  ("maxCandidates", cls.max_candidates))}
        numbers = {k: data.get(k, d) for k, d in (("minHelpfulRate", cls.min_helpful_rate),
                                                 ("similarity", cls.similarity))}
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in integers.values()) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers.values()):
            raise InvalidRequest("minVotes, days and maxCandidates are integers; minHelpfulRate and similarity "
                                 "numbers")
        policy = cls(min_votes=integers["minVotes"], min_helpful_rate=float(numbers["minHelpfulRate"]),
                     days=integers["days"], similarity=float(numbers["similarity"]),
                     max_candidates=integers["maxCandidates"])
        if policy.min_votes < 1 or not 0 <= policy.min_helpful_rate <= 1 or not 1 <= policy.days <= 90:
            raise InvalidRequest("minVotes >= 1, 0 <= minHelpfulRate <= 1, 1 <= days <= 90")
        if not 0 < policy.similarity <= 1 or not 1 <= policy.max_candidates <= 200:
            raise InvalidRequest("0 < similarity <= 1, 1 <= maxCandidates <= 200")
        return policy

    def to_dict(self) -> dict:
        return {"minVotes": self.min_votes, "minHelpfulRate": self.min_helpful_rate, "days": self.days,
                "similarity": self.similarity, "maxCandidates": self.max_candidates}


def retire_candidates(articles: list[Article], policy: Policy) -> list[dict]:
    """Active articles whose helpful rate is below the policy's over at least its minimum of votes."""
    found = []
    for article in articles:
        votes = article.helpful + article.not_helpful
        if article.status != "active" or votes < policy.min_votes:
            continue
        rate = article.helpful / votes
        if rate < policy.min_helpful_rate:
            found.append({"id": article.id, "title": article.title, "helpful": article.helpful,
                          "notHelpful": article.not_helpful, "helpfulRate": round(rate, 3)})
    return sorted(found, key=lambda a: (a["helpfulRate"], a["id"]))


# ---------------------------------------------------------------- grouping unanswered questions


def _vectors(questions: list[str]) -> list[dict[str, float]]:
    """TF-IDF over the text's word and character grams, L2-normalised (cosine = dot product)."""
    counted = [text.grams(q) for q in questions]
    df: Counter = Counter()
    for grams in counted:
        df.update(grams.keys())
    n = len(questions)
    vectors = []
    for grams in counted:
        v = {g: (1 + math.log(c)) * (math.log((1 + n) / (1 + df[g])) + 1) for g, c in grams.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        vectors.append({g: x / norm for g, x in v.items()})
    return vectors


def _dot(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(x * b.get(g, 0.0) for g, x in a.items())


def cluster_questions(questions: list[str], policy: Policy = Policy()) -> list[dict]:
    """Group similar questions (greedy, most frequent first, against each group's centroid). Each group:
    how often it was asked, the question that stands for it (its most frequent), a few other wordings."""
    counts: Counter = Counter()
    wording: dict[str, str] = {}
    for question in questions:
        key = " ".join(text.tokens(question))  # case, width and punctuation do not make a new wording
        if key and text.language(question) is not None:
            counts[key] += 1
            wording.setdefault(key, question.strip())
    keys = [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    vectors = _vectors(keys)
    groups: list[dict] = []  # {"members": [key], "centroid": {gram: weight}, "count": int}
    for key, vector in zip(keys, vectors):
        best, best_similarity = None, 0.0
        for group in groups:
            similarity = _dot(vector, group["centroid"])
            if similarity > best_similarity:
                best, best_similarity = group, similarity
        if best is None or best_similarity < policy.similarity:
            groups.append({"members": [key], "sum": dict(vector), "centroid": dict(vector), "count": counts[key]})
            continue
        best["members"].append(key)
        best["count"] += counts[key]
        for g, x in vector.items():
            best["sum"][g] = best["sum"].get(g, 0.0) + x
        norm = math.sqrt(sum(x * x for x in best["sum"].values())) or 1.0
        best["centroid"] = {g: x / norm for g, x in best["sum"].items()}
    groups.sort(key=lambda g: (-g["count"], g["members"][0]))
    return [{"count": g["count"], "question": wording[g["members"][0]],
             "lang": text.language(wording[g["members"][0]]),
             "examples": [wording[k] for k in g["members"][:MAX_CLUSTER_EXAMPLES]],
             "wordings": len(g["members"])}
            for g in groups[: policy.max_candidates]]


# ---------------------------------------------------------------- the use case


class KnowledgeStore(Protocol):
    def list_articles(self, workspace: str) -> list[Article]: ...
    def set_status(self, workspace: str, article_id: str, status: str) -> None: ...
    def save_report(self, workspace: str, report: dict) -> None: ...


class Misses(Protocol):
    def misses(self, workspace: str, since_day: str, limit: int) -> list[dict]:
        """The most recent `limit` misses since that day."""


@dataclass(frozen=True)
class Report:
    workspace: str
    ranAt: str
    dryRun: bool
    policy: dict
    retired: list
    misses: int
    candidates: list

    def to_dict(self) -> dict:
        return asdict(self)


class Maintainer:
    def __init__(self, knowledge: KnowledgeStore, misses: Misses):
        self.knowledge, self.misses = knowledge, misses

    def run(self, workspace: str, policy: Policy = Policy(), *, dry_run: bool = False) -> dict:
        retire = retire_candidates(self.knowledge.list_articles(workspace), policy)
        if not dry_run:
            for article in retire:  # the stream retrains the model and drops them from the index
                self.knowledge.set_status(workspace, article["id"], "retired")
        since = (datetime.now(timezone.utc) - timedelta(days=policy.days)).date().isoformat()
        questions = [str(m.get("text", "")) for m in self.misses.misses(workspace, since, MAX_MISSES)]
        report = Report(workspace, now_iso(), dry_run, policy.to_dict(), retire, len(questions),
                        cluster_questions(questions, policy)).to_dict()
        if not dry_run:
            self.knowledge.save_report(workspace, report)
        return report
