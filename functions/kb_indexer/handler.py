"""Keeps the search index and the answering model in step with the Knowledge table.

Every changed article is (re)indexed or removed in one bulk request per batch; then each
workspace whose article *content* changed gets a new model (rating votes change counters only
and retrain nothing). The stream mapping batches up to 1,000 records over 5 s, so a bulk
import trains once.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecordEventName

from kefu import wiring
from kefu.adapters.knowledge_store import ARTICLE, article_from_image
from kefu.logs import logger

CONTENT = ("lang", "title", "answer", "questions", "tags", "status", "followups")


def _content(image: dict | None) -> tuple:
    image = image or {}
    return tuple(repr(image.get(name)) for name in CONTENT)


@logger.inject_lambda_context(clear_state=True)  # no keys from the previous invocation
@event_source(data_class=DynamoDBStreamEvent)
def handler(event: DynamoDBStreamEvent, context):
    upserts: dict[tuple[str, str], object] = {}
    removals: dict[tuple[str, str], None] = {}
    changed: set[str] = set()
    for record in event.records:
        change = record.dynamodb
        if change is None:
            continue
        image = change.new_image or change.old_image or {}
        sk = image.get("sk", "")
        if not sk.startswith(ARTICLE):
            continue  # the model pointer
        workspace = image["pk"]
        article_id = sk[len(ARTICLE):]
        if record.event_name is DynamoDBRecordEventName.REMOVE:
            removals[(workspace, article_id)] = None
            upserts.pop((workspace, article_id), None)
            changed.add(workspace)
            continue
        if _content(change.new_image) == _content(change.old_image):
            continue  # a rating vote
        upserts[(workspace, article_id)] = article_from_image(workspace, change.new_image)
        removals.pop((workspace, article_id), None)
        changed.add(workspace)

    index = wiring.search_index()
    index.upsert(list(upserts.values()))
    by_workspace: dict[str, list[str]] = {}
    for workspace, article_id in removals:
        by_workspace.setdefault(workspace, []).append(article_id)
    for workspace, ids in by_workspace.items():
        index.remove(workspace, ids)
    for workspace in sorted(changed):
        pointer = wiring.trainer().rebuild(workspace)
        logger.info("model rebuilt", extra={"workspace": workspace, "model": pointer})
    logger.info("kb batch", extra={"indexed": len(upserts), "removed": len(removals), "retrained": len(changed)})
    return {"batchItemFailures": []}
