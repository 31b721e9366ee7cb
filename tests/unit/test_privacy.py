"""kefu.privacy with an in-memory port: settings, export, deletion order, partial failures and retries."""

from __future__ import annotations

import pytest

from kefu.errors import InvalidRequest
from kefu.privacy import DeletionIncomplete, PrivacyService, PrivacySettings

WS, CUST = "ws1", "cust-1"


class FakeData:
    conversations_table, connections_table, directory_table, metrics_table = "conv", "conn", "dir", "metrics"

    def __init__(self):
        self.tables = {"conv": {}, "conn": {}, "dir": {}, "metrics": {}, "tickets": {}}
        self.objects = {f"{WS}/c1/{'a' * 32}/cat.png": 10}
        self.fail_objects = False
        self.deleted_order: list[tuple[str, str]] = []
        conv = self.tables["conv"]
        conv[(f"{WS}#C#c1", "META")] = {"pk": f"{WS}#C#c1", "sk": "META", "conversationId": "c1", "customerId": CUST,
                                        "customerName": "Zhang", "status": "closed", "channel": "web",
                                        "csat": {"score": 5}, "customerKey": f"{WS}#{CUST}"}
        conv[(f"{WS}#C#c1", "MSG#000000000001")] = {"pk": f"{WS}#C#c1", "sk": "MSG#000000000001", "seq": 1,
                                                    "senderRole": "customer", "senderId": CUST, "text": "my order 2026112100123456",
                                                    "createdAt": "t"}
        conv[(f"{WS}#C#c1", "USED#customer#m1")] = {"pk": f"{WS}#C#c1", "sk": "USED#customer#m1"}
        self.tables["conn"][(f"{WS}#customer#{CUST}", "conn-1")] = {"pk": f"{WS}#customer#{CUST}", "sk": "conn-1"}
        self.tables["metrics"][(f"{WS}#V#{CUST}", "EV#e1")] = {"pk": f"{WS}#V#{CUST}", "sk": "EV#e1", "eventId": "e1"}
        self.tables["metrics"][(f"{WS}#MISS", "d#1")] = {"pk": f"{WS}#MISS", "sk": "d#1", "miss": {"text": "my order"}}
        self.tables["tickets"][(f"{WS}#T#t1", "TICKET")] = {"pk": f"{WS}#T#t1", "sk": "TICKET", "customerId": CUST,
                                                             "subject": "refund"}
        self.tables["tickets"][(f"{WS}#T#t1", "CM#1")] = {"pk": f"{WS}#T#t1", "sk": "CM#1", "text": "called"}

    def _pk(self, table, pk, prefix=""):
        return [dict(v) for (p, s), v in sorted(self.tables[table].items()) if p == pk and s.startswith(prefix)]

    def conversation_ids(self, ws, cid):
        return [v["conversationId"] for v in self.tables["conv"].values()
                if v.get("sk") == "META" and v.get("customerKey") == f"{ws}#{cid}"]

    def conversation_items(self, ws, conversation_id):
        return self._pk("conv", f"{ws}#C#{conversation_id}")

    def open_pointer(self, ws, cid):
        found = self._pk("conv", f"{ws}#U#{cid}")
        return found[0] if found else None

    def connections(self, ws, cid):
        return self._pk("conn", f"{ws}#customer#{cid}")

    def tickets(self, ws, cid):
        out = []
        for ticket in self._pk_all("tickets", "TICKET"):
            if ticket.get("customerId") == cid:
                ticket["comments"] = self._pk("tickets", ticket["pk"], "CM#")
                out.append(ticket)
        return out

    def _pk_all(self, table, sk):
        return [dict(v) for (p, s), v in self.tables[table].items() if s == sk]

    def business_events(self, ws, cid):
        return self._pk("metrics", f"{ws}#V#{cid}", "EV#")

    def markers(self, ws, cid, experiment_ids):
        return []

    def experiment_ids(self, ws):
        return []

    def queue_entries(self, ws, cid):
        return []

    def rate_counters(self, ws, cid):
        return []

    def misses(self, ws):
        return self._pk("metrics", f"{ws}#MISS")

    def attachment_objects(self, ws, conversation_id):
        return [{"key": k, "size": n} for k, n in self.objects.items() if k.startswith(f"{ws}/{conversation_id}/")]

    def delete_objects(self, keys):
        if self.fail_objects:
            raise RuntimeError("s3 down")
        for key in keys:
            self.objects.pop(key, None)
        return len(keys)

    def delete_items(self, table, items):
        for item in items:
            self.tables[table].pop((item["pk"], item["sk"]), None)
            self.deleted_order.append((item["pk"], item["sk"]))
        return len(items)

    def delete_conversation(self, ws, items):
        return self.delete_items("conv", sorted(items, key=lambda i: i["sk"] == "META"))

    def delete_ticket(self, ticket):
        return self.delete_items("tickets", [*ticket.get("comments", []), ticket])


def test_settings_default_validate_and_parse_leniently():
    defaults = {"retentionDays": 365, "anonymous": False, "maskPii": False, "piiRevealRole": "supervisor"}
    assert PrivacySettings.parse(None).public() == defaults
    assert PrivacySettings.parse({"retentionDays": "x", "anonymous": "yes", "maskPii": 1,
                                  "piiRevealRole": "owner"}).public() == defaults
    assert PrivacySettings.validate({"retentionDays": 30, "anonymous": True}).public() == {
        **defaults, "retentionDays": 30, "anonymous": True}
    assert PrivacySettings.validate({"maskPii": True, "piiRevealRole": "admin"}).public() == {
        **defaults, "maskPii": True, "piiRevealRole": "admin"}
    for bad in ({"retentionDays": 0}, {"retentionDays": 10_000}, {"retentionDays": True}, {"anonymous": 1},
                {"other": 1}, {"maskPii": "yes"}, {"piiRevealRole": "owner"}, {"piiRevealRole": None}):
        with pytest.raises(InvalidRequest):
            PrivacySettings.validate(bad)


@pytest.mark.parametrize("reveal_role, role, assigned, allowed", [
    ("supervisor", "agent", True, False), ("supervisor", "supervisor", False, True), ("supervisor", "admin", False, True),
    ("agent", "agent", True, True), ("agent", "agent", False, False), ("agent", "supervisor", False, True),
    ("admin", "supervisor", True, False), ("admin", "agent", True, False), ("admin", "admin", False, True),
])
def test_who_may_see_masked_originals(reveal_role, role, assigned, allowed):
    assert PrivacySettings(pii_reveal_role=reveal_role).may_reveal(role, assigned=assigned) is allowed


def test_export_holds_everything_and_nothing_means_none():
    data = FakeData()
    out = PrivacyService(data, link=lambda key: "https://dl/" + key).export(WS, CUST)
    assert out["profile"]["names"] == ["Zhang"]
    (conversation,) = out["conversations"]
    assert conversation["csat"] == {"score": 5} and "customerKey" not in conversation
    assert [m["text"] for m in conversation["messages"]] == ["my order 2026112100123456"]
    assert conversation["attachments"][0]["url"].startswith("https://dl/ws1/c1/")
    assert out["tickets"][0]["ticketId"] == "t1" and out["tickets"][0]["comments"][0]["text"] == "called"
    assert out["businessEvents"] == [{"eventId": "e1"}]
    assert PrivacyService(data).export(WS, "nobody") is None


def test_export_gives_masked_messages_back_as_written():
    import json

    from kefu import pii

    data = FakeData()
    redaction = pii.redact("call me on 13812345678")
    item = next(v for (p, k), v in data.tables["conv"].items() if k.startswith("MSG#"))
    item.update(text=redaction.text, pii=json.dumps({"spans": [list(s) for s in redaction.spans], "sealed": "k"}))
    opened = []

    def unmask(ws, conversation_id, text, record):
        opened.append((ws, conversation_id, record["sealed"]))
        return pii.restore(text, record["spans"], redaction.values)

    out = PrivacyService(data, unmask=unmask).export(WS, CUST)
    assert [m["text"] for m in out["conversations"][0]["messages"]] == ["call me on 13812345678"]
    assert opened == [(WS, "c1", "k")]
    assert PrivacyService(data).export(WS, CUST)["conversations"][0]["messages"][0]["text"] == redaction.text


def test_delete_removes_everything_meta_last_and_is_idempotent():
    data, closed, dropped = FakeData(), [], []
    service = PrivacyService(data, close=lambda ws, c: closed.append(c), disconnect=dropped.append)
    report = service.delete(WS, CUST)
    assert report["complete"] and report["deleted"]["conversations"] == 1 and report["deleted"]["tickets"] == 1
    assert report["deleted"]["unansweredQuestions"] == 1  # redacted: the order number goes
    assert dropped == ["conn-1"] and closed == []  # closed already
    conv_deletes = [sk for pk, sk in data.deleted_order if pk == f"{WS}#C#c1"]
    assert conv_deletes[-1] == "META"
    assert all(not rows for rows in data.tables.values()) and not data.objects
    assert not any(service.delete(WS, CUST)["deleted"].values())


def test_a_failing_part_is_reported_what_remains_is_found_again():
    data = FakeData()
    data.fail_objects = True
    service = PrivacyService(data)
    with pytest.raises(DeletionIncomplete) as failed:
        service.delete(WS, CUST)
    report = failed.value.report
    assert report["complete"] is False and report["remaining"] == ["conversation:c1"]
    assert (f"{WS}#C#c1", "META") in data.tables["conv"]  # the conversation is still findable for a retry
    assert report["deleted"]["tickets"] == 1  # the rest went
    data.fail_objects = False
    again = service.delete(WS, CUST)
    assert again["complete"] and again["deleted"]["conversations"] == 1 and not data.objects
