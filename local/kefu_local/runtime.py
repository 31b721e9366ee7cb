"""Runs the handlers in functions/ in-process, the way Lambda would: one module per function,
imported once (cold start) and reused (warm), each call with a Lambda-like context.

It also keeps the numbers the benchmarks need: invocations and handler CPU time per
function, and AWS requests per service and operation (counted at botocore's client, so
PynamoDB and boto3 calls alike).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import ModuleType

from kefu import schema

from .events import LambdaContext


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.invocations: Counter = Counter()
            self.cpu_ms: Counter = Counter()
            self.errors: Counter = Counter()
            self.aws_requests: Counter = Counter()

    def record_invocation(self, name: str, cpu_ms: float, failed: bool) -> None:
        with self._lock:
            self.invocations[name] += 1
            self.cpu_ms[name] += cpu_ms
            if failed:
                self.errors[name] += 1

    def record_request(self, service: str, operation: str) -> None:
        with self._lock:
            self.aws_requests[f"{service}.{operation}"] += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "invocations": dict(self.invocations),
                "cpu_ms": {k: round(v, 3) for k, v in self.cpu_ms.items()},
                "errors": dict(self.errors),
                "aws_requests": dict(self.aws_requests),
            }


STATS = Stats()
_counting_installed = False


def install_request_counter() -> None:
    """Count every AWS API call made in this process (botocore is under boto3 and PynamoDB)."""
    global _counting_installed
    if _counting_installed:
        return
    from botocore.client import BaseClient

    original = BaseClient._make_api_call

    def counted(self, operation_name, api_params):
        STATS.record_request(self.meta.service_model.service_name, operation_name)
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = counted
    _counting_installed = True


class _PerThread:
    """A data descriptor whose value is per thread (AttributeError in a thread that never set it)."""

    def __init__(self, name: str, values: threading.local):
        self.name, self.values = name, values

    def __get__(self, obj, owner=None):
        try:
            return getattr(self.values, self.name)
        except AttributeError:
            raise AttributeError(self.name) from None

    def __set__(self, obj, value) -> None:
        setattr(self.values, self.name, value)

    def __delete__(self, obj) -> None:
        self.values.__dict__.pop(self.name, None)


def isolate_powertools_requests() -> None:
    """Make Powertools' per-request router state per thread, in this process only.

    Powertools' REST resolver keeps the request on its *class*: resolve() does `BaseRouter.current_event = ...`
    and `BaseRouter.lambda_context = ...`, and every route reads it back through `app.current_event`. On Lambda
    that is safe (one invocation per process at a time), and the deployed code stays as it is. Here every
    function instance runs in a thread of one process sharing one imported Powertools, so two concurrent REST
    requests (two api instances) would read each other's event: a request answered with another's route, body
    or Authorization. An invocation runs start to end in one thread (LambdaRuntime.invoke), so per-thread
    storage gives each the isolation of its own process. `BaseRouter.current_event = x` is an assignment on
    the class, which only a data descriptor of its metaclass intercepts; reads and writes through instances
    (`app.current_event`, Router's delegating setters) find the same descriptor in BaseRouter's own dict. The
    routing context (`app.context`, append_context) is an instance attribute: each instance's own already."""
    try:
        from aws_lambda_powertools.event_handler import api_gateway
    except ImportError:  # no Powertools, nothing shared
        return
    router = api_gateway.BaseRouter
    if getattr(type(router), "_kefu_per_thread", False):
        return
    values = threading.local()
    names = ("current_event", "lambda_context")
    descriptors = {name: _PerThread(name, values) for name in names}
    metaclass = type(router)
    per_thread_meta = type(f"PerThread{metaclass.__name__}", (metaclass,), {"_kefu_per_thread": True, **descriptors})
    for name in names:
        if name in router.__dict__:  # a value left by an earlier resolve in this process
            setattr(values, name, router.__dict__[name])
        setattr(router, name, descriptors[name])  # before the metaclass changes: stored in the class dict
    router.__class__ = per_thread_meta


class HandlerError(Exception):
    pass


class LambdaRuntime:
    """Like Lambda, a function's instance ("container") serves one invocation at a time: concurrent
    invocations get other instances, created on demand (each a fresh import of the handler module, i.e. a
    cold start) and reused afterwards. Handlers may therefore keep per-request state at module level without
    one request seeing another's. State kept in a shared library's class (Powertools' BaseRouter.current_event)
    is made per thread by isolate_powertools_requests."""

    def __init__(self, functions_dir: Path):
        isolate_powertools_requests()  # instances are threads of one process, not processes (see there)
        self.functions_dir = functions_dir
        self._idle: dict[str, list[ModuleType]] = {}
        self._instances: dict[str, int] = {}
        self._lock = threading.Lock()

    def load_all(self) -> None:
        for function in schema.FUNCTIONS:
            self._release(function.name, self._acquire(function.name))

    def _load(self, name: str, instance: int) -> ModuleType:
        path = self.functions_dir / name / "handler.py"
        spec = importlib.util.spec_from_file_location(f"kefu_function_{name}_{instance}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # pydantic resolves the handler's annotations through it
        spec.loader.exec_module(module)
        return module

    def _acquire(self, name: str) -> ModuleType:
        with self._lock:
            idle = self._idle.setdefault(name, [])
            if idle:
                return idle.pop()
            instance = self._instances.get(name, 0)
            self._instances[name] = instance + 1
        return self._load(name, instance)

    def _release(self, name: str, module: ModuleType) -> None:
        with self._lock:
            self._idle[name].append(module)

    def instances(self) -> dict[str, int]:
        """How many instances of each function exist (the local equivalent of concurrent containers)."""
        with self._lock:
            return dict(self._instances)

    def invoke(self, name: str, event: dict):
        """Call the function's handler; exceptions come back as HandlerError (as Lambda reports them)."""
        function = schema.FUNCTIONS_BY_NAME[name]
        module = self._acquire(name)
        context = LambdaContext(name, function.memory_mb, function.timeout_s)
        started = time.thread_time()
        failed = False
        try:
            return module.handler(event, context)
        except Exception as error:
            failed = True
            raise HandlerError(f"{type(error).__name__}: {error}") from error
        finally:
            STATS.record_invocation(name, (time.thread_time() - started) * 1000, failed)
            self._release(name, module)
