"""Demo data for `kefu dev`: the workspace `demo` (an online shop) and its agents."""

from __future__ import annotations

from kefu.models import Agent

DEMO_WORKSPACE = "demo"
DEMO_AGENTS = (
    Agent(DEMO_WORKSPACE, "alice", "Alice 王", role="supervisor", groups=("售后", "billing"), languages=("zh", "en"),
          max_concurrent=5),
    Agent(DEMO_WORKSPACE, "bob", "Bob 李", groups=("技术",), languages=("zh",), max_concurrent=3),
    Agent(DEMO_WORKSPACE, "carol", "Carol 陈", role="admin", groups=("售后", "技术"), languages=("en", "zh"),
          max_concurrent=4),
)


def seed_demo(store) -> None:
    store.put_workspace(DEMO_WORKSPACE, "Demo Shop 演示商店")
    for agent in DEMO_AGENTS:
        store.put_agent(agent)
