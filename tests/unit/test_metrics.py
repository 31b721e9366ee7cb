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
