"""docs/openapi.json: the REST API's OpenAPI 3.1 document, generated from the api function's routes and
pydantic models (Powertools), completed from kefu.schema: how each route authenticates (a user's bearer
token for the public routes, an integrator's API key for the rest) and the one error shape of every
4xx. `kefu openapi` writes it; a test fails when the committed file is stale."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

from kefu import schema

from . import config

DOCUMENT = config.ROOT / "docs" / "openapi.json"
NO_AUTH = {("GET", "/health"), ("POST", "/workspaces/{workspace}/visitor-tokens"), ("GET", "/workspaces/{workspace}/proactive"),
           ("GET", "/workspaces/{workspace}/customer-quick-replies")}
ERRORS = {
    "400": "The request cannot be read",
    "401": "No valid token or API key",
    "403": "The caller's role or kind may not do this",
    "404": "No such resource (also another workspace's ids)",
    "409": "The resource changed meanwhile or is in a state that forbids this",
    "422": "The request is well-formed but its content is refused",
    "429": "Too many requests: the stage's or the API key's throttling, or too many failed step-up codes; retry later",
}
# on the 429s the api function returns itself (error code rate_limited); API Gateway's own throttling and quota
# 429s ({"message": "Too Many Requests"} / "Limit Exceeded") come without it, as on AWS
RETRY_AFTER = {
    "Retry-After": {
        "description": "Whole seconds to wait before retrying (at least 1). Sent with the API's own 429s "
                       "(`rate_limited`, e.g. the step-up lock-out); API Gateway's throttling 429s have none: "
                       "back off and retry.",
        "required": False,
        "schema": {"type": "integer", "minimum": 1},
    },
}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "examples": ["invalid_request"]},
            "message": {"type": "string"},
            "details": {},
        },
    }},
}


def _api_module():
    name = "kefu_function_api"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, config.ROOT / "functions" / "api" / "handler.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def build() -> dict:
    app = _api_module().app
    document = json.loads(app.get_openapi_json_schema(
        title="kefu REST API",
        version="1",
        description=("Widgets, apps and the agent console call the public routes with a kefu bearer token "
                     "(visitor or agent); integrators call the /integrations routes with an API key of one "
                     "workspace. Errors: {\"error\": {\"code\", \"message\", \"details\"}}. See docs/protocol.md."),
        servers=[{"url": "/api", "description": "the local stack"}],
        security_schemes={
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                       "description": "a visitor or agent token"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                       "description": "an integrator key (POST /workspaces/{workspace}/api-keys)"},
        },
    ))
    public = set(schema.REST_PUBLIC_ROUTES)
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    for path, operations in document["paths"].items():
        template = re.sub(r"\{(\w+)\}", r"{\1}", path)
        for method, operation in operations.items():
            route = (method.upper(), template)
            if route in NO_AUTH:
                operation["security"] = []
            elif route in public:
                operation["security"] = [{"bearer": []}]
            else:
                operation["security"] = [{"apiKey": []}]
            operation.setdefault("tags", [_tag(template)])
            responses = operation.setdefault("responses", {})
            for status, description in ERRORS.items():
                responses[status] = {"description": description, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                if status == "429":
                    responses[status]["headers"] = RETRY_AFTER
    return document


def _tag(path: str) -> str:
    if path.startswith(schema.INTEGRATIONS_PREFIX):
        return "integrations"
    parts = [p for p in path.split("/") if p and not p.startswith("{")]
    return parts[1] if len(parts) > 1 and parts[0] == "workspaces" else parts[0]


def render() -> str:
    return json.dumps(build(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def write(path: Path = DOCUMENT) -> bool:
    """Write the document; True when it changed."""
    text = render()
    old = path.read_text(encoding="utf-8") if path.exists() else None
    if old != text:
        path.write_text(text, encoding="utf-8")
    return old != text
