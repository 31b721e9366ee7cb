"""Facts and aggregates against a generated event log whose answers are known exactly."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from kefu import analytics
from kefu.analytics import AggregateKey

T0 = datetime(2026, 11, 21, 10, 0, 0, tzinfo=timezone.utc)
DAY = "2026-11-21"


def iso(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


class Conv:
    """A conversation's META item, changed step by step; each step is one stream record."""

    def __init__(self, log: list, cid: str, opened: float, *, bot: bool = False, channel: str = "web",
                 group: str | None = None, ws: str = "w1"):
        self.log, self.t = log, opened
        self.item = {"pk": f"{ws}#C#{cid}", "sk": "META", "kind": "meta", "workspace": ws, "conversationId": cid,
                     "channel": channel, "status": "bot" if bot else "open", "openedAt": iso(opened),
                     "updatedAt": iso(opened), "lastSeq": Decimal(0)}
        if group:
            self.item["group"] = group
        log.append(("INSERT", None, dict(self.item)))

    def _change(self, after: float, **changes) -> Conv:
        old = dict(self.item)
        self.t += after
        for k, v in changes.items():
            if v is None:
                self.item.pop(k, None)
            else:
                self.item[k] = v
        self.item["updatedAt"] = iso(self.t)
        self.item["lastSeq"] += 1
        self.log.append(("MODIFY", old, dict(self.item)))
        return self

    def handoff(self, after: float = 3) -> Conv:
        return self._change(after, status="open")

    def queue(self, after: float = 5) -> Conv:
        return self._change(after, status="queued", queuedAt=self.item.get("queuedAt") or iso(self.t + after),
                            routing=json.dumps({"reason": "queued"}))

    def assign(self, after: float, agent: str, routing: dict | None = None) -> Conv:
        return self._change(after, status="assigned", agentId=agent, assignedAt=iso(self.t + after),
                            routing=json.dumps(routing or {"reason": "least busy"}))

    def message(self, after: float = 1) -> Conv:
        return self._change(after)

    def close(self, after: float, reason: str) -> Conv:
        return self._change(after, status="closed", closedAt=iso(self.t + after), closeReason=reason)

    def rate(self, score: int, after: float = 10, nps=None) -> Conv:
        csat = {"score": Decimal(score), "comment": "", "at": iso(self.t + after)}
        if nps is not None:
            csat["nps"] = nps if isinstance(nps, Decimal) else Decimal(nps)
        return self._change(after, csat=csat)


WAITS = [5, 8, 20, 25, 45, 50, 90, 200, 700, 4000]  # buckets 1,1,2,2,3,3,4,5,7,9 (overflow)
CSAT = {0: 5, 1: 5, 2: 4, 3: 3, 4: 1, 5: 5}


def event_log() -> list:
    """14 conversations: 10 queued and assigned (one after a bot handoff, one transferred), 2 contained by
    the bot, 2 abandoned in the queue."""
    log: list = []
    for k, wait in enumerate(WAITS):
        agent = "a1" if k % 2 == 0 else "a2"
        c = Conv(log, f"c{k}", opened=60 * k, bot=k == 0, channel="wechat" if k == 9 else "web",
                 group="sales" if k < 5 else "support")
        if k == 0:
            c.handoff()
        c.queue().assign(wait, agent).message().message()
        if k == 2:  # transferred from a1 to a2: the routing says so
            c.assign(30, "a2", {"reason": "transfer", "transferredBy": "a1"})
        # handle time: closedAt - assignedAt of the last assignment = 100 (k + 1), plus the 2 s of the two
        # messages after it (none for c2: its transfer came after them)
        c.close(100 * (k + 1), "resolved:agent" if k < 7 else "unresolved:agent")
        if k in CSAT:
            c.rate(CSAT[k])
    for j in range(2):  # contained: the bot answered, the customer closed
        c = Conv(log, f"b{j}", opened=600 + j, bot=True).message().message().close(30, "resolved:customer")
        if j == 0:
            c.rate(4)
    for j in range(2):  # abandoned in the queue
        Conv(log, f"q{j}", opened=700 + j, group="support").queue().close(120, "abandoned:left")
    return log


def all_facts(log: list) -> list[analytics.Fact]:
    return [f for name, old, new in log for f in analytics.facts_from_record(name, old, new)]


def day(aggs: dict, dim: str = "all") -> dict:
    return aggs.get(AggregateKey("w1", "D", DAY, dim), {})


def test_facts_of_each_kind():
    facts = all_facts(event_log())
    kinds = {}
    for f in facts:
        kinds[f.kind] = kinds.get(f.kind, 0) + 1
    assert kinds == {"opened": 14, "handoff": 1, "assigned": 10, "transfer": 1, "closed": 14, "csat": 7}
    first = next(f for f in facts if f.kind == "assigned" and f.conversation_id == "c9")
    assert first.values["wait_s"] == 4000 and first.channel == "wechat" and first.agent == "a2"
    transfer = next(f for f in facts if f.kind == "transfer")
    assert transfer.agent == "a1" and transfer.conversation_id == "c2"


def test_daily_aggregate_is_exact():
    aggs = analytics.aggregate(all_facts(event_log()))
    c = day(aggs)
    assert c["volume"] == 14 and c["botConversations"] == 3
    assert c["botContained"] == 2 and c["handoffs"] == 1
    assert c["closed"] == 14 and c["resolved"] == 9 and c["abandoned"] == 2 and c["transfers"] == 1
    assert c["fcr"] == 8  # resolved without a transfer: 6 assigned + 2 contained
    assert c["waitCount"] == 10 and c["waitSum"] == sum(WAITS)
    assert analytics.histogram(c, "wait") == [0, 2, 2, 2, 1, 1, 0, 1, 0, 1]
    assert c["handleCount"] == 10 and c["handleSum"] == 5500 + 2 * 9
    assert c["csatCount"] == 7 and c["csatSum"] == 27
    assert [c.get(f"csat{s}", 0) for s in range(1, 6)] == [1, 0, 1, 2, 3]

    r = analytics.rates(c)
    assert r["containmentRate"] == pytest.approx(2 / 3) and r["handoffRate"] == pytest.approx(1 / 3)
    assert r["resolutionRate"] == pytest.approx(9 / 14) and r["fcrRate"] == pytest.approx(8 / 14)
    assert r["abandonRate"] == pytest.approx(2 / 14)
    assert r["avgWaitS"] == pytest.approx(514.3)
    assert r["waitP50S"] == 60 and r["waitP90S"] == 1800 and r["waitP90Over"] is False
    assert r["ahtS"] == pytest.approx(551.8)
    assert r["csatAvg"] == pytest.approx(27 / 7)
    assert r["csatDistribution"] == {"1": 1, "2": 0, "3": 1, "4": 2, "5": 3}
    assert r["frtP50S"] is None  # first response time is not derived from the stream yet


def test_dimensions_and_hours():
    aggs = analytics.aggregate(all_facts(event_log()))
    sales, support = day(aggs, "group:sales"), day(aggs, "group:support")
    assert sales["waitCount"] == 5 and support["waitCount"] == 5
    assert sales["resolved"] == 5 and support["resolved"] == 2 and support["abandoned"] == 2
    a1, a2 = day(aggs, "agent:a1"), day(aggs, "agent:a2")
    assert a1["waitCount"] == 5 and a2["waitCount"] == 5  # first assignments (c2 went to a1 first)
    assert a1["transfers"] == 1 and "transfers" not in a2
    assert a1["closed"] == 4 and a2["closed"] == 6  # c2 was closed by a2
    assert day(aggs, "channel:wechat")["volume"] == 1 and day(aggs, "channel:web")["volume"] == 13
    # c9 waited 4000 s from 10:09:05: assigned in hour 11, the others in hour 10
    assert aggs[AggregateKey("w1", "H", "2026-11-21T11", "all")]["waitCount"] == 1
    assert aggs[AggregateKey("w1", "H", "2026-11-21T10", "all")]["waitCount"] == 9
    hours = sum(v.get("volume", 0) for k, v in aggs.items() if k.granularity == "H" and k.dimension == "all")
    assert hours == 14


def test_percentile_from_histogram():
    p = analytics.percentile_from_histogram
    assert p([0] * 10, 0.5) is None
    assert p([1, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0.9) == 0
    assert p([0, 0, 0, 0, 0, 0, 0, 0, 0, 3], 0.5) == math.inf
    assert p([5, 5] + [0] * 8, 0.5) == 0 and p([5, 5] + [0] * 8, 0.51) == 10
    assert analytics.bucket_of(10) == 1 and analytics.bucket_of(10.5) == 2 and analytics.bucket_of(3601) == 9


def test_records_that_imply_nothing():
    msg = {"pk": "w1#C#c1", "sk": "MSG#000000000001", "kind": "msg", "senderRole": "agent", "createdAt": iso(0)}
    assert analytics.facts_from_record("INSERT", None, msg) == []
    meta = {"pk": "w1#C#c1", "sk": "META", "kind": "meta", "workspace": "w1", "status": "assigned",
            "assignedAt": iso(5), "openedAt": iso(0), "agentId": "a1"}
    assert analytics.facts_from_record("MODIFY", meta, dict(meta, lastSeq=Decimal(3))) == []
    assert analytics.facts_from_record("REMOVE", meta, None) == []
    closed = dict(meta, status="closed", closedAt=iso(100), closeReason="resolved:agent")
    assert analytics.facts_from_record("MODIFY", closed, dict(closed, updatedAt=iso(200))) == []


# ---------------------------------------------------------------- the store: once per batch, against moto


@pytest.fixture
def store(monkeypatch):
    moto = pytest.importorskip("moto")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    with moto.mock_aws():
        import boto3

        from kefu.adapters.analytics_store import AnalyticsStore

        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName="m", BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                       {"AttributeName": "sk", "KeyType": "RANGE"}],
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                  {"AttributeName": "sk", "AttributeType": "S"}])
        yield AnalyticsStore(client, "m")


def test_store_applies_a_batch_once(store):
    aggs = analytics.aggregate(all_facts(event_log()))
    first = store.apply(aggs, "arn:stream", "100", "199")
    assert first["applied"] == first["transactions"] >= 1 and first["skipped"] == 0
    assert first["items"] == len(aggs) + first["transactions"]
    again = store.apply(aggs, "arn:stream", "100", "199")
    assert again["applied"] == 0 and again["skipped"] == again["transactions"] and again["items"] == 0
    read = store.read("w1", "D", DAY, DAY)
    assert read[(DAY, "all")] == day(aggs)
    assert analytics.rates(read[(DAY, "all")])["waitP90S"] == 1800
    hourly = store.read("w1", "H", "2026-11-21T10", "2026-11-21T11", dimension="all")
    assert set(hourly) == {("2026-11-21T10", "all"), ("2026-11-21T11", "all")}
    # another batch with other sequence numbers adds up
    store.apply(aggs, "arn:stream", "200", "299")
    assert store.read("w1", "D", DAY, DAY)[(DAY, "all")]["volume"] == 28


def test_retry_after_a_partial_failure_counts_each_chunk_once(store, monkeypatch):
    from kefu.adapters import analytics_store

    monkeypatch.setattr(analytics_store, "MAX_TX_ITEMS", 4)  # 18 aggregates: 6 chunks of 3
    aggs = analytics.aggregate(all_facts(event_log()))
    real, calls = store.client.transact_write_items, {"n": 0}

    def flaky(**kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("throttled")
        return real(**kwargs)

    monkeypatch.setattr(store.client, "transact_write_items", flaky)
    with pytest.raises(RuntimeError):
        store.apply(aggs, "arn:stream", "1", "9")  # chunks 0 and 1 applied, then the invocation fails
    retry = store.apply(aggs, "arn:stream", "1", "9")  # Lambda re-delivers the same batch
    assert retry["skipped"] == 2 and retry["applied"] == retry["transactions"] - 2
    read = store.read("w1", "D", DAY, DAY)
    assert read[(DAY, "all")] == day(aggs)
    assert read[(DAY, "group:support")] == day(aggs, "group:support")


def test_first_response_time_from_the_first_agent_message():
    base = {"pk": "w1#C#f1", "sk": "META", "kind": "meta", "workspace": "w1", "conversationId": "f1",
            "channel": "web", "status": "assigned", "openedAt": f"{DAY}T10:00:00.000Z",
            "queuedAt": f"{DAY}T10:00:00.000Z", "assignedAt": f"{DAY}T10:00:30.000Z", "agentId": "a1"}
    answered = dict(base, firstResponseAt=f"{DAY}T10:01:10.000Z", lastSeq=3)
    again = dict(answered, lastSeq=4)  # a later agent message: firstResponseAt kept, no new fact
    facts = all_facts([("MODIFY", base, answered), ("MODIFY", answered, again)])
    assert [(f.kind, f.values["frt_s"], f.agent) for f in facts] == [("first_response", 40.0, "a1")]
    c = day(analytics.aggregate(facts))
    assert (c["frtCount"], c["frtSum"], c["frt3"]) == (1, 40, 1)  # the 30 < s <= 60 bucket
    assert analytics.rates(c)["frtP50S"] == 60.0


def test_the_cloudwatch_metrics_of_a_batch():
    values = analytics.emf_values(all_facts(event_log()))
    unit, waits = values["QueueWaitSeconds"]
    assert unit == "Seconds" and len(waits) == 10 and 4000.0 in waits  # one value per first assignment
    assert values["Conversations"] == ("Count", [14.0]) and values["BotConversations"] == ("Count", [3.0])
    assert values["BotHandoffs"] == ("Count", [1.0]) and values["ConversationsClosed"] == ("Count", [14.0])
    assert len(values["CsatScore"][1]) == 7 and set(values["CsatScore"][1]) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_the_stream_handler_writes_embedded_metric_format(monkeypatch):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "functions" / "stream_metrics" / "handler.py"
    spec = importlib.util.spec_from_file_location("stream_metrics_handler_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.metrics_out.clear_metrics()  # Powertools shares one metric set per namespace across instances
    module.emit(all_facts(event_log()))
    emf = module.metrics_out.serialize_metric_set()
    directive = emf["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == analytics.EMF_NAMESPACE
    names = {m["Name"] for m in directive["Metrics"]}
    assert {"QueueWaitSeconds", "HandleSeconds", "Conversations", "BotHandoffs", "CsatScore"} <= names
    assert len(emf["QueueWaitSeconds"]) == 10 and emf["Conversations"] in (14.0, [14.0])
    module.metrics_out.clear_metrics()


def test_ticket_facts_count_opened_escalated_and_breaches():
    from kefu.tickets import Ticket

    opened = Ticket("w1", "t1", "退款没到", group="billing", assignee_id="a1", created_at=f"{DAY}T08:00:00.000Z")
    first = Ticket("w1", "t1", "退款没到", group="billing", assignee_id=None, escalation_level=1,
                   created_at=opened.created_at, updated_at=f"{DAY}T12:00:00.000Z")
    second = Ticket("w1", "t1", "退款没到", group="billing", escalation_level=2, created_at=opened.created_at,
                    updated_at=f"{DAY}T16:00:00.000Z")
    facts = [*analytics.ticket_facts(None, opened), *analytics.ticket_facts(opened, first),
             *analytics.ticket_facts(first, second), *analytics.ticket_facts(second, second)]
    assert [f.kind for f in facts] == ["ticket_opened", "ticket_escalated", "ticket_escalated"]
    aggs = analytics.aggregate(facts)
    c = day(aggs)
    assert (c["ticketsOpened"], c["ticketsEscalated"], c["slaBreaches"]) == (1, 1, 2)
    assert day(aggs, "group:billing")["slaBreaches"] == 2 and day(aggs, "agent:a1")["ticketsEscalated"] == 1
    assert not any(k.dimension.startswith("channel:") for k in aggs)  # tickets have no channel
    r = analytics.rates(c)
    assert (r["ticketsOpened"], r["ticketsEscalated"], r["slaBreaches"]) == (1, 1, 2)


# ---------------------------------------------------------------- NPS (the survey's 0–10 question, when asked)

# conversation k is opened at 10:00 + 10 min * k and rated 80 s later: k 0–5 in hour 10, k 6–9 in hour 11;
# agents alternate a1 / a2, groups sales (k < 5) / support, the last one is on WeChat
NPS = [10, 10, 9, 9, 9, 8, 7, 6, 3, 0]


def nps_log() -> list:
    """10 surveys with an NPS answer, one survey without it (NPS off), one whose answer is not a whole number
    (ignored), and changes after a rating (no new answer)."""
    log: list = []
    for k, answer in enumerate(NPS):
        c = Conv(log, f"n{k}", opened=600 * k, channel="wechat" if k == 9 else "web",
                 group="sales" if k < 5 else "support")
        c.queue(0).assign(10, "a1" if k % 2 == 0 else "a2").close(60, "resolved:agent").rate(4, after=10, nps=answer)
        c.message(5)  # a later change of the META item: the rating (and its answer) is in the old image too
    Conv(log, "s0", opened=100).queue(0).assign(10, "a1").close(60, "resolved:agent").rate(5)  # stars only
    Conv(log, "s1", opened=200).queue(0).assign(10, "a1").close(60, "resolved:agent").rate(3, nps=Decimal("9.5"))
    return log


def test_nps_facts_once_per_conversation():
    facts = [f for f in all_facts(nps_log()) if f.kind in ("csat", "nps")]
    assert sum(f.kind == "csat" for f in facts) == 12
    answers = [(f.conversation_id, f.values["score"]) for f in facts if f.kind == "nps"]
    assert answers == [(f"n{k}", a) for k, a in enumerate(NPS)]
    first = next(f for f in facts if f.kind == "nps")
    assert first.agent == "a1" and first.group == "sales" and first.at == iso(80)


def test_nps_aggregate_is_exact():
    aggs = analytics.aggregate(all_facts(nps_log()))
    c = day(aggs)
    assert (c["npsCount"], c["npsPromoters"], c["npsPassives"], c["npsDetractors"]) == (10, 5, 2, 3)
    assert [c.get(f"nps{s}", 0) for s in range(11)] == [1, 0, 0, 1, 0, 0, 1, 1, 1, 3, 2]
    assert c["csatCount"] == 12  # the stars count with or without the answer
    r = analytics.rates(c)
    assert r["nps"] == pytest.approx(20.0) and r["npsCount"] == 10
    assert (r["npsPromoters"], r["npsPassives"], r["npsDetractors"]) == (5, 2, 3)
    assert r["npsDistribution"] == {"0": 1, "1": 0, "2": 0, "3": 1, "4": 0, "5": 0, "6": 1, "7": 1, "8": 1,
                                    "9": 3, "10": 2}
    # per group, agent, channel and hour
    nps = lambda counters: analytics.rates(counters)["nps"]  # noqa: E731
    assert nps(day(aggs, "group:sales")) == 100.0  # 10 10 9 9 9
    assert nps(day(aggs, "group:support")) == pytest.approx(-60.0)  # 8 7 6 3 0
    assert nps(day(aggs, "agent:a1")) == pytest.approx(40.0)  # 10 9 9 7 3
    assert nps(day(aggs, "agent:a2")) == pytest.approx(0.0)  # 10 9 8 6 0
    assert nps(day(aggs, "channel:wechat")) == -100.0
    assert nps(day(aggs, "channel:web")) == pytest.approx(100 * (5 - 2) / 9)
    hour = lambda h: aggs[AggregateKey("w1", "H", f"{DAY}T{h}", "all")]  # noqa: E731
    assert hour(10)["npsCount"] == 6 and nps(hour(10)) == pytest.approx(100 * 5 / 6)  # 10 10 9 9 9 8
    assert hour(11)["npsCount"] == 4 and nps(hour(11)) == pytest.approx(-75.0)  # 7 6 3 0


def test_nps_without_answers_and_at_the_extremes():
    r = analytics.rates({})
    assert r["nps"] is None and r["npsCount"] == 0 and sum(r["npsDistribution"].values()) == 0
    assert analytics.rates({"npsCount": 3, "npsPromoters": 3})["nps"] == 100.0
    assert analytics.rates({"npsCount": 2, "npsDetractors": 2})["nps"] == -100.0
    assert [analytics.nps_category(s) for s in (0, 6, 7, 8, 9, 10)] == [
        "npsDetractors", "npsDetractors", "npsPassives", "npsPassives", "npsPromoters", "npsPromoters"]
    # a report sums the counters of its periods before it computes the value
    report = analytics.report({"2026-11-20": {"npsCount": 1, "npsPromoters": 1, "nps10": 1},
                               "2026-11-21": {"npsCount": 3, "npsDetractors": 2, "npsPassives": 1, "nps0": 2, "nps7": 1}},
                              ["2026-11-20", "2026-11-21"])
    assert [p["nps"] for p in report["series"]] == [100.0, pytest.approx(-200 / 3)]
    assert report["total"]["nps"] == pytest.approx(-25.0) and report["total"]["npsCount"] == 4


def test_a_redelivered_nps_batch_is_counted_once(store):
    log = nps_log()
    aggs = analytics.aggregate(all_facts(log))
    assert store.apply(aggs, "arn:stream", "500", "599")["applied"] >= 1
    assert store.apply(aggs, "arn:stream", "500", "599")["applied"] == 0  # the same records again
    read = store.read("w1", "D", DAY, DAY)[(DAY, "all")]
    assert read == day(aggs) and read["npsCount"] == 10 and read["nps9"] == 3
    assert analytics.rates(read)["nps"] == pytest.approx(20.0)
    # the rating's record again in a later batch: the old image has the rating, so no new answer
    rated = next((o, n) for name, o, n in log if n.get("csat") and o and not o.get("csat"))
    again = dict(rated[1], lastSeq=rated[1]["lastSeq"] + 1)
    assert analytics.facts_from_record("MODIFY", rated[1], again) == []
