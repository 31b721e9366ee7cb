"""Routing decisions, pure: who may take a conversation, who should, where it waits and for how long.

No I/O here. The Router (router.py) reads agents, settings and the queue from the store, asks
these functions for a decision, and makes it true with one conditional transaction.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Iterable, Literal

from .models import Agent

Strategy = Literal["least_busy", "round_robin", "skill_match"]
STRATEGIES: tuple[str, ...] = ("least_busy", "round_robin", "skill_match")
ANY_GROUP = "*"  # the queue of conversations that name no group
DEFAULT_GRACE_S = 60
DEFAULT_HANDLE_S = 300.0  # assumed handle time until the workspace has closed conversations to learn from
DEFAULT_PRIORITY_TAGS = {"vip": 10}
REQUEUE_BOOST = 5  # a conversation whose agent left goes ahead of new arrivals of its priority
MAX_EXPLAINED = 20  # candidates recorded on the conversation (the decision stays small)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")
_GROUP = re.compile(r"^[\w.:\-]{1,64}$")
MAX_PRIORITY = 100


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class BusinessHours:
    """Opening hours in a time zone: weekly intervals ("09:00"–"18:00") and closed dates."""

    timezone: str = "UTC"
    weekly: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    holidays: frozenset[str] = frozenset()

    @classmethod
    def from_dict(cls, data: dict) -> BusinessHours:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        tz = str(data.get("timezone") or "UTC")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {tz!r}") from None
        weekly: dict[str, tuple[tuple[str, str], ...]] = {}
        for day, spans in (data.get("weekly") or {}).items():
            if day not in DAYS:
                raise ValueError(f"weekly: {day!r} is not one of {', '.join(DAYS)}")
            checked = []
            for span in spans or ():
                if len(span) != 2 or not all(isinstance(t, str) and _HHMM.match(t) for t in span) or span[0] >= span[1]:
                    raise ValueError(f"weekly.{day}: {span!r} is not a [\"HH:MM\", \"HH:MM\"] interval")
                checked.append((span[0], span[1]))
            weekly[day] = tuple(checked)
        holidays = frozenset(str(d) for d in data.get("holidays") or ())
        for day in holidays:
            date.fromisoformat(day)  # ValueError on a malformed date
        return cls(tz, weekly, holidays)

    def to_dict(self) -> dict:
        return {
            "timezone": self.timezone,
            "weekly": {d: [list(s) for s in spans] for d, spans in self.weekly.items()},
            "holidays": sorted(self.holidays),
        }

    def is_open(self, at: datetime) -> bool:
        from zoneinfo import ZoneInfo

        local = at.astimezone(ZoneInfo(self.timezone))
        if local.date().isoformat() in self.holidays:
            return False
        clock = local.strftime("%H:%M")
        return any(start <= clock < end for start, end in self.weekly.get(DAYS[local.weekday()], ()))


@dataclass(frozen=True)
class GroupSettings:
    strategy: Strategy | None = None  # None: the workspace's
    fallback_group: str | None = None
    business_hours: BusinessHours | None = None


@dataclass(frozen=True)
class RoutingSettings:
    """A workspace's routing configuration (kept on its WORKSPACE item)."""

    strategy: Strategy = "least_busy"
    groups: dict[str, GroupSettings] = field(default_factory=dict)
    fallback_group: str | None = None
    priority_tags: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PRIORITY_TAGS))
    tag_groups: dict[str, str] = field(default_factory=dict)  # customer tag -> dedicated group ("vip" -> "vip")
    business_hours: BusinessHours | None = None
    grace_seconds: int = DEFAULT_GRACE_S

    @classmethod
    def from_dict(cls, data: dict | None) -> RoutingSettings:
        data = data or {}
        groups = {}
        for name, g in (data.get("groups") or {}).items():
            _group(name, "groups")
            groups[name] = GroupSettings(
                strategy=_strategy(g.get("strategy")) if g.get("strategy") else None,
                fallback_group=_group(g.get("fallbackGroup"), f"groups.{name}.fallbackGroup"),
                business_hours=BusinessHours.from_dict(g["businessHours"]) if g.get("businessHours") else None,
            )
        priority_tags = data.get("priorityTags", DEFAULT_PRIORITY_TAGS)  # {} means: no priorities
        priority_tags = {str(k): int(v) for k, v in (priority_tags or {}).items()}
        if any(not 0 <= v <= MAX_PRIORITY for v in priority_tags.values()):
            raise ValueError(f"priorityTags: priorities are 0 to {MAX_PRIORITY}")
        tag_groups = {str(k): _group(v, f"tagGroups.{k}") for k, v in (data.get("tagGroups") or {}).items()}
        return cls(
            strategy=_strategy(data.get("strategy") or "least_busy"),
            groups=groups,
            fallback_group=_group(data.get("fallbackGroup"), "fallbackGroup"),
            priority_tags=priority_tags,
            tag_groups=tag_groups,
            business_hours=BusinessHours.from_dict(data["businessHours"]) if data.get("businessHours") else None,
            grace_seconds=int(data.get("graceSeconds", DEFAULT_GRACE_S)),
        )

    def to_dict(self) -> dict:
        return {
            "strategy": self.strategy,
            "groups": {
                name: {
                    "strategy": g.strategy,
                    "fallbackGroup": g.fallback_group,
                    "businessHours": g.business_hours.to_dict() if g.business_hours else None,
                }
                for name, g in self.groups.items()
            },
            "fallbackGroup": self.fallback_group,
            "priorityTags": self.priority_tags,
            "tagGroups": self.tag_groups,
            "businessHours": self.business_hours.to_dict() if self.business_hours else None,
            "graceSeconds": self.grace_seconds,
        }

    def strategy_for(self, group: str | None) -> Strategy:
        own = self.groups.get(group or "")
        return (own.strategy if own and own.strategy else None) or self.strategy

    def fallback_for(self, group: str | None) -> str | None:
        own = self.groups.get(group or "")
        fallback = (own.fallback_group if own else None) or self.fallback_group
        return fallback if fallback != group else None

    def hours_for(self, group: str | None) -> BusinessHours | None:
        own = self.groups.get(group or "")
        return (own.business_hours if own else None) or self.business_hours


def _group(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _GROUP.match(value):
        raise ValueError(f"{where}: {value!r} is not a group name (letters, digits, _ . : -; at most 64)")
    return value


def _strategy(value: Any) -> Strategy:
    if value not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {value!r}")
    return value


# ---------------------------------------------------------------- what a conversation needs


@dataclass(frozen=True)
class Need:
    """What a conversation asks of its agent, and how urgently."""

    group: str | None = None
    language: str | None = None
    priority: int = 0

    @property
    def queue(self) -> str:
        return self.group or ANY_GROUP


def need_for(settings: RoutingSettings, tags: Iterable[str], group: str | None, language: str | None, *,
             dedicated: bool = True) -> Need:
    """Customer tags raise the priority (vip first) and may send the conversation to a dedicated group
    (not when a person transferred it to a group on purpose: dedicated=False)."""
    tags = tuple(tags)
    priority = max((settings.priority_tags.get(t, 0) for t in tags), default=0)
    dedicated = next((settings.tag_groups[t] for t in tags if t in settings.tag_groups), None) if dedicated else None
    return Need(group=dedicated or group, language=language, priority=priority)


# ---------------------------------------------------------------- choosing an agent


@dataclass(frozen=True)
class Candidate:
    agent_id: str
    name: str
    load: int
    max: int
    presence: str
    eligible: bool
    why: str  # why it can or cannot take the conversation

    def to_dict(self) -> dict:
        return {"agentId": self.agent_id, "load": self.load, "max": self.max, "presence": self.presence,
                "eligible": self.eligible, "why": self.why}


@dataclass(frozen=True)
class Decision:
    """The outcome of one routing pass and why; recorded on the conversation."""

    strategy: Strategy
    need: Need
    group: str | None  # the group actually used (the fallback when the wanted one had nobody online)
    ranked: tuple[Agent, ...]  # who could take it, best first
    candidates: tuple[Candidate, ...]
    reason: str
    online_in_group: int = 0  # agents of the group online (busy or not): 0 means the offline path

    def explain(self, chosen: Agent | None) -> dict:
        return {
            "strategy": self.strategy,
            "group": self.group,
            "wantedGroup": self.need.group,
            "language": self.need.language,
            "priority": self.need.priority,
            "candidates": [c.to_dict() for c in self.candidates[:MAX_EXPLAINED]],
            "chosen": chosen.id if chosen else None,
            "reason": self.reason if chosen is None else reason_for(self, chosen),
        }


def assignable(agent: Agent) -> bool:
    return agent.presence == "online" and agent.connections > 0 and agent.load < agent.max_concurrent


def _why_not(agent: Agent, need: Need, group: str | None, strategy: Strategy) -> str | None:
    if group is not None and group not in agent.groups:
        return f"not in {group}"
    if strategy == "skill_match" and need.language and need.language not in agent.languages:
        return f"does not speak {need.language}"
    if agent.presence != "online":
        return agent.presence
    if agent.connections <= 0:
        return "no open console"
    if agent.load >= agent.max_concurrent:
        return f"full ({agent.load}/{agent.max_concurrent})"
    return None


def rank(agents: Iterable[Agent], strategy: Strategy, need: Need) -> list[Agent]:
    """Order assignable agents best first under `strategy` (the caller filtered eligibility)."""
    pool = list(agents)
    if strategy == "round_robin":
        # the agent whose last assignment is oldest goes next: a rotation that skips whoever is full
        return sorted(pool, key=lambda a: (a.last_assigned_at or "", a.id))
    if strategy == "skill_match":
        # speaks the language first (when not required), then the fewest open relative to capacity
        return sorted(pool, key=lambda a: (need.language is not None and need.language not in a.languages,
                                           a.load / a.max_concurrent, a.load, a.id))
    return sorted(pool, key=lambda a: (a.load / a.max_concurrent, a.load, a.last_assigned_at or "", a.id))


def decide(agents: Iterable[Agent], settings: RoutingSettings, need: Need, *, exclude: str | None = None) -> Decision:
    """Rank who can take a conversation with this need; falls back to the fallback group when the wanted
    group has nobody online."""
    agents = [a for a in agents if a.id != exclude]
    decision = _decide_in(agents, settings, need, need.group)
    fallback = settings.fallback_for(need.group)
    if need.group and decision.online_in_group == 0 and fallback:
        other = _decide_in(agents, settings, need, fallback)
        reason = f"nobody online in {need.group}; fallback group {fallback}: {other.reason}"
        return Decision(other.strategy, need, fallback, other.ranked, decision.candidates + other.candidates,
                        reason, other.online_in_group)
    return decision


def _decide_in(agents: list[Agent], settings: RoutingSettings, need: Need, group: str | None) -> Decision:
    strategy = settings.strategy_for(group)
    candidates, eligible, online = [], [], 0
    for agent in agents:
        if group is not None and group not in agent.groups:
            continue  # not part of this decision at all
        why_not = _why_not(agent, need, group, strategy)
        if agent.presence == "online" and agent.connections > 0 and not (why_not or "").startswith("does not"):
            online += 1
        if why_not is None:
            eligible.append(agent)
        candidates.append(Candidate(agent.id, agent.name, agent.load, agent.max_concurrent, agent.presence,
                                    why_not is None, why_not or "available"))
    ranked = rank(eligible, strategy, need)
    where = f"in {group}" if group else "in the workspace"
    if ranked:
        reason = f"{len(ranked)} available {where}"
    elif online:
        reason = f"everyone {where} is busy"
    else:
        reason = f"nobody online {where}"
    order = {a.id: i for i, a in enumerate(ranked)}
    candidates.sort(key=lambda c: (not c.eligible, order.get(c.agent_id, 0), c.agent_id))
    return Decision(strategy, need, group, tuple(ranked), tuple(candidates), reason, online)


def reason_for(decision: Decision, chosen: Agent) -> str:
    if decision.strategy not in STRATEGIES:  # a person chose (transfer, manual assignment)
        return decision.reason
    where = f"in {decision.group}" if decision.group else "in the workspace"
    others = len(decision.ranked) - 1
    if decision.strategy == "round_robin":
        why = f"next in rotation {where}"
    elif decision.strategy == "skill_match":
        spoken = f", speaks {decision.need.language}" if decision.need.language else ""
        why = f"skill match {where}{spoken}, least busy ({chosen.load}/{chosen.max_concurrent} open)"
    else:
        why = f"least busy {where} ({chosen.load}/{chosen.max_concurrent} open)"
    if decision.group and decision.need.group and decision.group != decision.need.group:
        why += f"; fallback from {decision.need.group}"
    return why + (f", ahead of {others} other available" if others > 0 else "")


# ---------------------------------------------------------------- the queue


@dataclass(frozen=True)
class QueueEntry:
    workspace: str
    conversation_id: str
    queue: str  # group name, or ANY_GROUP
    priority: int
    arrival_ms: int  # when the customer started waiting (kept when a conversation is requeued)
    customer_id: str = ""
    language: str | None = None
    customer_name: str = ""  # what the console's queue tab shows

    @classmethod
    def from_sort_key(cls, workspace: str, sort_key: str, customer_id: str = "",
                      language: str | None = None, customer_name: str = "") -> QueueEntry:
        queue, inverted, arrival, conversation_id = sort_key.split("#", 3)
        return cls(workspace, conversation_id, queue, 999 - int(inverted), int(arrival), customer_id, language,
                   customer_name)

    @property
    def sort_key(self) -> str:
        """Queue order inside one queue: priority (higher first), then arrival."""
        return f"{self.queue}#{999 - max(0, min(self.priority, 999)):03d}#{self.arrival_ms:013d}#{self.conversation_id}"

    def need(self) -> Need:
        return Need(group=None if self.queue == ANY_GROUP else self.queue, language=self.language,
                    priority=self.priority)


def positions(entries: Iterable[QueueEntry]) -> dict[str, int]:
    """1-based position of each conversation in its own queue."""
    ordered = sorted(entries, key=lambda e: e.sort_key)
    seen: dict[str, int] = {}
    result = {}
    for entry in ordered:
        seen[entry.queue] = seen.get(entry.queue, 0) + 1
        result[entry.conversation_id] = seen[entry.queue]
    return result


def serving_capacity(agents: Iterable[Agent], queue: str) -> int:
    """Concurrent conversations the agents online for this queue can hold."""
    return sum(a.max_concurrent for a in agents
               if a.presence == "online" and a.connections > 0 and (queue == ANY_GROUP or queue in a.groups))


def estimate_wait_s(position: int, capacity: int, handle_s: float, free_now: int = 0) -> int | None:
    """Expected wait of the customer at `position`: with every seat of the queue's agents busy, one frees
    up every handle_s / capacity seconds on average, so the p-th in line waits about p of those.
    None when nobody serves the queue (the wait is unknown, not zero)."""
    if capacity <= 0:
        return None
    ahead = max(0, position - free_now)
    return int(math.ceil(ahead * handle_s / capacity))


def mean_handle_s(total_ms: int, count: int) -> float:
    return total_ms / count / 1000 if count > 0 else DEFAULT_HANDLE_S


def is_open(settings: RoutingSettings, group: str | None, at: datetime | None = None) -> bool:
    hours = settings.hours_for(group)
    return True if hours is None else hours.is_open(at or datetime.now(timezone.utc))


def should_notify(old: int | None, new: int) -> bool:
    """Queue updates: every change near the front; further back, every 10th place (bounded fan-out per
    dequeue without leaving anyone without news)."""
    if old is None or new <= LIVE_POSITIONS:
        return old != new
    return old // 10 != new // 10


LIVE_POSITIONS = 10
