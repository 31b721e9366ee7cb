"""The local runtime's isolation of Powertools' class-level request state (kefu_local.runtime): two resolvers (two
function instances) resolving at the same time in two threads each see their own event, deterministically."""

from __future__ import annotations

import threading

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter, Router

from kefu_local import events
from kefu_local.runtime import isolate_powertools_requests


class Context:
    function_name = "api"


def _event(path: str) -> dict:
    return events.rest_request("GET", path, {"Authorization": f"Bearer {path}"}, {}, None, "127.0.0.1",
                               "localhost", "local")


def _instance(barrier: threading.Barrier | None):
    """An api-like module instance: a resolver, and a router included into it (both read the event)."""
    app, router = APIGatewayRestResolver(), Router()

    @app.get("/echo/<name>")
    def echo(name: str) -> dict:
        if barrier is not None:
            barrier.wait(timeout=10)  # both requests are inside resolve() before either reads its event
        return {"name": name, "path": app.current_event.path, "auth": app.current_event.headers["Authorization"],
                "context": app.lambda_context.function_name}

    @router.get("/routed/<name>")
    def routed(name: str) -> dict:
        if barrier is not None:
            barrier.wait(timeout=10)
        return {"name": name, "path": router.current_event.path}

    app.include_router(router)
    return app


def test_concurrent_resolves_in_threads_see_their_own_events():
    isolate_powertools_requests()
    isolate_powertools_requests()  # idempotent
    for prefix in ("/echo/", "/routed/"):
        barrier = threading.Barrier(2)
        apps = [_instance(barrier), _instance(barrier)]
        results: dict[str, dict] = {}

        def call(app, name, prefix=prefix):
            results[name] = app.resolve(_event(prefix + name), Context())

        threads = [threading.Thread(target=call, args=(app, name)) for app, name in zip(apps, ("a", "b"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        for name in ("a", "b"):
            assert results[name]["statusCode"] == 200, results[name]
            body = results[name]["body"]
            assert f'"path":"{prefix}{name}"' in body.replace(" ", ""), (name, body)
            if prefix == "/echo/":
                assert f'"auth":"Bearer{prefix}{name}"' in body.replace(" ", ""), (name, body)


def test_one_thread_still_reads_what_it_set_and_another_thread_sees_nothing_of_it():
    isolate_powertools_requests()
    app = _instance(None)
    assert '"name":"x"' in app.resolve(_event("/echo/x"), Context())["body"].replace(" ", "")
    assert app.current_event.path == "/echo/x" and BaseRouter.current_event.path == "/echo/x"
    seen = []

    def elsewhere():
        try:
            seen.append(BaseRouter.current_event)
        except AttributeError:
            seen.append(None)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert seen == [None]  # as in a fresh process before its first request
