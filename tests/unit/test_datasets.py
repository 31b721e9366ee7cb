"""Benchmark dataset converters (kefu_bench.datasets): counts, formats, references, attribution files."""

import json
from collections import Counter

import pytest
from kefu_bench import datasets

pytestmark = pytest.mark.skipif(not datasets.SOURCE.is_dir(), reason=f"source data not at {datasets.SOURCE}")


def read_jsonl(path):
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def check_kb_and_queries(out, name):
    kb = read_jsonl(out / f"{name}-kb.jsonl")
    queries = read_jsonl(out / f"{name}-queries.jsonl")
    for a in kb:
        assert {"id", "lang", "title", "answer", "questions", "tags"} <= a.keys()
        assert a["lang"] == "en" and a["title"] and a["answer"]
        assert a["questions"] and all(isinstance(q, str) and q and q == q.strip() for q in a["questions"])
    ids = [a["id"] for a in kb]
    assert len(ids) == len(set(ids))
    for q in queries:
        assert set(q) == {"text", "article_id"}
        assert isinstance(q["text"], str) and q["text"]
        assert q["article_id"] is None or q["article_id"] in ids
    for source_name in ("PROVENANCE.txt", "LICENSE"):
        copied = out / f"{name}-{source_name}"
        assert copied.read_bytes() == (datasets.SOURCE / name / source_name).read_bytes()
    return kb, queries


def test_banking77(tmp_path):
    summary = datasets.banking77(tmp_path)
    kb, queries = check_kb_and_queries(tmp_path, "banking77")
    assert len(kb) == 77
    assert sum(len(a["questions"]) for a in kb) == 10_003
    assert len(queries) == 3_080
    assert all(q["article_id"] is not None for q in queries)
    assert len({q["article_id"] for q in queries}) == 77
    first = kb[0]
    assert first["id"] == "card_arrival" and first["title"] == "Card arrival"
    assert first["answer"] == "Answer for: Card arrival." and first["tags"] == ["banking77"]
    assert first["questions"][0] == "I am still waiting on my card?"  # file order
    assert summary == {"dataset": "banking77", "articles": 77, "questions": 10_003, "queries": 3_080,
                       "out_of_scope": 0, "out": str(tmp_path)}


def test_clinc150(tmp_path):
    summary = datasets.clinc150(tmp_path)
    kb, queries = check_kb_and_queries(tmp_path, "clinc150")
    assert len(kb) == 30
    assert all(len(a["questions"]) == 100 for a in kb)  # 100 train utterances per intent
    assert sum(len(a["questions"]) for a in kb) == 3_000
    assert Counter(a["tags"][0] for a in kb) == {"banking": 15, "credit_cards": 15}
    in_scope = [q for q in queries if q["article_id"] is not None]
    assert len(in_scope) == 900
    assert Counter(q["article_id"] for q in in_scope) == {a["id"]: 30 for a in kb}
    assert sum(1 for q in queries if q["article_id"] is None) == 1_000
    oos_train = read_jsonl(tmp_path / "clinc150-oos-train.jsonl")
    assert len(oos_train) == 100 and all(q["article_id"] is None and q["text"] for q in oos_train)
    # the tuning set must not leak into the test queries
    assert not {q["text"] for q in oos_train} & {q["text"] for q in queries if q["article_id"] is None}
    assert summary == {"dataset": "clinc150", "articles": 30, "questions": 3_000, "queries": 1_900,
                       "out_of_scope": 1_000, "oos_train": 100, "out": str(tmp_path)}


def test_cli_all(tmp_path, capsys):
    assert datasets.main(["all", "--out", str(tmp_path / "data")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["dataset"] for line in lines] == ["banking77", "clinc150"]
    assert (tmp_path / "data" / "banking77-kb.jsonl").is_file()
    assert (tmp_path / "data" / "clinc150-queries.jsonl").is_file()
