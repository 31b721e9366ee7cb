"""Articles and the model pointer in the Knowledge table (PynamoDB).

pk "{ws}", sk "A#{articleId}": one item per article, the source of truth the search index and
the answering model are built from (kb_indexer, from the table's stream). sk "MODEL": which
trained model answers for the workspace; sk "MAINTENANCE": the last maintenance report. Rating counters are atomic ADDs, so a vote never
rewrites an article (and never retrains the model: kb_indexer ignores counter-only changes).
"""

from __future__ import annotations

import json

from pynamodb.attributes import JSONAttribute, ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.models import Model

from .. import schema
from ..knowledge import Article, FollowUp
from ..models import now_iso
from .dynamodb import _meta

ARTICLE = "A#"
MODEL = "MODEL"
MAINTENANCE = "MAINTENANCE"


class KnowledgeItem(Model):
    Meta = _meta(schema.KNOWLEDGE)
    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    lang = UnicodeAttribute(null=True)
    title = UnicodeAttribute(null=True)
    answer = UnicodeAttribute(null=True)
    questions = ListAttribute(of=UnicodeAttribute, null=True)
    tags = ListAttribute(of=UnicodeAttribute, null=True)
    status = UnicodeAttribute(null=True)
    followups = JSONAttribute(null=True)
    helpful = NumberAttribute(null=True)
    notHelpful = NumberAttribute(null=True)
    updatedAt = UnicodeAttribute(null=True)
    model = JSONAttribute(null=True)  # the MODEL item: {version, key, trainedAt, info}
    report = JSONAttribute(null=True)  # the MAINTENANCE item: the last maintenance run's report


def article_from_image(workspace: str, image: dict) -> Article:
    """An Article from a plain dict (a deserialised stream image or an item's attributes)."""
    followups = image.get("followups") or []
    if isinstance(followups, str):  # a stream image carries JSONAttribute's stored string
        followups = json.loads(followups)
    return Article(
        workspace=workspace,
        id=image["sk"][len(ARTICLE):],
        lang=image.get("lang") or "zh",
        title=image.get("title") or "",
        answer=image.get("answer") or "",
        questions=tuple(image.get("questions") or ()),
        tags=tuple(image.get("tags") or ()),
        status=image.get("status") or "active",
        followups=tuple(FollowUp(dict(f.get("if", {})), f["say"]) for f in followups),
        helpful=int(image.get("helpful") or 0),
        not_helpful=int(image.get("notHelpful") or 0),
        updated_at=image.get("updatedAt") or "",
    )


def _article(item: KnowledgeItem) -> Article:
    return article_from_image(item.pk, item.attribute_values)


def _item(article: Article, counters: tuple[int, int], stamp: str) -> KnowledgeItem:
    """The item of an article's content, carrying over its (helpful, not helpful) counters."""
    return KnowledgeItem(
        article.workspace, ARTICLE + article.id, lang=article.lang, title=article.title, answer=article.answer,
        questions=list(article.questions) or None, tags=list(article.tags) or None, status=article.status,
        followups=[f.to_dict() for f in article.followups] or None,
        helpful=counters[0], notHelpful=counters[1], updatedAt=stamp)


class KnowledgeStore:
    def put_article(self, article: Article) -> Article:
        """Create or replace an article's content; its rating counters are kept while its answer stays the
        same (votes on an old answer say nothing about a new one, nor about an article brought back)."""
        existing = self.get_article(article.workspace, article.id)
        keep = existing is not None and existing.answer == article.answer and not (
            existing.status == "retired" and article.status == "active")
        item = _item(article, (existing.helpful, existing.not_helpful) if keep else (0, 0), now_iso())
        item.save()
        return _article(item)

    def put_articles(self, articles: list[Article]) -> None:
        """Bulk import: batch writes (25 per request); counters of existing articles are kept."""
        if not articles:
            return
        workspace = articles[0].workspace
        counters = {a.id: (a.helpful, a.not_helpful) for a in self.list_articles(workspace)}
        stamp = now_iso()
        with KnowledgeItem.batch_write() as batch:
            for article in articles:
                batch.save(_item(article, counters.get(article.id, (0, 0)), stamp))

    def get_article(self, workspace: str, article_id: str) -> Article | None:
        try:
            return _article(KnowledgeItem.get(workspace, ARTICLE + article_id, consistent_read=True))
        except DoesNotExist:
            return None

    def list_articles(self, workspace: str) -> list[Article]:
        return [_article(i) for i in KnowledgeItem.query(workspace, KnowledgeItem.sk.startswith(ARTICLE))]

    def delete_article(self, workspace: str, article_id: str) -> bool:
        try:
            KnowledgeItem(workspace, ARTICLE + article_id).delete(condition=KnowledgeItem.sk.exists())
            return True
        except Exception:  # noqa: BLE001 - pynamodb raises DeleteError wrapping the condition failure
            return False

    def set_status(self, workspace: str, article_id: str, status: str) -> None:
        KnowledgeItem(workspace, ARTICLE + article_id).update(
            actions=[KnowledgeItem.status.set(status), KnowledgeItem.updatedAt.set(now_iso())],
            condition=KnowledgeItem.sk.exists())

    def rate(self, workspace: str, article_id: str, helpful: bool) -> bool:
        counter = KnowledgeItem.helpful if helpful else KnowledgeItem.notHelpful
        try:
            KnowledgeItem(workspace, ARTICLE + article_id).update(
                actions=[counter.add(1)], condition=KnowledgeItem.sk.exists())
            return True
        except UpdateError:
            return False

    def model_pointer(self, workspace: str) -> dict | None:
        try:
            return KnowledgeItem.get(workspace, MODEL).model
        except DoesNotExist:
            return None

    def set_model_pointer(self, workspace: str, pointer: dict) -> None:
        KnowledgeItem(workspace, MODEL, model=pointer).save()

    def save_report(self, workspace: str, report: dict) -> None:
        KnowledgeItem(workspace, MAINTENANCE, report=report).save()

    def last_report(self, workspace: str) -> dict | None:
        try:
            return KnowledgeItem.get(workspace, MAINTENANCE).report
        except DoesNotExist:
            return None

    def workspaces(self) -> list[str]:
        """Workspaces with a knowledge base (a model pointer): what the scheduled maintenance visits.
        A scan, once a day, reading keys only."""
        found = KnowledgeItem.scan(KnowledgeItem.sk == MODEL, attributes_to_get=["pk", "sk"])
        return sorted({item.pk for item in found})
