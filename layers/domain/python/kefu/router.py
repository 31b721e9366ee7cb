"""Routing use cases: route, queue, transfer, close, presence, supervisors' view and hand assignment.

Decisions come from routing.py (pure); this module reads their inputs (agents with presence
and load, settings, the queue) from the store, makes them true with one conditional transaction
each, and tells the people concerned. Whatever races it loses, it re-reads and goes on: the
database, not this process, keeps an agent under their maximum and a conversation with one owner.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from . import routing
from .delivery import Delivery
from .errors import Conflict, ConversationClosed, Forbidden, InvalidFrame, NoAgentAvailable, NotFound
from .models import Agent, Conversation, Principal, now_iso
from .ports import AssignConflict, StateConflict, Store, Timers
from .routing import Decision, Need, QueueEntry, RoutingSettings

if TYPE_CHECKING:
    from . import frames

log = logging.getLogger(__name__)

HISTORY_ON_ASSIGN = 200
HANDLE_CACHE_S = 10.0
OFFLINE_FORM_FIELDS = ["name", "contact", "question"]


class Router:
    def __init__(self, store: Store, delivery: Delivery, timers: Timers | None = None, tickets=None):
        self.store = store
        self.delivery = delivery
        self.timers = timers
        self.tickets = tickets  # TicketService: offline forms and unresolved closes become tickets
        self._handle_cache: dict[str, tuple[float, dict[str, float]]] = {}

    # ------------------------------------------------------------ asking for a human

    def route(self, who: Principal, frame: frames.RouteFrame) -> dict:
        conversation = self._visible(who, frame.conversationId)
        if conversation.status == "closed":
            raise ConversationClosed("the conversation is closed")
        if who.role == "agent" and not who.is_supervisor:
            raise Forbidden("agents transfer with handoff; route is for customers and supervisors")
        if conversation.status == "assigned":
            return _routed(conversation, "assigned", "already assigned")
        if conversation.status == "queued":
            return self._queue_frame(conversation.workspace, conversation.id) or _routed(
                conversation, "queued", "already waiting")
        if frame.group is not None:
            self.check_group(conversation.workspace, frame.group)
        conversation.group = frame.group or conversation.group
        conversation.language = frame.language or conversation.language
        # a supervisor's route is news to the customer; a customer's own gets it as the reply
        return self.dispatch(conversation, reply=who.role == "customer")

    def conversation_opened(self, conversation: Conversation) -> None:
        """A new conversation the bot does not take goes to a human at once."""
        self.dispatch(conversation)

    def dispatch(self, conversation: Conversation, *, previous_agent_id: str | None = None, note: str = "",
                 reply: bool = False, transfer_by: Principal | None = None) -> dict:
        """Assign the conversation to the best agent free now, or queue it, or (outside business hours) offer
        the offline form. Returns the `routed` or `queue` frame; pushes it to the customer unless `reply`."""
        frame, pushed = self._dispatch(conversation, previous_agent_id, note, transfer_by)
        if not reply and not pushed and not self._push(conversation, frame) and frame["type"] == "queue":
            self._customer_may_be_gone(conversation, self._settings(conversation.workspace))
        return frame

    def _dispatch(self, conversation: Conversation, previous_agent_id: str | None, note: str,
                  transfer_by: Principal | None) -> tuple[dict, bool]:
        """The frame for the customer, and whether the customer already has it."""
        ws = conversation.workspace
        settings = self._settings(ws)
        # a person's explicit transfer goes where they said, whatever the customer's tags
        need = routing.need_for(settings, conversation.customer_tags, conversation.group, conversation.language,
                                dedicated=transfer_by is None)
        conversation.group, conversation.priority = need.group, need.priority
        if previous_agent_id is None and not routing.is_open(settings, need.group):
            return self._offline_offer(conversation, "closed_hours"), False

        agents = self.store.list_agents(ws)
        decision = routing.decide(agents, settings, need, exclude=previous_agent_id)
        status_before = conversation.status
        chosen = self._assign_ranked(conversation, decision, previous_agent_id, note=note, transfer_by=transfer_by)
        if chosen is not None:
            return _routed(conversation, "assigned", routing.reason_for(decision, chosen)), False
        if conversation.status != status_before and previous_agent_id is None:
            return _routed(conversation, conversation.status, "changed meanwhile"), False

        entry = QueueEntry(
            ws, conversation.id, decision.group or routing.ANY_GROUP,
            need.priority + (routing.REQUEUE_BOOST if previous_agent_id else 0), _ms(conversation.opened_at),
            conversation.customer_id, need.language, conversation.customer_name,
        )
        explained = decision.explain(None)
        if note:
            explained["note"] = note
        if transfer_by is not None and previous_agent_id:
            explained["avoidAgent"] = previous_agent_id  # transferred away: someone else, please
        try:
            self.store.enqueue(conversation, entry, previous_agent_id, explained)
        except StateConflict:
            fresh = self.store.get_conversation(ws, conversation.id)
            return _routed(fresh or conversation, fresh.status if fresh else "closed", "changed meanwhile"), False
        conversation.status, conversation.queue_key = "queued", entry.sort_key
        if previous_agent_id:
            self._left(conversation, previous_agent_id, "back in the queue")
        if decision.online_in_group == 0:
            self._push(conversation, self._offline_offer(conversation, "no_agents_online"))
        # An agent may have freed a seat between our read of the agents and the enqueue: read again,
        # after the enqueue, and drain if anyone can take anything (both sides read after writing, so
        # one of them sees the other). The agent who just gave it away does not take it back.
        entries, agents = self.store.queue_entries(ws), self.store.list_agents(ws)
        if any(routing.decide(agents, settings, e.need()).ranked for e in entries):
            self.drain(ws, skip_notify=conversation.id, settings=settings, entries=entries, agents=agents,
                       exclude={conversation.id: previous_agent_id} if previous_agent_id else None)
            entries, agents = self.store.queue_entries(ws), self.store.list_agents(ws)
        mine = next((e for e in entries if e.conversation_id == conversation.id), None)
        if mine is None:  # the drain just assigned it, and told the customer
            fresh = self.store.get_conversation(ws, conversation.id) or conversation
            return _routed(fresh, fresh.status, (fresh.routing or {}).get("reason", "assigned from the queue")), True
        # whoever this one overtook (a VIP, a requeued conversation) moved back a place: tell them
        before = routing.positions([e for e in entries if e is not mine])
        self._notify_positions(ws, before, entries, agents, skip=conversation.id)
        return _queue(mine, routing.positions(entries)[conversation.id], agents, self._handle_times(ws)), False

    def _customer_may_be_gone(self, conversation: Conversation, settings: RoutingSettings) -> None:
        """Nobody to tell: if the customer does not come back, the wait ends as abandoned."""
        self._later({"kind": "customer_gone", "workspace": conversation.workspace,
                     "customerId": conversation.customer_id, "conversationId": conversation.id},
                    settings.grace_seconds)

    def _assign_ranked(self, conversation: Conversation, decision: Decision, previous_agent_id: str | None, *,
                       note: str = "", transfer_by: Principal | None = None,
                       from_queue: QueueEntry | None = None, presences: tuple[str, ...] = ("online",)) -> Agent | None:
        """Try the ranked agents in order; each try is one conditional transaction."""
        for agent in decision.ranked:
            explained = decision.explain(agent)
            if note:
                explained["note"] = note
            if transfer_by is not None:
                explained["transferredBy"] = transfer_by.id
            try:
                self.store.assign(conversation, agent, previous_agent_id, explained, from_queue, presences)
            except AssignConflict:
                fresh = self.store.get_conversation(conversation.workspace, conversation.id)
                if fresh is None or fresh.agent_id != previous_agent_id or fresh.status == "closed" or (
                        from_queue is not None and fresh.queue_key != from_queue.sort_key):
                    if fresh is not None:
                        conversation.status = fresh.status
                    return None  # someone else routed, transferred or closed it meanwhile
                continue  # that agent filled up meanwhile: the next one
            conversation.agent_id, conversation.agent_name, conversation.status = agent.id, agent.name, "assigned"
            conversation.routing = explained
            self._joined(conversation, agent, reason=explained["reason"], note=note)
            if previous_agent_id:
                self._left(conversation, previous_agent_id, f"transferred to {agent.name or agent.id}")
            return agent
        return None

    # ------------------------------------------------------------ the queue

    def drain(self, workspace: str, *, skip_notify: str | None = None, settings: RoutingSettings | None = None,
              entries: list[QueueEntry] | None = None, agents: list[Agent] | None = None,
              exclude: dict[str, str] | None = None) -> int:
        """Assign waiting conversations to agents with free seats, best first; then tell everyone still
        waiting whose place changed. Safe to run anywhere, any number of times at once. Callers that
        just read the queue, the agents or the settings pass them in."""
        entries = self.store.queue_entries(workspace) if entries is None else entries
        if not entries:
            return 0
        before = routing.positions(entries)
        settings = settings or self._settings(workspace)
        agents = {a.id: a for a in (self.store.list_agents(workspace) if agents is None else agents)}
        if not any(routing.assignable(a) for a in agents.values()):
            return 0
        assigned = 0
        for entry in sorted(entries, key=lambda e: (-e.priority, e.arrival_ms, e.conversation_id)):
            decision = routing.decide(agents.values(), settings, entry.need(),
                                      exclude=(exclude or {}).get(entry.conversation_id))
            if not decision.ranked:
                continue
            conversation = self.store.get_conversation(workspace, entry.conversation_id)
            chosen = None
            if conversation is not None and conversation.queue_key == entry.sort_key:
                avoid = (conversation.routing or {}).get("avoidAgent")
                if avoid:
                    decision = routing.decide(agents.values(), settings, entry.need(), exclude=avoid)
                note = (conversation.routing or {}).get("note", "")
                chosen = self._assign_ranked(conversation, decision, None, note=note, from_queue=entry)
            if chosen is None:
                # Another drain got there first (this entry, or the seat we saw). Its view was as good as
                # ours: read the agents again rather than walk the whole queue on a stale one.
                agents = {a.id: a for a in self.store.list_agents(workspace)}
                if not any(routing.assignable(a) for a in agents.values()):
                    break
                continue
            assigned += 1
            agents[chosen.id] = _with_load(agents[chosen.id], +1)
            self._push(conversation, _routed(conversation, "assigned", conversation.routing["reason"]))
        if assigned:  # everyone still waiting, as the queue is now (other drains ran too)
            self._notify_positions(workspace, before, self.store.queue_entries(workspace), list(agents.values()),
                                   skip=skip_notify)
        return assigned

    def _notify_positions(self, workspace: str, before: dict[str, int], remaining: list[QueueEntry],
                          agents: list[Agent], *, skip: str | None) -> None:
        after = routing.positions(remaining)
        changed = [e for e in remaining
                   if e.conversation_id != skip and routing.should_notify(before.get(e.conversation_id), after[e.conversation_id])]
        if not changed:
            return
        handle = self._handle_times(workspace)

        def tell(entry: QueueEntry) -> None:
            frame = _queue(entry, after[entry.conversation_id], agents, handle)
            self.delivery.to_person(workspace, "customer", entry.customer_id, frame)

        self.delivery.map(tell, changed)

    def _queue_frame(self, workspace: str, conversation_id: str) -> dict | None:
        entries = self.store.queue_entries(workspace)
        entry = next((e for e in entries if e.conversation_id == conversation_id), None)
        if entry is None:
            return None
        position = routing.positions(entries)[conversation_id]
        return _queue(entry, position, self.store.list_agents(workspace), self._handle_times(workspace))

    def _handle_times(self, workspace: str) -> dict[str, float]:
        """Mean handle time per queue, from the last hours' closes (cached briefly: it moves slowly)."""
        cached = self._handle_cache.get(workspace)
        if cached and time.monotonic() - cached[0] < HANDLE_CACHE_S:
            return cached[1]
        stats = self.store.handle_stats(workspace)
        total = sum(t for t, _ in stats.values()), sum(c for _, c in stats.values())
        overall = routing.mean_handle_s(*total)
        # a queue with few closes of its own borrows the workspace's mean
        means = {q: routing.mean_handle_s(t, c) if c >= 5 else overall for q, (t, c) in stats.items()} | {"": overall}
        self._handle_cache[workspace] = (time.monotonic(), means)
        return means

    def cancel(self, who: Principal, frame: frames.CancelFrame) -> dict:
        if who.role != "customer":
            raise Forbidden("only the customer can stop waiting")
        conversation = self._visible(who, frame.conversationId)
        if conversation.status != "queued" or not conversation.queue_key:
            raise InvalidFrame("the conversation is not waiting in the queue")
        if not self._abandon(conversation, "cancelled"):
            raise Conflict("an agent has just taken the conversation; it is no longer waiting")
        return {"type": "cancelled", "conversationId": conversation.id, "status": "closed"}

    def _abandon(self, conversation: Conversation, reason: str) -> bool:
        ws = conversation.workspace
        before = routing.positions(self.store.queue_entries(ws))
        try:
            self.store.leave_queue(conversation, conversation.queue_key, f"abandoned:{reason}")
        except StateConflict:
            return False  # assigned or closed meanwhile
        self.store.add_counter(ws, "queue.abandoned")
        self._notify_positions(ws, before, self.store.queue_entries(ws), self.store.list_agents(ws), skip=None)
        return True

    # ------------------------------------------------------------ transfer and hand assignment

    def handoff(self, who: Principal, frame: frames.HandoffFrame) -> dict:
        if who.role != "agent":
            raise Forbidden("only agents can transfer a conversation")
        conversation = self.store.get_conversation(who.workspace, frame.conversationId)
        if conversation is None:
            raise NotFound("no such conversation")
        if conversation.agent_id != who.id and not who.is_supervisor:
            raise Forbidden("you can only transfer conversations assigned to you")
        if conversation.status == "closed":
            raise ConversationClosed("the conversation is closed")
        previous = conversation.agent_id
        target = frame.to
        if target.agentId is not None:
            if target.agentId == previous:
                raise InvalidFrame("to.agentId: the conversation is already with that agent")
            agent = self.store.get_agent(who.workspace, target.agentId)
            if agent is None:
                raise NotFound(f"no agent {target.agentId!r} in this workspace")
            chosen = self._give(conversation, agent, who, note=frame.note, kind="transfer")
            if chosen is None:
                raise NoAgentAvailable(f"{agent.name or agent.id} cannot take it right now; it stays where it is")
            if previous:
                self.drain(who.workspace)  # the previous agent's seat is free
            return _handoff_reply(conversation, "transferred", agent)
        self.check_group(who.workspace, target.group)
        conversation.group = target.group
        if conversation.status == "queued":
            raise InvalidFrame("the conversation is waiting in the queue; assign it to an agent instead")
        routed, pushed = self._dispatch(conversation, previous, frame.note, who)
        if routed.get("status") not in ("assigned", None) or routed.get("type") not in ("routed", "queue"):
            raise NoAgentAvailable("the conversation changed meanwhile; nothing was transferred")
        if not pushed:
            self._push(conversation, routed)
        if previous:  # the previous agent's seat is free, for anything but this conversation
            self.drain(who.workspace, exclude={conversation.id: previous})
        if routed["type"] == "queue":
            return {"type": "handoff", "conversationId": conversation.id, "to": {"group": target.group},
                    "status": "queued", "position": routed["position"]}
        return {"type": "handoff", "conversationId": conversation.id,
                "to": {"group": target.group, "agentId": routed["agent"]["id"], "name": routed["agent"]["name"]},
                "status": "transferred"}

    def assign_by_hand(self, who: Principal, frame: frames.AssignFrame) -> dict:
        """Supervisors give any conversation of their workspace to an agent; an agent takes a waiting one
        for themselves (the console's queue tab), from a queue of their groups."""
        if who.role != "agent":
            raise Forbidden("only agents, supervisors and admins assign conversations")
        if not who.is_supervisor:
            if frame.agentId != who.id:
                raise Forbidden("agents take conversations for themselves; supervisors assign others")
            conversation = self.store.get_conversation(who.workspace, frame.conversationId)
            if conversation is None:
                raise NotFound("no such conversation")
            if conversation.status == "closed":
                raise ConversationClosed("the conversation is closed")
            if conversation.status != "queued":
                raise Conflict("the conversation is not waiting in the queue any more")
            me = self.store.get_agent(who.workspace, who.id)
            entry = next((e for e in self.store.queue_entries(who.workspace)
                          if e.conversation_id == conversation.id), None)
            group = entry.queue if entry is not None and entry.queue != "*" else conversation.group
            if me is not None and group and group not in me.groups:
                raise Forbidden(f"the conversation waits for the {group} group, which is not yours")
        else:
            conversation = self._visible(who, frame.conversationId)
        if conversation.status == "closed":
            raise ConversationClosed("the conversation is closed")
        agent = self.store.get_agent(who.workspace, frame.agentId)
        if agent is None:
            raise NotFound(f"no agent {frame.agentId!r} in this workspace")
        if conversation.agent_id == agent.id:
            raise InvalidFrame("the conversation is already with that agent")
        previous = conversation.agent_id
        waiting_before = routing.positions(self.store.queue_entries(who.workspace)) if conversation.queue_key else {}
        taking = agent.id == who.id
        if self._give(conversation, agent, who, note="", kind="taken" if taking else "manual", away_ok=taking) is None:
            raise NoAgentAvailable(f"{agent.name or agent.id} is {agent.presence} with "
                                   f"{agent.load}/{agent.max_concurrent} open; pick someone else")
        self._push(conversation, _routed(conversation, "assigned", f"assigned by {who.name or who.id}"))
        if previous:
            self.drain(who.workspace)  # the previous agent's seat is free
        elif waiting_before:  # the ones behind it moved up
            self._notify_positions(who.workspace, waiting_before, self.store.queue_entries(who.workspace),
                                   self.store.list_agents(who.workspace), skip=None)
        return {"type": "assign", "conversationId": conversation.id, "agentId": agent.id, "status": "assigned"}

    def _give(self, conversation: Conversation, agent: Agent, by: Principal, *, note: str, kind: str,
              away_ok: bool = False) -> Agent | None:
        """One named agent takes the conversation (from its agent, or from the queue); `away_ok`: an agent
        taking it themselves may be away (away only stops conversations arriving by themselves)."""
        presences = ("online", "away") if away_ok else ("online",)
        entry = None
        if conversation.status == "queued":
            entry = next((e for e in self.store.queue_entries(conversation.workspace)
                          if e.conversation_id == conversation.id), None)
        reason = f"{kind} by {by.name or by.id}"
        can = routing.assignable(replace(agent, presence="online") if agent.presence in presences else agent)
        candidate = routing.Candidate(agent.id, agent.name, agent.load, agent.max_concurrent, agent.presence,
                                      can, "chosen by hand")
        decision = Decision(kind, Need(conversation.group, conversation.language, conversation.priority),
                            conversation.group, (agent,) if can else (), (candidate,), reason)
        chosen = self._assign_ranked(conversation, decision, conversation.agent_id, note=note, transfer_by=by,
                                     from_queue=entry, presences=presences)
        if chosen is not None and conversation.routing is not None:
            conversation.routing["reason"] = reason
        return chosen

    # ------------------------------------------------------------ closing

    def close(self, who: Principal, frame: frames.CloseFrame) -> dict:
        conversation = self._visible(who, frame.conversationId)
        if conversation.status == "closed":
            raise ConversationClosed("the conversation is already closed")
        by = who.name or who.id
        waiting_before = routing.positions(self.store.queue_entries(who.workspace)) if conversation.queue_key else {}
        self.delivery.post_system_message(conversation, f"{by} closed the conversation")
        reason = "resolved" if frame.resolved else "unresolved"
        closed_at = now_iso()
        for _ in range(3):
            try:
                self.store.close(conversation, f"{reason}:{who.role}", closed_at)
                break
            except StateConflict:  # transferred, assigned or closed meanwhile: look again
                conversation = self.store.get_conversation(who.workspace, conversation.id)
                if conversation is None or conversation.status == "closed":
                    raise ConversationClosed("the conversation is already closed") from None
        else:
            raise ConversationClosed("the conversation keeps changing; try again")
        if conversation.assigned_at and conversation.agent_id:
            self.store.record_handle_time(who.workspace, conversation.group or routing.ANY_GROUP,
                                          _ms(closed_at) - _ms(conversation.assigned_at))
        closed = {"type": "closed", "conversationId": conversation.id, "by": who.sender(), "resolved": frame.resolved,
                  "survey": self._survey(who.workspace)}
        if not frame.resolved and self.tickets is not None:
            closed["ticketId"] = self._ticket_for_unresolved(conversation, who)
        _, connections = self.store.load_for_fanout(who.workspace, conversation.id)
        self.delivery.deliver(connections, closed)
        if conversation.agent_id:
            self.drain(who.workspace)  # a seat is free
        elif waiting_before:
            self._notify_positions(who.workspace, waiting_before, self.store.queue_entries(who.workspace),
                                   self.store.list_agents(who.workspace), skip=None)
        return closed

    def _ticket_for_unresolved(self, conversation: Conversation, who: Principal) -> str | None:
        """What a chat could not finish goes on as a ticket, with the end of the chat as its description.
        The close has happened: a failure here is logged and reported in the frame, not raised."""
        lines = [f"{m.sender.get('name') or m.sender.get('role')}: {m.text}"
                 for m in self.store.last_messages(conversation.workspace, conversation.id, 10)
                 if m.sender.get("role") != "system"]
        try:
            return self.tickets.from_unresolved_close(conversation, who, "\n".join(lines)).id
        except Exception:
            log.exception("ticket for an unresolved close", extra={"conversationId": conversation.id})
            return None

    # ------------------------------------------------------------ satisfaction

    def csat(self, who: Principal, frame: frames.CsatFrame) -> dict:
        """The customer rates a closed conversation, once (a resend of the same rating is the same rating)."""
        if who.role != "customer":
            raise Forbidden("the satisfaction survey is for customers")
        conversation = self._visible(who, frame.conversationId)
        reply = {"type": "csat", "conversationId": conversation.id, "score": frame.score, "status": "received"}
        if frame.nps is not None:
            reply["nps"] = frame.nps
        if conversation.status != "closed":
            raise Conflict("a conversation is rated once it has ended")
        given = {"score": frame.score, "comment": frame.comment}
        if frame.nps is not None:  # the recommendation answer is stored with the rating, once like it
            given["nps"] = frame.nps
        if conversation.csat:
            if {k: conversation.csat.get(k) for k in given} == given:
                return reply
            raise Conflict("this conversation is already rated")
        try:
            self.store.record_csat(conversation, {**given, "at": now_iso()})
        except StateConflict:
            raise Conflict("this conversation is already rated") from None
        return reply

    def _survey(self, workspace: str) -> dict:
        """What the survey after a close asks (the `closed` frame's survey): the stars always, the 0–10
        recommendation question when the workspace turned it on (PUT /workspaces/{ws}/survey). One read
        per close; a failed read asks the stars only (the close has happened)."""
        try:
            settings = self.store.survey_settings(workspace)
        except Exception:  # noqa: BLE001
            log.exception("survey settings unavailable; asking the stars only")
            settings = {}
        return {"csat": True, "nps": bool((settings or {}).get("nps"))}

    # ------------------------------------------------------------ presence

    def presence(self, who: Principal, frame: frames.PresenceFrame) -> dict:
        if who.role != "agent":
            raise Forbidden("presence is for agents")
        agent = self.store.set_presence(who.workspace, who.id, frame.status)
        if agent is None:
            raise NotFound("no such agent")
        requeued = 0
        if frame.status == "online":
            self.drain(who.workspace)
        elif frame.status == "offline":
            requeued = self._release_all(agent, "signed off")
        return {"type": "presence", "agentId": who.id, "status": frame.status, "requeued": requeued}

    def agent_connected(self, who: Principal) -> None:
        agent = self.store.agent_connected(who.workspace, who.id)
        if agent is not None and agent.presence == "online":
            # not now: during $connect the new socket cannot receive yet (API Gateway answers 410)
            self._later({"kind": "drain", "workspace": who.workspace}, 0)

    def agent_disconnected(self, who: Principal) -> None:
        agent = self.store.agent_disconnected(who.workspace, who.id)
        if agent is None or agent.connections > 0 or not agent.disconnected_at or agent.presence == "offline":
            return
        grace = self._settings(who.workspace).grace_seconds
        self._later({"kind": "agent_gone", "workspace": who.workspace, "agentId": who.id,
                     "since": agent.disconnected_at}, grace)

    def customer_disconnected(self, who: Principal) -> None:
        if self.store.connections_of(who.workspace, "customer", who.id):
            return
        open_id = self.store.open_conversation_id(who.workspace, who.id)
        conversation = self.store.get_conversation(who.workspace, open_id) if open_id else None
        if conversation is not None and conversation.status == "queued":
            grace = self._settings(who.workspace).grace_seconds
            self._later({"kind": "customer_gone", "workspace": who.workspace, "customerId": who.id,
                         "conversationId": conversation.id}, grace)

    def timer(self, payload: dict) -> None:
        """A scheduled check came due (see agent_connected / agent_disconnected / customer_disconnected)."""
        kind, ws = payload.get("kind"), payload.get("workspace", "")
        if kind == "drain":
            self.drain(ws)
        elif kind == "agent_gone":
            agent = self.store.set_presence(ws, payload["agentId"], "offline", if_disconnected_at=payload["since"])
            if agent is not None:  # still without a connection since then
                self._release_all(agent, "went offline")
        elif kind == "customer_gone":
            if self.store.connections_of(ws, "customer", payload["customerId"]):
                return  # came back
            conversation = self.store.get_conversation(ws, payload["conversationId"])
            if conversation is not None and conversation.status == "queued":
                self._abandon(conversation, "left")
        else:
            log.warning("unknown timer %r", kind)

    def _release_all(self, agent: Agent, why: str) -> int:
        """An agent went away for good: their conversations go back to routing, history kept."""
        released = 0
        for conversation in self.store.open_conversations_of_agent(agent.workspace, agent.id):
            self.delivery.post_system_message(conversation, f"{agent.name or agent.id} {why}; finding another agent")
            self.dispatch(conversation, previous_agent_id=agent.id)
            released += 1
        return released

    def _later(self, payload: dict, delay_s: int) -> None:
        if self.timers is None:
            self.timer(payload)  # no timer service wired (tests of the pure path)
        else:
            self.timers.schedule(payload, max(0, min(int(delay_s), 900)))

    # ------------------------------------------------------------ supervisors

    def snapshot(self, who: Principal) -> dict:
        """The live queue for every agent (the console's queue tab); agents' states and loads for
        supervisors and admins only."""
        if who.role != "agent":
            raise Forbidden("the live queue is for agents")
        ws = who.workspace
        agents = self.store.list_agents(ws)
        entries = self.store.queue_entries(ws)
        where = routing.positions(entries)
        handle = self._handle_times(ws)
        now = time.time() * 1000
        queue = []
        for entry in sorted(entries, key=lambda e: e.sort_key):
            frame = _queue(entry, where[entry.conversation_id], agents, handle)
            queue.append({
                "conversationId": entry.conversation_id,
                "customer": {"id": entry.customer_id, "name": entry.customer_name},
                "queue": entry.queue,
                "priority": entry.priority,
                "position": frame["position"],
                "waitingSeconds": max(0, int((now - entry.arrival_ms) / 1000)),
                "estimatedWaitSeconds": frame["estimatedWaitSeconds"],
            })
        if not who.is_supervisor:
            return {"type": "snapshot", "supervisor": False, "agents": [], "queue": queue,
                    "totals": {"waiting": len(entries)}}
        return {
            "type": "snapshot",
            "supervisor": True,
            "agents": [a.public() for a in agents],
            "queue": queue,
            "totals": {
                "online": sum(1 for a in agents if a.presence == "online" and a.connections > 0),
                "seats": sum(a.max_concurrent for a in agents if a.presence == "online" and a.connections > 0),
                "open": sum(a.load for a in agents),
                "waiting": len(entries),
            },
        }

    # ------------------------------------------------------------ the offline path

    def offline_form(self, who: Principal, frame: frames.OfflineFormFrame) -> dict:
        if who.role != "customer":
            raise Forbidden("the offline form is for customers")
        if frame.conversationId is not None:
            self._visible(who, frame.conversationId)
        ticket = self.tickets.from_offline_form({
            "workspace": who.workspace,
            "customerId": who.id,
            "conversationId": frame.conversationId,
            "name": frame.name or who.name,
            "contact": frame.contact,
            "question": frame.question,
        })
        return {"type": "offline_form", "ticketId": ticket.id, "status": "received",
                "message": "Thank you. We will get back to you as soon as we are open."}

    def _offline_offer(self, conversation: Conversation, reason: str) -> dict:
        text = {
            "closed_hours": "We are closed right now. Leave your question and we will get back to you.",
            "no_agents_online": "Nobody is online right now. You can wait, or leave your question and we will "
                                "get back to you.",
        }[reason]
        return {"type": "offline", "conversationId": conversation.id, "reason": reason, "message": text,
                "form": OFFLINE_FORM_FIELDS}

    # ------------------------------------------------------------ internals

    def settings(self, workspace: str) -> RoutingSettings:
        return self._settings(workspace)

    def _settings(self, workspace: str) -> RoutingSettings:
        try:
            return RoutingSettings.from_dict(self.store.settings(workspace))
        except (ValueError, TypeError, KeyError) as error:  # stored before a validation rule existed
            log.warning("routing settings unusable, using defaults: %s", error)
            return RoutingSettings()

    def check_group(self, workspace: str, group: str) -> None:
        """NotFound unless some agent has the group or the settings name it."""
        settings = self._settings(workspace)
        if group in settings.groups or any(group in a.groups for a in self.store.list_agents(workspace)):
            return
        raise NotFound(f"no group {group!r} in this workspace")

    def _visible(self, who: Principal, conversation_id: str) -> Conversation:
        """The conversation if the caller takes part in it (supervisors: any of their workspace)."""
        conversation = self.store.get_conversation(who.workspace, conversation_id)
        if conversation is None or not (conversation.is_participant(who) or who.is_supervisor):
            raise NotFound("no such conversation")
        return conversation

    def _push(self, conversation: Conversation, frame: dict) -> int:
        """Send to the customer's connections; how many there were."""
        return self.delivery.to_customer(conversation, frame)

    def _joined(self, conversation: Conversation, agent: Agent, *, reason: str, note: str) -> None:
        ws = conversation.workspace
        agent_connections = self.store.connections_of(ws, "agent", agent.id)
        self.store.attach(ws, conversation.id, agent_connections)
        self.delivery.post_system_message(conversation, f"{agent.name or agent.id} joined the conversation")
        history = self.store.last_messages(ws, conversation.id, HISTORY_ON_ASSIGN)
        assigned = {
            "type": "assigned",
            "conversationId": conversation.id,
            "customer": conversation.customer(),
            "history": [m.public() for m in history],
            "lastSeq": history[-1].seq if history else 0,
            "historyComplete": not history or history[0].seq == 1,
            "reason": reason,
            "group": conversation.group,
            "priority": conversation.priority,
        }
        if note:
            assigned["note"] = note
        if conversation.suggestion:  # the bot's proposed answer, for the agent to send, edit or reject
            assigned["suggestion"] = conversation.suggestion
        self.delivery.deliver(agent_connections, assigned)

    def _left(self, conversation: Conversation, agent_id: str | None, reason: str) -> None:
        if not agent_id:
            return
        ws = conversation.workspace
        connections = self.store.connections_of(ws, "agent", agent_id)
        self.store.detach(ws, conversation.id, connections)
        self.delivery.deliver(connections, {"type": "unassigned", "conversationId": conversation.id, "reason": reason})


def _routed(conversation: Conversation, status: str, reason: str) -> dict:
    frame = {"type": "routed", "conversationId": conversation.id, "status": status, "reason": reason}
    if status == "assigned":
        frame["agent"] = {"id": conversation.agent_id, "name": conversation.agent_name}
    return frame


def _queue(entry: QueueEntry, position: int, agents: list[Agent], handle: dict[str, float]) -> dict:
    capacity = routing.serving_capacity(agents, entry.queue)
    handle_s = handle.get(entry.queue, handle[""])
    return {
        "type": "queue",
        "conversationId": entry.conversation_id,
        "queue": entry.queue,
        "position": position,
        "estimatedWaitSeconds": routing.estimate_wait_s(position, capacity, handle_s),
    }


def _handoff_reply(conversation: Conversation, status: str, agent: Agent) -> dict:
    return {"type": "handoff", "conversationId": conversation.id, "to": {"agentId": agent.id, "name": agent.name},
            "status": status}


def _with_load(agent: Agent, delta: int) -> Agent:
    return replace(agent, load=agent.load + delta)


def _ms(iso: str | None) -> int:
    if not iso:
        return int(time.time() * 1000)
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp() * 1000)
