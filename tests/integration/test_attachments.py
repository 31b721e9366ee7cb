"""Attachments on the local stack: upload tickets over REST, presigned POST straight to S3 (moto), the reference
in a WebSocket message, the other side receives it, a presigned GET returns the bytes; and every refusal.

moto's S3 does not enforce a presigned POST's policy (expiry, key, Content-Type, content-length-range: it
stores whatever is posted), so the check of each reference against the stored object when the message is
sent (HeadObject: size and type) is what refuses a file that broke its ticket; the tests prove that check."""

from __future__ import annotations

import secrets

import pytest
import requests

from .conftest import chat, open_conversation

PNG = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(1500)
PDF = b"%PDF-1.4\n" + b"x" * 3000 + b"\n%%EOF\n"
MB = 1024 * 1024


def api(world, path: str) -> str:
    return f"{world.stack.api_url}{path}"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def ticket(world, token: str, conversation_id: str, name="cat.png", content_type="image/png", size=len(PNG), **kw):
    return requests.post(api(world, f"/conversations/{conversation_id}/attachments"), headers=bearer(token),
                         json={"name": name, "contentType": content_type, "size": size, **kw}, timeout=10)


def upload(ticket_: dict, data: bytes, **field_changes) -> requests.Response:
    """The browser's part: the ticket's fields, then the file, as multipart/form-data."""
    fields = {**ticket_["fields"], **field_changes}
    return requests.post(ticket_["url"], data=fields, files={"file": ("blob", data)}, timeout=10)


def attach(world, token: str, conversation_id: str, data: bytes = PNG, **kw) -> dict:
    """Ticket + upload; the reference to send."""
    issued = ticket(world, token, conversation_id, size=len(data), **kw)
    assert issued.status_code == 201, issued.text
    uploaded = upload(issued.json(), data)
    assert uploaded.status_code in (200, 201, 204), uploaded.text
    return issued.json()["attachment"]


def send(socket, conversation_id: str, cmid: str, refs: list[dict], text: str = "") -> dict:
    return socket.request({"action": "message", "conversationId": conversation_id, "clientMessageId": cmid,
                           "text": text, "attachments": refs}, clientMessageId=cmid)


def download(world, token: str, conversation_id: str, key: str, **params) -> requests.Response:
    return requests.get(api(world, f"/conversations/{conversation_id}/attachments/download"), headers=bearer(token),
                        params={"key": key, **params}, timeout=10)


def last_seq(socket, conversation_id: str) -> int:
    return socket.request({"action": "sync", "conversationId": conversation_id, "afterSeq": 0}, type="sync")["lastSeq"]


@pytest.fixture
def room(world):
    customer, agent, conversation_id = chat(world)
    return world, customer, agent, conversation_id, world.token("visitor", "cust-1"), world.token("agent", "agent-1")


# ---------------------------------------------------------------- the way it works


def test_an_image_goes_up_across_and_down(room):
    world, customer, agent, conversation_id, customer_token, agent_token = room
    issued = ticket(world, customer_token, conversation_id, name="../我的 猫.png", width=64, height=48)
    assert issued.status_code == 201, issued.text
    body = issued.json()
    ref = body["attachment"]
    assert ref["name"] == "我的 猫.png" and ref["contentType"] == "image/png" and ref["size"] == len(PNG)
    assert ref["key"].startswith(f"{world.workspace}/{conversation_id}/") and ref["key"].endswith("/file.png")
    assert (ref["width"], ref["height"]) == (64, 48)
    assert body["expiresIn"] == 300 and body["maxBytes"] == 10 * MB
    assert body["fields"]["key"] == ref["key"] and body["fields"]["Content-Type"] == "image/png"
    assert upload(body, PNG).status_code in (200, 201, 204)

    ack = send(customer, conversation_id, "img-1", [ref])
    assert ack["type"] == "ack", ack
    received = agent.expect(type="message", seq=ack["seq"])
    assert received["text"] == "" and received["attachments"] == [ref]

    link = download(world, agent_token, conversation_id, ref["key"], name=ref["name"])
    assert link.status_code == 200, link.text
    assert link.json()["contentType"] == "image/png" and link.json()["size"] == len(PNG)
    fetched = requests.get(link.json()["url"], timeout=10)
    assert fetched.status_code == 200 and fetched.content == PNG
    assert fetched.headers["Content-Type"] == "image/png"
    assert fetched.headers["Content-Disposition"].startswith("inline;")
    assert "%E6%88%91" in fetched.headers["Content-Disposition"]  # 我, RFC 5987

    # in sync and in the REST history like any message
    synced = agent.request({"action": "sync", "conversationId": conversation_id, "afterSeq": ack["seq"] - 1},
                           type="sync")
    assert synced["messages"][0]["attachments"] == [ref]
    page = requests.get(api(world, f"/conversations/{conversation_id}/messages"), headers=bearer(customer_token),
                        params={"afterSeq": ack["seq"] - 1}, timeout=10).json()
    assert page["items"][0]["attachments"] == [ref]


def test_an_agent_sends_a_document_with_text_and_the_customer_downloads_it(room):
    world, customer, agent, conversation_id, customer_token, agent_token = room
    ref = attach(world, agent_token, conversation_id, PDF, name="发票.pdf", content_type="application/pdf")
    png = attach(world, agent_token, conversation_id, PNG)
    ack = send(agent, conversation_id, "doc-1", [ref, png], text="这是您的发票")
    assert ack["type"] == "ack", ack
    received = customer.expect(type="message", seq=ack["seq"])
    assert received["text"] == "这是您的发票" and received["attachments"] == [ref, png]
    link = download(world, customer_token, conversation_id, ref["key"], name=ref["name"])
    assert link.status_code == 200, link.text
    fetched = requests.get(link.json()["url"], timeout=10)
    assert fetched.content == PDF
    assert fetched.headers["Content-Disposition"].startswith('attachment; filename="file.pdf"')
    # a resend is the same message: checked again, stored once
    again = send(agent, conversation_id, "doc-1", [ref, png], text="这是您的发票")
    assert again["seq"] == ack["seq"]


# ---------------------------------------------------------------- refusals at the ticket


@pytest.mark.parametrize("name, content_type, size, problem", [
    ("x.svg", "image/svg+xml", 100, "cannot be attached"),
    ("x.html", "text/html", 100, "cannot be attached"),
    ("x.exe", "application/octet-stream", 100, "cannot be attached"),
    ("big.png", "image/png", 10 * MB + 1, "at most 10 MB"),
    ("huge.pdf", "application/pdf", 20 * MB + 1, "size"),
    ("empty.txt", "text/plain", 0, "size"),
])
def test_tickets_refuse_types_and_sizes(room, name, content_type, size, problem):
    world, customer, agent, conversation_id, customer_token, agent_token = room
    refused = ticket(world, customer_token, conversation_id, name=name, content_type=content_type, size=size)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "invalid_request" and problem in refused.json()["error"]["message"]


def test_strangers_get_no_tickets_and_no_downloads(world, world_factory):
    customer, agent, conversation_id = chat(world)
    ref = attach(world, world.token("visitor", "cust-1"), conversation_id)
    assert send(customer, conversation_id, "s-1", [ref])["type"] == "ack"
    other = world.customer("cust-2", "Li Si")  # a customer of another conversation of the same workspace
    open_conversation(world, other, agent)
    elsewhere = world_factory()
    elsewhere.agent("agent-1")
    strangers = {
        "another customer": world.token("visitor", "cust-2"),
        "a customer of no conversation": world.token("visitor", "cust-9"),
        "another workspace's agent with the same id": elsewhere.token("agent", "agent-1"),
        "another workspace's customer with the same id": elsewhere.token("visitor", "cust-1"),
        "an agent not in the conversation": world.token("agent", "agent-2"),
    }
    for who, token in strangers.items():
        refused = ticket(world, token, conversation_id)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found", who
        refused = download(world, token, conversation_id, ref["key"])
        assert refused.status_code == 404, who
    assert ticket(world, "not-a-token", conversation_id).status_code == 401
    assert requests.post(api(world, f"/conversations/{conversation_id}/attachments"), timeout=10,
                         json={"name": "a.png", "contentType": "image/png", "size": 1}).status_code == 401


def test_downloads_only_name_this_conversations_uploads(world):
    customer, agent, conversation_id = chat(world)
    customer_token = world.token("visitor", "cust-1")
    other = world.customer("cust-2", "Li Si")
    other_conversation = open_conversation(world, other, agent)
    theirs = attach(world, world.token("visitor", "cust-2"), other_conversation)
    for key in (theirs["key"], theirs["key"].replace(other_conversation, conversation_id),
                f"{world.workspace}/{conversation_id}/../{other_conversation}/{theirs['key'].split('/')[2]}/file.png",
                f"{world.workspace}/{conversation_id}/{'0' * 32}/missing.png"):
        assert download(world, customer_token, conversation_id, key).status_code == 404, key


# ---------------------------------------------------------------- refusals at the message


def test_files_that_broke_their_ticket_are_refused_when_sent(room):
    """Declared 1,500 bytes, posted more; declared a PNG, posted HTML. On AWS S3 refuses both uploads (policy
    conditions); moto stores them, and the message is refused instead. Either way nothing is stored."""
    world, customer, agent, conversation_id, customer_token, agent_token = room
    before = last_seq(customer, conversation_id)

    issued = ticket(world, customer_token, conversation_id, size=len(PNG)).json()
    too_big = PNG + b"\0" * 4096
    posted = upload(issued, too_big)
    if posted.status_code in (200, 201, 204):  # not enforced by the S3 stand-in: the message check must refuse it
        refused = send(customer, conversation_id, "big-1", [issued["attachment"]])
        assert refused["type"] == "error" and refused["code"] == "invalid_frame", refused
        assert f"{len(too_big)} bytes, not {len(PNG)}" in refused["message"]
        lying = {**issued["attachment"], "size": len(too_big)}  # the real size, but not what was ticketed
        assert send(customer, conversation_id, "big-2", [lying])["type"] == "ack"  # within 10 MB: fine
        before += 1
    else:
        assert posted.status_code in (400, 403)

    # over the type's limit for real (11 MB posted under a 1-byte ticket): refused even if its ref says so
    issued = ticket(world, customer_token, conversation_id, size=1).json()
    huge = b"\x89PNG" + b"\0" * (11 * MB)
    if upload(issued, huge).status_code in (200, 201, 204):
        refused = send(customer, conversation_id, "huge-1", [issued["attachment"]])
        assert refused["type"] == "error" and "not 1" in refused["message"], refused
        claimed = {**issued["attachment"], "size": len(huge)}
        refused = send(customer, conversation_id, "huge-2", [claimed])
        assert refused["type"] == "error" and "at most 10 MB" in refused["message"], refused

    issued = ticket(world, customer_token, conversation_id, size=len(PNG)).json()
    posted = upload(issued, PNG, **{"Content-Type": "text/html"})
    if posted.status_code in (200, 201, 204):
        refused = send(customer, conversation_id, "html-1", [issued["attachment"]])
        assert refused["type"] == "error" and "text/html" in refused["message"], refused
    else:
        assert posted.status_code in (400, 403)

    # a ticket whose upload never happened
    issued = ticket(world, customer_token, conversation_id).json()
    refused = send(customer, conversation_id, "none-1", [issued["attachment"]])
    assert refused["type"] == "error" and "no such upload" in refused["message"], refused

    assert last_seq(customer, conversation_id) == before
    agent.quiet(0.3)
    assert not [f for f in agent.backlog if f.get("type") == "message" and f.get("clientMessageId", "").startswith(
        ("big-1", "huge", "html", "none"))]


def test_references_from_elsewhere_or_forged_are_refused(world, world_factory):
    customer, agent, conversation_id = chat(world)
    customer_token = world.token("visitor", "cust-1")
    other = world.customer("cust-2", "Li Si")
    other_conversation = open_conversation(world, other, agent)
    theirs = attach(world, world.token("visitor", "cust-2"), other_conversation)
    elsewhere = world_factory()
    elsewhere.agent("agent-1")
    far_agent = elsewhere.agent_socket("agent-1")
    far_customer = elsewhere.customer("cust-1")
    far_conversation = open_conversation(elsewhere, far_customer, far_agent)
    far = attach(elsewhere, elsewhere.token("visitor", "cust-1"), far_conversation)
    mine = attach(world, customer_token, conversation_id)
    before = last_seq(customer, conversation_id)
    uid = mine["key"].split("/")[2]

    cases = {
        "another conversation": [theirs],
        "another workspace": [far],
        "renamed into this conversation": [{**theirs, "key": theirs["key"].replace(other_conversation,
                                                                                    conversation_id)}],
        "dot-dot": [{**mine, "key": f"{world.workspace}/{conversation_id}/../{other_conversation}/{uid}/file.png"}],
        "another workspace's prefix": [{**mine, "key": f"{elsewhere.workspace}/{conversation_id}/{uid}/file.png"}],
        "no uuid": [{**mine, "key": f"{world.workspace}/{conversation_id}/file.png"}],
        "deeper": [{**mine, "key": f"{world.workspace}/{conversation_id}/{uid}/x/file.png"}],
        "a good one and a bad one": [mine, theirs],
        "the same twice": [mine, mine],
    }
    for i, (case, refs) in enumerate(cases.items()):
        refused = send(customer, conversation_id, f"forged-{i}", refs)
        assert refused["type"] == "error" and refused["code"] == "invalid_frame", (case, refused)
        assert refused["clientMessageId"] == f"forged-{i}"

    six = [attach(world, customer_token, conversation_id) for _ in range(6)]
    refused = send(customer, conversation_id, "six", six)
    assert refused["type"] == "error" and "attachments" in refused["message"], refused
    refused = customer.request({"action": "message", "clientMessageId": "no-conv", "attachments": [mine]},
                               clientMessageId="no-conv")
    assert refused["type"] == "error" and "conversationId is required" in refused["message"], refused
    refused = send(customer, conversation_id, "svg", [{**mine, "contentType": "image/svg+xml", "name": "x.svg"}])
    assert refused["type"] == "error" and "cannot be attached" in refused["message"], refused

    assert last_seq(customer, conversation_id) == before
    assert send(customer, conversation_id, "five", six[:5])["type"] == "ack"  # five is fine
