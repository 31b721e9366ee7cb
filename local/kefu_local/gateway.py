"""A local API Gateway: the WebSocket API, its @connections management API, the REST API
and static hosting, on one aiohttp server.

WebSocket semantics follow API Gateway: a REQUEST authorizer on $connect (401 on an
exception, 403 on Deny), $connect may refuse through its status code, route selection on
$request.body.action with $default as the fallback, route responses sent back to the
caller, 128 KB frames, a 10-minute idle timeout and a 2-hour connection limit, and
$disconnect after the socket is gone. boto3's apigatewaymanagementapi client works against
{base}/_aws/ws unchanged (POST to send, GET to describe, DELETE to disconnect, 410 Gone).
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import WSCloseCode, WSMsgType, web

from kefu import schema

from . import events, webbuild
from .api_keys import is_public
from .runtime import STATS, HandlerError, LambdaRuntime

log = logging.getLogger("kefu.gateway")

MANAGEMENT_PREFIX = "/_aws/ws"
SWAGGER_ASSETS = {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png"}
SWAGGER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kefu REST API</title>
<link rel="stylesheet" href="/api-docs/assets/swagger-ui.css"><link rel="icon" href="/api-docs/assets/favicon-32x32.png">
</head><body><div id="swagger-ui"></div>
<script src="/api-docs/assets/swagger-ui-bundle.js"></script>
<script src="/api-docs/assets/swagger-ui-standalone-preset.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "/api-docs/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout"});
</script></body></html>
"""
TWO_WAY = {key for key in schema.WS_ROUTES if key not in ("$connect", "$disconnect")}


@dataclass
class Connection:
    id: str
    socket: web.WebSocketResponse
    source_ip: str
    user_agent: str
    authorizer: dict
    connected_at: float = field(default_factory=time.time)
    last_active: float = field(default_factory=time.time)

    def describe(self) -> dict:
        return {
            "connectionId": self.id,
            "connectedAt": int(self.connected_at * 1000),
            "sourceIp": self.source_ip,
            "userAgent": self.user_agent,
            "authorizer": self.authorizer,
        }


class Gateway:
    def __init__(
        self,
        runtime: LambdaRuntime,
        web_dir: Path,
        *,
        idle_timeout_s: float = schema.WS_IDLE_TIMEOUT_S,
        max_connection_s: float = schema.WS_MAX_CONNECTION_S,
        workers: int = 32,
        extra_routes=None,
        api_keys=None,
        site: webbuild.Site | None = None,
    ):
        self.runtime = runtime
        self.site = site  # the built web/ to serve (None: serve web_dir as it is)
        self.api_keys = api_keys  # LocalApiKeys: API Gateway's key check on the REST API (None: no check)
        self.web_dir = web_dir.resolve()
        self.idle_timeout_s = idle_timeout_s
        self.max_connection_s = max_connection_s
        self.connections: dict[str, Connection] = {}
        # fault injection for tests: seconds a PostToConnection to that connection takes (a slow client)
        self.delays: dict[str, float] = {}
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda")
        self.app = web.Application(client_max_size=10 * 1024 * 1024)
        self.app.router.add_get("/ws", self.websocket)
        self.app.router.add_route("*", MANAGEMENT_PREFIX + "/@connections/{connection_id}", self.management)
        self.app.router.add_route("*", "/api/{path:[\\s\\S]*}", self.rest)
        self.app.router.add_get("/_local/stats", self.stats)
        self.app.router.add_post("/_local/drop", self.drop)
        self.app.router.add_get("/api-docs", self.api_docs)
        self.app.router.add_get("/api-docs/openapi.json", self.openapi_document)
        self.app.router.add_get("/api-docs/assets/{name}", self.api_docs_asset)
        for method, path, handler in extra_routes or ():
            self.app.router.add_route(method, path, handler)
        self.app.router.add_get("/{path:.*}", self.static)
        self.app.on_startup.append(self._start_reaper)
        self.app.on_shutdown.append(self._close_all)

    async def _invoke(self, name: str, event: dict):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.runtime.invoke, name, event)

    # ------------------------------------------------------------ WebSocket API

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        domain = request.host
        headers = {k: v for k, v in request.headers.items()}
        query = {k: v for k, v in request.query.items()}
        conn = {
            "connectionId": events.new_connection_id(),
            "connectedAt": int(time.time() * 1000),
            "sourceIp": request.remote or "127.0.0.1",
            "userAgent": request.headers.get("User-Agent", ""),
        }
        # the authorizer decides first; no valid token, no connection
        try:
            policy = await self._invoke(
                schema.WS_AUTHORIZER, events.ws_authorizer_request(conn, headers, query, domain, schema.WS_STAGE)
            )
        except HandlerError as error:
            status = 401 if "Unauthorized" in str(error) else 500
            return web.json_response({"message": "Unauthorized" if status == 401 else "Internal server error"}, status=status)
        if not _allows(policy):
            return web.json_response({"message": "Forbidden"}, status=403)
        authorizer = dict(policy.get("context") or {})
        authorizer["principalId"] = policy.get("principalId", "")
        authorizer["integrationLatency"] = 0
        conn["authorizer"] = authorizer

        try:
            result = await self._invoke(
                schema.WS_ROUTES["$connect"], events.ws_connect(conn, headers, query, domain, schema.WS_STAGE)
            )
            status = int((result or {}).get("statusCode", 200))
        except HandlerError:
            status = 500
        if not 200 <= status < 300:
            return web.json_response({"message": "Forbidden" if status == 403 else "Connection refused"}, status=status)

        socket = web.WebSocketResponse(max_msg_size=schema.WS_MAX_FRAME_BYTES, autoping=True, heartbeat=None)
        await socket.prepare(request)
        connection = Connection(conn["connectionId"], socket, conn["sourceIp"], conn["userAgent"], authorizer,
                                connected_at=conn["connectedAt"] / 1000)
        self.connections[connection.id] = connection
        close_status, reason = 1000, "Client closed the connection"
        pending: set[asyncio.Task] = set()
        try:
            async for message in socket:
                connection.last_active = time.time()
                if message.type == WSMsgType.TEXT:
                    task = asyncio.create_task(self._on_frame(connection, message.data, domain))
                elif message.type == WSMsgType.BINARY:
                    task = asyncio.create_task(self._on_frame(connection, message.data, domain, binary=True))
                else:
                    continue
                pending.add(task)
                task.add_done_callback(pending.discard)
            if socket.close_code == WSCloseCode.MESSAGE_TOO_BIG:
                close_status, reason = 1009, "Message too big"
            elif socket.close_code:
                close_status = int(socket.close_code)
        finally:
            self.connections.pop(connection.id, None)
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            try:
                await self._invoke(
                    schema.WS_ROUTES["$disconnect"],
                    events.ws_disconnect(conn, close_status, reason, domain, schema.WS_STAGE),
                )
            except HandlerError as error:
                log.warning("$disconnect failed: %s", error)
        return socket

    async def _on_frame(self, connection: Connection, data, domain: str, *, binary: bool = False) -> None:
        if binary:
            import base64

            route_key, body = "$default", base64.b64encode(data).decode()
        else:
            route_key, body = _select_route(data), data
        event = events.ws_message(connection.describe(), route_key, body, domain, schema.WS_STAGE, binary=binary)
        try:
            result = await self._invoke(schema.WS_ROUTES[route_key], event)
        except HandlerError:
            reply = json.dumps({"message": "Internal server error", "connectionId": connection.id,
                                "requestId": event["requestContext"]["requestId"]})
        else:
            if route_key not in TWO_WAY or not isinstance(result, dict) or result.get("body") is None:
                return
            reply = result["body"] if isinstance(result["body"], str) else json.dumps(result["body"])
        if not connection.socket.closed:
            await connection.socket.send_str(reply)

    async def _start_reaper(self, app: web.Application) -> None:
        async def reap() -> None:
            while True:
                await asyncio.sleep(min(5.0, self.idle_timeout_s / 4))
                now = time.time()
                for connection in list(self.connections.values()):
                    if now - connection.last_active > self.idle_timeout_s:
                        await connection.socket.close(code=1001, message=b"Going away")
                    elif now - connection.connected_at > self.max_connection_s:
                        await connection.socket.close(code=1001, message=b"Going away")

        app["reaper"] = asyncio.create_task(reap())

    async def _close_all(self, app: web.Application) -> None:
        app["reaper"].cancel()
        for connection in list(self.connections.values()):
            await connection.socket.close(code=1001, message=b"Server shutting down")

    # ------------------------------------------------------------ @connections

    async def management(self, request: web.Request) -> web.Response:
        connection = self.connections.get(request.match_info["connection_id"])
        if connection is None or connection.socket.closed:
            return _aws_error(410, "GoneException", None)
        if request.method == "POST":
            data = await request.read()
            if len(data) > schema.WS_MAX_FRAME_BYTES:
                return _aws_error(413, "PayloadTooLargeException", "Message too long")
            if connection.id in self.delays:
                await asyncio.sleep(self.delays[connection.id])
            try:
                await connection.socket.send_str(data.decode("utf-8"))
            except UnicodeDecodeError:
                await connection.socket.send_bytes(data)
            except ConnectionResetError:
                return _aws_error(410, "GoneException", None)
            return web.Response(status=200)
        if request.method == "GET":
            return web.json_response({
                "connectedAt": _iso(connection.connected_at),
                "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
                "lastActiveAt": _iso(connection.last_active),
            })
        if request.method == "DELETE":
            await connection.socket.close(code=1000, message=b"")
            return web.Response(status=204)
        return _aws_error(405, "MethodNotAllowed", "use POST, GET or DELETE")

    # ------------------------------------------------------------ REST API

    async def rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        query: dict[str, list[str]] = {}
        for key, value in request.query.items():
            query.setdefault(key, []).append(value)
        body = await request.read()
        event = events.rest_request(request.method, path, dict(request.headers), query, body or None,
                                    request.remote or "127.0.0.1", request.host, schema.REST_STAGE)
        if self.api_keys is not None and not is_public(request.method, path):
            value = request.headers.get("x-api-key")
            key_id = await asyncio.get_running_loop().run_in_executor(self.executor, self.api_keys.key_id, value)
            if key_id is None:
                return web.json_response({"message": "Forbidden"}, status=403)
            event["requestContext"]["identity"].update({"apiKey": value, "apiKeyId": key_id})
        try:
            result = await self._invoke(schema.REST_FUNCTION, event)
        except HandlerError:
            return web.json_response({"message": "Internal server error"}, status=502)
        headers = dict(result.get("headers") or {})
        for key, values in (result.get("multiValueHeaders") or {}).items():
            headers[key] = ", ".join(values)
        payload = result.get("body") or ""
        if result.get("isBase64Encoded"):
            import base64

            payload = base64.b64decode(payload)
        return web.Response(status=int(result.get("statusCode", 200)), body=payload, headers=headers)

    # ------------------------------------------------------------ Swagger UI (no CDN: swagger-ui-dist from npm)

    async def api_docs(self, request: web.Request) -> web.Response:
        return web.Response(text=SWAGGER_PAGE, content_type="text/html")

    async def openapi_document(self, request: web.Request) -> web.Response:
        path = self.web_dir.parent / "docs" / "openapi.json"
        if not path.is_file():
            raise web.HTTPNotFound(text="docs/openapi.json is missing: run `kefu openapi`")
        return web.Response(body=path.read_bytes(), content_type="application/json")

    async def api_docs_asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in SWAGGER_ASSETS:
            raise web.HTTPNotFound()
        path = self.web_dir.parent / "node_modules" / "swagger-ui-dist" / name
        if not path.is_file():
            raise web.HTTPNotFound(text="swagger-ui-dist is not installed: run `make setup`")
        return web.FileResponse(path, headers={"Cache-Control": "max-age=3600"})

    # ------------------------------------------------------------ static web and stats

    async def static(self, request: web.Request) -> web.StreamResponse:
        """The built web/ (see webbuild): hashed assets are immutable, pages, widget.js and the manifest are
        revalidated (no-cache; FileResponse answers If-None-Match / If-Modified-Since with 304); anything
        else, including an asset name of another build, is 404. Without a site, web_dir as it is."""
        if self.site is not None:
            found = self.site.lookup(request.match_info["path"])
            if found is None:
                raise web.HTTPNotFound()
            target, cache_control = found
            return web.FileResponse(target, headers={"Content-Type": webbuild.content_type(target.name),
                                                     "Cache-Control": cache_control})
        relative = request.match_info["path"] or "index.html"
        target = (self.web_dir / relative).resolve()
        if target.is_dir():
            target = target / "index.html"
        if self.web_dir not in target.parents or not target.is_file():
            raise web.HTTPNotFound()
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return web.FileResponse(target, headers={"Content-Type": content_type, "Cache-Control": "no-cache"})

    async def drop(self, request: web.Request) -> web.Response:
        """Fault injection for tests: cut the TCP connection under matching sockets without a close frame
        (the client sees 1006, as when a network drops). Query: workspace, role, userId (all optional)."""
        wanted = {k: request.query[k] for k in ("workspace", "role", "userId") if k in request.query}
        dropped = []
        for connection in list(self.connections.values()):
            if all(connection.authorizer.get(k) == v for k, v in wanted.items()):
                transport = connection.socket._req.transport if connection.socket._req else None
                if transport is not None:
                    transport.abort()
                    dropped.append(connection.id)
        return web.json_response({"dropped": dropped})

    async def stats(self, request: web.Request) -> web.Response:
        if request.query.get("reset"):
            STATS.reset()
        snapshot = STATS.snapshot()
        snapshot["connections"] = len(self.connections)
        return web.json_response(snapshot)


def _select_route(body: str) -> str:
    """Route selection expression $request.body.action; anything unmatched goes to $default."""
    try:
        action = json.loads(body).get("action")
    except (ValueError, AttributeError):
        return "$default"
    if isinstance(action, str) and action in schema.WS_ROUTES and not action.startswith("$"):
        return action
    return "$default"


def _allows(policy) -> bool:
    try:
        statements = policy["policyDocument"]["Statement"]
    except (TypeError, KeyError):
        return False
    return bool(statements) and all(s.get("Effect") == "Allow" for s in statements)


def _aws_error(status: int, error_type: str, message: str | None) -> web.Response:
    return web.json_response({"message": message}, status=status, headers={"x-amzn-ErrorType": error_type})


def _iso(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s)) + f".{int(epoch_s * 1000) % 1000:03d}Z"
