"""A/B experiments: validation, deterministic assignment, statistics against hand-computed numbers, and
conversion attribution (kefu.experiments, pure)."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from kefu import experiments as x
from kefu.errors import Conflict, InvalidRequest


def greeting(weights=(50, 50), **kw) -> x.Experiment:
    variants = [{"id": f"v{i}", "weight": w, "value": f"Hello {i}"} for i, w in enumerate(weights)]
    return x.new_experiment("ws", "Greeting test", "greeting", variants, experiment_id="exp_1", **kw)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("kind, value", [
    ("greeting", "你好，有什么可以帮您？"),
    ("proactive_delay", 0),
    ("proactive_delay", 30),
    ("routing_mode", "bot_first"),
    ("routing_mode", "human_first"),
    ("quick_reply_wording", "Track my order"),
    ("quick_reply_wording", ["Track my order", "Talk to a person"]),
])
def test_values_of_each_kind(kind, value):
    experiment = x.new_experiment("ws", "e", kind, [{"id": "a", "weight": 1, "value": value},
                                                     {"id": "b", "weight": 1, "value": value}])
    assert experiment.variants[0].value == value and experiment.status == "draft"


@pytest.mark.parametrize("kind, variants, problem", [
    ("greeting", [{"id": "a", "weight": 1, "value": "hi"}], "2 to 5 variants"),
    ("greeting", [{"id": str(i), "weight": 1, "value": "hi"} for i in range(6)], "2 to 5 variants"),
    ("greeting", [{"id": "a", "weight": 1, "value": "hi"}, {"id": "a", "weight": 1, "value": "yo"}], "unique"),
    ("greeting", [{"id": "a", "weight": 0, "value": "hi"}, {"id": "b", "weight": 1, "value": "yo"}], "positive"),
    ("greeting", [{"id": "a", "weight": 1.5, "value": "hi"}, {"id": "b", "weight": 1, "value": "yo"}], "positive"),
    ("greeting", [{"id": "a", "weight": 6000, "value": "hi"}, {"id": "b", "weight": 5000, "value": "yo"}],
     "at most 10000"),
    ("greeting", [{"id": "a", "weight": 1, "value": ""}, {"id": "b", "weight": 1, "value": "yo"}], "greeting"),
    ("greeting", [{"id": "a b", "weight": 1, "value": "hi"}, {"id": "b", "weight": 1, "value": "yo"}], ".id"),
    ("proactive_delay", [{"id": "a", "weight": 1, "value": "30"}, {"id": "b", "weight": 1, "value": 0}],
     "seconds"),
    ("proactive_delay", [{"id": "a", "weight": 1, "value": True}, {"id": "b", "weight": 1, "value": 0}],
     "seconds"),
    ("proactive_delay", [{"id": "a", "weight": 1, "value": 3601}, {"id": "b", "weight": 1, "value": 0}],
     "seconds"),
    ("routing_mode", [{"id": "a", "weight": 1, "value": "agent_first"}, {"id": "b", "weight": 1,
                                                                        "value": "bot_first"}], "bot_first"),
    ("quick_reply_wording", [{"id": "a", "weight": 1, "value": []}, {"id": "b", "weight": 1, "value": "x"}],
     "quick-reply"),
    ("banner_colour", [{"id": "a", "weight": 1, "value": "red"}, {"id": "b", "weight": 1, "value": "x"}], "kind"),
])
def test_validation_errors(kind, variants, problem):
    with pytest.raises(InvalidRequest, match=problem):
        x.new_experiment("ws", "e", kind, variants)


def test_weights_may_sum_to_exactly_10000():
    assert sum(v.weight for v in greeting((5000, 3000, 2000)).variants) == 10_000


# ---------------------------------------------------------------- assignment


def test_draft_assigns_nothing_and_running_is_deterministic():
    draft = greeting()
    assert x.assign(draft, "cust-1") is None
    running = x.start(draft)
    first = [x.assign(running, f"cust-{i}").id for i in range(200)]
    reloaded = x.Experiment.from_dict(running.to_dict())  # e.g. read back from the table on another channel
    assert [x.assign(reloaded, f"cust-{i}").id for i in range(200)] == first
    assert set(first) == {"v0", "v1"}


def test_assignment_depends_on_the_experiment():
    a = x.start(greeting())
    b = x.Experiment.from_dict({**a.to_dict(), "experimentId": "exp_2"})
    same = sum(x.assign(a, f"k{i}").id == x.assign(b, f"k{i}").id for i in range(2000))
    assert 850 < same < 1150  # independent splits agree about half the time


@pytest.mark.parametrize("weights", [(50, 50), (1, 1, 2), (7000, 2000, 1000), (1, 1, 1, 1, 1)])
def test_distribution_follows_weights_within_2_percent(weights):
    experiment = x.start(greeting(weights))
    counts = Counter(x.assign(experiment, f"visitor-{i}").id for i in range(20_000))
    total = sum(weights)
    for i, w in enumerate(weights):
        assert abs(counts[f"v{i}"] / 20_000 - w / total) < 0.02, counts


def test_stop_with_winner_rolls_out_to_everyone():
    running = x.start(greeting((90, 10)))
    stopped = x.stop(running, winner="v1")
    assert stopped.status == "stopped" and stopped.winner == "v1" and stopped.stopped_at
    assert {x.assign(stopped, f"k{i}").id for i in range(500)} == {"v1"}


def test_stop_without_winner_then_choose_one():
    stopped = x.stop(x.start(greeting()))
    assert x.assign(stopped, "k") is None
    assert x.assign(x.stop(stopped, winner="v0"), "k").id == "v0"


def test_life_cycle_conflicts():
    draft = greeting()
    with pytest.raises(Conflict):
        x.stop(draft)
    running = x.start(draft)
    with pytest.raises(Conflict):
        x.start(running)
    with pytest.raises(InvalidRequest, match="winner"):
        x.stop(running, winner="nope")
    done = x.stop(running, winner="v0")
    with pytest.raises(Conflict):
        x.stop(done, winner="v1")


def test_bucket_uses_sha256_of_id_and_key():
    import hashlib

    digest = hashlib.sha256(b"exp_1:cust-42").digest()
    assert x.bucket("exp_1", "cust-42", 10_000) == int.from_bytes(digest[:8], "big") % 10_000


# ---------------------------------------------------------------- statistics


def test_two_proportions_hand_computed():
    # control 200/1000 = 0.20, variant 250/1000 = 0.25
    # lift = 0.05 / 0.20 = 25 %
    # pooled p = 450/2000 = 0.225; SE = sqrt(0.225 * 0.775 * (2/1000)) = sqrt(0.00034875) = 0.0186748
    # z = 0.05 / 0.0186748 = 2.67740; p = 2 (1 - Phi(2.6774)) = 0.007420
    # Wald SE = sqrt(0.2*0.8/1000 + 0.25*0.75/1000) = sqrt(0.0003475) = 0.0186414
    # CI = 0.05 -/+ 1.959964 * 0.0186414 = [0.013464, 0.086536]
    c = x.compare(200, 1000, 250, 1000)
    assert c.diff == pytest.approx(0.05)
    assert c.lift == pytest.approx(0.25)
    assert c.z == pytest.approx(2.6774, abs=1e-4)
    assert c.p_value == pytest.approx(0.00742, abs=1e-5)
    assert c.ci95[0] == pytest.approx(0.013464, abs=1e-6)
    assert c.ci95[1] == pytest.approx(0.086536, abs=1e-6)


def test_normal_tail():
    assert x.normal_two_sided_p(0) == pytest.approx(1.0)
    assert x.normal_two_sided_p(1.959963984540054) == pytest.approx(0.05)
    assert x.normal_two_sided_p(-2.5758293035489) == pytest.approx(0.01)
    assert x.normal_two_sided_p(1.0) == pytest.approx(1 - math.erf(1 / math.sqrt(2)))


def test_degenerate_samples():
    assert x.compare(0, 0, 5, 10) is None
    same = x.compare(0, 10, 0, 10)
    assert same.z is None and same.p_value is None and same.lift is None and same.ci95 == (0.0, 0.0)
    worse = x.compare(50, 100, 40, 100)
    assert worse.diff == pytest.approx(-0.1) and worse.lift == pytest.approx(-0.2) and worse.z < 0


def test_results_per_variant():
    experiment = x.start(greeting((1, 1, 1)))
    report = x.results(experiment, {"v0": (1000, 200), "v1": (1000, 250)})
    rows = {r["variantId"]: r for r in report["variants"]}
    assert rows["v0"]["control"] and rows["v0"]["conversionRate"] == pytest.approx(0.2)
    assert rows["v0"]["lift"] is None and rows["v0"]["pValue"] is None
    assert rows["v1"]["lift"] == pytest.approx(0.25) and rows["v1"]["pValue"] == pytest.approx(0.00742, abs=1e-5)
    assert rows["v2"] == {"variantId": "v2", "control": False, "exposures": 0, "conversions": 0,
                          "conversionRate": None, "difference": None, "lift": None, "ci95": None, "z": None,
                          "pValue": None}
    assert "Wald" in report["method"]["interval"] and report["method"]["control"] == "v0"


# ---------------------------------------------------------------- conversion attribution


def test_window():
    assert x.within_window("2026-11-21T10:00:00Z", "2026-11-22T10:00:00Z", 86400)
    assert not x.within_window("2026-11-21T10:00:00Z", "2026-11-22T10:00:01Z", 86400)
    assert not x.within_window("2026-11-21T10:00:00Z", "2026-11-21T09:59:59Z", 86400)
    assert x.within_window("2026-11-21T10:00:00.000Z", "2026-11-21T18:00:00+08:00", 60)


def test_event_credited_to_latest_conversation_in_window():
    conversations = [("c-old", "2026-11-19T10:00:00.000Z"), ("c-1", "2026-11-21T08:00:00.000Z"),
                     ("c-2", "2026-11-21T09:00:00.000Z"), ("c-after", "2026-11-21T11:00:00.000Z")]
    assert x.credited_conversation("2026-11-21T10:00:00Z", conversations) == "c-2"
    assert x.credited_conversation("2026-11-23T10:00:00Z", conversations) is None
    assert x.credited_conversation("2026-11-21T10:00:00Z", conversations, window_s=1800) is None
    assert x.credited_conversation("2026-11-21T10:00:00Z", []) is None


def test_chatted_vs_not_chatted():
    seen = {f"v{i}" for i in range(10)}
    chatted = {"v0", "v1", "v2", "v3", "someone-never-seen"}
    converted = {"v0", "v1", "v5", "buyer-never-seen"}
    report = x.chat_conversion(seen, chatted, converted)
    assert report == {"visitorsSeen": 10,
                      "chatted": {"visitors": 4, "converted": 2, "conversionRate": 0.5},
                      "notChatted": {"visitors": 6, "converted": 1, "conversionRate": pytest.approx(1 / 6)}}
    assert x.chat_conversion(set(), set(), set())["chatted"]["conversionRate"] is None
