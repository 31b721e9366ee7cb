"""Dataset converters for the answering benchmark: public intent datasets -> a kefu KB plus queries.

`python -m kefu_bench.datasets {banking77|clinc150|all} [--out DIR]` writes JSON Lines (UTF-8) into
DIR (default bench/data/ in the repo, generated, not committed) and prints one JSON line per dataset.

Formats:
- KB (`<name>-kb.jsonl`): one article per line,
  {"id", "lang", "title", "answer", "questions": [...], "tags": [...]}.
  Each intent of the source becomes one article: id = the intent, title = the intent with
  underscores as spaces, capitalised; answer = a placeholder naming the intent (the datasets have
  no answers; the benchmark scores which article is picked, not its text); questions = the
  intent's training utterances in file order.
- Queries (`<name>-queries.jsonl`): {"text", "article_id"}; article_id null means nothing in the
  KB answers the query (the bot should hand off).

Sources (read-only, /work/shared/data, see each PROVENANCE.txt):
- banking77 (PolyAI, CC-BY-4.0): KB from train.csv (77 articles, 10,003 questions), queries from
  test.csv (3,080, all in scope).
- clinc150 (Larson et al. 2019, CC-BY-3.0): the banking and credit_cards domains (30 intents).
  KB from `train` (100 utterances per intent, 3,000 questions), tags [domain]; queries = `test`
  items of those intents (900) plus every `oos_test` item (1,000, article_id null). The other
  domains' test items are left out: they are neither answerable from this KB nor the dataset's
  out-of-scope set. `clinc150-oos-train.jsonl` holds the 100 `oos_train` texts as null queries,
  for tuning a hand-off threshold on training data only.

Both licences require attribution, so each source's PROVENANCE.txt and LICENSE are copied next to
the outputs as `<name>-PROVENANCE.txt` and `<name>-LICENSE`.

Texts are taken verbatim except that surrounding whitespace is stripped (a few banking77 rows
start or end with newlines).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

SOURCE = Path("/work/shared/data")
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data"  # bench/data/
CLINC150_DOMAINS = ("banking", "credit_cards")


def title_of(intent: str) -> str:
    """card_arrival -> "Card arrival"."""
    return intent.replace("_", " ").strip().capitalize()


def article_id(intent: str) -> str:
    """An intent name as a KB article id (ids allow letters, digits, '_', '.', ':', '-'):
    Banking77 has "reverted_card_payment?"."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "", intent)


def article(intent: str, questions: list[str], tags: list[str]) -> dict:
    title = title_of(intent)
    return {"id": article_id(intent), "lang": "en", "title": title, "answer": f"Answer for: {title}.",
            "questions": questions, "tags": tags}


def _text(text: str, where: str) -> str:
    text = text.strip()
    if not text:
        raise ValueError(f"empty text in {where}")
    return text


def _write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    n = 0
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def _copy_attribution(src_dir: Path, out_dir: Path, name: str) -> None:
    for source_name in ("PROVENANCE.txt", "LICENSE"):
        shutil.copyfile(src_dir / source_name, out_dir / f"{name}-{source_name}")


def _check_queries(name: str, kb: list[dict], queries: list[dict]) -> None:
    ids = {a["id"] for a in kb}
    unknown = {q["article_id"] for q in queries if q["article_id"] is not None and q["article_id"] not in ids}
    if unknown:
        raise ValueError(f"{name}: queries name articles not in the KB: {sorted(unknown)}")


def _summary(name: str, out_dir: Path, kb: list[dict], queries: list[dict], **extra) -> dict:
    return {"dataset": name, "articles": len(kb), "questions": sum(len(a["questions"]) for a in kb),
            "queries": len(queries), "out_of_scope": sum(1 for q in queries if q["article_id"] is None),
            **extra, "out": str(out_dir)}


def _read_banking77_csv(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != ["text", "category"]:
            raise ValueError(f"{path}: expected columns text,category, got {reader.fieldnames}")
        return [(_text(row["text"], f"{path}:{i + 2}"), row["category"]) for i, row in enumerate(reader)]


def banking77(out_dir: str | Path, source: str | Path = SOURCE / "banking77") -> dict:
    """Write banking77-kb.jsonl, banking77-queries.jsonl and the attribution files; return the summary."""
    src, out = Path(source), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    by_category: dict[str, list[str]] = {}  # first-appearance order, which is categories.json's order
    for text, category in _read_banking77_csv(src / "train.csv"):
        by_category.setdefault(category, []).append(text)
    categories = json.loads((src / "categories.json").read_text(encoding="utf-8"))
    if set(categories) != set(by_category):
        raise ValueError("banking77: train.csv categories differ from categories.json")
    kb = [article(category, questions, ["banking77"]) for category, questions in by_category.items()]
    queries = [{"text": text, "article_id": article_id(category)}
               for text, category in _read_banking77_csv(src / "test.csv")]
    _check_queries("banking77", kb, queries)

    _write_jsonl(out / "banking77-kb.jsonl", kb)
    _write_jsonl(out / "banking77-queries.jsonl", queries)
    _copy_attribution(src, out, "banking77")
    return _summary("banking77", out, kb, queries)


def clinc150(out_dir: str | Path, source: str | Path = SOURCE / "clinc150") -> dict:
    """Write clinc150-kb.jsonl, clinc150-queries.jsonl, clinc150-oos-train.jsonl and the attribution
    files; return the summary."""
    src, out = Path(source), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    data = json.loads((src / "data_full.json").read_text(encoding="utf-8"))
    domains = json.loads((src / "domains.json").read_text(encoding="utf-8"))
    domain_of = {intent: domain for domain in CLINC150_DOMAINS for intent in domains[domain]}

    by_intent: dict[str, list[str]] = {intent: [] for intent in domain_of}  # domains.json order
    for i, (text, intent) in enumerate(data["train"]):
        if intent in by_intent:
            by_intent[intent].append(_text(text, f"train[{i}]"))
    empty = [intent for intent, questions in by_intent.items() if not questions]
    if empty:
        raise ValueError(f"clinc150: no train items for {empty}")
    kb = [article(intent, questions, [domain_of[intent]]) for intent, questions in by_intent.items()]

    queries = [{"text": _text(text, f"test[{i}]"), "article_id": article_id(intent)}
               for i, (text, intent) in enumerate(data["test"]) if intent in domain_of]
    queries += [{"text": _text(text, f"oos_test[{i}]"), "article_id": None} for i, (text, _) in enumerate(data["oos_test"])]
    oos_train = [{"text": _text(text, f"oos_train[{i}]"), "article_id": None}
                 for i, (text, _) in enumerate(data["oos_train"])]
    _check_queries("clinc150", kb, queries)

    _write_jsonl(out / "clinc150-kb.jsonl", kb)
    _write_jsonl(out / "clinc150-queries.jsonl", queries)
    _write_jsonl(out / "clinc150-oos-train.jsonl", oos_train)
    _copy_attribution(src, out, "clinc150")
    return _summary("clinc150", out, kb, queries, oos_train=len(oos_train))


CONVERTERS = {"banking77": banking77, "clinc150": clinc150}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kefu_bench.datasets",
                                     description="convert benchmark datasets to kefu KB + queries (JSON Lines)")
    parser.add_argument("dataset", choices=[*CONVERTERS, "all"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    names = list(CONVERTERS) if args.dataset == "all" else [args.dataset]
    for name in names:
        print(json.dumps(CONVERTERS[name](args.out)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
