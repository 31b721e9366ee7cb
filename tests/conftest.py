"""Fixtures shared by the integration and browser suites: one local stack per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    from kefu_local.stack import LocalStack

    local = LocalStack(port=0, seed=True, log_dir=tmp_path_factory.mktemp("logs"))
    local.start()
    yield local
    local.stop()


@pytest.fixture(scope="session")
def signing_key(stack):
    from kefu_local import config

    return config.signing_key()


@pytest.fixture(scope="session")
def store(stack):
    from kefu import wiring

    return wiring.store()
