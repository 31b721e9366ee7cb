"""Everything stored about one customer of one workspace, found and deleted by key (kefu.privacy's port).

The layout it knows (kefu.schema):
- Conversations: the customer's conversations through the byCustomer index (customerKey "{ws}#{customer}"),
  each a partition "{ws}#C#{id}" (META, CONN#, MSG#, RATE#, USED#); the OPEN pointer "{ws}#U#{customer}".
- Connections: pk "{ws}#customer#{customer}" (their sockets) and "#RL#{ws}#customer#{customer}" (rate counters).
- Directory: queue entries (pk "{ws}#Q") whose customerId is theirs.
- Tickets: through the byCustomer index, each a partition "{ws}#T#{id}" (TICKET, CM#).
- Metrics: business events (pk "{ws}#V#{customer}"), the seen / converted markers (pk "{ws}#SEEN" / "{ws}#BUY",
  sk the customer), each experiment's exposure and conversion markers (sk "X#{customer}" / "C#{customer}"),
  and the bot's unanswered questions (pk "{ws}#MISS": redacted text, no id; matched by text).
- Attachments bucket: every object under "{ws}/{conversationId}/".
Deletes go item by item (DeleteItem is idempotent); an item that names the customer in an index key (META,
TICKET) goes last in its partition, so that a retry after a failure still finds what remains.
"""

from __future__ import annotations

import os

import boto3
from botocore.config import Config

from .. import attachments, schema
from .attributes import from_item, to_item
from .dynamodb import _host, _region


def _table(table: schema.Table) -> str:
    return os.environ.get(table.env_var, table.local_name)


class CustomerData:
    def __init__(self, client=None, s3=None, bucket: str | None = None) -> None:
        self.client = client or boto3.client("dynamodb", region_name=_region(), endpoint_url=_host(),
                                             config=Config(retries={"max_attempts": 5, "mode": "standard"}))
        self._s3, self._bucket, self._management = s3, bucket, None
        self.conversations_table = _table(schema.CONVERSATIONS)
        self.connections_table = _table(schema.CONNECTIONS)
        self.directory_table = _table(schema.DIRECTORY)
        self.tickets_table = _table(schema.TICKETS)
        self.metrics_table = _table(schema.METRICS)

    # ------------------------------------------------------------ reading

    def _query(self, table: str, pk: str, *, prefix: str | None = None, index: str | None = None,
               key_name: str = "pk", filters: dict | None = None) -> list[dict]:
        names, values = {"#k": key_name}, {":k": pk}
        condition = "#k = :k"
        if prefix:
            names["#s"], values[":p"] = "sk", prefix
            condition += " AND begins_with(#s, :p)"
        query = {"TableName": table, "KeyConditionExpression": condition, "ExpressionAttributeNames": names}
        if index:
            query["IndexName"] = index
        else:
            query["ConsistentRead"] = True
        if filters:
            clauses = []
            for i, (name, value) in enumerate(filters.items()):
                names[f"#f{i}"], values[f":f{i}"] = name, value
                clauses.append(f"#f{i} = :f{i}")
            query["FilterExpression"] = " AND ".join(clauses)
        query["ExpressionAttributeValues"] = to_item(values)
        out, start = [], None
        while True:
            page = self.client.query(**query, **({"ExclusiveStartKey": start} if start else {}))
            out += [from_item(item) for item in page.get("Items", [])]
            start = page.get("LastEvaluatedKey")
            if not start:
                return out

    def conversation_ids(self, workspace: str, customer_id: str) -> list[str]:
        """Every conversation of the customer, oldest first (the byCustomer index: META items only)."""
        metas = self._query(self.conversations_table, f"{workspace}#{customer_id}", index="byCustomer",
                            key_name="customerKey")
        return [m["conversationId"] for m in sorted(metas, key=lambda m: m.get("openedAt", ""))
                if m.get("conversationId") and m.get("customerId") == customer_id]

    def conversation_items(self, workspace: str, conversation_id: str) -> list[dict]:
        return self._query(self.conversations_table, f"{workspace}#C#{conversation_id}")

    def open_pointer(self, workspace: str, customer_id: str) -> dict | None:
        item = self.client.get_item(TableName=self.conversations_table, ConsistentRead=True,
                                    Key=to_item({"pk": f"{workspace}#U#{customer_id}", "sk": "OPEN"})).get("Item")
        return from_item(item) if item else None

    def connections(self, workspace: str, customer_id: str) -> list[dict]:
        """The customer's open sockets (sk: the connection id)."""
        return self._query(self.connections_table, f"{workspace}#customer#{customer_id}")

    def disconnect(self, connection_id: str) -> None:
        """Close a socket through the @connections API (its $disconnect follows); gone already is fine."""
        from botocore.exceptions import ClientError

        if self._management is None:
            self._management = boto3.client("apigatewaymanagementapi",
                                            endpoint_url=os.environ[schema.ENV_WS_CALLBACK_URL],
                                            config=Config(connect_timeout=2, read_timeout=5))
        try:
            self._management.delete_connection(ConnectionId=connection_id)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("GoneException", "410"):
                raise

    def tickets(self, workspace: str, customer_id: str) -> list[dict]:
        """The customer's tickets (TICKET items) with their comments under "comments", oldest first."""
        found = self._query(self.tickets_table, f"{workspace}#{customer_id}", index="byCustomer",
                            key_name="customerKey")
        out = []
        for ticket in sorted(found, key=lambda t: t.get("createdAt", "")):
            if ticket.get("customerId") != customer_id or not str(ticket.get("pk", "")).startswith(f"{workspace}#T#"):
                continue
            ticket["comments"] = self._query(self.tickets_table, ticket["pk"], prefix="CM#")
            out.append(ticket)
        return out

    def business_events(self, workspace: str, customer_id: str) -> list[dict]:
        return self._query(self.metrics_table, f"{workspace}#V#{customer_id}", prefix="EV#")

    def markers(self, workspace: str, customer_id: str, experiment_ids: list[str]) -> list[dict]:
        """The seen / converted markers and each experiment's exposure and conversion of the customer."""
        keys = [(f"{workspace}#SEEN", customer_id), (f"{workspace}#BUY", customer_id)]
        for experiment_id in experiment_ids:
            keys += [(f"{workspace}#EXP#{experiment_id}", f"X#{customer_id}"),
                     (f"{workspace}#EXP#{experiment_id}", f"C#{customer_id}")]
        out = []
        for pk, sk in keys:
            item = self.client.get_item(TableName=self.metrics_table, ConsistentRead=True,
                                        Key=to_item({"pk": pk, "sk": sk})).get("Item")
            if item:
                out.append(from_item(item))
        return out

    def experiment_ids(self, workspace: str) -> list[str]:
        return [i["sk"][len("EXP#"):] for i in self._query(self.directory_table, f"{workspace}#EXP", prefix="EXP#")]

    def queue_entries(self, workspace: str, customer_id: str) -> list[dict]:
        return self._query(self.directory_table, f"{workspace}#Q", filters={"customerId": customer_id})

    def rate_counters(self, workspace: str, customer_id: str) -> list[dict]:
        return self._query(self.connections_table, f"{schema.RATE_LIMIT_PK_PREFIX}{workspace}#customer#{customer_id}")

    def misses(self, workspace: str) -> list[dict]:
        """The bot's unanswered questions of the workspace (90 days at most)."""
        return self._query(self.metrics_table, f"{workspace}#MISS")

    # ------------------------------------------------------------ attachments

    @property
    def s3(self):
        if self._s3 is None:
            from botocore.config import Config as S3Config

            local = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            self._s3 = boto3.client("s3", config=S3Config(signature_version="s3v4",
                                                          s3={"addressing_style": "path" if local else "virtual"}))
        return self._s3

    @property
    def bucket(self) -> str:
        return self._bucket or os.environ[schema.ATTACHMENTS.env_var]

    def attachment_objects(self, workspace: str, conversation_id: str) -> list[dict]:
        """Every object under the conversation's prefix (also uploads never sent in a message): key, size."""
        out, token = [], None
        while True:
            page = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=attachments.prefix(workspace, conversation_id),
                                           **({"ContinuationToken": token} if token else {}))
            out += [{"key": o["Key"], "size": int(o.get("Size", 0))} for o in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not token:
                return out

    def delete_objects(self, keys: list[str]) -> int:
        deleted = 0
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            result = self.s3.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": k} for k in chunk], "Quiet": True})
            errors = result.get("Errors") or []
            if errors:
                raise RuntimeError(f"{len(errors)} attachments could not be deleted: {errors[0].get('Code')}")
            deleted += len(chunk)
        return deleted

    # ------------------------------------------------------------ deleting

    def delete_items(self, table: str, items: list[dict]) -> int:
        """Delete items by their pk / sk (in this order: callers put index-bearing items last)."""
        for item in items:
            self.client.delete_item(TableName=table, Key=to_item({"pk": item["pk"], "sk": item["sk"]}))
        return len(items)

    def delete_conversation(self, workspace: str, items: list[dict]) -> int:
        """A conversation partition's items, META last."""
        ordered = sorted(items, key=lambda i: i["sk"] == "META")
        return self.delete_items(self.conversations_table, ordered)

    def delete_ticket(self, ticket: dict) -> int:
        comments = [{"pk": c["pk"], "sk": c["sk"]} for c in ticket.get("comments", [])]
        return self.delete_items(self.tickets_table, [*comments, {"pk": ticket["pk"], "sk": ticket["sk"]}])
