import json

import pytest

from kefu import frames
from kefu.errors import InvalidFrame, MalformedJson, UnknownAction


def parse(obj, expected=None):
    return frames.parse(json.dumps(obj), expected)


def test_message_frame_is_parsed_and_text_trimmed():
    frame = parse({"action": "message", "clientMessageId": "m-1", "text": "  你好  "})
    assert isinstance(frame, frames.MessageFrame)
    assert frame.text == "你好" and frame.conversationId is None


@pytest.mark.parametrize("body", ["", "not json", "[1,2]", "42", "{"])
def test_malformed_json(body):
    with pytest.raises(MalformedJson):
        frames.parse(body)


def test_unknown_action_keeps_client_message_id():
    with pytest.raises(UnknownAction) as info:
        parse({"action": "dance", "clientMessageId": "m9"})
    assert info.value.client_message_id == "m9"


@pytest.mark.parametrize(
    "frame, field",
    [
        ({"action": "message", "text": "hi"}, "clientMessageId"),
        ({"action": "message", "clientMessageId": "m1", "text": "   "}, "text"),
        ({"action": "message", "clientMessageId": "m1", "text": "x" * (frames.MAX_TEXT_CHARS + 1)}, "text"),
        ({"action": "message", "clientMessageId": "bad id!", "text": "x"}, "clientMessageId"),
        ({"action": "message", "clientMessageId": "m1", "text": 5}, "text"),
        ({"action": "sync", "conversationId": "c1", "afterSeq": -1}, "afterSeq"),
        ({"action": "sync", "conversationId": "c1"}, "afterSeq"),
        ({"action": "handoff", "conversationId": "c1", "to": {}}, "to"),
        ({"action": "handoff", "conversationId": "c1", "to": {"agentId": "a", "group": "g"}}, "to"),
        ({"action": "handoff", "conversationId": "c1", "to": {"agentId": "a"}, "note": "n" * 1001}, "note"),
    ],
)
def test_invalid_frames_name_the_field(frame, field):
    with pytest.raises(InvalidFrame) as info:
        parse(frame)
    assert field in info.value.message
    assert info.value.details and all({"field", "problem"} <= set(d) for d in info.value.details)


def test_invalid_frame_echoes_client_message_id():
    with pytest.raises(InvalidFrame) as info:
        parse({"action": "message", "clientMessageId": "m7", "text": ""})
    assert info.value.client_message_id == "m7"


def test_group_names_may_be_chinese():
    frame = parse({"action": "handoff", "conversationId": "c1", "to": {"group": "售后"}})
    assert frame.to.group == "售后"
    with pytest.raises(InvalidFrame):
        parse({"action": "handoff", "conversationId": "c1", "to": {"group": "售 后"}})


def test_request_id_is_read_leniently():
    assert frames.request_id('{"action":"sync","requestId":"r-1"}') == "r-1"
    assert frames.request_id('{"action":"sync"}') is None
    assert frames.request_id('{"requestId": 5}') is None
    assert frames.request_id("not json requestId") is None


def test_unknown_fields_are_ignored():
    frame = parse({"action": "typing", "conversationId": "c1", "future": True})
    assert frame.typing is True


def test_error_frame_shape():
    assert frames.error("not_found", "no such conversation", "m1") == {
        "type": "error", "code": "not_found", "message": "no such conversation", "clientMessageId": "m1"}
