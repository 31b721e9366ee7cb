"""Routing decisions (pure): eligibility, strategies, fallback, priorities, business hours, estimates."""

from datetime import datetime, timezone

import pytest

from kefu import routing
from kefu.models import Agent
from kefu.routing import BusinessHours, Need, QueueEntry, RoutingSettings


def agent(agent_id, load=0, max_concurrent=4, groups=("售后",), languages=("zh",), presence="online",
          connections=1, last=None):
    return Agent("w", agent_id, agent_id.title(), groups=groups, languages=languages, max_concurrent=max_concurrent,
                 presence=presence, connections=connections, load=load, last_assigned_at=last)


def test_least_busy_ranks_by_load_relative_to_capacity():
    agents = [agent("a", load=2, max_concurrent=4), agent("b", load=1, max_concurrent=4),
              agent("c", load=2, max_concurrent=8)]
    decision = routing.decide(agents, RoutingSettings(), Need())
    assert [a.id for a in decision.ranked] == ["b", "c", "a"]  # 1/4 < 2/8 (=0.25, fewer open) < 2/4
    explained = decision.explain(decision.ranked[0])
    assert explained["strategy"] == "least_busy" and explained["chosen"] == "b"
    assert explained["reason"] == "least busy in the workspace (1/4 open), ahead of 2 other available"
    assert [c["agentId"] for c in explained["candidates"]] == ["b", "c", "a"]


def test_unavailable_agents_are_listed_with_the_reason():
    agents = [agent("away", presence="away"), agent("full", load=4), agent("gone", connections=0),
              agent("off", presence="offline"), agent("ok")]
    decision = routing.decide(agents, RoutingSettings(), Need())
    assert [a.id for a in decision.ranked] == ["ok"]
    why = {c.agent_id: c.why for c in decision.candidates}
    assert why == {"away": "away", "full": "full (4/4)", "gone": "no open console", "off": "offline",
                   "ok": "available"}


def test_round_robin_goes_to_whoever_waited_longest_since_their_last_assignment():
    agents = [agent("a", last="2026-11-21T10:00:03Z"), agent("b", last="2026-11-21T10:00:01Z"),
              agent("c", last=None, load=3)]
    settings = RoutingSettings(strategy="round_robin")
    assert [a.id for a in routing.decide(agents, settings, Need()).ranked] == ["c", "b", "a"]


def test_skill_match_requires_group_and_language_and_falls_back():
    agents = [agent("zh-only", languages=("zh",)), agent("en-tech", groups=("技术",), languages=("en",)),
              agent("bilingual", groups=("售后", "billing"), languages=("zh", "en"), load=3)]
    settings = RoutingSettings.from_dict({"strategy": "skill_match", "fallbackGroup": "售后"})
    decision = routing.decide(agents, settings, Need(group="售后", language="en"))
    assert [a.id for a in decision.ranked] == ["bilingual"]
    assert {c.agent_id: c.why for c in decision.candidates}["zh-only"] == "does not speak en"
    # nobody in billing speaks... everyone in 技术 is offline: the fallback group takes it
    agents[1] = agent("en-tech", groups=("技术",), languages=("en",), presence="offline")
    fallback = routing.decide(agents, settings, Need(group="技术", language="zh"))
    assert fallback.group == "售后" and [a.id for a in fallback.ranked] == ["zh-only", "bilingual"]
    assert "fallback from 技术" in routing.reason_for(fallback, fallback.ranked[0])


def test_fallback_only_when_nobody_in_the_group_is_online():
    agents = [agent("busy", groups=("技术",), load=4), agent("spare", groups=("售后",))]
    settings = RoutingSettings(fallback_group="售后")
    decision = routing.decide(agents, settings, Need(group="技术"))
    assert decision.group == "技术" and decision.ranked == () and decision.reason == "everyone in 技术 is busy"


def test_group_strategy_overrides_the_workspace_strategy():
    settings = RoutingSettings.from_dict({"strategy": "least_busy", "groups": {"技术": {"strategy": "round_robin"}}})
    assert settings.strategy_for("技术") == "round_robin" and settings.strategy_for("售后") == "least_busy"


def test_vip_tags_raise_priority_and_pick_the_dedicated_group():
    settings = RoutingSettings.from_dict({"priorityTags": {"vip": 10, "gold": 5}, "tagGroups": {"vip": "vip-desk"}})
    assert routing.need_for(settings, ("gold",), "售后", "zh") == Need("售后", "zh", 5)
    assert routing.need_for(settings, ("vip", "gold"), "售后", None) == Need("vip-desk", None, 10)
    assert routing.need_for(RoutingSettings(), ("vip",), None, None).priority == 10  # the default


def test_queue_order_is_priority_then_arrival_within_each_queue():
    entries = [QueueEntry("w", "late", "售后", 0, 3000), QueueEntry("w", "vip", "售后", 10, 5000),
               QueueEntry("w", "early", "售后", 0, 1000), QueueEntry("w", "tech", "技术", 0, 2000)]
    assert routing.positions(entries) == {"vip": 1, "early": 2, "late": 3, "tech": 1}


def test_wait_estimate_from_handle_time_and_serving_seats():
    agents = [agent("a", max_concurrent=3), agent("b", max_concurrent=3, groups=("技术",)),
              agent("c", max_concurrent=5, presence="away")]
    assert routing.serving_capacity(agents, "售后") == 3
    assert routing.serving_capacity(agents, routing.ANY_GROUP) == 6
    assert routing.estimate_wait_s(position=3, capacity=6, handle_s=240) == 120
    assert routing.estimate_wait_s(position=1, capacity=0, handle_s=240) is None  # nobody serves it: unknown
    assert routing.mean_handle_s(0, 0) == routing.DEFAULT_HANDLE_S and routing.mean_handle_s(9000, 3) == 3.0


def test_business_hours_in_the_workspace_time_zone_with_holidays():
    hours = BusinessHours.from_dict({"timezone": "Asia/Shanghai",
                                     "weekly": {"mon": [["09:00", "12:00"], ["13:00", "18:00"]]},
                                     "holidays": ["2026-11-30"]})
    monday_10_shanghai = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)
    assert hours.is_open(monday_10_shanghai)
    assert not hours.is_open(datetime(2026, 11, 23, 4, 30, tzinfo=timezone.utc))  # 12:30, lunch
    assert not hours.is_open(datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc))  # 18:00
    assert not hours.is_open(datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc))  # Tuesday: no hours
    assert not hours.is_open(datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc))  # a Monday holiday
    settings = RoutingSettings(groups={"技术": routing.GroupSettings(business_hours=hours)})
    assert routing.is_open(settings, "售后", monday_10_shanghai)  # no hours: always open
    assert not routing.is_open(settings, "技术", datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc))


@pytest.mark.parametrize("bad, problem", [
    ({"strategy": "random"}, "strategy must be one of"),
    ({"businessHours": {"timezone": "Mars/Olympus"}}, "unknown time zone"),
    ({"businessHours": {"weekly": {"someday": []}}}, "is not one of"),
    ({"businessHours": {"weekly": {"mon": [["18:00", "09:00"]]}}}, "interval"),
    ({"businessHours": {"weekly": {"mon": [["9am", "5pm"]]}}}, "interval"),
    ({"businessHours": {"holidays": ["next tuesday"]}}, "isoformat"),
])
def test_bad_settings_are_refused_with_the_reason(bad, problem):
    with pytest.raises(ValueError, match=problem):
        RoutingSettings.from_dict(bad)


def test_settings_round_trip():
    data = {"strategy": "skill_match", "fallbackGroup": "售后", "tagGroups": {"vip": "vip-desk"},
            "groups": {"技术": {"strategy": "round_robin", "fallbackGroup": None,
                               "businessHours": {"timezone": "Asia/Shanghai", "weekly": {"mon": [["09:00", "18:00"]]},
                                                 "holidays": []}}},
            "graceSeconds": 30}
    settings = RoutingSettings.from_dict(data)
    assert RoutingSettings.from_dict(settings.to_dict()) == settings


def test_queue_updates_reach_the_front_always_and_the_back_every_tenth_place():
    assert routing.should_notify(None, 70)
    assert routing.should_notify(5, 4) and not routing.should_notify(4, 4)
    assert routing.should_notify(69, 68) is False and routing.should_notify(70, 69)  # entered the 60s
    assert routing.should_notify(11, 10) and routing.should_notify(10, 9)
    assert routing.LIVE_POSITIONS == 10


def test_the_queue_sort_key_carries_the_entry():
    entry = QueueEntry("w", "c_18f0abc", "售后", 10, 1732000000123, "cust-1", "en")
    assert entry.sort_key == "售后#989#1732000000123#c_18f0abc"
    assert QueueEntry.from_sort_key("w", entry.sort_key, "cust-1", "en") == entry


def test_settings_validate_group_names_and_priorities():
    with pytest.raises(ValueError, match="fallbackGroup"):
        RoutingSettings.from_dict({"fallbackGroup": "two words"})
    with pytest.raises(ValueError, match="tagGroups.vip"):
        RoutingSettings.from_dict({"tagGroups": {"vip": ""}})
    with pytest.raises(ValueError, match="priorities are 0 to 100"):
        RoutingSettings.from_dict({"priorityTags": {"vip": 1000}})
    assert RoutingSettings.from_dict({"priorityTags": {}}).priority_tags == {}  # explicitly none


def test_an_explicit_transfer_ignores_the_dedicated_tag_group():
    settings = RoutingSettings(tag_groups={"vip": "vip-desk"})
    assert routing.need_for(settings, ("vip",), "技术", None, dedicated=False).group == "技术"
