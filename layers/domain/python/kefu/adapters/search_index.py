"""The knowledge base's search index on OpenSearch (opensearch-py).

One index for every workspace, filtered by workspace. Chinese fields use the built-in ``cjk``
analyzer (character bigrams), English ones the ``english`` analyzer: both exist on Amazon
OpenSearch Service and in osmem-server, so retrieval behaves the same on AWS and locally.
"""

from __future__ import annotations

import os

from .. import schema
from ..knowledge import Article

TEXT_FIELDS = ("title", "questions", "answer")
MAPPINGS = {
    "properties": {
        "workspace": {"type": "keyword"},
        "articleId": {"type": "keyword"},
        "lang": {"type": "keyword"},
        "status": {"type": "keyword"},
        "tags": {"type": "keyword"},
        "followups": {"type": "object", "enabled": False},  # carried for the reply, never searched
        **{f"{field}_{lang}": {"type": "text", "analyzer": "cjk" if lang == "zh" else "english"}
           for field in TEXT_FIELDS for lang in ("zh", "en")},
    }
}
# The bot's search runs inside a message's invocation (ws_message: 10 s): a hanging cluster must leave
# time to hand over to a human. Each try waits this long (the client's 2 retries included: 4.5 s at
# most); indexing keeps the client's 5 s.
SEARCH_TIMEOUT_S = 1.5
QUERY_FIELDS = ["title_zh^2", "questions_zh", "answer_zh^0.5", "title_en^2", "questions_en", "answer_en^0.5"]


def client():
    from opensearchpy import OpenSearch, RequestsHttpConnection

    url = os.environ[schema.ENV_OPENSEARCH_URL]
    if os.environ.get(schema.ENV_OPENSEARCH_SIGV4) == "1":
        import boto3
        from opensearchpy import AWSV4SignerAuth

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        auth = AWSV4SignerAuth(boto3.Session().get_credentials(), region, "es")
        return OpenSearch(hosts=[url], http_auth=auth, connection_class=RequestsHttpConnection,
                          use_ssl=True, verify_certs=True, timeout=5, max_retries=2, retry_on_timeout=True)
    return OpenSearch(hosts=[url], timeout=5, max_retries=2, retry_on_timeout=True)


def doc_id(workspace: str, article_id: str) -> str:
    return f"{workspace}:{article_id}"


def document(article: Article) -> dict:
    lang = article.lang
    return {
        "workspace": article.workspace, "articleId": article.id, "lang": lang, "status": article.status,
        "tags": list(article.tags), f"title_{lang}": article.title, f"questions_{lang}": list(article.questions),
        f"answer_{lang}": article.answer, "followups": [f.to_dict() for f in article.followups],
    }


class SearchIndex:
    def __init__(self, search=None, index: str = schema.KB_INDEX):
        self.search = search or client()
        self.index = index
        self._ready = False

    def ensure(self) -> None:
        if self._ready:
            return
        if not self.search.indices.exists(index=self.index):
            try:
                self.search.indices.create(index=self.index, body={"mappings": MAPPINGS})
            except Exception as error:  # noqa: BLE001 - created by a concurrent writer meanwhile
                if "already_exists" not in str(error) and "exists" not in str(error):
                    raise
        self._ready = True

    def upsert(self, articles: list[Article]) -> None:
        self.ensure()
        if not articles:
            return
        body: list[dict] = []
        for article in articles:
            body.append({"index": {"_index": self.index, "_id": doc_id(article.workspace, article.id)}})
            body.append(document(article))
        result = self.search.bulk(body=body, refresh=True)
        if result.get("errors"):
            failed = [i for i in result["items"] if i.get("index", {}).get("error")]
            raise RuntimeError(f"{len(failed)} articles failed to index: {failed[0]['index']['error']}")

    def remove(self, workspace: str, article_ids: list[str]) -> None:
        self.ensure()
        for article_id in article_ids:
            self.search.delete(index=self.index, id=doc_id(workspace, article_id), ignore=[404], refresh=True)

    def query(self, workspace: str, text: str, boost_ids: list[str], size: int) -> dict:
        """The search body: BM25 over both languages' fields, plus the model's favourites by id
        (so that one round trip returns their content too), within the workspace's active articles."""
        should: list[dict] = [{"multi_match": {"query": text, "fields": QUERY_FIELDS}}] if text.strip() else []
        if boost_ids:
            # first, whatever their lexical score: the decision is the model's, the index brings the content
            should.append({"constant_score": {"filter": {"ids": {"values": [doc_id(workspace, i) for i in boost_ids]}},
                                              "boost": 1000.0}})
        return {
            "size": size,
            "_source": ["articleId", "lang", "status", "title_zh", "title_en", "answer_zh", "answer_en",
                        "followups"],
            "query": {"bool": {
                "filter": [{"term": {"workspace": workspace}}, {"term": {"status": "active"}}],
                "should": should, "minimum_should_match": 1 if should else 0,
            }},
        }

    def candidates(self, workspace: str, text: str, boost_ids: list[str], size: int = 5) -> list[dict]:
        """Active articles for the text, best lexical match first: {id, lang, title, answer, rank}. No
        ensure(): the reader may not create indexes (search="read"), and a cold container's exists() check
        on a hanging cluster took 15 s of the message's 10 (a missing index fails the search: a handoff)."""
        result = self.search.search(index=self.index, body=self.query(workspace, text, boost_ids, size + len(boost_ids)),
                                    request_timeout=SEARCH_TIMEOUT_S)
        found = []
        for rank, hit in enumerate(result["hits"]["hits"]):
            source = hit["_source"]
            lang = source.get("lang", "zh")
            found.append({"id": source["articleId"], "lang": lang, "title": source.get(f"title_{lang}", ""),
                          "answer": source.get(f"answer_{lang}", ""), "followups": source.get("followups") or [],
                          "rank": rank})
        return found
