"""A/B experiments and conversion attribution: pure functions, no I/O (storage: adapters/experiment_store.py).

An experiment varies one thing the product controls (`KINDS`): the widget's greeting, the proactive popup's
delay, bot-first vs. human-first routing, or the wording of quick replies. Its variants split the traffic by
integer weights; the first variant is the control.

Assignment (`assign`) is a pure function of the experiment id and the visitor key (the customer id when the
visitor is identified, else the anonymous visitor id: the token's subject), so a visitor sees the same
variant on every reload and on every channel, without any stored state. Once an experiment is stopped with a
winner, everyone gets the winner.

Exposure: a visitor is exposed the first time the variant takes effect for them while the experiment runs,
not when the widget merely learns its assignments: the chat shows the greeting; the widget starts the clock of
a timed proactive invitation (for every variant alike, also 30 s ones the visitor leaves before: logging the
popup's appearance instead would count only the visitors who stayed, a survivorship bias against the slower
variant); a new conversation is routed while the bot would take it (routing_mode); quick replies are shown.
That moment (stored once per experiment and visitor) starts the attribution window.

Conversion (per experiment): a visitor converts when a business event (order_placed, payment_succeeded) of
theirs happens within `window_s` (default 24 h) after their first exposure; a visitor counts at most once
per experiment, however many orders they place.

Results (`results`): per variant exposures, conversions, conversion rate; for each other variant against the
control: the absolute difference, the relative lift, a 95 % **Wald** confidence interval of the difference of
the two proportions (unpooled standard error) and the two-sided p-value of the two-proportion **z-test**
(pooled standard error), from the normal distribution through math.erfc. The Wald interval is the textbook
one: it is poor for tiny samples or rates near 0 or 1, which is why `results` also reports the counts.

Conversation attribution (`credited_conversation`): a business event is credited to the customer's
latest conversation that opened within the attribution window before the event (none if there is none).

Chatted vs. not chatted (`chat_conversion`): among the visitors seen by the widget (it asked for its
assignments at least once), "chatted" are those with at least one conversation, "converted" those with at
least one business event; the report gives the conversion rate of each group. This is an observational
comparison (visitors who chat differ from those who do not), not a causal effect: experiments are for that.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime

from . import chips
from .errors import Conflict, InvalidRequest
from .models import new_id, now_iso, parse_iso, to_iso

KINDS = ("greeting", "proactive_delay", "routing_mode", "quick_reply_wording")
STATUSES = ("draft", "running", "stopped")
ROUTING_MODES = ("bot_first", "human_first")
MIN_VARIANTS, MAX_VARIANTS = 2, 5
MAX_TOTAL_WEIGHT = 10_000
MAX_DELAY_S = 3600
MAX_TEXT = 500
MAX_QUICK_REPLIES = chips.MAX_WORDINGS
DEFAULT_WINDOW_S = 24 * 3600
MAX_WINDOW_S = 30 * 86400
VARIANT_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,32}$")
Z_95 = 1.959963984540054  # the 97.5 % quantile of the standard normal distribution
EVENT_TYPES = ("order_placed", "payment_succeeded")


@dataclass(frozen=True)
class Variant:
    id: str
    weight: int
    value: object

    def public(self) -> dict:
        return {"id": self.id, "weight": self.weight, "value": self.value}


@dataclass(frozen=True)
class Experiment:
    id: str
    workspace: str
    name: str
    kind: str
    variants: tuple[Variant, ...]
    status: str = "draft"
    winner: str | None = None
    window_s: int = DEFAULT_WINDOW_S
    created_at: str = field(default_factory=now_iso)
    started_at: str | None = None
    stopped_at: str | None = None

    def variant(self, variant_id: str) -> Variant | None:
        return next((v for v in self.variants if v.id == variant_id), None)

    def public(self) -> dict:
        return {"experimentId": self.id, "workspace": self.workspace, "name": self.name, "kind": self.kind,
                "variants": [v.public() for v in self.variants], "status": self.status, "winner": self.winner,
                "attributionWindowSeconds": self.window_s, "createdAt": self.created_at,
                "startedAt": self.started_at, "stoppedAt": self.stopped_at}

    def to_dict(self) -> dict:
        return self.public()

    @classmethod
    def from_dict(cls, d: dict) -> "Experiment":
        return cls(id=d["experimentId"], workspace=d["workspace"], name=d["name"], kind=d["kind"],
                   variants=tuple(Variant(v["id"], int(v["weight"]), v.get("value")) for v in d["variants"]),
                   status=d.get("status", "draft"), winner=d.get("winner"),
                   window_s=int(d.get("attributionWindowSeconds", DEFAULT_WINDOW_S)),
                   created_at=d.get("createdAt", ""), started_at=d.get("startedAt"), stopped_at=d.get("stoppedAt"))


# ---------------------------------------------------------------- validation and life cycle


def _check_value(kind: str, value: object, where: str) -> object:
    if kind == "greeting":
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
            raise InvalidRequest(f"{where}: a greeting is a non-empty text of at most {MAX_TEXT} characters")
        return value
    if kind == "proactive_delay":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_DELAY_S:
            raise InvalidRequest(f"{where}: a proactive delay is a number of seconds from 0 to {MAX_DELAY_S}")
        return int(value) if float(value).is_integer() else float(value)
    if kind == "routing_mode":
        if value not in ROUTING_MODES:
            raise InvalidRequest(f"{where}: a routing mode is one of {', '.join(ROUTING_MODES)}")
        return value
    if kind == "quick_reply_wording":  # the customer chat's quick replies (kefu.chips)
        return chips.check_wording(value, where)
    raise InvalidRequest(f"kind: one of {', '.join(KINDS)}")


def new_experiment(workspace: str, name: str, kind: str, variants: list[dict],
                   window_s: int = DEFAULT_WINDOW_S, experiment_id: str | None = None) -> Experiment:
    """A validated draft experiment; InvalidRequest says what is wrong."""
    if not isinstance(name, str) or not name.strip() or len(name) > 120:
        raise InvalidRequest("name: 1 to 120 characters")
    if kind not in KINDS:
        raise InvalidRequest(f"kind: one of {', '.join(KINDS)}")
    if not isinstance(variants, list) or not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
        raise InvalidRequest(f"variants: {MIN_VARIANTS} to {MAX_VARIANTS} variants")
    if isinstance(window_s, bool) or not isinstance(window_s, int) or not 60 <= window_s <= MAX_WINDOW_S:
        raise InvalidRequest(f"attributionWindowSeconds: 60 to {MAX_WINDOW_S}")
    out: list[Variant] = []
    for i, raw in enumerate(variants):
        where = f"variants[{i}]"
        if not isinstance(raw, dict):
            raise InvalidRequest(f"{where}: an object with id, weight and value")
        vid, weight = raw.get("id"), raw.get("weight")
        if not isinstance(vid, str) or not VARIANT_ID_RE.match(vid):
            raise InvalidRequest(f"{where}.id: 1 to 32 of A-Z a-z 0-9 _ . -")
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise InvalidRequest(f"{where}.weight: a positive integer")
        out.append(Variant(vid, weight, _check_value(kind, raw.get("value"), f"{where}.value")))
    ids = [v.id for v in out]
    if len(set(ids)) != len(ids):
        raise InvalidRequest("variants: ids must be unique")
    if sum(v.weight for v in out) > MAX_TOTAL_WEIGHT:
        raise InvalidRequest(f"variants: the weights sum to at most {MAX_TOTAL_WEIGHT}")
    return Experiment(experiment_id or new_id("exp"), workspace, name.strip(), kind, tuple(out),
                      window_s=window_s)


def start(experiment: Experiment, at: str | None = None) -> Experiment:
    if experiment.status != "draft":
        raise Conflict(f"the experiment is {experiment.status}: only a draft starts")
    return replace(experiment, status="running", started_at=at or now_iso())


def stop(experiment: Experiment, winner: str | None = None, at: str | None = None) -> Experiment:
    """Stop a running experiment; with a winner, everyone gets the winner from now on (roll-out). A stopped
    experiment without a winner may still be given one (the decision can come after the stop)."""
    if experiment.status == "draft":
        raise Conflict("the experiment has not started")
    if winner is not None and experiment.variant(winner) is None:
        raise InvalidRequest(f"winner: no variant {winner!r} in this experiment")
    if experiment.status == "stopped":
        if experiment.winner is not None or winner is None:
            raise Conflict("the experiment is already stopped")
        return replace(experiment, winner=winner)
    return replace(experiment, status="stopped", winner=winner, stopped_at=at or now_iso())


# ---------------------------------------------------------------- assignment


def bucket(experiment_id: str, visitor_key: str, total: int) -> int:
    """A number in [0, total), uniform and fixed for this experiment and visitor."""
    digest = hashlib.sha256(f"{experiment_id}:{visitor_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % total


def assign(experiment: Experiment, visitor_key: str) -> Variant | None:
    """The visitor's variant: the winner for everyone once rolled out, None for a draft or for a stopped
    experiment without a winner (the product's default applies), else by weight, deterministically."""
    if experiment.winner is not None:
        return experiment.variant(experiment.winner)
    if experiment.status != "running":
        return None
    point = bucket(experiment.id, visitor_key, sum(v.weight for v in experiment.variants))
    for variant in experiment.variants:
        if point < variant.weight:
            return variant
        point -= variant.weight
    raise AssertionError("unreachable: the point is below the total weight")


def routing_mode(experiments: list[Experiment], visitor_key: str) -> tuple[Experiment, Variant] | None:
    """The routing_mode experiment that decides this visitor's new conversation, with their variant: the
    first (oldest) running or rolled-out one that assigns them a variant; None: the product's default
    (the bot first when the workspace has one)."""
    for experiment in experiments:
        if experiment.kind != "routing_mode":
            continue
        variant = assign(experiment, visitor_key)
        if variant is not None:
            return experiment, variant
    return None


# ---------------------------------------------------------------- statistics


def normal_two_sided_p(z: float) -> float:
    """P(|Z| >= |z|) for a standard normal Z: 2 (1 - Phi(|z|)) = erfc(|z| / sqrt 2)."""
    return math.erfc(abs(z) / math.sqrt(2.0))


@dataclass(frozen=True)
class Comparison:
    diff: float  # p_variant - p_control
    lift: float | None  # diff / p_control (None when the control's rate is 0)
    ci95: tuple[float, float]  # Wald interval of diff
    z: float | None  # pooled two-proportion z (None when it is undefined: no variance)
    p_value: float | None


def compare(control_conv: int, control_n: int, variant_conv: int, variant_n: int) -> Comparison | None:
    """The variant against the control; None when either has no exposures."""
    if control_n <= 0 or variant_n <= 0:
        return None
    p1, p2 = control_conv / control_n, variant_conv / variant_n
    diff = p2 - p1
    se = math.sqrt(p1 * (1 - p1) / control_n + p2 * (1 - p2) / variant_n)
    pooled = (control_conv + variant_conv) / (control_n + variant_n)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / control_n + 1 / variant_n))
    z = diff / se_pooled if se_pooled > 0 else None
    return Comparison(diff=diff, lift=diff / p1 if p1 > 0 else None,
                      ci95=(diff - Z_95 * se, diff + Z_95 * se), z=z,
                      p_value=normal_two_sided_p(z) if z is not None else None)


def results(experiment: Experiment, counts: dict[str, tuple[int, int]]) -> dict:
    """Per variant (experiment order, the first is the control): exposures, conversions, rate and the
    comparison with the control. `counts`: variant id -> (exposures, conversions)."""
    control = experiment.variants[0].id
    cn, cc = counts.get(control, (0, 0))
    rows = []
    for variant in experiment.variants:
        n, c = counts.get(variant.id, (0, 0))
        row = {"variantId": variant.id, "control": variant.id == control, "exposures": n, "conversions": c,
               "conversionRate": c / n if n else None, "difference": None, "lift": None, "ci95": None,
               "z": None, "pValue": None}
        if variant.id != control:
            cmp = compare(cc, cn, c, n)
            if cmp is not None:
                row.update(difference=cmp.diff, lift=cmp.lift, ci95=list(cmp.ci95), z=cmp.z, pValue=cmp.p_value)
        rows.append(row)
    return {"method": {"interval": "Wald 95% interval of the difference of proportions (unpooled SE)",
                       "test": "two-sided two-proportion z-test (pooled SE), normal approximation",
                       "control": control, "attributionWindowSeconds": experiment.window_s},
            "variants": rows}


# ---------------------------------------------------------------- conversion attribution


parse_time, iso = parse_iso, to_iso  # the stored form of instants (kefu.models)


def within_window(start: str, event_at: str, window_s: int) -> bool:
    """True when the event happened at or after `start` and at most window_s seconds later."""
    delta = (parse_time(event_at) - parse_time(start)).total_seconds()
    return 0 <= delta <= window_s


def credited_conversation(event_at: str, conversations: list[tuple[str, str]],
                          window_s: int = DEFAULT_WINDOW_S) -> str | None:
    """The conversation a business event is credited to: of the customer's (id, openedAt), the latest that
    opened within window_s before the event (at or before it); None if none did."""
    best: tuple[datetime, str] | None = None
    at = parse_time(event_at)
    for conversation_id, opened_at in conversations:
        opened = parse_time(opened_at)
        if 0 <= (at - opened).total_seconds() <= window_s and (best is None or opened > best[0]):
            best = (opened, conversation_id)
    return best[1] if best else None


def chat_conversion(seen: set[str], chatted: set[str], converted: set[str]) -> dict:
    """Conversion rate of the seen visitors who chatted vs. those who did not (see the module docstring)."""
    talked = seen & chatted
    silent = seen - chatted

    def group(members: set[str]) -> dict:
        n, c = len(members), len(members & converted)
        return {"visitors": n, "converted": c, "conversionRate": c / n if n else None}

    return {"visitorsSeen": len(seen), "chatted": group(talked), "notChatted": group(silent)}
