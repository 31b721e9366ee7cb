"""Issue 8 on the local stack: the audit log of sensitive actions (written, queryable only by the workspace's
admins, append-only) and step-up verification (TOTP enrolment, step-up tokens, replay and rate limits, the
integrator's SSO step-up) before the sensitive routes."""

from __future__ import annotations

import hashlib

import json
import secrets
import time

import pytest
import requests
from botocore.exceptions import ClientError
from kefu import audit, step_up, tokens
from kefu.adapters.audit_store import AuditStore
from kefu.models import Agent

UA = "kefu-audit-test/1.0"


class Api:
    def __init__(self, stack, store, key):
        self.stack, self.store, self.key = stack, store, key
        self.ws = "au-" + secrets.token_hex(4)
        self.other = "aub-" + secrets.token_hex(4)
        for workspace in (self.ws, self.other):
            store.put_workspace(workspace, "audit test")
            store.put_bot_settings(workspace, {"enabled": False})
        for agent in (Agent(self.ws, "ag", "Agent"), Agent(self.ws, "ag2", "Agent Two"),
                      Agent(self.ws, "sup", "Supervisor", role="supervisor"),
                      Agent(self.ws, "adm", "Admin", role="admin"), Agent(self.other, "adm", "Admin B", role="admin"),
                      Agent(self.other, "ag", "Agent B")):
            store.put_agent(agent)
        self.http = requests.Session()

    def bearer(self, agent_id: str, workspace: str | None = None) -> str:
        return tokens.issue(self.key, kind="agent", workspace=workspace or self.ws, subject=agent_id)

    def call(self, method, path, who="adm", workspace=None, step=None, headers=None, **kw):
        h = {"User-Agent": UA, **(headers or {})}
        if who is not None:
            h["Authorization"] = f"Bearer {self.bearer(who, workspace)}"
        if step is not None:
            h[step_up.HEADER] = step
        return self.http.request(method, self.stack.api_url + path.format(ws=workspace or self.ws), headers=h,
                                 timeout=30, **kw)

    def enrol(self, who: str, step=None) -> str:
        enrolled = self.call("POST", "/workspaces/{ws}/step-up/totp", who, step=step)
        assert enrolled.status_code == 201, enrolled.text
        body = enrolled.json()
        assert body["otpauthUri"].startswith("otpauth://totp/") and body["secret"] in body["otpauthUri"]
        return body["secret"]

    def step_up(self, who: str, secret: str, at: float | None = None) -> requests.Response:
        return self.call("POST", "/workspaces/{ws}/step-up", who, json={"code": step_up.totp(secret, at)})

    def audit(self, who="adm", workspace=None, **params) -> requests.Response:
        return self.call("GET", "/workspaces/{ws}/audit", who, workspace=workspace, params=params)


@pytest.fixture
def api(stack, store, signing_key):
    return Api(stack, store, signing_key)


def _error(response) -> tuple[int, str]:
    try:
        return response.status_code, response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return response.status_code, response.text[:200]


def _customer_with_history(api) -> str:
    customer = "cust-" + secrets.token_hex(4)
    made = api.call("POST", "/workspaces/{ws}/tickets", "adm", json={"subject": "订单未到", "customerId": customer})
    assert made.status_code == 201, made.text
    return customer


def test_history_needs_a_fresh_step_up_of_the_same_agent_and_workspace(api):
    customer = _customer_with_history(api)
    profile = f"/workspaces/{{ws}}/customers/{customer}"
    assert _error(api.call("GET", profile, "ag")) == (403, "step_up_required")
    # a customer's conversations, filtered by customer, are the same history (supervisors)
    listing = "/workspaces/{ws}/conversations"
    assert _error(api.call("GET", listing, "sup", params={"customerId": customer})) == (403, "step_up_required")
    assert api.call("GET", listing, "sup").status_code == 200  # the unfiltered list is not

    # no authenticator yet: step-up cannot be asked for
    assert _error(api.call("POST", "/workspaces/{ws}/step-up", "ag", json={"code": "123456"}))[0] == 409
    secret = api.enrol("ag")
    stepped = api.step_up("ag", secret)
    assert stepped.status_code == 200, stepped.text
    token = stepped.json()["token"]
    assert stepped.json()["expiresIn"] == step_up.STEP_UP_TTL_S
    allowed = api.call("GET", profile, "ag", step=token)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["customerId"] == customer

    # the same code again (a replay, within its window): refused
    assert _error(api.step_up("ag", secret)) == (403, "step_up_required")
    # another agent's, another workspace's, an expired, and a plain agent token: refused
    sup_secret = api.enrol("sup")
    sup_token = api.step_up("sup", sup_secret).json()["token"]
    assert api.call("GET", listing, "sup", step=sup_token, params={"customerId": customer}).status_code == 200
    assert _error(api.call("GET", profile, "ag", step=sup_token)) == (403, "step_up_required")
    foreign = step_up.issue(api.key, workspace=api.other, agent_id="ag", method="totp")
    assert _error(api.call("GET", profile, "ag", step=foreign)) == (403, "step_up_required")
    expired = step_up.issue(api.key, workspace=api.ws, agent_id="ag", method="totp", now=time.time() - 301)
    assert _error(api.call("GET", profile, "ag", step=expired)) == (403, "step_up_required")
    assert _error(api.call("GET", profile, "ag", step=api.bearer("ag"))) == (403, "step_up_required")
    # a step-up token is no agent token
    as_bearer = requests.get(api.stack.api_url + f"/workspaces/{api.ws}/customers/{customer}", timeout=30,
                             headers={"Authorization": f"Bearer {token}"})
    assert _error(as_bearer) == (401, "unauthorized")
    # another workspace's admin, with a step-up of their own workspace, sees nothing of this one
    b_token = step_up.issue(api.key, workspace=api.other, agent_id="adm", method="totp")
    assert _error(api.call("GET", f"/workspaces/{api.ws}/customers/{customer}", "adm", workspace=api.other,
                           step=b_token)) == (404, "not_found")

    # re-enrolling needs a step-up (a stolen agent token cannot replace the authenticator)
    assert _error(api.call("POST", "/workspaces/{ws}/step-up/totp", "ag")) == (403, "step_up_required")
    api.enrol("ag", step=token)

    views = api.audit(action="customer.history_view").json()["items"]
    named = "customer:" + hashlib.sha256(f"{api.ws}\n{customer}".encode()).hexdigest()[:32]
    # the customer named by a digest, never the id itself (an erasure leaves nothing of it in the log)
    assert {(e["actor"]["id"], e["target"]) for e in views} == {("ag", named), ("sup", named)}
    kinds = [e["action"] for e in api.audit(actor="ag").json()["items"]]
    assert kinds.count("step_up.verify") == 1 and kinds.count("step_up.failure") == 1
    assert kinds.count("step_up.enrol") == 2


def test_wrong_codes_are_rate_limited(api):
    secret = api.enrol("ag")
    now = time.time()
    good = {step_up.totp(secret, now + d) for d in (-30, 0, 30, 60)}
    wrong = next(c for c in (f"{n:06d}" for n in range(1000, 2000)) if c not in good)
    for _ in range(step_up.MAX_FAILURES):
        assert _error(api.call("POST", "/workspaces/{ws}/step-up", "ag", json={"code": wrong})) == (
            403, "step_up_required")
    locked = api.step_up("ag", secret)  # even the right code, until the window ends
    assert _error(locked) == (429, "rate_limited")
    # the 429 says when to retry: whole seconds, at least 1, at most until the 5-minute window ends
    retry_after = locked.headers.get("Retry-After", "")
    assert retry_after.isdigit() and 1 <= int(retry_after) <= step_up.FAILURE_WINDOW_S, locked.headers
    from_console = api.call("POST", "/workspaces/{ws}/step-up", "ag", json={"code": step_up.totp(secret)},
                            headers={"Origin": api.stack.base_url})
    assert _error(from_console) == (429, "rate_limited") and from_console.headers["Retry-After"].isdigit()
    assert "Retry-After" in from_console.headers["Access-Control-Expose-Headers"]  # a page may read it (CORS)
    # another agent is not locked
    assert api.step_up("ag2", api.enrol("ag2")).status_code == 200
    actions = [e["action"] for e in api.audit(actor="ag").json()["items"]]
    assert actions.count("step_up.failure") == step_up.MAX_FAILURES and actions[0] == "step_up.locked"


def test_role_changes_need_a_step_up_and_the_integrators_sso_can_give_one(api):
    profile = {"name": "Agent", "role": "supervisor"}
    assert _error(api.call("PUT", "/workspaces/{ws}/agents/ag", "adm", json=profile)) == (403, "step_up_required")
    # a profile change that keeps the role, or a new plain agent, needs none
    assert api.call("PUT", "/workspaces/{ws}/agents/ag", "adm", json={"name": "Agent 1"}).status_code == 200
    assert api.call("PUT", "/workspaces/{ws}/agents/newbie", "adm", json={"name": "New"}).status_code == 200
    assert _error(api.call("PUT", "/workspaces/{ws}/agents/boss", "adm", json={"name": "B", "role": "admin"})) == (
        403, "step_up_required")
    assert api.store.get_agent(api.ws, "ag").role == "agent"

    key = api.call("POST", "/workspaces/{ws}/api-keys", "adm", json={"name": "sso"}).json()
    signed_in = requests.post(api.stack.api_url + "/integrations/agent-tokens", timeout=30,
                              headers={"x-api-key": key["key"], "User-Agent": UA},
                              json={"agentId": "adm", "stepUp": True})
    assert signed_in.status_code == 200, signed_in.text
    sso = signed_in.json()
    assert sso["stepUpExpiresIn"] == step_up.STEP_UP_TTL_S
    plain = requests.post(api.stack.api_url + "/integrations/agent-tokens", timeout=30,
                          headers={"x-api-key": key["key"]}, json={"agentId": "adm"}).json()
    assert plain["stepUpToken"] is None
    changed = api.call("PUT", "/workspaces/{ws}/agents/ag", "adm", json=profile, step=sso["stepUpToken"])
    assert changed.status_code == 200, changed.text
    assert api.store.get_agent(api.ws, "ag").role == "supervisor"

    entries = api.audit().json()["items"]
    role = next(e for e in entries if e["action"] == "agent.role_change")
    assert (role["target"], role["details"]) == ("ag", {"role": "supervisor", "previousRole": "agent"})
    assert role["actor"] == {"type": "agent", "id": "adm", "role": "admin"}
    sso_entry = next(e for e in entries if e["action"] == "step_up.sso")
    assert sso_entry["actor"] == {"type": "integration", "id": key["keyId"], "role": None}
    assert sso_entry["target"] == "adm"
    assert {e["action"] for e in entries} >= {"agent.update", "agent.create", "api_key.issue"}


def test_sensitive_actions_are_audited_and_only_admins_of_the_workspace_read_them(api):
    marker = "秘密答案-" + secrets.token_hex(3)  # text that must never reach the log
    calls = [
        ("POST", "/workspaces/{ws}/api-keys", {"name": "crm"}, 201),
        ("PUT", "/workspaces/{ws}/routing", {}, 200),
        ("PUT", "/workspaces/{ws}/bot", {"enabled": False}, 200),
        ("PUT", "/workspaces/{ws}/survey", {"nps": True}, 200),
        ("PUT", "/workspaces/{ws}/proactive", {"rules": []}, 200),
        ("PUT", "/workspaces/{ws}/ticket-settings", {}, 200),
        ("POST", "/workspaces/{ws}/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["*"], "active": False},
         201),
        ("POST", "/workspaces/{ws}/experiments", {"name": "g", "kind": "greeting", "variants": [
            {"id": "a", "weight": 1, "value": "您好"}, {"id": "b", "weight": 1, "value": "欢迎"}]}, 201),
    ]
    made = {}
    for method, path, body, status in calls:
        response = api.call(method, path, "adm", json=body)
        assert response.status_code == status, (path, response.text)
        made[path] = response.json()
    key_id = made["/workspaces/{ws}/api-keys"]["keyId"]
    hook = made["/workspaces/{ws}/webhooks"]["subscriptionId"]
    experiment = made["/workspaces/{ws}/experiments"]["experimentId"]
    article = "au-art-" + secrets.token_hex(3)
    line = json.dumps({"id": article, "lang": "zh", "title": "退货", "answer": marker, "questions": ["怎么退货"]},
                      ensure_ascii=False)
    for method, path, who, body in (
            ("POST", f"/workspaces/{{ws}}/experiments/{experiment}/start", "adm", None),
            ("POST", f"/workspaces/{{ws}}/experiments/{experiment}/stop", "adm", {"winner": "b"}),
            ("DELETE", f"/workspaces/{{ws}}/webhooks/{hook}", "adm", None),
            ("DELETE", f"/workspaces/{{ws}}/api-keys/{key_id}", "adm", None),
            ("POST", "/workspaces/{ws}/kb/import", "sup", line),
            ("DELETE", f"/workspaces/{{ws}}/kb/articles/{article}", "sup", None)):
        kwargs = {"data": body.encode()} if isinstance(body, str) else {"json": body} if body is not None else {}
        response = api.call(method, path, who, **kwargs)
        assert response.status_code == 200, (path, response.text)

    page = api.audit()
    assert page.status_code == 200, page.text
    entries = page.json()["items"]
    expected = ["api_key.issue", "settings.routing", "settings.bot", "settings.survey", "settings.proactive",
                "settings.tickets", "webhook.subscribe", "experiment.create", "experiment.start",
                "experiment.roll_out", "webhook.unsubscribe", "api_key.revoke", "kb.import", "kb.delete"]
    assert [e["action"] for e in entries] == expected[::-1]  # newest first
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)
    by_action = {e["action"]: e for e in entries}
    assert by_action["api_key.revoke"]["target"] == key_id
    assert by_action["webhook.unsubscribe"]["target"] == hook
    assert by_action["experiment.roll_out"]["details"] == {"winner": "b"}
    assert by_action["kb.import"]["actor"] == {"type": "agent", "id": "sup", "role": "supervisor"}
    assert by_action["kb.import"]["details"] == {"imported": 1, "refused": 0}
    for entry in entries:
        assert entry["sourceIp"] and entry["userAgent"] == UA
    text = page.text
    assert marker not in text and "127.0.0.1:9/hook" not in text and "您好" not in text

    # filters and the cursor
    only = api.audit(action="experiment.start").json()["items"]
    assert [e["target"] for e in only] == [experiment]
    assert {e["actor"]["id"] for e in api.audit(actor="sup").json()["items"]} == {"sup"}
    assert api.audit(actor="agent:sup", action="kb.delete").json()["items"][0]["target"] == article
    assert api.audit(actor="adm", action="kb.delete").json()["items"] == []
    middle = entries[5]["at"]
    assert [e["at"] for e in api.audit(to=middle).json()["items"]] == [e["at"] for e in entries[5:]]
    assert [e["at"] for e in api.audit(**{"from": middle}).json()["items"]] == [e["at"] for e in entries[:6]]
    assert api.audit(**{"from": "2001-01-01", "to": "2001-12-31"}).json()["items"] == []
    seen, cursor = [], None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        body = api.audit(**params).json()
        seen += [e["entryId"] for e in body["items"]]
        cursor = body["nextCursor"]
        if not cursor:
            break
    assert seen == [e["entryId"] for e in entries]
    assert _error(api.audit(cursor=cursor or "bm9wZQ")) [0] == 422
    assert _error(api.audit(**{"from": "not a time"}))[0] == 422

    # only the workspace's admins read it
    assert _error(api.audit("ag")) == (403, "forbidden")
    assert _error(api.audit("sup")) == (403, "forbidden")
    assert _error(api.call("GET", f"/workspaces/{api.ws}/audit", "adm", workspace=api.other)) == (404, "not_found")
    assert api.audit(workspace=api.other).json()["items"] == []  # B's admin reads B's (empty) log only
    anonymous = requests.get(api.stack.api_url + f"/workspaces/{api.ws}/audit", timeout=30)
    assert anonymous.status_code == 401


def test_entries_are_never_overwritten(api, stack):
    store = AuditStore()
    entry = audit.entry(api.ws, "kb.delete", actor=audit.agent("adm", "admin"), target="x")
    store.append(entry)
    with pytest.raises(ClientError) as refused:
        store.append(audit.Entry(**{**entry.__dict__, "target": "changed"}))
    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    items, _ = store.query(api.ws)
    assert [(e.id, e.target) for e in items] == [(entry.id, "x")]
    assert not [name for name in dir(store) if name.startswith(("update", "delete", "put"))]
