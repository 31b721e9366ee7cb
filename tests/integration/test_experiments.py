"""A/B experiments and conversions over REST on the local stack: admins create, start and stop; the widget
gets stable variants (exposure logged once); business events (idempotent on eventId) become conversions."""

from __future__ import annotations

import time

import requests

from .conftest import open_conversation

VARIANTS = [{"id": "control", "weight": 50, "value": "您好，有什么可以帮您？"},
            {"id": "warm", "weight": 50, "value": "欢迎光临！今天想找点什么？"}]


def _bearer(world, kind: str, who: str) -> dict:
    return {"Authorization": f"Bearer {world.token(kind, who)}"}


def _url(world, path: str) -> str:
    return f"{world.stack.api_url}/workspaces/{world.workspace}/{path}"


def _setup(world) -> tuple[dict, dict]:
    world.agent("ada", "Ada", role="admin")
    world.agent("sue", "Sue", role="supervisor")
    world.agent("bob", "Bob")
    return _bearer(world, "agent", "ada"), _bearer(world, "agent", "sue")


def _create(world, admin: dict, **body) -> dict:
    reply = requests.post(_url(world, "experiments"), json={"name": "greeting", "kind": "greeting",
                                                            "variants": VARIANTS, **body}, headers=admin, timeout=10)
    assert reply.status_code == 201, reply.text
    return reply.json()


def _assignments(world, visitor: str) -> dict:
    reply = requests.get(_url(world, "experiments/assignments"), headers=_bearer(world, "visitor", visitor),
                         timeout=10)
    assert reply.status_code == 200, reply.text
    return {a["experimentId"]: a for a in reply.json()["assignments"]}


def _expose(world, visitor: str, eid: str) -> dict | None:
    """What the widget asks when it shows the variant: its assignment, with `exposed` (the first time only)."""
    reply = requests.get(_url(world, "experiments/assignments"), params={"expose": eid},
                         headers=_bearer(world, "visitor", visitor), timeout=10)
    assert reply.status_code == 200, reply.text
    return next((a for a in reply.json()["assignments"] if a["experimentId"] == eid), None)


def _event(world, visitor: str, event_id: str, **body) -> requests.Response:
    return requests.post(_url(world, "events"), json={"eventId": event_id, "type": "order_placed", "value": 99.5,
                                                      **body}, headers=_bearer(world, "visitor", visitor), timeout=10)


def test_experiment_life_cycle_and_conversions(world):
    admin, supervisor = _setup(world)
    agent = _bearer(world, "agent", "bob")
    assert requests.post(_url(world, "experiments"), json={"name": "x", "kind": "greeting", "variants": VARIANTS},
                         headers=agent, timeout=10).status_code == 403
    assert requests.post(_url(world, "experiments"), json={"name": "x", "kind": "greeting", "variants": VARIANTS},
                         headers=supervisor, timeout=10).status_code == 403
    assert requests.get(_url(world, "experiments"), headers=agent, timeout=10).status_code == 403

    experiment = _create(world, admin)
    eid = experiment["experimentId"]
    assert experiment["status"] == "draft"
    assert _assignments(world, "v-draft") == {}  # a draft assigns nobody
    assert requests.post(_url(world, f"experiments/{eid}/start"), headers=supervisor, timeout=10).status_code == 403
    started = requests.post(_url(world, f"experiments/{eid}/start"), headers=admin, timeout=10)
    assert started.status_code == 200 and started.json()["status"] == "running", started.text
    assert requests.post(_url(world, f"experiments/{eid}/start"), headers=admin, timeout=10).status_code == 409

    visitors = [f"v-{i}" for i in range(12)]
    first = {v: _assignments(world, v)[eid]["variantId"] for v in visitors}
    again = {v: _assignments(world, v)[eid]["variantId"] for v in visitors}
    assert first == again  # stable across calls
    assert set(first.values()) <= {"control", "warm"}
    # learning the variant is no exposure: the widget reports one when it shows the variant, counted once
    idle = requests.get(_url(world, f"experiments/{eid}"), headers=supervisor, timeout=10).json()
    assert sum(r["exposures"] for r in idle["results"]["variants"]) == 0
    for v in visitors:
        shown = _expose(world, v, eid)
        assert shown["variantId"] == first[v] and shown["exposed"] is True and shown["running"] is True, shown
    assert _expose(world, visitors[0], eid)["exposed"] is False  # a reload shows it again: no new count
    bad = requests.get(_url(world, "experiments/assignments"), params={"expose": "a b"},
                       headers=_bearer(world, "visitor", "v-0"), timeout=10)
    assert bad.status_code == 422
    assignment = _assignments(world, visitors[0])[eid]
    assert assignment["value"] == next(v["value"] for v in VARIANTS if v["id"] == first[visitors[0]])

    # conversions: the first two visitors buy; the first resends its event; an unexposed visitor buys too
    for v in visitors[:2]:
        reply = _event(world, v, f"order-{v}")
        assert reply.status_code == 200 and reply.json()["experiments"] == [eid], reply.text
    resent = _event(world, visitors[0], f"order-{visitors[0]}")
    assert resent.status_code == 200 and resent.json()["duplicate"] is True
    second = _event(world, visitors[0], "order-second")  # another order of a converted visitor: no new conversion
    assert second.json()["duplicate"] is False and second.json()["experiments"] == []
    assert _event(world, "never-exposed", "order-x").json()["experiments"] == []

    report = requests.get(_url(world, f"experiments/{eid}"), headers=supervisor, timeout=10)
    assert report.status_code == 200, report.text
    rows = {r["variantId"]: r for r in report.json()["results"]["variants"]}
    for variant in ("control", "warm"):
        exposed = [v for v in visitors if first[v] == variant]
        converted = [v for v in visitors[:2] if first[v] == variant]
        assert rows[variant]["exposures"] == len(exposed)
        assert rows[variant]["conversions"] == len(converted)
    assert rows["control"]["control"] is True

    listed = requests.get(_url(world, "experiments"), headers=supervisor, timeout=10).json()["items"]
    assert [e["experimentId"] for e in listed] == [eid]

    # roll out the winner: everyone gets it, new visitors too
    assert requests.post(_url(world, f"experiments/{eid}/stop"), json={"winner": "nope"}, headers=admin,
                         timeout=10).status_code == 422
    stopped = requests.post(_url(world, f"experiments/{eid}/stop"), json={"winner": "warm"}, headers=admin,
                            timeout=10)
    assert stopped.status_code == 200 and stopped.json()["winner"] == "warm", stopped.text
    for v in visitors + ["v-new"]:
        got = _assignments(world, v)[eid]
        assert got["variantId"] == "warm" and got["rolledOut"] is True and got["running"] is False
    assert _expose(world, "v-new", eid)["exposed"] is False  # a rolled-out winner is no exposure
    after = requests.get(_url(world, f"experiments/{eid}"), headers=supervisor, timeout=10).json()
    assert sum(r["exposures"] for r in after["results"]["variants"]) == len(visitors)  # roll-out is no exposure


def test_stop_without_body_and_validation(world):
    admin, _ = _setup(world)
    bad = [
        {"name": "x", "kind": "greeting", "variants": VARIANTS[:1]},
        {"name": "x", "kind": "greeting", "variants": [VARIANTS[0], VARIANTS[0]]},
        {"name": "x", "kind": "banner", "variants": VARIANTS},
        {"name": "x", "kind": "proactive_delay", "variants": VARIANTS},  # texts are no delays
        {"name": "x", "kind": "greeting", "variants": [{**VARIANTS[0], "weight": 6000},
                                                       {**VARIANTS[1], "weight": 5000}]},
        {"name": "", "kind": "greeting", "variants": VARIANTS},
    ]
    for body in bad:
        reply = requests.post(_url(world, "experiments"), json=body, headers=admin, timeout=10)
        assert reply.status_code == 422, (body, reply.text)
        assert reply.json()["error"]["code"] == "invalid_request"
    reply = requests.post(_url(world, "experiments"), data="{oops", headers={**admin, "Content-Type":
                                                                             "application/json"}, timeout=10)
    assert reply.status_code == 422

    delay = requests.post(_url(world, "experiments"), json={
        "name": "popup", "kind": "proactive_delay",
        "variants": [{"id": "now", "weight": 1, "value": 0}, {"id": "later", "weight": 1, "value": 30}]},
        headers=admin, timeout=10).json()
    eid = delay["experimentId"]
    assert requests.post(_url(world, f"experiments/{eid}/stop"), headers=admin, timeout=10).status_code == 409
    requests.post(_url(world, f"experiments/{eid}/start"), headers=admin, timeout=10)
    stopped = requests.post(_url(world, f"experiments/{eid}/stop"), headers=admin, timeout=10)
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped" and stopped.json()["winner"] is None
    assert eid not in _assignments(world, "v-1")  # stopped without a winner: the product's default
    assert _expose(world, "v-1", eid) is None

    assert _event(world, "v-1", "e-1", type="refund").status_code == 422
    assert _event(world, "v-1", "e-1", value=-1).status_code == 422
    assert _event(world, "v-1", "e-1", at="yesterday").status_code == 422
    assert _event(world, "v-1", "e-1", at="0001-01-01T00:00:00+01:00").status_code == 422
    tiny = _event(world, "v-1", "e-tiny", value=1e-300)
    assert tiny.status_code == 200, tiny.text
    assert _event(world, "v-1", "e 1").status_code == 422


def test_other_workspaces_and_roles(world_factory):
    mine, theirs = world_factory(), world_factory()
    admin, _ = _setup(mine)
    _setup(theirs)
    eid = _create(mine, admin)["experimentId"]
    their_admin = _bearer(theirs, "agent", "ada")
    # their admin, their workspace, my experiment id: no such experiment
    assert requests.get(_url(theirs, f"experiments/{eid}"), headers=their_admin, timeout=10).status_code == 404
    assert requests.post(_url(theirs, f"experiments/{eid}/start"), headers=their_admin,
                         timeout=10).status_code == 404
    # their admin's token on my workspace: no such workspace
    assert requests.get(_url(mine, f"experiments/{eid}"), headers=their_admin, timeout=10).status_code == 404
    # a visitor of theirs on my workspace; an agent on the widget's route
    assert requests.get(_url(mine, "experiments/assignments"), headers=_bearer(theirs, "visitor", "v-1"),
                        timeout=10).status_code == 404
    assert requests.get(_url(mine, "experiments/assignments"), headers=admin, timeout=10).status_code == 403
    assert requests.get(_url(mine, "experiments/assignments"), timeout=10).status_code == 401
    assert requests.get(_url(mine, "experiments/nope"), headers=admin, timeout=10).status_code == 404


def test_integrator_events_credit_conversations(world):
    admin, supervisor = _setup(world)
    reply = requests.post(_url(world, "api-keys"), json={"name": "shop"}, headers=admin, timeout=10)
    assert reply.status_code == 201, reply.text
    key = {"x-api-key": reply.json()["key"]}

    # cust-1 chats with an agent, then orders: the order is credited to that conversation
    world.agent("agent-1")
    agent = world.agent_socket("agent-1")
    customer = world.customer("cust-1")
    conversation_id = open_conversation(world, customer, agent)
    _assignments(world, "cust-1")  # the widget saw both visitors
    _assignments(world, "cust-2")

    def post(body):
        deadline = time.monotonic() + 5
        while True:  # the gateway learns new keys within seconds
            got = requests.post(f"{world.stack.api_url}/integrations/events", json=body, headers=key, timeout=10)
            if got.status_code != 403 or time.monotonic() > deadline:
                return got
            time.sleep(0.3)

    order = {"eventId": "o-1", "type": "payment_succeeded", "customerId": "cust-1", "value": 128, "currency": "CNY"}
    first = post(order)
    assert first.status_code == 200, first.text
    assert first.json()["conversationId"] == conversation_id and first.json()["duplicate"] is False
    assert post(order).json()["duplicate"] is True
    old = post({**order, "eventId": "o-0", "at": "2020-01-01T00:00:00Z"})
    assert old.status_code == 200 and old.json()["conversationId"] is None  # long before the conversation
    assert post({**order, "eventId": "o-2", "customerId": "bad id"}).status_code == 422
    assert requests.post(f"{world.stack.api_url}/integrations/events", json=order, timeout=10).status_code in (401,
                                                                                                             403)

    report = requests.get(_url(world, "conversions"), headers=supervisor, timeout=10)
    assert report.status_code == 200, report.text
    assert report.json() == {"visitorsSeen": 2,
                             "chatted": {"visitors": 1, "converted": 1, "conversionRate": 1.0},
                             "notChatted": {"visitors": 1, "converted": 0, "conversionRate": 0.0}}
