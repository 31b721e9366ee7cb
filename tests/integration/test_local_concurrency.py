"""The local runtime runs concurrent invocations in threads of one process. Powertools' REST resolver keeps the
request on its *class* (BaseRouter.current_event / lambda_context), which on Lambda is harmless (one invocation
per process) but here would let two concurrent REST requests see each other's event. The local runtime makes
those attributes per thread (kefu_local.runtime.isolate_powertools_requests); this test fires many concurrent
REST requests with different identities, paths and bodies, mixed with WebSocket connections (the authorizer,
$connect and $disconnect functions), and checks that every answer is the one its own request asked for."""

from __future__ import annotations

import random
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

import requests
from kefu import tokens
from kefu.models import Agent

WORKSPACES = 3
ROUNDS = 12  # of every kind of request per workspace


def _session() -> requests.Session:
    local = _session.local  # one keep-alive session per client thread
    if not hasattr(local, "http"):
        local.http = requests.Session()
    return local.http


_session.local = threading.local()


def test_concurrent_rest_requests_each_get_their_own_answer(stack, store, signing_key):
    api = stack.api_url
    spaces = []
    for n in range(WORKSPACES):
        ws = f"cc{n}-" + secrets.token_hex(3)
        store.put_workspace(ws, f"concurrency {n}")
        store.put_bot_settings(ws, {"enabled": False})
        agents = {f"sup{n}-{i}": "supervisor" for i in range(3)} | {f"ag{n}-{i}": "agent" for i in range(3)}
        agents[f"adm{n}"] = "admin"
        for agent_id, role in agents.items():
            store.put_agent(Agent(ws, agent_id, agent_id, role=role))
        retention = 10 + n  # tells the workspaces' privacy settings apart
        store.put_privacy_settings(ws, {"retentionDays": retention, "anonymous": False})
        spaces.append({"ws": ws, "agents": agents, "retention": retention})

    def bearer(ws: str, kind: str, subject: str | None, **kw) -> dict:
        return {"Authorization": "Bearer " + tokens.issue(signing_key, kind=kind, workspace=ws, subject=subject, **kw)}

    calls = []  # (description, function returning None or a failure text)
    for n, space in enumerate(spaces):
        ws, agents, admin = space["ws"], space["agents"], f"adm{n}"

        def list_agents(ws=ws, agents=agents, who=None):
            r = _session().get(f"{api}/workspaces/{ws}/agents", headers=bearer(ws, "agent", who), timeout=30)
            if agents[who] == "agent":
                return None if r.status_code == 403 else f"{who} (agent) listed agents: {r.status_code} {r.text[:200]}"
            if r.status_code != 200:
                return f"{who} got {r.status_code} {r.text[:200]}"
            seen = {a["agentId"] for a in r.json()["items"]}
            return None if seen == set(agents) else f"{who} of {ws} saw agents {sorted(seen)}"

        def privacy(ws=ws, admin=admin, retention=space["retention"]):
            r = _session().get(f"{api}/workspaces/{ws}/privacy", headers=bearer(ws, "agent", admin), timeout=30)
            if r.status_code != 200 or r.json()["retentionDays"] != retention:
                return f"privacy of {ws}: {r.status_code} {r.text[:200]}"
            return None

        def named_visitor(ws=ws):
            name = "n" + secrets.token_hex(6)
            r = _session().post(f"{api}/workspaces/{ws}/visitor-tokens", json={"name": name}, timeout=30)
            if r.status_code != 200:
                return f"named visitor of {ws}: {r.status_code} {r.text[:200]}"
            who = tokens.verify(signing_key, r.json()["token"])
            if (who.workspace, who.name, r.json()["workspace"]) != (ws, name, ws):
                return f"asked {ws}/{name}, got {who.workspace}/{who.name}"
            return None

        def kept_visitor(ws=ws):
            held = "v_" + secrets.token_hex(8)
            name = "k" + secrets.token_hex(6)
            r = _session().post(f"{api}/workspaces/{ws}/visitor-tokens", json={"name": name},
                                headers=bearer(ws, "visitor", held), timeout=30)
            if r.status_code != 200:
                return f"visitor {held} of {ws}: {r.status_code} {r.text[:200]}"
            who = tokens.verify(signing_key, r.json()["token"])
            if (r.json()["customerId"], who.id, who.workspace, who.name) != (held, held, ws, name):
                return f"visitor {held}/{name} of {ws} got {who.id}/{who.name} of {who.workspace}"
            return None

        def enrol(ws=ws, who=None):
            r = _session().post(f"{api}/workspaces/{ws}/step-up/totp", headers=bearer(ws, "agent", who), timeout=30)
            if r.status_code != 201:
                return f"enrol {who} of {ws}: {r.status_code} {r.text[:200]}"
            label = unquote(r.json()["otpauthUri"].split("?")[0])
            return None if label.endswith(f":{ws}/{who}") else f"enrol {who} of {ws} got {label}"

        for who in agents:
            calls += [(f"agents {ws} {who}", lambda f=list_agents, w=who: f(who=w))] * ROUNDS
            calls.append((f"enrol {ws} {who}", lambda f=enrol, w=who: f(who=w)))  # once: re-enrolling needs a step-up
        calls += [(f"privacy {ws}", privacy)] * ROUNDS
        calls += [(f"named visitor {ws}", named_visitor)] * ROUNDS
        calls += [(f"kept visitor {ws}", kept_visitor)] * ROUNDS

        def socket(ws=ws):  # other functions at the same time: the authorizer, $connect and $disconnect
            from kefu_local.wsclient import Socket

            customer = Socket(f"{stack.ws_url}?token=" + tokens.issue(signing_key, kind="visitor", workspace=ws,
                                                                      subject="c-" + secrets.token_hex(4)))
            customer.close()

        calls += [(f"socket {ws}", socket)] * 4

    calls += [("health", lambda: None if _session().get(f"{api}/health", timeout=30).json() == {"status": "ok"}
               else "health")] * ROUNDS
    random.Random(8).shuffle(calls)

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(lambda call: (call[0], call[1]()), calls))
    failures = [f"{what}: {problem}" for what, problem in results if problem]
    assert not failures, f"{len(failures)} of {len(calls)} requests got another request's answer:\n" + "\n".join(
        failures[:20])
    # the requests really ran side by side: the api function needed several instances
    assert stack.gateway.runtime.instances()["api"] > 1
