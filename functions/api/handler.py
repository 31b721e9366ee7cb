"""REST API for widgets, apps and integrators (Powertools resolver, validated by pydantic)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, Field

from kefu import tokens, wiring
from kefu.errors import KefuError, NotFound, Unauthorized
from kefu.logs import logger

app = APIGatewayRestResolver(enable_validation=True)
store = wiring.store()

STATUS = {"unauthorized": 401, "forbidden": 403, "not_found": 404, "conflict": 409}


class VisitorTokenRequest(BaseModel):
    name: str = Field(default="", max_length=80)


class VisitorToken(BaseModel):
    token: str
    customerId: str
    workspace: str
    expiresIn: int


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


@app.post("/workspaces/<workspace>/visitor-tokens")
def visitor_token(workspace: str, body: VisitorTokenRequest) -> VisitorToken:
    """An anonymous visitor token for the web widget: a fresh customer id in this workspace."""
    if not tokens.WORKSPACE_RE.match(workspace) or not store.workspace_exists(workspace):
        raise NotFound("no such workspace")
    token = tokens.issue(wiring.signing_key(), kind="visitor", workspace=workspace, name=body.name)
    who = tokens.verify(wiring.signing_key(), token)
    return VisitorToken(token=token, customerId=who.id, workspace=workspace, expiresIn=tokens.DEFAULT_TTL_S)


@app.get("/conversations/<conversation_id>/messages")
def messages(
    conversation_id: str,
    afterSeq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict:
    """A page of a conversation's messages after afterSeq, for its customer or its agent."""
    who = _caller()
    conversation = store.get_conversation(who.workspace, conversation_id)
    if conversation is None or not conversation.is_participant(who):
        raise NotFound("no such conversation")
    page = store.messages_after(who.workspace, conversation_id, afterSeq, limit + 1)
    items = [m.public() for m in page[:limit]]
    return {"items": items, "nextAfterSeq": items[-1]["seq"] if len(page) > limit else None}


def _caller():
    header = app.current_event.headers.get("Authorization") or app.current_event.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send Authorization: Bearer <token>")
    return tokens.verify(wiring.signing_key(), token)


@app.exception_handler(KefuError)
def domain_error(error: KefuError) -> Response:
    return _error(STATUS.get(error.code, 400), error.code, error.message, error.details)


@app.exception_handler(RequestValidationError)
def invalid_request(error: RequestValidationError) -> Response:
    details = [
        {"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")} for e in error.errors()
    ]
    return _error(422, "invalid_request", "; ".join(f"{d['field']}: {d['problem']}" for d in details), details)


@app.exception_handler(NotFoundError)
def no_route(_: NotFoundError) -> Response:
    return _error(404, "not_found", "no such route")


def _error(status: int, code: str, message: str, details=None) -> Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return Response(status_code=status, content_type="application/json", body=body)


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    return app.resolve(event, context)
