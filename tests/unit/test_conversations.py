"""The conversation use cases over in-memory ports."""

import pytest

from kefu import frames
from kefu.conversations import ConversationService
from kefu.delivery import Delivery
from kefu.router import Router
from kefu.errors import ConversationClosed, Forbidden, InvalidFrame, NoAgentAvailable, NotFound
from kefu.models import Agent, Principal

from .fakes import FakeTimers, MemoryStore, RecordingNotifier

CUSTOMER = Principal("demo", "customer", "cust-1", "Zhang")
OTHER_CUSTOMER = Principal("demo", "customer", "cust-2", "Li")
ALICE = Principal("demo", "agent", "alice", "Alice", agent_role="agent")
BOB = Principal("demo", "agent", "bob", "Bob", agent_role="agent")
INTRUDER = Principal("other", "customer", "cust-1", "Zhang")


@pytest.fixture
def world():
    store, notifier = MemoryStore(), RecordingNotifier()
    store.put_agent(Agent("demo", "alice", "Alice", max_concurrent=2))
    store.put_agent(Agent("demo", "bob", "Bob", groups=("billing",), max_concurrent=1))
    delivery = Delivery(store, notifier, threads=1)
    service = ConversationService(store, delivery, Router(store, delivery, FakeTimers()))
    return store, notifier, service


def route(conversation_id, **kw):
    return frames.RouteFrame.model_validate({"action": "route", "conversationId": conversation_id, **kw})


def msg(text, cmid, conversation_id=None):
    data = {"action": "message", "clientMessageId": cmid, "text": text}
    if conversation_id:
        data["conversationId"] = conversation_id
    return frames.MessageFrame.model_validate(data)


def open_with_alice(service):
    service.connect(ALICE, "a1")
    service.connect(CUSTOMER, "c1")
    ack = service.send_message(CUSTOMER, "c1", msg("hello", "m1"))
    return ack["conversationId"]


def test_first_message_opens_a_conversation_and_routes_it(world):
    store, notifier, service = world
    conversation_id = open_with_alice(service)
    assigned = notifier.frames("a1", "assigned")
    assert assigned and assigned[0]["conversationId"] == conversation_id
    assert [m["text"] for m in assigned[0]["history"]] == ["hello", "Alice joined the conversation"]
    assert store.get_conversation("demo", conversation_id).agent_id == "alice"
    assert store.get_agent("demo", "alice").load == 1
    # the customer sees the system message about the agent joining
    assert notifier.frames("c1", "message")[-1]["sender"]["role"] == "system"


def test_seq_increases_and_fan_out_reaches_every_other_connection(world):
    store, notifier, service = world
    conversation_id = open_with_alice(service)
    service.connect(CUSTOMER, "c2")  # a second tab
    ack = service.send_message(CUSTOMER, "c1", msg("second", "m2", conversation_id))
    assert ack == {"type": "ack", "clientMessageId": "m2", "conversationId": conversation_id, "seq": 3,
                   "createdAt": ack["createdAt"]}
    for connection in ("a1", "c2"):
        assert notifier.frames(connection, "message")[-1]["seq"] == 3
    assert all(f.get("seq") != 3 for f in notifier.frames("c1", "message"))  # not echoed to the sender


def test_resend_returns_the_original_ack_and_stores_nothing(world):
    store, notifier, service = world
    conversation_id = open_with_alice(service)
    first = service.send_message(CUSTOMER, "c1", msg("once", "dup", conversation_id))
    delivered = len(notifier.frames("a1", "message"))
    again = service.send_message(CUSTOMER, "c1", msg("once", "dup", conversation_id))
    assert again["seq"] == first["seq"] and again["createdAt"] == first["createdAt"]
    assert len(store.messages[("demo", conversation_id)]) == first["seq"]
    assert len(notifier.frames("a1", "message")) == delivered


def test_gone_connection_is_dropped_and_others_still_receive(world):
    store, notifier, service = world
    conversation_id = open_with_alice(service)
    service.connect(CUSTOMER, "c2")
    notifier.gone.add("c2")
    service.send_message(ALICE, "a1", msg("hi there", "r1", conversation_id))
    assert notifier.frames("c1", "message")[-1]["text"] == "hi there"
    assert "c2" not in {r.connection_id for r in store.load_for_fanout("demo", conversation_id)[1]}


def test_sync_returns_exactly_the_messages_after(world):
    _, _, service = world
    conversation_id = open_with_alice(service)
    for i in range(5):
        service.send_message(CUSTOMER, "c1", msg(f"m{i}", f"k{i}", conversation_id))
    reply = service.sync(CUSTOMER, frames.SyncFrame(action="sync", conversationId=conversation_id, afterSeq=4, limit=2))
    assert [m["seq"] for m in reply["messages"]] == [5, 6] and reply["hasMore"] is True
    reply = service.sync(CUSTOMER, frames.SyncFrame(action="sync", conversationId=conversation_id, afterSeq=6))
    assert [m["seq"] for m in reply["messages"]] == [7] and reply["hasMore"] is False


def test_strangers_get_not_found(world):
    _, _, service = world
    conversation_id = open_with_alice(service)
    for stranger in (OTHER_CUSTOMER, INTRUDER, BOB):
        with pytest.raises(NotFound):
            service.send_message(stranger, "x", msg("let me in", "z1", conversation_id))
        with pytest.raises(NotFound):
            service.sync(stranger, frames.SyncFrame(action="sync", conversationId=conversation_id, afterSeq=0))


def test_agents_must_name_the_conversation(world):
    _, _, service = world
    with pytest.raises(InvalidFrame):
        service.send_message(ALICE, "a1", msg("hi", "x1"))


def test_customer_cannot_transfer(world):
    _, _, service = world
    conversation_id = open_with_alice(service)
    frame = frames.HandoffFrame.model_validate(
        {"action": "handoff", "conversationId": conversation_id, "to": {"agentId": "bob"}})
    with pytest.raises(Forbidden):
        service.router.handoff(CUSTOMER, frame)


def test_transfer_moves_the_conversation_and_capacity(world):
    store, notifier, service = world
    conversation_id = open_with_alice(service)
    service.connect(BOB, "b1")
    frame = frames.HandoffFrame.model_validate(
        {"action": "handoff", "conversationId": conversation_id, "to": {"group": "billing"}, "note": "refund"})
    reply = service.router.handoff(ALICE, frame)
    assert reply["to"]["agentId"] == "bob"
    assigned = notifier.frames("b1", "assigned")[-1]
    assert assigned["note"] == "refund" and assigned["history"][0]["text"] == "hello"
    assert (store.get_agent("demo", "alice").load, store.get_agent("demo", "bob").load) == (0, 1)
    # alice no longer receives, bob does
    before = len(notifier.frames("a1", "message"))
    service.send_message(CUSTOMER, "c1", msg("after transfer", "m9", conversation_id))
    assert len(notifier.frames("a1", "message")) == before
    assert notifier.frames("b1", "message")[-1]["text"] == "after transfer"
    with pytest.raises(NotFound):  # alice is no longer part of it
        service.send_message(ALICE, "a1", msg("still here?", "r9", conversation_id))


def test_transfer_errors(world):
    _, _, service = world
    conversation_id = open_with_alice(service)

    def handoff(to):
        return frames.HandoffFrame.model_validate({"action": "handoff", "conversationId": conversation_id, "to": to})

    with pytest.raises(NotFound):
        service.router.handoff(ALICE, handoff({"agentId": "nobody"}))
    with pytest.raises(NotFound):
        service.router.handoff(ALICE, handoff({"group": "no-such-group"}))
    with pytest.raises(InvalidFrame):
        service.router.handoff(ALICE, handoff({"agentId": "alice"}))
    with pytest.raises(NoAgentAvailable):  # bob is offline
        service.router.handoff(ALICE, handoff({"agentId": "bob"}))
    with pytest.raises(Forbidden):  # a colleague's conversation
        service.router.handoff(BOB, handoff({"agentId": "alice"}))
    with pytest.raises(NotFound):
        service.router.handoff(ALICE, frames.HandoffFrame.model_validate(
            {"action": "handoff", "conversationId": "c_nope", "to": {"agentId": "bob"}}))


def test_no_agent_online_leaves_the_conversation_waiting(world):
    store, notifier, service = world
    service.connect(CUSTOMER, "c1")
    ack = service.send_message(CUSTOMER, "c1", msg("anyone?", "m1"))
    queued = notifier.frames("c1", "queue")[0]
    assert (queued["position"], queued["estimatedWaitSeconds"]) == (1, None)  # nobody serves the queue yet
    assert notifier.frames("c1", "offline")[0]["reason"] == "no_agents_online"
    assert service.router.route(CUSTOMER, route(ack["conversationId"]))["type"] == "queue"
    service.connect(ALICE, "a1")
    assert service.router.timers.fire(service.router, "drain") == 1  # the drain after an agent connects
    assert notifier.frames("a1", "assigned")[0]["conversationId"] == ack["conversationId"]
    assert notifier.frames("c1", "routed")[-1]["agent"]["id"] == "alice"
    assert service.router.route(CUSTOMER, route(ack["conversationId"]))["reason"] == "already assigned"


def test_capacity_is_never_exceeded(world):
    store, notifier, service = world
    service.connect(ALICE, "a1")
    for i in range(4):
        who = Principal("demo", "customer", f"cust-{i}", "")
        service.connect(who, f"c{i}")
        service.send_message(who, f"c{i}", msg("hi", "m1"))
    assert store.get_agent("demo", "alice").load == 2  # max_concurrent=2
    assert len(notifier.frames("a1", "assigned")) == 2
    assert sorted(e.customer_id for e in store.queue_entries("demo")) == ["cust-2", "cust-3"]
    # (both arrived within the same millisecond here: either order is first come, first served)
    assert sorted(notifier.frames(f"c{i}", "queue")[-1]["position"] for i in (2, 3)) == [1, 2]


def test_closed_conversation_refuses_messages(world):
    store, _, service = world
    conversation_id = open_with_alice(service)
    store.conversations[("demo", conversation_id)].status = "closed"
    with pytest.raises(ConversationClosed):
        service.send_message(CUSTOMER, "c1", msg("hello?", "m5", conversation_id))


def test_reconnecting_agent_is_attached_to_open_conversations(world):
    store, notifier, service = world
    conversation_id = open_with_alice(service)
    service.disconnect(ALICE, "a1")
    assert store.get_agent("demo", "alice").presence == "online"  # the grace period runs
    service.connect(ALICE, "a2")
    service.router.timers.fire(service.router)  # too late: she is back
    assert store.get_agent("demo", "alice").presence == "online"
    service.send_message(CUSTOMER, "c1", msg("back?", "m3", conversation_id))
    assert notifier.frames("a2", "message")[-1]["text"] == "back?"


def test_assignment_carries_the_latest_history(world, monkeypatch):
    import kefu.router

    store, notifier, service = world
    monkeypatch.setattr(kefu.router, "HISTORY_ON_ASSIGN", 3)
    service.connect(CUSTOMER, "c1")
    first = service.send_message(CUSTOMER, "c1", msg("m0", "k0"))  # nobody online: waits
    for i in range(1, 5):
        service.send_message(CUSTOMER, "c1", msg(f"m{i}", f"k{i}", first["conversationId"]))
    service.connect(ALICE, "a1")
    service.router.drain("demo")
    assigned = notifier.frames("a1", "assigned")[0]
    assert [m["text"] for m in assigned["history"]] == ["m3", "m4", "Alice joined the conversation"]
    assert assigned["historyComplete"] is False and assigned["lastSeq"] == 6


def test_inbox_lists_open_conversations(world):
    _, _, service = world
    conversation_id = open_with_alice(service)
    mine = service.inbox(ALICE)["conversations"]
    assert [c["conversationId"] for c in mine] == [conversation_id]
    assert mine[0]["customer"]["name"] == "Zhang" and mine[0]["lastSeq"] == 2
    assert service.inbox(CUSTOMER)["conversations"][0]["conversationId"] == conversation_id
    assert service.inbox(BOB)["conversations"] == [] and service.inbox(OTHER_CUSTOMER)["conversations"] == []


# ---------------------------------------------------------------- personal data masked in stored text (kefu.pii)


class ListVault:
    def __init__(self, fail: bool = False):
        self.fail, self.sealed = fail, []

    def seal(self, workspace, conversation_id, values):
        if self.fail:
            raise ConnectionError("kms unavailable")
        self.sealed.append((workspace, conversation_id, values))
        return f"sealed-{len(self.sealed)}"

    def open(self, workspace, conversation_id, sealed):
        return self.sealed[int(sealed.rsplit("-", 1)[1]) - 1][2]


def masked_world(world, vault):
    store, notifier, _ = world
    delivery = Delivery(store, notifier, threads=1)
    service = ConversationService(store, delivery, Router(store, delivery, FakeTimers()), vault=vault)
    conversation_id = open_with_alice(service)
    store.conversations[("demo", conversation_id)].mask_pii = True  # as the workspace's maskPii sets it at open
    return store, notifier, service, conversation_id


def test_a_customers_personal_data_is_stored_masked_and_sealed(world):
    from kefu import pii

    vault = ListVault()
    store, notifier, service, conversation_id = masked_world(world, vault)
    ack = service.send_message(CUSTOMER, "c1", msg("call 13812345678", "m2", conversation_id))
    stored = store.messages[("demo", conversation_id)][ack["seq"]]
    assert stored.text == "call 138****5678" and stored.pii["sealed"] == "sealed-1"
    assert vault.sealed == [("demo", conversation_id, ["13812345678"])]
    pushed = notifier.frames("a1", "message")[-1]
    assert pushed["text"] == "call 138****5678" and pushed["masked"] is True and "pii" not in pushed
    assert pii.reveal(vault, "demo", conversation_id, stored.text, stored.pii) == "call 13812345678"
    # text without personal data: no record, no KMS call; staff messages are stored as written
    plain = service.send_message(CUSTOMER, "c1", msg("thanks", "m3", conversation_id))
    reply = service.send_message(ALICE, "a1", msg("call us on 13912345678", "r1", conversation_id))
    assert store.messages[("demo", conversation_id)][plain["seq"]].pii is None
    assert store.messages[("demo", conversation_id)][reply["seq"]].text == "call us on 13912345678"
    assert len(vault.sealed) == 1


@pytest.mark.parametrize("vault", [None, ListVault(fail=True)], ids=["no vault", "kms failing"])
def test_a_message_that_cannot_be_sealed_is_refused_not_stored(world, vault):
    from kefu.errors import Busy

    store, _, service, conversation_id = masked_world(world, vault)
    before = dict(store.messages[("demo", conversation_id)])
    with pytest.raises(Busy) as refused:
        service.send_message(CUSTOMER, "c1", msg("card 4111 1111 1111 1111", "m2", conversation_id))
    assert refused.value.client_message_id == "m2"
    assert store.messages[("demo", conversation_id)] == before
