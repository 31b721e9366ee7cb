"""The `kefu` command line: the local stack, tokens, benchmarks."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kefu", description="kefu customer service: local stack and tools")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run the whole system locally with demo data")
    dev.add_argument("--host", default="127.0.0.1", help="listen address (loopback by default)")
    dev.add_argument("--port", type=int, default=8000, help="port of the gateway (0: any free port)")
    dev.add_argument("--no-seed", action="store_true", help="start empty, without the demo workspace")
    dev.add_argument("--json", action="store_true", help="print the URLs as one JSON line when ready")

    token = commands.add_parser("token", help="print a signed token that `kefu dev` from this checkout accepts")
    kinds = token.add_subparsers(dest="kind", required=True)
    visitor = kinds.add_parser("visitor", help="a customer's token (anonymous unless --customer)")
    visitor.add_argument("--workspace", required=True)
    visitor.add_argument("--customer", help="customer id known to your backend; anonymous when omitted")
    visitor.add_argument("--name", default="")
    visitor.add_argument("--tag", action="append", default=[], help="customer tag, e.g. vip (repeatable)")
    visitor.add_argument("--ttl", type=int, default=12 * 3600, help="lifetime in seconds")
    agent = kinds.add_parser("agent", help="an agent's token")
    agent.add_argument("--workspace", required=True)
    agent.add_argument("--agent", required=True)
    agent.add_argument("--ttl", type=int, default=12 * 3600, help="lifetime in seconds")

    from . import kb_cli

    kb_cli.add_parser(commands)

    openapi = commands.add_parser("openapi", help="write docs/openapi.json from the api function's routes")
    openapi.add_argument("--check", action="store_true", help="only say whether the committed file is stale (exit 1)")

    build_web = commands.add_parser("build-web", help="build web/ into versioned, cache-friendly files")
    build_web.add_argument("--out", default=None, metavar="DIR",
                           help="output directory (default: the build `kefu dev` serves, .kefu/web-build/<hash>)")

    bench = commands.add_parser("bench", help="benchmarks (JSON on stdout)")
    benches = bench.add_subparsers(dest="bench", required=True)
    messages = benches.add_parser("messages", help="message path latency, requests, CPU, cold imports, cost")
    messages.add_argument("--conversations", type=int, default=20)
    messages.add_argument("--messages", type=int, default=20, help="customer messages per conversation")
    pii_bench = benches.add_parser("pii", help="what masking personal data in stored messages costs (latency ratios)")
    pii_bench.add_argument("--messages", type=int, default=200, help="customer messages per mode")
    routing = benches.add_parser("routing", help="simultaneous route requests, random closes, queue and wait estimate")
    routing.add_argument("--agents", type=int, default=20)
    routing.add_argument("--conversations", type=int, default=500)
    routing.add_argument("--capacity", type=int, default=3, help="seats (max concurrent conversations) per agent")
    routing.add_argument("--mean-handle-s", type=float, default=1.0,
                         help="mean of the exponential handle times the agent clients wait before closing")
    routing.add_argument("--warmup", type=int, default=40,
                         help="conversations run and closed first, unmeasured, so the workspace knows handle times")
    routing.add_argument("--seed", type=int, default=None, help="seed of the handle times (random when omitted)")
    routing.add_argument("--timeout-s", type=float, default=900.0, help="overall limit of the measured phase")
    routing.add_argument("--url", default=None,
                         help="drive a running stack (e.g. http://127.0.0.1:8000; AWS_ENDPOINT_URL must name its "
                              "DynamoDB) instead of starting one; AWS request counts are then null")
    routing.add_argument("--dump", default=None, metavar="FILE",
                         help="also write each measured conversation's timeline to FILE (JSON lines)")

    answering = benches.add_parser("answering", help="bot accuracy, decisions, calibration and latency on a KB")
    answering.add_argument("--kb", required=True, help="KB file, JSON Lines")
    answering.add_argument("--queries", required=True, help='queries, JSON Lines {"text", "article_id"}')
    answering.add_argument("--workspace", default="bench")
    answering.add_argument("--limit", type=int, default=None, help="only the first N queries")
    answering.add_argument("--url", default=None, help="a running local stack instead of starting one")
    answering.add_argument("--conversations", type=int, default=50,
                           help="customers who each open a conversation with one query over WebSocket (own stack "
                                "only; 0 to skip): ack and bot reply latency")

    analytics = benches.add_parser("analytics", help="stream analytics: one batch of stream records, writes, CPU, "
                                                     "and the same batch re-delivered")
    analytics.add_argument("--records", type=int, default=1000)
    analytics.add_argument("--seed", type=int, default=7)

    chaos = benches.add_parser("chaos", help="customers and agents with sockets killed at random and duplicate "
                                             "sends: messages lost, duplicated, out of order (all must be 0)")
    chaos.add_argument("--customers", type=int, default=200)
    chaos.add_argument("--agents", type=int, default=20)
    chaos.add_argument("--messages", type=int, default=4, help="per customer; each is answered by the agent")
    chaos.add_argument("--ramp", type=float, default=240.0, help="seconds over which customers arrive")
    chaos.add_argument("--kill-every", type=float, default=1.0, help="mean seconds between socket kills")
    chaos.add_argument("--seed", type=int, default=0)

    fuzz = benches.add_parser("fuzz", help="Hypothesis-generated frames for every WebSocket action: no crash, no "
                                           "internal error, no stack trace, the conversation intact")
    fuzz.add_argument("--frames", type=int, default=10_000)
    fuzz.add_argument("--seed", type=int, default=0)

    args = parser.parse_args(argv)
    if args.command == "dev":
        return _dev(args)
    if args.command == "token":
        return _token(args)
    if args.command == "openapi":
        from . import openapi as document

        if args.check:
            stale = document.render() != (document.DOCUMENT.read_text(encoding="utf-8")
                                           if document.DOCUMENT.exists() else "")
            print(f"{document.DOCUMENT} is {'stale: run `kefu openapi`' if stale else 'up to date'}")
            return 1 if stale else 0
        changed = document.write()
        print(f"{document.DOCUMENT} {'written' if changed else 'unchanged'}")
        return 0
    if args.command == "kb":
        return kb_cli.run(args)
    if args.command == "build-web":
        return _build_web(args)
    if args.command == "bench" and args.bench == "routing":
        from kefu_bench import routing as bench_routing

        with _stdout_to_stderr():  # the in-process handlers log to stdout; stdout is for the JSON
            report = bench_routing.run(
                agents=args.agents, conversations=args.conversations, capacity=args.capacity,
                mean_handle_s=args.mean_handle_s, warmup=args.warmup, seed=args.seed, url=args.url,
                timeout_s=args.timeout_s, dump=args.dump)
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    if args.command == "bench" and args.bench == "answering":
        from kefu_bench import answering as bench_answering

        with _stdout_to_stderr():
            report = bench_answering.run(args.kb, args.queries, workspace=args.workspace, url=args.url,
                                         limit=args.limit, conversations=args.conversations)
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    if args.command == "bench" and args.bench == "analytics":
        from kefu_bench import analytics as bench_analytics

        with _stdout_to_stderr():
            report = bench_analytics.run(records=args.records, seed=args.seed)
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    if args.command == "bench" and args.bench == "chaos":
        from kefu_bench import chaos as bench_chaos

        with _stdout_to_stderr():
            report = bench_chaos.run(customers=args.customers, agents=args.agents, messages=args.messages,
                                     ramp_s=args.ramp, kill_every_s=args.kill_every, seed=args.seed)
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0 if report["lost"] == report["duplicated"] == report["out_of_order"] == 0 else 1
    if args.command == "bench" and args.bench == "pii":
        from kefu_bench import pii as bench_pii

        with _stdout_to_stderr():
            report = bench_pii.run(messages=args.messages)
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    if args.command == "bench" and args.bench == "fuzz":
        from kefu_bench import fuzz as bench_fuzz

        with _stdout_to_stderr():
            report = bench_fuzz.run(frames=args.frames, seed=args.seed)
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0 if report["failure_count"] == 0 else 1
    if args.command == "bench":
        from kefu_bench import messages as bench_messages

        print(json.dumps(bench_messages.run(args.conversations, args.messages), indent=2))
        return 0
    return 2


@contextlib.contextmanager
def _stdout_to_stderr():
    """File descriptor 1 goes to stderr meanwhile (loggers keep their own reference to sys.stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _build_web(args) -> int:
    from pathlib import Path

    from . import config, webbuild

    try:
        if args.out:
            out, manifest = Path(args.out), webbuild.build(config.ROOT / "web", Path(args.out))
        else:
            out, manifest = webbuild.snapshot(config.ROOT / "web", config.home() / "web-build")
    except webbuild.BuildError as error:
        print(f"kefu build-web: {error}", file=sys.stderr)
        return 1
    print(f"{out}: {len(manifest.assets)} hashed assets, {len(manifest.stable)} files under their own names")
    return 0


def _token(args) -> int:
    from kefu import tokens

    from . import config

    try:
        if args.kind == "visitor":
            value = tokens.issue(config.signing_key(), kind="visitor", workspace=args.workspace,
                                 subject=args.customer, name=args.name, tags=args.tag, ttl_s=args.ttl)
        else:
            value = tokens.issue(config.signing_key(), kind="agent", workspace=args.workspace,
                                 subject=args.agent, ttl_s=args.ttl)
    except ValueError as error:
        print(f"kefu token: {error}", file=sys.stderr)
        return 2
    print(value)
    return 0


def _dev(args) -> int:
    from kefu import tokens

    from . import config
    from .stack import LocalStack

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("kefu: starting the local stack (moto server, osmem-server, gateway)...", file=sys.stderr, flush=True)
    stack = LocalStack(args.host, args.port, seed=not args.no_seed)
    try:
        stack.start()
    except Exception as error:
        print(f"kefu dev: could not start: {error}", file=sys.stderr)
        return 1
    try:
        urls = stack.urls()
        if not args.no_seed:
            alice = tokens.issue(config.signing_key(), kind="agent", workspace="demo", subject="alice")
            urls["agent"] = f"{stack.base_url}/agent.html#token={alice}"
        if args.json:
            print(json.dumps(urls), flush=True)
        else:
            print("kefu dev is up (Ctrl-C stops everything):", flush=True)
            for name, url in urls.items():
                print(f"  {name:<10} {url}", flush=True)
        stop.wait()
    finally:
        print("kefu: stopping...", file=sys.stderr, flush=True)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
