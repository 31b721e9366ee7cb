"""`kefu kb import|ask|model|maintain`: the knowledge base through the REST API of a running stack.

Local stack by default (http://127.0.0.1:8000, a token minted with this checkout's key for the
demo admin); a deployed API with --url and --token (an agent token of a supervisor or admin).
"""

from __future__ import annotations

import json
import sys
import time

import requests

DEFAULT_URL = "http://127.0.0.1:8000"
LOCAL_ADMIN = "carol"  # the demo workspace's admin (seed.py)


def add_parser(commands) -> None:
    kb = commands.add_parser("kb", help="the knowledge base: import articles, ask the bot")
    actions = kb.add_subparsers(dest="kb", required=True)

    def common(p):
        p.add_argument("--url", default=DEFAULT_URL, help=f"the stack's base URL (default {DEFAULT_URL}); "
                       "for a deployed REST API, its stage URL")
        p.add_argument("--workspace", default="demo")
        p.add_argument("--token", default=None, help="agent token (default: minted for the local stack's admin)")
        p.add_argument("--agent", default=LOCAL_ADMIN, help="whose token to mint for the local stack")

    imp = actions.add_parser("import", help="import a KB file (JSON Lines), then wait for the model")
    imp.add_argument("file")
    imp.add_argument("--no-wait", action="store_true", help="return once stored, without waiting for training")
    imp.add_argument("--wait-s", type=float, default=600.0, help="how long to wait for the new model")
    common(imp)
    ask = actions.add_parser("ask", help="what the bot would do with a question")
    ask.add_argument("text")
    ask.add_argument("--json", action="store_true",
                     help='print {"decision","confidence","article_id","answer","reason"} only')
    common(ask)
    model = actions.add_parser("model", help="the workspace's current answering model")
    common(model)
    maintain = actions.add_parser(
        "maintain", help="retire articles rated unhelpful; group unanswered questions into candidate articles")
    maintain.add_argument("--dry-run", action="store_true", help="report what would retire, change nothing")
    maintain.add_argument("--min-votes", type=int, default=10, help="votes an article needs before it can retire")
    maintain.add_argument("--min-helpful-rate", type=float, default=0.5,
                          help="articles rated helpful less often than this retire (0..1)")
    maintain.add_argument("--days", type=int, default=30, help="how far back unanswered questions count")
    maintain.add_argument("--json", action="store_true", help="print the whole report as JSON")
    common(maintain)


def api_base(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/api") or "/v1" in url else url + "/api"


def _token(args) -> str:
    if args.token:
        return args.token
    from kefu import tokens

    from . import config

    return tokens.issue(config.signing_key(), kind="agent", workspace=args.workspace, subject=args.agent)


def run(args) -> int:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {_token(args)}"
    base = f"{api_base(args.url)}/workspaces/{args.workspace}/kb"
    try:
        if args.kb == "import":
            return _import(session, base, args)
        if args.kb == "ask":
            return _ask(session, base, args)
        if args.kb == "maintain":
            return _maintain(session, base, args)
        return _show(session.get(f"{base}/model", timeout=30), lambda body: body)
    except requests.ConnectionError:
        print(f"kefu kb: nothing answers at {args.url}; start the local stack with `make dev` "
              "(or pass --url)", file=sys.stderr)
        return 1


def _show(response, pick) -> int:
    body = _body(response)
    if response.status_code >= 400:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        print(f"kefu kb: {response.status_code} {error.get('code', '')}: {error.get('message', body)}", file=sys.stderr)
        return 1
    print(json.dumps(pick(body), ensure_ascii=False, indent=2))
    return 0


def _body(response):
    try:
        return response.json()
    except ValueError:
        return {"error": {"message": response.text[:200]}}


def _ask(session, base: str, args) -> int:
    response = session.post(f"{base}/ask", json={"text": args.text}, timeout=30)
    if args.json:
        keys = ("decision", "confidence", "article_id", "answer", "reason")
        return _show(response, lambda body: {k: body.get(k) for k in keys})
    return _show(response, lambda body: body)


def _import(session, base: str, args) -> int:
    try:
        with open(args.file, encoding="utf-8") as handle:
            data = handle.read()
    except OSError as error:
        print(f"kefu kb: cannot read {args.file}: {error.strerror}", file=sys.stderr)
        return 2
    before = (_body(session.get(f"{base}/model", timeout=30)).get("model") or {}).get("trainedAt")
    print(f"kefu kb: importing {args.file} into {args.workspace}...", file=sys.stderr, flush=True)
    response = session.post(f"{base}/import", data=data.encode("utf-8"),
                            headers={"Content-Type": "application/x-ndjson"}, timeout=120)
    body = _body(response)
    if response.status_code >= 400:
        return _show(response, lambda b: b)
    for error in body.get("errors", []):
        print(f"  line {error['line']}: {error['error']}", file=sys.stderr)
    print(f"kefu kb: {body['imported']} articles stored, {body['refused']} lines refused", file=sys.stderr, flush=True)
    if args.no_wait or body["imported"] == 0:
        print(json.dumps(body, ensure_ascii=False, indent=2))
        return 0 if body["refused"] == 0 else 1
    deadline = time.monotonic() + args.wait_s
    print("kefu kb: indexing and training the answering model...", file=sys.stderr, flush=True)
    while time.monotonic() < deadline:
        model = _body(session.get(f"{base}/model", timeout=30)).get("model") or {}
        if model.get("trainedAt") and model.get("trainedAt") != before:
            body["model"] = model
            print(json.dumps(body, ensure_ascii=False, indent=2))
            return 0 if body["refused"] == 0 else 1
        time.sleep(1.0)
    print(f"kefu kb: stored, but no new model after {args.wait_s:.0f} s (is the stack's indexer running?)",
          file=sys.stderr)
    return 1


def _maintain(session, base: str, args) -> int:
    policy = {"dryRun": args.dry_run, "minVotes": args.min_votes, "minHelpfulRate": args.min_helpful_rate,
              "days": args.days}
    response = session.post(f"{base}/maintain", json=policy, timeout=120)
    if args.json or response.status_code >= 400:
        return _show(response, lambda body: body)
    report = _body(response)
    verb = "would retire" if report["dryRun"] else "retired"
    print(f"{args.workspace}: {verb} {len(report['retired'])} article(s)")
    for article in report["retired"]:
        print(f"  {article['id']}  helpful {article['helpful']}/{article['helpful'] + article['notHelpful']}"
              f"  {article['title']}")
    print(f"{report['misses']} unanswered question(s) in the last {args.days} days; "
          f"{len(report['candidates'])} candidate article(s), most asked first:")
    for candidate in report["candidates"]:
        others = [e for e in candidate["examples"] if e != candidate["question"]]
        print(f"  {candidate['count']:>4}x  {candidate['question']}" + (f"   (also: {' | '.join(others)})" if others else ""))
    return 0
