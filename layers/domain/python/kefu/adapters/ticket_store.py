"""The TicketStore port on the Tickets table (boto3: the escalation state machine writes the same
item with native DynamoDB lists and maps, so this adapter reads and writes plain attribute values).

pk "{ws}#T#{id}", sk "TICKET": the ticket and its history; sk "CM#{createdAt}#{id}": comments;
pk "{ws}", sk "TICKET_SETTINGS": the workspace's ticket settings. Every change is one conditional
update on `version` that also appends its event to `history`.

Retention (kefu.retention): a resolved or closed ticket has `expiresAt` (the table's TTL); its comments carry
the same value (a comment written to such a ticket gets it at once; the ticket_events function brings the
others in step after each change of a finished or reopened ticket: expire_comments).
"""

from __future__ import annotations

import os

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .. import schema
from ..ports import StateConflict
from ..tickets import MAX_HISTORY, TICKET_SK, Ticket, ticket_pk
from .attributes import from_item, plain, to_item
from .cursors import decode, encode
from .dynamodb import _host, _region

SETTINGS_SK = "TICKET_SETTINGS"
MAX_PAGES = 5  # a filtered page reads at most this many index pages before it returns what it has


# domain field -> attribute
_ATTRIBUTES = {
    "subject": "subject", "description": "description", "priority": "priority", "status": "status",
    "group": "groupId", "assignee_id": "assigneeId", "assignee_name": "assigneeName", "deadline": "deadline",
    "conversations": "conversations", "expires_at": "expiresAt",
}










def _ticket(values: dict) -> Ticket:
    workspace, _, ticket_id = values["pk"].partition("#T#")
    history = values.get("history")
    return Ticket(
        workspace=workspace, id=ticket_id, subject=values.get("subject", ""),
        customer_id=values.get("customerId"), customer_name=values.get("customerName", ""),
        description=values.get("description", ""), priority=values.get("priority", "normal"),
        status=values.get("status", "open"), group=values.get("groupId"), assignee_id=values.get("assigneeId"),
        assignee_name=values.get("assigneeName"), deadline=values.get("deadline"),
        escalation_level=int(values.get("escalationLevel", 0)), conversations=tuple(values.get("conversations", ())),
        source=values.get("source", "rest"), contact=values.get("contact"), created_at=values.get("createdAt", ""),
        updated_at=values.get("updatedAt"), created_by=values.get("createdBy"),
        # a history that is not a list is damaged (the escalation machine alerts on it): show it as such
        history=tuple(history) if isinstance(history, list) else ({"type": "damaged", "value": str(history)},),
        alert=values.get("alert"), version=int(values.get("version", 1)),
        expires_at=int(values["expiresAt"]) if values.get("expiresAt") is not None else None,
    )


def ticket_from_image(image: dict) -> Ticket:
    """A Ticket from a stream image (Powertools deserialises it to plain values, numbers as Decimal)."""
    return _ticket(plain(dict(image)))


class DynamoTicketStore:
    def __init__(self) -> None:
        self.table = os.environ.get(schema.TICKETS.env_var, schema.TICKETS.local_name)
        self.client = boto3.client("dynamodb", region_name=_region(), endpoint_url=_host(),
                                   config=Config(retries={"max_attempts": 5, "mode": "standard"}))

    # ------------------------------------------------------------ tickets

    def create_ticket(self, ticket: Ticket) -> None:
        values = {
            "pk": ticket_pk(ticket.workspace, ticket.id), "sk": TICKET_SK, "listKey": ticket.workspace,
            "customerKey": f"{ticket.workspace}#{ticket.customer_id}" if ticket.customer_id else None,
            "subject": ticket.subject, "description": ticket.description, "priority": ticket.priority,
            "status": ticket.status, "groupId": ticket.group, "assigneeId": ticket.assignee_id,
            "assigneeName": ticket.assignee_name, "customerId": ticket.customer_id,
            "customerName": ticket.customer_name, "deadline": ticket.deadline,
            "escalationLevel": ticket.escalation_level, "conversations": list(ticket.conversations),
            "source": ticket.source, "contact": ticket.contact, "createdAt": ticket.created_at,
            "updatedAt": ticket.created_at, "createdBy": ticket.created_by, "history": list(ticket.history),
            "version": ticket.version,
        }
        self.client.put_item(TableName=self.table, Item=to_item(values), ConditionExpression="attribute_not_exists(pk)")

    def get_ticket(self, workspace: str, ticket_id: str) -> Ticket | None:
        item = self.client.get_item(TableName=self.table, Key=to_item({"pk": ticket_pk(workspace, ticket_id),
                                                                     "sk": TICKET_SK}),
                                    ConsistentRead=True).get("Item")
        return _ticket(from_item(item)) if item else None

    def update_ticket(self, ticket: Ticket, changes: dict, event: dict, *, expect_status: str | None = None) -> Ticket:
        names = {"#v": "version", "#h": "history", "#u": "updatedAt"}
        values = {":v": ticket.version, ":one": 1, ":event": [event], ":now": event["at"]}
        sets, removes = ["#u = :now", "#h = list_append(#h, :event)"], []
        for i, (field, value) in enumerate(changes.items()):
            names[f"#f{i}"] = _ATTRIBUTES[field]
            if value is None:
                removes.append(f"#f{i}")
            else:
                sets.append(f"#f{i} = :f{i}")
                values[f":f{i}"] = list(value) if isinstance(value, tuple) else value
        condition = "#v = :v"
        if expect_status is not None:
            names["#s"] = "status"
            values[":expect"] = expect_status
            condition += " AND #s = :expect"
        expression = "SET " + ", ".join(sets) + " ADD #v :one" + (" REMOVE " + ", ".join(removes) if removes else "")
        try:
            result = self.client.update_item(
                TableName=self.table, Key=to_item({"pk": ticket_pk(ticket.workspace, ticket.id), "sk": TICKET_SK}),
                UpdateExpression=expression, ConditionExpression=condition, ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values), ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise StateConflict() from None
            raise
        updated = _ticket(from_item(result["Attributes"]))
        if len(updated.history) > MAX_HISTORY:
            self._trim_history(updated)
        return updated

    def _trim_history(self, ticket: Ticket) -> None:
        """Keep the first event (creation) and the newest ones; best effort (a concurrent change wins)."""
        keep = [ticket.history[0], {"type": "trimmed", "at": ticket.history[-1].get("at"),
                                    "count": len(ticket.history) - MAX_HISTORY + 1}]
        keep += list(ticket.history[-(MAX_HISTORY - 2):])
        try:
            self.client.update_item(
                TableName=self.table, Key=to_item({"pk": ticket_pk(ticket.workspace, ticket.id), "sk": TICKET_SK}),
                UpdateExpression="SET #h = :h", ConditionExpression="#v = :v",
                ExpressionAttributeNames={"#h": "history", "#v": "version"},
                ExpressionAttributeValues=to_item({":h": keep, ":v": ticket.version}),
            )
        except ClientError:
            pass

    def add_comment(self, ticket: Ticket, comment: dict, event: dict) -> Ticket:
        """The comment item and the ticket's event in one transaction; a comment does not conflict with
        other changes (no version condition), it only needs the ticket to exist."""
        key = {"pk": ticket_pk(ticket.workspace, ticket.id)}
        self.client.transact_write_items(TransactItems=[
            {"Put": {"TableName": self.table, "ConditionExpression": "attribute_not_exists(pk)",
                     "Item": to_item({**key, "sk": f"CM#{comment['createdAt']}#{comment['commentId']}", **comment,
                                      "expiresAt": ticket.expires_at})}},
            {"Update": {"TableName": self.table, "Key": to_item({**key, "sk": TICKET_SK}),
                        "ConditionExpression": "attribute_exists(pk)",
                        "UpdateExpression": "SET #h = list_append(#h, :e), #u = :now ADD #v :one",
                        "ExpressionAttributeNames": {"#h": "history", "#u": "updatedAt", "#v": "version"},
                        "ExpressionAttributeValues": to_item({":e": [event], ":now": event["at"], ":one": 1})}},
        ])
        return ticket

    def expire_comments(self, workspace: str, ticket_id: str, expires_at: int | None) -> int:
        """Give every comment of the ticket its TTL `expires_at` (None: none, the ticket was reopened). Idempotent;
        the number of comments changed."""
        changed, start = 0, None
        pk = ticket_pk(workspace, ticket_id)
        while True:
            page = self.client.query(
                TableName=self.table, KeyConditionExpression="pk = :pk AND begins_with(sk, :cm)",
                ExpressionAttributeValues=to_item({":pk": pk, ":cm": "CM#"}), ConsistentRead=True,
                ProjectionExpression="pk, sk, expiresAt", **({"ExclusiveStartKey": start} if start else {}))
            for item in page.get("Items", []):
                current = from_item(item).get("expiresAt")
                if (None if current is None else int(current)) == expires_at:
                    continue
                update = {"UpdateExpression": "REMOVE expiresAt"} if expires_at is None else {
                    "UpdateExpression": "SET expiresAt = :x", "ExpressionAttributeValues": to_item({":x": expires_at})}
                try:  # only while the comment exists (an erasure may be deleting the ticket meanwhile)
                    self.client.update_item(TableName=self.table, Key={"pk": item["pk"], "sk": item["sk"]},
                                            ConditionExpression="attribute_exists(pk)", **update)
                except ClientError as error:
                    if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                        raise
                    continue
                changed += 1
            start = page.get("LastEvaluatedKey")
            if not start:
                return changed

    def comments(self, workspace: str, ticket_id: str) -> list[dict]:
        out, start = [], None
        while True:
            kwargs = {"ExclusiveStartKey": start} if start else {}
            page = self.client.query(
                TableName=self.table, KeyConditionExpression="pk = :pk AND begins_with(sk, :cm)",
                ExpressionAttributeValues=to_item({":pk": ticket_pk(workspace, ticket_id), ":cm": "CM#"}),
                ConsistentRead=True, **kwargs)
            for item in page.get("Items", []):
                values = from_item(item)
                out.append({k: values[k] for k in ("commentId", "author", "text", "internal", "createdAt") if k in values})
            start = page.get("LastEvaluatedKey")
            if not start:
                return out

    def list_tickets(self, workspace: str, filters: dict, cursor: str | None, limit: int) -> tuple[list[Ticket], str | None]:
        """Newest first. Filters: status, priority, groupId, assigneeId (attribute filters), customerId
        (the byCustomer index). The cursor is opaque to callers and bound to the workspace."""
        customer = filters.get("customerId")
        if customer:
            index, key_name, key_value = "byCustomer", "customerKey", f"{workspace}#{customer}"
        else:
            index, key_name, key_value = "byWorkspace", "listKey", workspace
        start = decode(cursor, {key_name: key_value})
        names, values, clauses = {"#k": key_name}, {":k": key_value}, []
        for i, name in enumerate(("status", "priority", "groupId", "assigneeId")):
            wanted = filters.get(name)
            if wanted:
                names[f"#a{i}"] = name
                values[f":a{i}"] = wanted
                clauses.append(f"#a{i} = :a{i}")
        query = {"TableName": self.table, "IndexName": index, "KeyConditionExpression": "#k = :k",
                 "ScanIndexForward": False, "ExpressionAttributeNames": names}
        if clauses:
            query["FilterExpression"] = " AND ".join(clauses)
        query["ExpressionAttributeValues"] = to_item(values)
        found: list[Ticket] = []
        for _ in range(MAX_PAGES):
            page = self.client.query(**query, Limit=limit - len(found) if not clauses else max(limit, 50),
                                     **({"ExclusiveStartKey": start} if start else {}))
            for item in page.get("Items", []):
                found.append(_ticket(from_item(item)))
                if len(found) == limit:
                    key = {name: item[name] for name in ("pk", "sk", key_name, "createdAt")}
                    return found, encode(key)
            start = page.get("LastEvaluatedKey")
            if not start:
                return found, None
        return found, encode(start)

    # ------------------------------------------------------------ settings

    def ticket_settings(self, workspace: str) -> dict:
        item = self.client.get_item(TableName=self.table, Key=to_item({"pk": workspace, "sk": SETTINGS_SK})).get("Item")
        return from_item(item).get("settings", {}) if item else {}

    def put_ticket_settings(self, workspace: str, settings: dict) -> None:
        self.client.put_item(TableName=self.table, Item=to_item({"pk": workspace, "sk": SETTINGS_SK, "settings": settings}))
