"""The whole local stack in one process tree: moto server and osmem-server as children, the
gateway and the stream pollers in this process. Stopping it (or killing this process) stops
everything."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path

import boto3

from kefu import ratelimit, schema

from . import config, webbuild
from .api_keys import LocalApiKeys
from .gateway import Gateway
from .queues import QueuePoller, create_queues
from .runtime import STATS, LambdaRuntime, install_request_counter
from .services import (LOCAL_CREDENTIALS, MotoServer, SearchServer, create_buckets, create_escalation, create_tables,
                       free_port)
from .streams import StreamPoller, create_stream_dlqs

log = logging.getLogger("kefu.local")


class LocalStack:
    def __init__(self, host: str = "127.0.0.1", port: int = 8000, *, seed: bool = True,
                 idle_timeout_s: float = schema.WS_IDLE_TIMEOUT_S, log_dir: Path | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.seed = seed
        self.idle_timeout_s = idle_timeout_s
        self.log_dir = log_dir or config.home() / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.moto = MotoServer(host="127.0.0.1", log_file=self.log_dir / "moto.log")
        self.search = SearchServer()
        self.pollers: list[StreamPoller | QueuePoller] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner = None
        self._thread: threading.Thread | None = None
        self.gateway: Gateway | None = None
        self.site: webbuild.Site | None = None

    # URLs
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api"

    def urls(self) -> dict:
        return {
            "websocket": self.ws_url,
            "rest": self.api_url + "/",
            "web": self.base_url + "/",
            "customer": self.base_url + "/customer.html",
            "agent": self.base_url + "/agent.html",
            "api_docs": self.base_url + "/api-docs",
            "dynamodb": self.moto.url,
            "opensearch": self.search.url,
        }

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.moto.url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        # web/ as it is deployed: built first (a broken reference fails fast), served with the built names and
        # cache headers, rebuilt when web/ changes; builds are shared with other processes of this checkout
        self.site = webbuild.Site(config.ROOT / "web", config.home() / "web-build")
        self.site.refresh()
        self.moto.start()
        self.search.start()
        os.environ.update(LOCAL_CREDENTIALS)
        os.environ.update({
            "AWS_ENDPOINT_URL": self.moto.url,
            schema.ENV_WS_CALLBACK_URL: f"{self.base_url}/_aws/ws",
            schema.ENV_JWT_SECRET_ID: schema.LOCAL_JWT_SECRET_NAME,
            "KEFU_OPENSEARCH_URL": self.search.url,
            "POWERTOOLS_SERVICE_NAME": "kefu",
            # no CloudWatch here: EMF lines would only mix into stdout (and the benches' JSON)
            "POWERTOOLS_METRICS_DISABLED": "true",
            schema.ENV_WEBHOOKS_ALLOW_PRIVATE: "1",  # local subscribers listen on loopback
            schema.ENV_RATE_LIMITS: os.environ.get(schema.ENV_RATE_LIMITS, ratelimit.LOCAL_STACK_LIMITS),
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
            **{table.env_var: table.local_name for table in schema.TABLES.values()},
            **{bucket.env_var: bucket.local_name for bucket in schema.BUCKETS.values()},
        })
        dynamodb = self.client("dynamodb")
        create_tables(dynamodb)
        secrets = self.client("secretsmanager")
        secrets.create_secret(Name=schema.LOCAL_JWT_SECRET_NAME, SecretString=config.signing_key())
        kms = self.client("kms")  # the PII key (kefu.pii): a symmetric key as on AWS, found by its alias
        kms.create_alias(AliasName=schema.LOCAL_PII_KEY_ALIAS, TargetKeyId=kms.create_key(
            Description="kefu local: personal data masked out of stored messages")["KeyMetadata"]["KeyId"])
        os.environ[schema.ENV_PII_KEY_ID] = schema.LOCAL_PII_KEY_ALIAS
        create_buckets(self.client("s3"), [self.base_url, f"http://localhost:{self.port}"])
        sqs = self.client("sqs")
        self.queue_urls = create_queues(sqs)
        os.environ.update({schema.QUEUES[q].env_var: url for q, url in self.queue_urls.items()})
        self.stream_dlq_urls = create_stream_dlqs(sqs)  # function name -> its on-failure destination
        self.escalation_arn, self.alert_topic_arn = create_escalation(self.client("stepfunctions"), self.client("sns"))
        os.environ[schema.ENV_ESCALATION_ARN] = self.escalation_arn
        apigateway = self.client("apigateway")
        self.usage_plan_id = apigateway.create_usage_plan(name=schema.LOCAL_USAGE_PLAN_NAME)["id"]
        os.environ[schema.ENV_USAGE_PLAN_NAME] = schema.LOCAL_USAGE_PLAN_NAME

        install_request_counter()
        runtime = LambdaRuntime(config.ROOT / "functions")
        runtime.load_all()
        _warm_table_clients()
        if self.seed:
            from kefu import wiring

            from .seed import seed_demo

            seed_demo(wiring.store(), wiring.knowledge_store())
        self.gateway = Gateway(runtime, config.ROOT / "web", idle_timeout_s=self.idle_timeout_s,
                               api_keys=LocalApiKeys(apigateway, self.usage_plan_id), site=self.site,
                               extra_routes=[("GET", "/_local/demo-agents", _demo_agents)] if self.seed else None)
        self._serve()
        streams = self.client("dynamodbstreams")
        for function in schema.FUNCTIONS:
            if function.stream_of:
                poller = StreamPoller(runtime, function, dynamodb, streams, sqs=self.client("sqs"),
                                      dlq_url=self.stream_dlq_urls[function.name])
                poller.start()
                self.pollers.append(poller)
            if function.consumes:
                poller = QueuePoller(runtime, function, sqs, self.queue_urls[function.consumes])
                poller.start()
                self.pollers.append(poller)
        STATS.reset()

    def _serve(self) -> None:
        from aiohttp import web

        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._runner = web.AppRunner(self.gateway.app, handle_signals=False, access_log=None)
                loop.run_until_complete(self._runner.setup())
                site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
                loop.run_until_complete(site.start())
            except BaseException as error:
                failure.append(error)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="gateway", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise RuntimeError(f"gateway could not listen on {self.host}:{self.port}: {failure[0]}")

    def stop(self) -> None:
        for poller in self.pollers:
            poller.stop()
        if self._loop is not None and self._runner is not None:
            future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            try:
                future.result(15)
            except Exception as error:
                log.warning("gateway shutdown: %s", error)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None
        if self.gateway is not None:
            self.gateway.executor.shutdown(wait=False, cancel_futures=True)
        self.search.stop()
        self.moto.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _warm_table_clients() -> None:
    """PynamoDB builds one botocore client per model class on first use, and a burst of threads
    hitting a fresh class all build their own (~50 ms of CPU each). A Lambda container serves one
    request at a time and never sees that; the in-process gateway would, so build them now."""
    from pynamodb.models import Model

    from kefu.adapters import dynamodb, knowledge_store

    for module in (dynamodb, knowledge_store):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Model) and value is not Model:
                value._get_connection().connection.client  # noqa: B018 - creating it is the point


async def _demo_agents(request):
    """The console's sign-in screen on the local stack: the demo workspace's agents, each with a fresh token
    (what an integrator's sign-on gets from POST /integrations/agent-tokens on AWS). Local only: the
    deployed stack has no such route."""
    from aiohttp import web
    from kefu import tokens

    from .seed import DEMO_AGENTS

    return web.json_response({"agents": [
        {"agentId": a.id, "name": a.name, "role": a.role, "workspace": a.workspace,
         "token": tokens.issue(config.signing_key(), kind="agent", workspace=a.workspace, subject=a.id, name=a.name)}
        for a in DEMO_AGENTS]})
