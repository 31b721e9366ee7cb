"""Browser tests: Playwright driving Debian's Chromium (/usr/bin/chromium, installed by the set-up; never a
downloaded browser) against the session's local stack. Screenshots of the main screens are kept in
tests/e2e/artifacts/ (KEFU_E2E_ARTIFACTS moves them)."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

import pytest
from kefu import step_up, tokens
from kefu.models import Agent
from playwright.sync_api import expect

CHROMIUM = os.environ.get("KEFU_CHROMIUM", "/usr/bin/chromium")
# the launch flags that work on these machines (no sandbox as root, no GPU, no background traffic)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        # the test site and kefu are both on loopback here, where on the web both are public: no local-network
        # permission prompt between them
        "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests"]
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("KEFU_E2E_ARTIFACTS", Path(__file__).parent / "artifacts"))


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser):
    """Pages in their own contexts (separate storage: a customer and agents side by side). Page errors and
    console errors are collected; a test fails if a page raised."""
    contexts, errors = [], []

    def make(viewport=None, locale="zh-CN"):
        context = browser.new_context(viewport=viewport or {"width": 1280, "height": 860}, locale=locale)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, errors


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_violations(page, impacts=("serious", "critical")) -> list[dict]:
    """axe-core (from npm) on the page as it is now: the violations of these impacts."""
    if not page.evaluate("() => !!window.axe"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in impacts]


def signed_in(shop, customer_id: str, name: str, tags: tuple[str, ...] = ()) -> tuple[str, str]:
    """(an integrator key of the shop, a visitor token for this customer from /integrations/visitor-tokens):
    what a site's backend does for a signed-in customer."""
    import requests

    key = requests.post(shop.url("api-keys"), json={"name": "site"}, headers=shop.admin, timeout=10).json()["key"]
    token = requests.post(f"{shop.stack.api_url}/integrations/visitor-tokens", headers={"x-api-key": key}, timeout=10,
                          json={"customerId": customer_id, "name": name, "tags": list(tags)}).json()["token"]
    return key, token


class Desk:
    """A workspace with an admin and two agents, and no bot or knowledge base: for the tests that need
    neither (the chat tests' shop trains a model first, which takes long on a loaded machine)."""

    def __init__(self, stack, store, signing_key):
        self.stack, self.key = stack, signing_key
        self.ws = "tk-" + secrets.token_hex(4)
        store.put_workspace(self.ws, "tickets test desk")
        store.put_agent(Agent(self.ws, "admin", "Admin", role="admin"))
        store.put_agent(Agent(self.ws, "agent-1", "Agent One"))
        store.put_agent(Agent(self.ws, "agent-2", "Agent Two"))
        self.admin = {"Authorization": "Bearer " + self.token("agent", "admin")}
        self._authenticators: dict[str, Authenticator] = {}

    def authenticator(self, agent_id: str) -> Authenticator:
        """The agent's enrolled authenticator (enrolled through REST the first time)."""
        if agent_id not in self._authenticators:
            self._authenticators[agent_id] = enrol_totp(self, agent_id)
        return self._authenticators[agent_id]

    def url(self, path: str) -> str:
        return f"{self.stack.api_url}/workspaces/{self.ws}/{path}"

    def token(self, kind: str, subject: str, **kw) -> str:
        return tokens.issue(self.key, kind=kind, workspace=self.ws, subject=subject, **kw)


class Authenticator:
    """An agent's authenticator app: the TOTP secret enrolled through REST (POST /workspaces/{ws}/step-up/totp),
    and its codes (kefu.step_up.totp). A code works once: each code here is of a later time step than the last
    one (the server takes the next step too; past it, this waits like a person for the app's next code)."""

    def __init__(self, secret: str):
        self.secret = secret
        self.last_step = -1

    def code(self) -> str:
        while True:
            current = step_up.time_step()
            step = max(current, self.last_step + 1)
            if step <= current + step_up.DRIFT_STEPS:
                self.last_step = step
                return step_up.totp(self.secret, now=step * step_up.PERIOD_S)
            time.sleep((current + 1) * step_up.PERIOD_S - time.time() + 0.05)

    def wrong_code(self) -> str:
        """A 6-digit code that is none of the codes the server would take now."""
        current = step_up.time_step()
        taken = {step_up.totp(self.secret, now=s * step_up.PERIOD_S) for s in range(current - 2, current + 3)}
        return next(c for c in (f"{n:06d}" for n in range(123456, 1_000_000, 111_111)) if c not in taken)


def enrol_totp(place, agent_id: str) -> Authenticator:
    """Enrol the agent's authenticator in a Desk or a Shop (what the agent does once in the console), through
    REST with the agent's own token."""
    import requests

    answer = requests.post(place.url("step-up/totp"), timeout=10,
                           headers={"Authorization": "Bearer " + place.token("agent", agent_id)})
    assert answer.status_code == 201, answer.text
    return Authenticator(answer.json()["secret"])


def verify_in_console(page, authenticator: Authenticator) -> None:
    """Answer the console's step-up dialog with the authenticator's current code."""
    from playwright.sync_api import expect

    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    page.fill("#su-code", authenticator.code())
    page.click("#su-submit")
    expect(dialog).to_be_hidden()


def open_console(new_page, place, agent_id: str, locale: str = "en-US", viewport=None, accept_dialogs: bool = False):
    """The agent console of `place` (a Desk or a shop: .stack, .token) signed in as this agent, once it is ready."""
    page = new_page(locale=locale, viewport=viewport)
    if accept_dialogs:
        page.on("dialog", lambda dialog: dialog.accept())  # confirm() prompts (start / stop an experiment...)
    page.goto(f"{place.stack.base_url}/agent.html#token={place.token('agent', agent_id)}")
    expect(page.locator("#presence")).to_be_enabled()
    return page


def open_view(page, name: str, title: str) -> None:
    """A console view by its tab's name (shown once the first snapshot gives the role); focus goes to its title."""
    tab = page.get_by_role("button", name=name, exact=True)
    expect(tab).to_be_visible(timeout=20_000)
    tab.click()
    expect(page.locator(title)).to_be_focused()
