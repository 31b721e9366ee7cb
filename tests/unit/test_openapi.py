"""docs/openapi.json is generated from the api function's routes: it must be current, and it must say
how every route authenticates and what its errors look like."""

from __future__ import annotations

import json

from kefu import schema
from kefu_local import openapi


def test_the_committed_document_is_current():
    committed = openapi.DOCUMENT.read_text(encoding="utf-8")
    assert committed == openapi.render(), "docs/openapi.json is stale: run `kefu openapi` and commit it"


def test_every_route_has_its_security_and_the_error_shape():
    document = json.loads(openapi.render())
    assert document["openapi"].startswith("3.1")
    routes = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    assert set(schema.REST_PUBLIC_ROUTES) <= routes  # every public route is documented
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            security = operation["security"]
            if path.startswith(schema.INTEGRATIONS_PREFIX):
                assert security == [{"apiKey": []}], path
            elif (method.upper(), path) in openapi.NO_AUTH:
                assert security == [], path
            else:
                assert security == [{"bearer": []}], path
            for status in ("401", "404", "422"):
                assert operation["responses"][status]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"}, (path, method)
    assert "HTTPValidationError" not in document["components"]["schemas"]  # ours is the only error shape


def test_every_429_documents_retry_after():
    """The API's own 429s (rate_limited) carry Retry-After; API Gateway's throttling 429s do not, so optional."""
    document = json.loads(openapi.render())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            too_many = operation["responses"]["429"]
            assert too_many["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}, (path, method)
            assert too_many["headers"]["Retry-After"]["required"] is False
            assert too_many["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
