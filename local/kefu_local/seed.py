"""Demo data for `kefu dev`: the workspace `demo` (an online shop), its agents and knowledge base."""

from __future__ import annotations

from pathlib import Path

from kefu.knowledge import parse_jsonl
from kefu.models import Agent

DEMO_KB = Path(__file__).with_name("demo_kb.jsonl")  # see DEMO_KB.md

DEMO_WORKSPACE = "demo"
DEMO_AGENTS = (
    Agent(DEMO_WORKSPACE, "alice", "Alice 王", role="supervisor", groups=("售后", "billing"), languages=("zh", "en"),
          max_concurrent=5),
    Agent(DEMO_WORKSPACE, "bob", "Bob 李", groups=("技术",), languages=("zh",), max_concurrent=3),
    Agent(DEMO_WORKSPACE, "carol", "Carol 陈", role="admin", groups=("售后", "技术"), languages=("en", "zh"),
          max_concurrent=4),
)


def seed_demo(store, knowledge=None) -> None:
    store.put_workspace(DEMO_WORKSPACE, "Demo Shop 演示商店")
    for agent in DEMO_AGENTS:
        store.put_agent(agent)
    if knowledge is not None:  # the stream indexes the articles and trains the workspace's model
        articles, errors = parse_jsonl(DEMO_WORKSPACE, DEMO_KB.read_text(encoding="utf-8").splitlines())
        if errors:
            raise ValueError(f"demo_kb.jsonl: {errors[:3]}")
        knowledge.put_articles(articles)
