"""Routing use cases over in-memory ports: queue, priorities, closing, presence, supervisors, bad input."""

import pytest

from kefu import frames
from kefu.conversations import ConversationService
from kefu.delivery import Delivery
from kefu.errors import Conflict, ConversationClosed, Forbidden, InvalidFrame, NoAgentAvailable, NotFound
from kefu.models import Agent, Principal
from kefu.router import Router
from kefu.tickets import TicketService

from .fakes import FakeTimers, MemoryStore, MemoryTicketStore, RecordingNotifier

ALICE = Principal("demo", "agent", "alice", "Alice", agent_role="agent")
BOB = Principal("demo", "agent", "bob", "Bob", agent_role="agent")
SUPER = Principal("demo", "agent", "sue", "Sue", agent_role="supervisor")
STRANGER = Principal("other", "agent", "sue", "Sue", agent_role="supervisor")


class World:
    def __init__(self):
        self.store, self.notifier, self.timers = MemoryStore(), RecordingNotifier(), FakeTimers()
        delivery = Delivery(self.store, self.notifier, threads=1)
        self.tickets = TicketService(MemoryTicketStore(), self.store, self.store)
        self.router = Router(self.store, delivery, self.timers, tickets=self.tickets)
        self.service = ConversationService(self.store, delivery, self.router)
        self.store.put_agent(Agent("demo", "alice", "Alice", groups=("售后",), max_concurrent=1))
        self.store.put_agent(Agent("demo", "bob", "Bob", groups=("技术",), languages=("zh",), max_concurrent=1))
        self.store.put_agent(Agent("demo", "sue", "Sue", role="supervisor", groups=(), max_concurrent=1))

    def customer(self, n, tags=()):
        who = Principal("demo", "customer", f"cust-{n}", f"Customer {n}", tuple(tags))
        self.service.connect(who, f"c{n}")
        return who

    def open(self, who, n):
        frame = frames.MessageFrame.model_validate({"action": "message", "clientMessageId": f"m{n}", "text": "hi"})
        return self.service.send_message(who, f"c{n}", frame)["conversationId"]

    def frames(self, connection, kind):
        return self.notifier.frames(connection, kind)


def parse(**data):
    return frames.parse(__import__("json").dumps(data))


@pytest.fixture
def world():
    return World()


def test_vip_goes_first_and_close_hands_the_seat_to_the_head_of_the_queue(world):
    world.service.connect(ALICE, "a1")
    first = world.open(world.customer(1), 1)  # alice takes it (max 1)
    regular = world.open(world.customer(2), 2)
    vip = world.open(world.customer(3, tags=["vip"]), 3)
    assert world.frames("c3", "queue")[-1]["position"] == 1  # ahead of the earlier regular customer
    assert world.frames("c2", "queue")[-1]["position"] == 2
    closed = world.router.close(ALICE, parse(action="close", conversationId=first))
    assert closed["type"] == "closed" and world.store.get_conversation("demo", first).status == "closed"
    assert world.frames("c1", "closed")[-1]["by"]["id"] == "alice"
    assert world.store.get_conversation("demo", vip).agent_id == "alice"
    assert world.frames("c3", "routed")[-1]["status"] == "assigned"
    assert world.frames("c2", "queue")[-1]["position"] == 1  # moved up, and was told
    assert world.store.get_agent("demo", "alice").load == 1
    assert world.store.get_conversation("demo", vip).routing["priority"] == 10
    assert world.store.handle_stats("demo")["*"][1] == 1  # the handle time was recorded
    with pytest.raises(ConversationClosed):
        world.router.close(ALICE, parse(action="close", conversationId=first))
    assert world.store.get_conversation("demo", regular).status == "queued"


def test_group_routing_and_unknown_groups(world):
    world.service.connect(ALICE, "a1")
    world.service.connect(BOB, "b1")
    who = world.customer(1)
    conversation = world.open(who, 1)  # no group asked: least busy takes it
    assert world.store.get_conversation("demo", conversation).status == "assigned"
    world2 = World()
    world2.service.connect(BOB, "b1")
    world2.store.workspace_settings["demo"] = {"strategy": "skill_match"}
    c = world2.customer(1)
    # the first message routes at once; route again with a group is "already assigned"
    cid = world2.open(c, 1)
    assert world2.router.route(c, parse(action="route", conversationId=cid, group="技术"))["status"] == "assigned"
    with pytest.raises(NotFound, match="no group"):
        world2.router.handoff(BOB, parse(action="handoff", conversationId=cid, to={"group": "nope"}))


def test_agent_gone_past_the_grace_period_sends_conversations_back_to_routing(world):
    world.service.connect(ALICE, "a1")
    conversation = world.open(world.customer(1), 1)
    world.service.disconnect(ALICE, "a1")
    assert [(p["kind"], d) for p, d in world.timers.scheduled] == [("drain", 0), ("agent_gone", 60)]
    world.timers.fire(world.router)
    assert world.store.get_agent("demo", "alice").presence == "offline"
    stored = world.store.get_conversation("demo", conversation)
    assert stored.status == "queued" and stored.agent_id is None
    assert world.store.get_agent("demo", "alice").load == 0
    texts = [f["text"] for f in world.frames("c1", "message")]
    assert texts[-1] == "Alice went offline; finding another agent"  # history kept, customer told
    assert world.frames("c1", "queue")[-1]["position"] == 1


def test_explicit_offline_releases_and_away_keeps(world):
    world.service.connect(ALICE, "a1")
    conversation = world.open(world.customer(1), 1)
    assert world.router.presence(ALICE, parse(action="presence", status="away"))["requeued"] == 0
    assert world.store.get_conversation("demo", conversation).agent_id == "alice"
    reply = world.router.presence(ALICE, parse(action="presence", status="offline"))
    assert reply["requeued"] == 1 and world.store.get_conversation("demo", conversation).status == "queued"
    assert world.frames("a1", "unassigned")[-1]["conversationId"] == conversation
    world.router.presence(ALICE, parse(action="presence", status="online"))  # comes back: takes the head
    assert world.store.get_conversation("demo", conversation).agent_id == "alice"


def test_customer_who_leaves_the_queue_is_counted_as_abandoned(world):
    who = world.customer(1)
    conversation = world.open(who, 1)
    world.service.disconnect(who, "c1")
    assert world.timers.scheduled[-1][0]["kind"] == "customer_gone"
    world.timers.fire(world.router)
    stored = world.store.get_conversation("demo", conversation)
    assert stored.status == "closed" and stored.close_reason == "abandoned:left"
    assert world.store.counters[("demo", "queue.abandoned")] == 1
    assert world.store.queue_entries("demo") == []


def test_cancel_leaves_the_queue(world):
    who = world.customer(1)
    conversation = world.open(who, 1)
    other = world.customer(2)
    world.open(other, 2)
    assert world.router.cancel(who, parse(action="cancel", conversationId=conversation))["status"] == "closed"
    assert world.frames("c2", "queue")[-1]["position"] == 1
    with pytest.raises(InvalidFrame):
        world.router.cancel(who, parse(action="cancel", conversationId=conversation))
    with pytest.raises(Forbidden):
        world.router.cancel(ALICE, parse(action="cancel", conversationId=conversation))


def test_supervisor_snapshot_and_assignment_by_hand(world):
    world.service.connect(BOB, "b1")  # 技术 only; the conversation asks for nothing in particular
    world.service.connect(SUPER, "s1")
    world.store.put_agent(Agent("demo", "sue", "Sue", role="supervisor", max_concurrent=0, presence="online",
                                connections=1))
    world.store.workspace_settings["demo"] = {"fallbackGroup": None}
    conversation = world.open(world.customer(1), 1)  # bob takes it (any group)
    queued = world.open(world.customer(2), 2)
    snapshot = world.router.snapshot(SUPER)
    assert [q["conversationId"] for q in snapshot["queue"]] == [queued]
    assert {a["agentId"]: a["load"] for a in snapshot["agents"]} == {"alice": 0, "bob": 1, "sue": 0}
    assert snapshot["totals"]["waiting"] == 1
    with pytest.raises(NoAgentAvailable):  # alice is offline
        world.router.assign_by_hand(SUPER, parse(action="assign", conversationId=queued, agentId="alice"))
    world.service.connect(ALICE, "a1")
    world.timers.scheduled.clear()  # (the drain after connecting would do it too)
    reply = world.router.assign_by_hand(SUPER, parse(action="assign", conversationId=queued, agentId="alice"))
    assert reply["status"] == "assigned" and world.store.get_conversation("demo", queued).agent_id == "alice"
    assert world.store.queue_entries("demo") == []
    assert world.store.get_conversation("demo", queued).routing["reason"] == "manual by Sue"
    # a supervisor may also move a colleague's conversation
    world.store.put_agent(Agent("demo", "carl", "Carl", groups=("技术",), presence="online", connections=1))
    world.router.handoff(SUPER, parse(action="handoff", conversationId=conversation, to={"agentId": "carl"}))
    assert world.store.get_conversation("demo", conversation).agent_id == "carl"
    assert world.store.get_agent("demo", "bob").load == 0


def test_refusals(world):
    world.service.connect(ALICE, "a1")
    who = world.customer(1)
    conversation = world.open(who, 1)
    with pytest.raises(Forbidden):
        world.router.presence(who, parse(action="presence", status="online"))
    with pytest.raises(Forbidden):
        world.router.snapshot(who)
    seen = world.router.snapshot(ALICE)  # an agent sees the queue, not colleagues' states and loads
    assert seen["supervisor"] is False and seen["agents"] == [] and "online" not in seen["totals"]
    with pytest.raises(Forbidden):
        world.router.assign_by_hand(ALICE, parse(action="assign", conversationId=conversation, agentId="bob"))
    with pytest.raises(NotFound):  # another workspace's supervisor sees nothing
        world.router.assign_by_hand(STRANGER, parse(action="assign", conversationId=conversation, agentId="bob"))
    with pytest.raises(NotFound):  # someone else's conversation
        world.router.route(world.customer(2), parse(action="route", conversationId=conversation))
    with pytest.raises(Forbidden):
        world.router.handoff(BOB, parse(action="handoff", conversationId=conversation, to={"agentId": "bob"}))
    with pytest.raises(NotFound):
        world.router.assign_by_hand(SUPER, parse(action="assign", conversationId=conversation, agentId="ghost"))
    with pytest.raises(NotFound):
        world.router.close(BOB, parse(action="close", conversationId=conversation))


def test_outside_business_hours_the_customer_gets_the_offline_form(world):
    world.service.connect(ALICE, "a1")
    world.store.workspace_settings["demo"] = {"businessHours": {"timezone": "UTC", "weekly": {}}}  # never open
    who = world.customer(1)
    conversation = world.open(who, 1)
    offline = world.frames("c1", "offline")[-1]
    assert offline["reason"] == "closed_hours" and offline["form"] == ["name", "contact", "question"]
    assert world.store.get_conversation("demo", conversation).status == "open"  # not queued, nobody to wait for
    reply = world.router.offline_form(who, parse(action="offline_form", conversationId=conversation, name="张三",
                                                 contact="+86 138 0000 0000", question="退货怎么办？"))
    assert reply["status"] == "received"
    ticket = world.tickets.store.get_ticket("demo", reply["ticketId"])
    assert ticket.description == "退货怎么办？" and ticket.conversations == (conversation,)
    assert ticket.source == "offline_form" and ticket.contact == "+86 138 0000 0000" and ticket.customer_name == "张三"
    with pytest.raises(Forbidden):
        world.router.offline_form(ALICE, parse(action="offline_form", name="x", contact="y", question="z"))


def test_transfer_to_a_busy_group_waits_in_its_queue_with_the_note(world):
    world.service.connect(ALICE, "a1")
    world.service.connect(BOB, "b1")
    conversation = world.open(world.customer(1), 1)
    owner = world.store.get_conversation("demo", conversation).agent_id
    owner_who = ALICE if owner == "alice" else BOB
    other_group = "技术" if owner == "alice" else "售后"
    other_who = BOB if owner == "alice" else ALICE
    world.open(world.customer(2), 2)  # the other agent is now full too
    reply = world.router.handoff(owner_who, parse(action="handoff", conversationId=conversation,
                                                  to={"group": other_group}, note="needs a refund"))
    assert reply["status"] == "queued" and reply["position"] == 1
    assert world.store.get_agent("demo", owner).load == 0  # capacity moved with it
    # the other agent closes theirs: the transferred conversation reaches them, with the note
    mine = world.store.open_conversations_of_agent("demo", other_who.id)[0]
    world.router.close(other_who, parse(action="close", conversationId=mine.id))
    assigned = [f for f in world.frames("b1" if other_who is BOB else "a1", "assigned")
                if f["conversationId"] == conversation][-1]
    assert assigned["note"] == "needs a refund"


def test_a_transfer_to_your_own_busy_group_does_not_bounce_back(world):
    world.store.put_agent(Agent("demo", "amy", "Amy", groups=("售后",), max_concurrent=1))
    amy = Principal("demo", "agent", "amy", "Amy", agent_role="agent")
    world.service.connect(ALICE, "a1")
    world.service.connect(amy, "m1")
    first = world.open(world.customer(1), 1)
    second = world.open(world.customer(2), 2)  # both 售后 agents are full now
    owner = world.store.get_conversation("demo", first).agent_id
    who = ALICE if owner == "alice" else amy
    reply = world.router.handoff(who, parse(action="handoff", conversationId=first, to={"group": "售后"}))
    assert reply["status"] == "queued"  # her freed seat does not take it straight back
    assert world.store.get_conversation("demo", first).status == "queued"
    other = "amy" if owner == "alice" else "alice"
    other_who = amy if owner == "alice" else ALICE
    assert world.store.get_conversation("demo", second).agent_id == other
    world.router.close(other_who, parse(action="close", conversationId=second))
    assert world.store.get_conversation("demo", first).agent_id == other


def test_a_supervisors_route_reaches_the_customer(world):
    world.service.connect(SUPER, "s1")
    world.store.workspace_settings["demo"] = {"businessHours": {"timezone": "UTC", "weekly": {}}}
    conversation = world.open(world.customer(1), 1)  # closed hours: not routed
    world.store.workspace_settings["demo"] = {}
    world.service.connect(ALICE, "a1")
    world.router.route(SUPER, parse(action="route", conversationId=conversation))
    assert world.frames("c1", "routed")[-1]["agent"]["id"] == "alice"


def test_cancel_after_an_agent_took_it_is_a_conflict(world, monkeypatch):
    from kefu.errors import Conflict

    who = world.customer(1)
    conversation = world.open(who, 1)
    stale = world.store.get_conversation("demo", conversation)
    world.service.connect(ALICE, "a1")
    world.timers.fire(world.router, "drain")  # alice takes it
    monkeypatch.setattr(world.store, "get_conversation", lambda ws, cid: stale)  # the customer's stale view
    with pytest.raises(Conflict):
        world.router.cancel(who, parse(action="cancel", conversationId=conversation))


def test_customers_rate_a_closed_conversation_once(world):
    world.service.connect(ALICE, "a1")
    who = world.customer(1)
    conversation = world.open(who, 1)
    with pytest.raises(Conflict, match="once it has ended"):
        world.router.csat(who, parse(action="csat", conversationId=conversation, score=5))
    world.router.close(ALICE, parse(action="close", conversationId=conversation))
    reply = world.router.csat(who, parse(action="csat", conversationId=conversation, score=4, comment=" 很快 "))
    assert reply == {"type": "csat", "conversationId": conversation, "score": 4, "status": "received"}
    stored = world.store.get_conversation("demo", conversation).csat
    assert stored["score"] == 4 and stored["comment"] == "很快" and stored["at"]
    # a resend of the same rating is the same rating; another one is refused
    assert world.router.csat(who, parse(action="csat", conversationId=conversation, score=4, comment="很快"))["status"] \
        == "received"
    with pytest.raises(Conflict, match="already rated"):
        world.router.csat(who, parse(action="csat", conversationId=conversation, score=1))
    with pytest.raises(Forbidden):
        world.router.csat(ALICE, parse(action="csat", conversationId=conversation, score=5))
    with pytest.raises(NotFound):
        world.router.csat(world.customer(2), parse(action="csat", conversationId=conversation, score=5))
    for bad in ({"score": 0}, {"score": 6}, {"score": "5"}, {"score": 3, "comment": "x" * 1001}):
        with pytest.raises(InvalidFrame):
            parse(action="csat", conversationId=conversation, **bad)


def test_the_survey_asks_nps_when_the_workspace_does_and_keeps_the_answer_once(world):
    world.service.connect(ALICE, "a1")
    first, second = world.customer(1), world.customer(2)
    c1 = world.open(first, 1)
    closed = world.router.close(ALICE, parse(action="close", conversationId=c1))
    assert closed["survey"] == {"csat": True, "nps": False}  # off by default
    world.store.put_survey_settings("demo", {"nps": True})
    c2 = world.open(second, 2)
    assert world.router.close(second, parse(action="close", conversationId=c2))["survey"] == {"csat": True, "nps": True}

    reply = world.router.csat(second, parse(action="csat", conversationId=c2, score=5, nps=9))
    assert reply == {"type": "csat", "conversationId": c2, "score": 5, "nps": 9, "status": "received"}
    stored = world.store.get_conversation("demo", c2).csat
    assert (stored["score"], stored["nps"]) == (5, 9)
    # the same survey again is the same survey; another answer is a second survey, refused like the stars
    assert world.router.csat(second, parse(action="csat", conversationId=c2, score=5, nps=9))["status"] == "received"
    with pytest.raises(Conflict, match="already rated"):
        world.router.csat(second, parse(action="csat", conversationId=c2, score=5, nps=3))
    # stars only (an older widget, or the question unanswered): no nps stored; the answer cannot come later
    assert "nps" not in world.router.csat(first, parse(action="csat", conversationId=c1, score=3))
    assert "nps" not in world.store.get_conversation("demo", c1).csat
    with pytest.raises(Conflict, match="already rated"):
        world.router.csat(first, parse(action="csat", conversationId=c1, score=3, nps=10))
    for bad in ({"nps": -1}, {"nps": 11}, {"nps": "9"}, {"nps": 9.0}, {"nps": True}, {"nps": 7.5}):
        with pytest.raises(InvalidFrame, match="nps"):
            parse(action="csat", conversationId=c1, score=4, **bad)


def test_a_failing_survey_read_still_closes_and_asks_the_stars(world, monkeypatch):
    world.service.connect(ALICE, "a1")
    who = world.customer(1)
    conversation = world.open(who, 1)

    def broken(workspace):
        raise RuntimeError("throttled")

    monkeypatch.setattr(world.store, "survey_settings", broken)
    closed = world.router.close(ALICE, parse(action="close", conversationId=conversation))
    assert closed["survey"] == {"csat": True, "nps": False}
    assert world.store.get_conversation("demo", conversation).status == "closed"
