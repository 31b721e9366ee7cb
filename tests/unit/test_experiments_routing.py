"""Bot-first vs. human-first (a routing_mode experiment) over in-memory ports: a new conversation of a
human-first visitor skips the bot and goes to the human queue at once; the exposure is logged when the
routing is decided, once per visitor; a rolled-out winner applies to everyone; a failing experiment store
falls back to the bot."""

from __future__ import annotations

import pytest

from kefu import experiments as ab
from kefu import frames
from kefu.conversations import ConversationService
from kefu.delivery import Delivery
from kefu.models import Agent, Principal
from kefu.router import Router

from .fakes import FakeTimers, MemoryStore, RecordingNotifier

MODES = [{"id": "bot", "weight": 1, "value": "bot_first"}, {"id": "human", "weight": 1, "value": "human_first"}]


class FakeBot:
    def __init__(self, takes=True):
        self._takes = takes
        self.turns = []

    def takes(self, workspace):
        return self._takes

    def on_customer_message(self, conversation, message):
        self.turns.append(conversation.id)


class FakeExperiments:
    def __init__(self, *listed, fail=False):
        self.listed = list(listed)
        self.fail = fail
        self.exposures: dict[tuple[str, str], str] = {}
        self.reads = 0

    def list(self, workspace):
        self.reads += 1
        if self.fail:
            raise RuntimeError("DynamoDB is down")
        return [e for e in self.listed if e.workspace == workspace]

    def expose(self, experiment, visitor_key, variant_id, at, retention_days=None):
        if (experiment.id, visitor_key) in self.exposures:
            return False
        self.exposures[(experiment.id, visitor_key)] = variant_id
        return True


def routing(**kw):
    return ab.start(ab.new_experiment("demo", "bot or human", "routing_mode", MODES, experiment_id="exp_r", **kw))


def visitor_in(experiment, variant_id, start=0):
    return next(f"v{i}" for i in range(start, 10_000) if ab.assign(experiment, f"v{i}").id == variant_id)


def service(experiments, bot=None):
    store, notifier = MemoryStore(), RecordingNotifier()
    store.put_agent(Agent("demo", "alice", "Alice", max_concurrent=5))
    delivery = Delivery(store, notifier, threads=1)
    bot = bot or FakeBot()
    return store, bot, ConversationService(store, delivery, Router(store, delivery, FakeTimers()), bot,
                                           experiments=experiments, experiments_ttl_s=0)


def first_message(svc, customer_id, cmid="m1"):
    who = Principal("demo", "customer", customer_id, "Zhang")
    svc.connect(who, f"c-{customer_id}")
    frame = frames.MessageFrame.model_validate({"action": "message", "clientMessageId": cmid, "text": "在吗"})
    return svc.send_message(who, f"c-{customer_id}", frame)["conversationId"]


def test_human_first_skips_the_bot_and_bot_first_keeps_it():
    experiment = routing()
    store_x = FakeExperiments(experiment)
    store, bot, svc = service(store_x)
    svc.connect(Principal("demo", "agent", "alice", "Alice", agent_role="agent"), "a1")
    human, robot = visitor_in(experiment, "human"), visitor_in(experiment, "bot")
    human_conversation = first_message(svc, human)
    assert store.get_conversation("demo", human_conversation).status != "bot"
    assert store.get_conversation("demo", human_conversation).agent_id == "alice"  # routed at once
    bot_conversation = first_message(svc, robot)
    assert store.get_conversation("demo", bot_conversation).status == "bot"
    assert bot.turns == [bot_conversation]
    assert store_x.exposures == {("exp_r", human): "human", ("exp_r", robot): "bot"}


def test_rolled_out_winner_applies_to_everyone_without_exposure():
    experiment = ab.stop(routing(), winner="human")
    store_x = FakeExperiments(experiment)
    store, bot, svc = service(store_x)
    for customer in (visitor_in(experiment.__class__.from_dict({**experiment.to_dict(), "status": "running",
                                                                "winner": None}), "bot"), "someone"):
        conversation = first_message(svc, customer)
        assert store.get_conversation("demo", conversation).status in ("open", "queued")  # the humans
    assert bot.turns == [] and store_x.exposures == {}


@pytest.mark.parametrize("experiments", [None, FakeExperiments(), FakeExperiments(fail=True),
                                         FakeExperiments(ab.stop(routing()))])
def test_no_routing_experiment_means_the_bot_first(experiments):
    store, bot, svc = service(experiments)
    conversation = first_message(svc, "v1")
    assert store.get_conversation("demo", conversation).status == "bot"


def test_without_a_bot_nobody_is_exposed():
    experiment = routing()
    store_x = FakeExperiments(experiment)
    store, bot, svc = service(store_x, FakeBot(takes=False))
    first_message(svc, visitor_in(experiment, "human"))
    first_message(svc, visitor_in(experiment, "bot"))
    assert store_x.exposures == {} and store_x.reads == 0  # the bot would not take it: no experiment to run


def test_experiments_are_read_at_most_once_per_ttl():
    experiment = routing()
    store_x = FakeExperiments(experiment)
    store, bot, svc = service(store_x)
    svc.experiments_ttl_s = 60
    for i in range(3):
        first_message(svc, f"v{i}")
    assert store_x.reads == 1


def test_routing_mode_picks_the_first_deciding_experiment():
    greeting = ab.start(ab.new_experiment("demo", "g", "greeting", [{"id": "a", "weight": 1, "value": "hi"},
                                                                   {"id": "b", "weight": 1, "value": "yo"}]))
    draft = ab.new_experiment("demo", "d", "routing_mode", MODES, experiment_id="exp_d")
    running = routing()
    assert ab.routing_mode([greeting, draft], "v1") is None
    got = ab.routing_mode([greeting, draft, running], "v1")
    assert got[0] is running and got[1] == ab.assign(running, "v1")
