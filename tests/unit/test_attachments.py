"""Attachments: the pure rules (types, limits, names, keys, references) and the message path over fakes."""

from __future__ import annotations

import json
import re

import pytest

from kefu import attachments, frames
from kefu.attachments import AttachmentError, AttachmentRef, StoredObject
from kefu.conversations import ConversationService
from kefu.delivery import Delivery
from kefu.errors import InvalidFrame
from kefu.models import Agent, Principal
from kefu.router import Router

from .fakes import FakeTimers, MemoryStore, RecordingNotifier

MB = attachments.MB
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# ---------------------------------------------------------------- types and limits


@pytest.mark.parametrize("content_type, limit", [
    ("image/png", 10 * MB), ("image/jpeg", 10 * MB), ("image/gif", 10 * MB), ("image/webp", 10 * MB),
    ("application/pdf", 20 * MB), ("text/plain", 20 * MB), ("text/csv", 20 * MB), (DOCX, 20 * MB), (XLSX, 20 * MB),
])
def test_accepted_types_and_their_limits(content_type, limit):
    assert attachments.check_upload(content_type, limit).max_bytes == limit
    assert attachments.check_upload(content_type, 1).content_type == content_type
    with pytest.raises(AttachmentError, match="at most"):
        attachments.check_upload(content_type, limit + 1)


@pytest.mark.parametrize("content_type", [
    "image/svg+xml", "text/html", "application/xhtml+xml", "text/xml", "application/javascript", "text/javascript",
    "application/zip", "application/x-msdownload", "application/octet-stream", "image/bmp", "", "image",
    "application/msword",
])
def test_everything_else_is_refused(content_type):
    with pytest.raises(AttachmentError, match="cannot be attached"):
        attachments.check_upload(content_type, 10)


def test_type_parameters_and_case_are_ignored_but_empty_files_are_not_accepted():
    assert attachments.file_type("Text/Plain; charset=utf-8").content_type == "text/plain"
    with pytest.raises(AttachmentError, match="empty"):
        attachments.check_upload("image/png", 0)


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("given, content_type, expected", [
    ("photo.png", "image/png", "photo.png"),
    ("../../etc/passwd", "text/plain", "passwd.txt"),
    ("C:\\Users\\me\\发票 2024.pdf", "application/pdf", "发票 2024.pdf"),
    ("evil\u202egnp.exe", "image/png", "evilgnp.exe.png"),  # the direction override is gone, the type added
    ("a\x00b\x07c\nd.txt", "text/plain", "abc d.txt"),
    ("report.html", "text/plain", "report.html.txt"),
    ("  ...  ", "application/pdf", "file.pdf"),
    (".bashrc", "text/plain", "bashrc.txt"),
    ("many   spaces\tand\ttabs.csv", "text/csv", "many spaces and tabs.csv"),
    ("IMG.JPEG", "image/jpeg", "IMG.JPEG"),
])
def test_safe_names(given, content_type, expected):
    assert attachments.safe_name(given, content_type) == expected


def test_long_names_keep_their_extension_and_safe_names_are_stable():
    name = attachments.safe_name("长" * 300 + ".xlsx", XLSX)
    assert len(name) == attachments.MAX_NAME_CHARS and name.endswith(".xlsx")
    for raw in ["x" * 500, "a/b\\c.d.e.pdf", "\u202e\u200b.png", "名字.PNG", "a" * 119 + " .pdf", "...pdf"]:
        for content_type in ("application/pdf", "image/png"):
            once = attachments.safe_name(raw, content_type)
            assert attachments.safe_name(once, content_type) == once, raw
            assert 0 < len(once) <= attachments.MAX_NAME_CHARS
            assert not any(c in once for c in "/\\\x00\u202e")


@pytest.mark.parametrize("name, expected", [
    ("photo.png", "photo.png"), ("发票 2024.pdf", "2024.pdf"), ("发票.pdf", "file.pdf"), ("Ça va.txt", "Ca-va.txt"),
    ("a b/c.csv", "a-b-c.csv"), ("noext", "noext"),
])
def test_key_names_are_ascii_slugs(name, expected):
    assert attachments.key_name(name) == expected


# ---------------------------------------------------------------- keys


def test_keys_are_scoped_and_unguessable():
    key = attachments.new_key("shop-1", "c_18f0abc", "发票 2024.pdf")
    assert re.fullmatch(r"shop-1/c_18f0abc/[0-9a-f]{32}/2024\.pdf", key)
    assert key != attachments.new_key("shop-1", "c_18f0abc", "发票 2024.pdf")
    assert attachments.owns(key, "shop-1", "c_18f0abc")
    assert not attachments.owns(key, "shop-2", "c_18f0abc")
    assert not attachments.owns(key, "shop-1", "c_other")
    assert not attachments.owns(key, "shop-1", "c_18f0")  # a prefix of the id is not the id


@pytest.mark.parametrize("key", [
    "shop-1/c_1/../c_2/0123456789abcdef0123456789abcdef/x.png",
    "shop-1/c_1/0123456789abcdef0123456789abcdef/../../c_2/x.png",
    "shop-1/c_1/0123456789abcdef0123456789abcdef/sub/x.png",
    "shop-1/c_1/not-a-uuid/x.png",
    "/shop-1/c_1/0123456789abcdef0123456789abcdef/x.png",
    "shop-1/c_1/0123456789abcdef0123456789abcdef/",
    "shop-1/c_1/0123456789abcdef0123456789abcdef/.x.png",
    "shop-1/c_1/0123456789ABCDEF0123456789ABCDEF/x.png",
    "shop-1/c_1x/0123456789abcdef0123456789abcdef/x.png",
    "",
])
def test_forged_keys_are_not_owned(key):
    assert not attachments.owns(key, "shop-1", "c_1")


def test_disposition_downloads_files_and_shows_images():
    assert attachments.disposition("发票.pdf", "application/pdf") == (
        "attachment; filename=\"file.pdf\"; filename*=UTF-8''%E5%8F%91%E7%A5%A8.pdf")
    assert attachments.disposition("cat.png", "image/png").startswith('inline; filename="cat.png"')
    assert attachments.disposition('a"b;c.txt', "text/plain").isascii()


# ---------------------------------------------------------------- references


def ref(**kw) -> dict:
    return {"key": "ws/c_1/0123456789abcdef0123456789abcdef/cat.png", "name": "cat.png", "contentType": "image/png",
            "size": 1234, **kw}


def test_a_reference_round_trips():
    parsed = AttachmentRef.model_validate(ref(width=640, height=480, extra="ignored"))
    assert parsed.public() == ref(width=640, height=480)


@pytest.mark.parametrize("changes, problem", [
    ({"contentType": "image/svg+xml"}, "cannot be attached"),
    ({"contentType": "image/PNG"}, "write it as"),
    ({"size": 10 * MB + 1}, "at most"),
    ({"size": 0}, "greater than or equal"),
    ({"size": "12"}, "integer"),
    ({"name": "../cat.png"}, "name"),
    ({"name": "cat.html"}, "name"),
    ({"contentType": "application/pdf", "name": "a.pdf", "width": 3}, "images only"),
    ({"key": ""}, "key"),
])
def test_bad_references_are_refused(changes, problem):
    with pytest.raises(ValueError, match=problem):
        AttachmentRef.model_validate(ref(**changes))


# ---------------------------------------------------------------- message frames


def parse(frame: dict):
    return frames.parse(json.dumps(frame))


def test_message_frames_carry_attachments_and_may_then_have_no_text():
    frame = parse({"action": "message", "conversationId": "c_1", "clientMessageId": "m1", "attachments": [ref()]})
    assert frame.text == "" and frame.attachments[0].key.endswith("/cat.png")
    with pytest.raises(InvalidFrame, match="text") as refused:
        parse({"action": "message", "clientMessageId": "m1", "text": "  ", "attachments": []})
    assert refused.value.client_message_id == "m1"
    with pytest.raises(InvalidFrame, match="attachments"):
        parse({"action": "message", "conversationId": "c_1", "clientMessageId": "m1",
               "attachments": [ref(key=f"ws/c_1/{i:032x}/cat.png") for i in range(6)]})
    with pytest.raises(InvalidFrame, match="attachments.0"):
        parse({"action": "message", "conversationId": "c_1", "clientMessageId": "m1",
               "attachments": [ref(contentType="text/html", name="x.html")]})


# ---------------------------------------------------------------- verification and the message path


class FakeObjects:
    """The object store: what was "uploaded", and what HeadObject saw."""

    def __init__(self):
        self.objects: dict[str, StoredObject] = {}
        self.heads: list[str] = []

    def put(self, key: str, size: int, content_type: str) -> None:
        self.objects[key] = StoredObject(size, content_type)

    def head(self, key: str) -> StoredObject | None:
        self.heads.append(key)
        return self.objects.get(key)

    def upload_ticket(self, key, content_type, max_bytes, expires_s):  # pragma: no cover - not used here
        return {"url": "http://s3", "fields": {"key": key}}

    def download_url(self, key, content_type, disposition, expires_s):  # pragma: no cover
        return f"http://s3/{key}"


def test_verify_checks_scope_existence_size_and_type():
    objects = FakeObjects()
    good = AttachmentRef.model_validate(ref(key="ws/c_1/" + "a" * 32 + "/cat.png"))
    objects.put(good.key, 1234, "image/png")
    assert attachments.verify([good], "ws", "c_1", objects) == [good.public()]
    with pytest.raises(AttachmentError, match="not an upload of this conversation"):
        attachments.verify([good], "ws", "c_2", objects)
    with pytest.raises(AttachmentError, match="not an upload of this conversation"):
        attachments.verify([good], "other", "c_1", objects)
    with pytest.raises(AttachmentError, match="attached twice"):
        attachments.verify([good, good], "ws", "c_1", objects)
    missing = AttachmentRef.model_validate(ref(key="ws/c_1/" + "b" * 32 + "/cat.png"))
    with pytest.raises(AttachmentError, match="no such upload"):
        attachments.verify([missing], "ws", "c_1", objects)
    objects.put(good.key, 4321, "image/png")  # more bytes than declared (and ticketed)
    with pytest.raises(AttachmentError, match="4321 bytes, not 1234"):
        attachments.verify([good], "ws", "c_1", objects)
    objects.put(good.key, 1234, "text/html")  # an upload that ignored its ticket's Content-Type
    with pytest.raises(AttachmentError, match="text/html"):
        attachments.verify([good], "ws", "c_1", objects)
    big = AttachmentRef.model_validate(ref(key="ws/c_1/" + "c" * 32 + "/cat.png", size=10 * MB))
    objects.put(big.key, 10 * MB, "image/png")
    assert attachments.verify([big], "ws", "c_1", objects)
    with pytest.raises(AttachmentError, match="at most 5"):
        attachments.verify([good] * 6, "ws", "c_1", objects)


CUSTOMER = Principal("demo", "customer", "cust-1", "Zhang")
ALICE = Principal("demo", "agent", "alice", "Alice", agent_role="agent")


@pytest.fixture
def chat():
    store, notifier, objects = MemoryStore(), RecordingNotifier(), FakeObjects()
    store.put_agent(Agent("demo", "alice", "Alice", max_concurrent=2))
    delivery = Delivery(store, notifier, threads=1)
    service = ConversationService(store, delivery, Router(store, delivery, FakeTimers()), attachments=objects)
    service.connect(ALICE, "a1")
    service.connect(CUSTOMER, "c1")
    ack = service.send_message(CUSTOMER, "c1", frames.MessageFrame.model_validate(
        {"action": "message", "clientMessageId": "m0", "text": "hello"}))
    return store, notifier, service, objects, ack["conversationId"]


def _send(service, who, conversation_id, cmid, refs, text=""):
    frame = {"action": "message", "clientMessageId": cmid, "text": text, "attachments": refs}
    if conversation_id:
        frame["conversationId"] = conversation_id
    return service.send_message(who, "c1" if who.role == "customer" else "a1", parse(frame))


def test_a_checked_attachment_is_stored_fanned_out_and_synced(chat):
    store, notifier, service, objects, conversation_id = chat
    key = attachments.new_key("demo", conversation_id, "cat.png")
    objects.put(key, 1234, "image/png")
    ack = _send(service, CUSTOMER, conversation_id, "m1", [ref(key=key)])
    delivered = notifier.frames("a1", "message")[-1]
    assert delivered["seq"] == ack["seq"] and delivered["text"] == ""
    assert delivered["attachments"] == [ref(key=key)]
    synced = service.sync(ALICE, frames.SyncFrame(action="sync", conversationId=conversation_id, afterSeq=0))
    assert synced["messages"][-1]["attachments"][0]["key"] == key


def test_bad_references_store_nothing(chat):
    store, notifier, service, objects, conversation_id = chat
    before = len(store.messages[("demo", conversation_id)])
    foreign = attachments.new_key("demo", "c_someone_else", "cat.png")
    objects.put(foreign, 1234, "image/png")
    oversized = attachments.new_key("demo", conversation_id, "cat.png")
    objects.put(oversized, 11 * MB, "image/png")
    for cmid, refs, problem in [
        ("f1", [ref(key=foreign)], "not an upload of this conversation"),
        ("f2", [ref(key=oversized)], "bytes, not 1234"),
        ("f3", [ref(key=oversized, size=11 * MB)], "at most"),  # refused when the frame is read
    ]:
        with pytest.raises(InvalidFrame, match=problem) as refused:
            _send(service, CUSTOMER, conversation_id, cmid, refs)
        assert refused.value.client_message_id == cmid
    assert len(store.messages[("demo", conversation_id)]) == before


def test_attachments_need_the_conversation_and_a_web_channel(chat):
    store, notifier, service, objects, conversation_id = chat
    key = attachments.new_key("demo", conversation_id, "cat.png")
    objects.put(key, 1234, "image/png")
    with pytest.raises(InvalidFrame, match="conversationId is required"):
        _send(service, CUSTOMER, None, "x1", [ref(key=key)])
    store.conversations[("demo", conversation_id)].channel = "wechat"
    with pytest.raises(InvalidFrame, match="wechat"):
        _send(service, ALICE, conversation_id, "x2", [ref(key=key)])
    assert not objects.heads  # refused before any object was looked at
