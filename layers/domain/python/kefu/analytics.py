"""Per-conversation facts and their aggregates (pure: the stream handler feeds it stream images).

One Conversations-stream record implies zero or more facts (`facts_from_record`): a conversation opened,
the bot handed over, the first assignment (with its wait), a transfer, a close (with handle time,
containment, abandonment, resolution), a CSAT rating, an NPS answer (the survey's 0–10 recommendation
question, when the workspace asks it). `aggregate` sums the facts of a batch in memory
per workspace x dimension (all, group:{g}, agent:{a}, channel:{c}) x hour and day, so a batch costs one
atomic ADD per aggregate item; `rates` derives the dashboard's numbers from the counters.

Images are plain dicts as Powertools' `record.dynamodb.new_image` gives them (numbers are Decimal, the
JSON attributes `bot` and `routing` are JSON strings, `csat` is a map: {score, comment, at, nps?}).

NPS: promoters answer 9–10, passives 7–8, detractors 0–6; NPS = % promoters - % detractors (-100..100).
Like CSAT it is counted when the rating first appears on the META item (once per conversation); a batch
delivered again is kept from counting twice by the aggregate store's markers.

First response time: the message store sets the META item's firstResponseAt with the first agent
message (if_not_exists), so its appearance on a MODIFY is the fact; FRT counts from the assignment (or
the opening, for a conversation an agent answered without one).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .models import parse_iso

# upper bounds (seconds) of the wait / first-response histogram buckets; a last bucket holds the rest
HIST_BOUNDS: tuple[int, ...] = (0, 10, 30, 60, 120, 300, 600, 1800, 3600)
HIST_BUCKETS = len(HIST_BOUNDS) + 1
NPS_MAX = 10  # answers 0..10
GRANULARITIES = ("H", "D")  # hour "2026-11-21T15", day "2026-11-21"
AGG_RETENTION_S = 400 * 24 * 3600

# every counter an aggregate item can hold (all ADDed; absent means 0)
COUNTERS: tuple[str, ...] = (
    "volume", "botConversations", "botContained", "handoffs", "transfers",
    "closed", "resolved", "fcr", "abandoned",
    "waitCount", "waitSum", *[f"wait{i}" for i in range(HIST_BUCKETS)],
    "handleCount", "handleSum",
    "frtCount", "frtSum", *[f"frt{i}" for i in range(HIST_BUCKETS)],
    "csatCount", "csatSum", *[f"csat{s}" for s in range(1, 6)],
    "npsCount", "npsPromoters", "npsPassives", "npsDetractors", *[f"nps{s}" for s in range(NPS_MAX + 1)],
    "ticketsOpened", "ticketsEscalated", "slaBreaches",
)

Counters = dict  # counter name -> int (only the non-zero ones)


@dataclass(frozen=True)
class Fact:
    """One analytics event about a conversation. `at` is the ISO time it is counted in."""

    kind: str  # opened | handoff | assigned | transfer | closed | csat | nps | first_response | ticket_opened | ticket_escalated
    workspace: str
    conversation_id: str
    at: str
    channel: str = "web"
    group: str | None = None
    agent: str | None = None
    values: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, order=True)
class AggregateKey:
    workspace: str
    granularity: str  # "H" | "D"
    period: str  # "2026-11-21T15" | "2026-11-21"
    dimension: str  # "all" | "group:{g}" | "agent:{a}" | "channel:{c}"


# ---------------------------------------------------------------- facts


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        a, b = parse_iso(str(start)), parse_iso(str(end))
    except ValueError:
        return None
    return max(0.0, (b - a).total_seconds())


def _json(value) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def facts_from_record(event_name: str, old_image: Mapping | None, new_image: Mapping | None) -> list[Fact]:
    """The facts one stream record implies. event_name: "INSERT" | "MODIFY" | "REMOVE" (or the
    Powertools enum: its .name is used)."""
    name = getattr(event_name, "name", event_name)
    old, new = old_image or {}, new_image or {}
    if name == "REMOVE" or new.get("kind") != "meta":
        return []  # messages: see the module docstring about first response time
    ws = str(new.get("workspace") or str(new.get("pk", "")).split("#", 1)[0])
    cid = str(new.get("conversationId") or "")
    if not ws:
        return []
    channel = str(new.get("channel") or "web")
    group = new.get("group") or None
    agent = new.get("agentId") or None
    facts: list[Fact] = []

    def fact(kind: str, at, *, agent_dim=agent, **values) -> None:
        if at:
            facts.append(Fact(kind, ws, cid, str(at), channel, group, agent_dim, values))

    status, was = new.get("status"), old.get("status")
    if name == "INSERT":
        fact("opened", new.get("openedAt"), agent_dim=None, bot=status == "bot")
        return facts
    if name != "MODIFY":
        return facts
    if was == "bot" and status in ("open", "queued", "assigned"):
        fact("handoff", new.get("updatedAt") or new.get("queuedAt") or new.get("assignedAt"), agent_dim=None)
    if new.get("assignedAt") and not old.get("assignedAt"):
        wait = _seconds(new.get("queuedAt") or new.get("openedAt"), new.get("assignedAt"))
        fact("assigned", new["assignedAt"], wait_s=wait)
    if new.get("firstResponseAt") and not old.get("firstResponseAt"):
        frt = _seconds(new.get("assignedAt") or new.get("openedAt"), new.get("firstResponseAt"))
        fact("first_response", new["firstResponseAt"], frt_s=frt)
    previous = old.get("agentId")
    if previous and status in ("assigned", "queued") and agent != previous and was != "closed":
        # the conversation left its agent for another one or for the queue: a transfer, counted for the
        # agent who let it go
        fact("transfer", new.get("updatedAt") or new.get("assignedAt"), agent_dim=previous)
    if status == "closed" and was != "closed":
        reason = str(new.get("closeReason") or "")
        routing = _json(new.get("routing"))
        assigned = bool(new.get("assignedAt"))
        fact(
            "closed",
            new.get("closedAt"),
            handle_s=_seconds(new.get("assignedAt"), new.get("closedAt")) if assigned else None,
            bot_contained=was == "bot" and not assigned,
            abandoned=reason.startswith("abandoned"),
            resolved=reason.startswith("resolved"),
            transferred=bool(routing.get("transferredBy") or routing.get("avoidAgent")),
        )
    csat = new.get("csat") if isinstance(new.get("csat"), Mapping) else None
    if csat and not old.get("csat"):
        try:
            score = int(csat.get("score"))
        except (TypeError, ValueError):
            score = 0
        at = csat.get("at") or new.get("closedAt") or new.get("updatedAt")
        if 1 <= score <= 5:
            fact("csat", at, score=score)
        nps = csat.get("nps")
        if nps is not None and not isinstance(nps, bool):
            try:
                answer = int(nps)
            except (TypeError, ValueError):
                answer = -1
            if 0 <= answer <= NPS_MAX and answer == nps:
                fact("nps", at, score=answer)
    return facts


def ticket_facts(old, new) -> list[Fact]:
    """Facts of one change of a ticket (kefu.tickets.Ticket before and after; None when absent): opened, and
    escalated (each level up is an SLA deadline missed). Counted per the ticket's group and assignee."""
    if new is None:
        return []
    if old is None:
        return [Fact("ticket_opened", new.workspace, new.id, new.created_at, "", new.group, new.assignee_id,
                     {"priority": new.priority})]
    if new.escalation_level > old.escalation_level:
        return [Fact("ticket_escalated", new.workspace, new.id, new.updated_at or new.created_at, "", new.group,
                     old.assignee_id, {"levels": new.escalation_level - old.escalation_level,
                                       "first": old.escalation_level == 0})]
    return []


# ---------------------------------------------------------------- aggregation


def nps_category(score: int) -> str:
    """The counter an NPS answer adds to: promoters 9–10, passives 7–8, detractors 0–6."""
    return "npsPromoters" if score >= 9 else "npsPassives" if score >= 7 else "npsDetractors"


def nps_value(promoters: int, detractors: int, answers: int) -> float | None:
    """% promoters - % detractors, -100..100 (None without answers)."""
    return 100.0 * (promoters - detractors) / answers if answers else None


def bucket_of(seconds: float) -> int:
    for i, bound in enumerate(HIST_BOUNDS):
        if seconds <= bound:
            return i
    return len(HIST_BOUNDS)


def _increments(f: Fact) -> dict[str, int]:
    v = f.values
    if f.kind == "ticket_opened":
        return {"ticketsOpened": 1}
    if f.kind == "ticket_escalated":  # every level is a deadline missed; the first makes it an escalated ticket
        return {"slaBreaches": int(v.get("levels", 1)), **({"ticketsEscalated": 1} if v.get("first") else {})}
    if f.kind == "opened":
        return {"volume": 1, **({"botConversations": 1} if v.get("bot") else {})}
    if f.kind == "handoff":
        return {"handoffs": 1}
    if f.kind == "transfer":
        return {"transfers": 1}
    if f.kind in ("assigned", "first_response"):
        seconds = v.get("wait_s" if f.kind == "assigned" else "frt_s")
        if seconds is None:
            return {}
        prefix = "wait" if f.kind == "assigned" else "frt"
        return {f"{prefix}Count": 1, f"{prefix}Sum": int(round(seconds)), f"{prefix}{bucket_of(seconds)}": 1}
    if f.kind == "closed":
        out = {"closed": 1}
        for flag, counter in (("bot_contained", "botContained"), ("abandoned", "abandoned"), ("resolved", "resolved")):
            if v.get(flag):
                out[counter] = 1
        if v.get("resolved") and not v.get("transferred"):
            out["fcr"] = 1
        if v.get("handle_s") is not None:
            out["handleCount"] = 1
            out["handleSum"] = int(round(v["handle_s"]))
        return out
    if f.kind == "csat":
        score = int(v["score"])
        return {"csatCount": 1, "csatSum": score, f"csat{score}": 1}
    if f.kind == "nps":
        score = int(v["score"])
        return {"npsCount": 1, f"nps{score}": 1, nps_category(score): 1}
    return {}


def dimensions(f: Fact) -> list[str]:
    dims = ["all", f"channel:{f.channel}"] if f.channel else ["all"]
    if f.group:
        dims.append(f"group:{f.group}")
    if f.agent:
        dims.append(f"agent:{f.agent}")
    return dims


def periods(at: str) -> list[tuple[str, str]]:
    return [("H", at[:13]), ("D", at[:10])]


def aggregate(facts: Iterable[Fact]) -> dict[AggregateKey, Counters]:
    """Sum the facts per workspace x granularity x period x dimension (non-zero counters only)."""
    out: dict[AggregateKey, Counters] = {}
    for f in facts:
        inc = _increments(f)
        if not inc:
            continue
        for granularity, period in periods(f.at):
            for dim in dimensions(f):
                counters = out.setdefault(AggregateKey(f.workspace, granularity, period, dim), {})
                for name, n in inc.items():
                    counters[name] = counters.get(name, 0) + n
    return out


def merge(into: Counters, more: Mapping[str, int]) -> Counters:
    for name, n in more.items():
        into[name] = into.get(name, 0) + int(n)
    return into


# ---------------------------------------------------------------- rates


def histogram(counters: Mapping[str, int], prefix: str) -> list[int]:
    return [int(counters.get(f"{prefix}{i}", 0)) for i in range(HIST_BUCKETS)]


def percentile_from_histogram(buckets: list[int], q: float, bounds: tuple[int, ...] = HIST_BOUNDS) -> float | None:
    """The upper bound of the bucket holding the q-quantile (nearest rank); math.inf when it falls in
    the overflow bucket, None for an empty histogram."""
    total = sum(buckets)
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i, n in enumerate(buckets):
        seen += n
        if seen >= rank:
            return float(bounds[i]) if i < len(bounds) else math.inf
    return math.inf


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _finite(x: float | None) -> float | None:
    return None if x is None or math.isinf(x) else x


def rates(c: Mapping[str, int]) -> dict:
    """The dashboard's numbers from one set of counters (None where the denominator is 0; a percentile
    beyond the last bucket bound is None with `...Over` true)."""
    g = lambda name: int(c.get(name, 0))  # noqa: E731
    wait, frt = histogram(c, "wait"), histogram(c, "frt")
    p50, p90 = percentile_from_histogram(wait, 0.5), percentile_from_histogram(wait, 0.9)
    f50, f90 = percentile_from_histogram(frt, 0.5), percentile_from_histogram(frt, 0.9)
    return {
        "volume": g("volume"),
        "closed": g("closed"),
        "containmentRate": _ratio(g("botContained"), g("botConversations")),
        "handoffRate": _ratio(g("handoffs"), g("botConversations")),
        "resolutionRate": _ratio(g("resolved"), g("closed")),
        "fcrRate": _ratio(g("fcr"), g("closed")),
        "abandonRate": _ratio(g("abandoned"), g("closed")),
        "transfers": g("transfers"),
        "avgWaitS": _ratio(g("waitSum"), g("waitCount")),
        "waitP50S": _finite(p50),
        "waitP90S": _finite(p90),
        "waitP90Over": p90 is not None and math.isinf(p90),
        "ahtS": _ratio(g("handleSum"), g("handleCount")),
        "frtP50S": _finite(f50),
        "frtP90S": _finite(f90),
        "csatAvg": _ratio(g("csatSum"), g("csatCount")),
        "ticketsOpened": g("ticketsOpened"),
        "ticketsEscalated": g("ticketsEscalated"),
        "slaBreaches": g("slaBreaches"),
        "csatDistribution": {str(s): g(f"csat{s}") for s in range(1, 6)},
        "nps": nps_value(g("npsPromoters"), g("npsDetractors"), g("npsCount")),
        "npsCount": g("npsCount"),
        "npsPromoters": g("npsPromoters"),
        "npsPassives": g("npsPassives"),
        "npsDetractors": g("npsDetractors"),
        "npsDistribution": {str(s): g(f"nps{s}") for s in range(NPS_MAX + 1)},
    }


MAX_DAYS = 92


def period_range(granularity: str, first: str, last: str) -> list[str]:
    """Every period key from first to last, both included: hours ("2026-11-21T09", at most 31 days) or days
    ("2026-11-21", at most MAX_DAYS). ValueError on malformed keys, a reversed or too long range."""
    from datetime import datetime, timedelta

    if granularity == "H":
        from .metrics import hours_between

        return hours_between(first, last)
    start, end = datetime.strptime(first, "%Y-%m-%d"), datetime.strptime(last, "%Y-%m-%d")
    if end < start:
        raise ValueError("the range ends before it starts")
    days = (end - start).days + 1
    if days > MAX_DAYS:
        raise ValueError(f"at most {MAX_DAYS} days at a time")
    return [(start + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(days)]


def report(counters_by_period: Mapping[str, Mapping[str, int]], periods_: list[str]) -> dict:
    """The numbers of each period and of the whole range (rates of the summed counters, not averages of
    rates)."""
    total: Counters = {}
    series = []
    for period in periods_:
        counters = counters_by_period.get(period, {})
        merge(total, counters)
        series.append({"period": period, **rates(counters)})
    return {"series": series, "total": rates(total)}


# ---------------------------------------------------------------- CloudWatch (embedded metric format)

# The service metrics the stack's alarms and dashboard watch (namespace POWERTOOLS_METRICS_NAMESPACE,
# dimension service only: workspaces are too many to be dimensions; per-workspace numbers live in the
# aggregates above). Names here are the single source for infra/observability.py.
EMF_NAMESPACE = "kefu"
EMF_SECONDS = {"assigned": ("QueueWaitSeconds", "wait_s"), "first_response": ("FirstResponseSeconds", "frt_s"),
               "closed": ("HandleSeconds", "handle_s")}
EMF_COUNTS = {"opened": "Conversations", "handoff": "BotHandoffs", "closed": "ConversationsClosed"}
EMF_BOT_CONVERSATIONS = "BotConversations"
EMF_CSAT = "CsatScore"
EMF_SLA_BREACHES = "SlaBreaches"


def emf_values(facts: Iterable[Fact]) -> dict[str, tuple[str, list[float]]]:
    """{metric name: (unit, values)} for one batch's facts: durations as individual values (CloudWatch
    computes p90 from them), counts as one sum."""
    out: dict[str, tuple[str, list[float]]] = {}

    def add(name: str, unit: str, value: float) -> None:
        out.setdefault(name, (unit, []))[1].append(float(value))

    counts: dict[str, int] = {}
    for f in facts:
        if f.kind in EMF_SECONDS:
            name, field_ = EMF_SECONDS[f.kind]
            if f.values.get(field_) is not None:
                add(name, "Seconds", f.values[field_])
        if f.kind in EMF_COUNTS:
            counts[EMF_COUNTS[f.kind]] = counts.get(EMF_COUNTS[f.kind], 0) + 1
        if f.kind == "opened" and f.values.get("bot"):
            counts[EMF_BOT_CONVERSATIONS] = counts.get(EMF_BOT_CONVERSATIONS, 0) + 1
        if f.kind == "csat":
            add(EMF_CSAT, "None", f.values["score"])
    for name, n in counts.items():
        add(name, "Count", n)
    return out
