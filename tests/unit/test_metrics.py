from kefu.metrics import counters_for


def test_message_and_conversation_counters():
    msg = {"pk": "demo#C#c1", "kind": "msg", "senderRole": "customer", "createdAt": "2026-11-21T15:07:35.923Z"}
    meta = {"pk": "demo#C#c1", "kind": "meta", "openedAt": "2026-11-21T16:00:00.000Z"}
    assert list(counters_for(msg)) == [("demo", "2026-11-21T15#messages.customer")]
    assert list(counters_for(meta)) == [("demo", "2026-11-21T16#conversations.opened")]


def test_other_items_count_nothing():
    assert list(counters_for({"pk": "demo#C#c1", "kind": "conn"})) == []
    assert list(counters_for({})) == []


def test_bot_messages_count_their_decision():
    answer = {"pk": "demo#C#c1", "kind": "msg", "senderRole": "bot", "createdAt": "2026-11-21T15:07:35.923Z",
              "meta": '{"decision": "answer", "confidence": 0.97, "articleId": "returns"}'}
    assert list(counters_for(answer)) == [("demo", "2026-11-21T15#messages.bot"), ("demo", "2026-11-21T15#bot.answer")]
    for meta in ("not json", '{"decision": "maybe"}', None, '["answer"]'):
        assert list(counters_for({**answer, "meta": meta})) == [("demo", "2026-11-21T15#messages.bot")]


def test_hourly_series_fills_the_hours_without_counters():
    from kefu.metrics import hourly_series, hours_between

    hours = hours_between("2026-11-20T22", "2026-11-21T01")
    assert hours == ["2026-11-20T22", "2026-11-20T23", "2026-11-21T00", "2026-11-21T01"]
    counters = {"2026-11-20T23#bot.answer": 3, "2026-11-21T01#bot.answer": 1, "2026-11-21T01#conversations.opened": 2,
                "2026-11-19T10#bot.answer": 9}  # outside the range
    assert hourly_series(counters, hours) == {"bot.answer": [0, 3, 0, 1], "conversations.opened": [0, 0, 0, 2]}


def test_hours_between_refuses_bad_ranges():
    import pytest

    from kefu.metrics import hours_between

    for first, last in (("2026-11-21T05", "2026-11-21T04"), ("2026-11-21", "2026-11-21T04"),
                        ("2026-10-01T00", "2026-11-21T00")):
        with pytest.raises(ValueError):
            hours_between(first, last)
