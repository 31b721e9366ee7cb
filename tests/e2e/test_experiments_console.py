"""The console's experiments view (console-experiments.js) in a real browser (issue 7): an admin creates an
experiment through the form (checked in the page, the API's 422 shown field by field), starts it; visitors of
the REST API (visitor tokens, assignments with ?expose=, business events) produce exposures and conversions;
the results table shows their numbers, the lift, the interval, the p-value and the verdict; stop and roll-out
work, a stale action (409) reloads and says so; Chinese labels; axe-core; supervisors read, agents do not see it."""

from __future__ import annotations

import json

import pytest
import requests
from playwright.sync_api import expect

from kefu import experiments as ab
from kefu.models import Agent

from .conftest import Desk, axe_violations, open_console, open_view, screenshot

# exposures and conversions per variant the test produces: "warm" is significantly better, "short" is not
PLAN = {"control": (20, 2), "warm": (20, 9), "short": (20, 3)}
VALUES = {"control": "您好，有什么可以帮您？", "warm": "欢迎光临！今天想找点什么？", "short": "在的～"}


@pytest.fixture(scope="module")
def shop(stack, store, signing_key):
    desk = Desk(stack, store, signing_key)
    store.put_agent(Agent(desk.ws, "sue", "Sue", role="supervisor"))
    return desk


def open_experiments(page, name="Experiments"):
    open_view(page, name, "#ex-title")


# ---------------------------------------------------------------- what the page should show (its formats)


def signed(x: float, digits: int = 1) -> str:
    return f"{'+' if x > 0 else '-' if x < 0 else '±'}{abs(x):.{digits}f}"


def expected_row(variant: str) -> dict[str, str]:
    n, c = PLAN[variant]
    cn, cc = PLAN["control"]
    row = {"exposed": str(n), "conversions": str(c), "rate": f"{100 * c / n:.1f}%"}
    if variant == "control":
        return {**row, "lift": "—", "diff": "—", "p": "—", "verdict": "Control"}
    cmp = ab.compare(cc, cn, c, n)
    p = "< 0.001" if cmp.p_value < 0.001 else f"{cmp.p_value:.3f}"
    diff = f"{signed(cmp.diff * 100)} pp ({signed(cmp.ci95[0] * 100)} to {signed(cmp.ci95[1] * 100)})"
    verdict = ("Significant: better than the control" if cmp.p_value < 0.05 and cmp.diff > 0
               else "Not significant yet")
    return {**row, "lift": f"{signed(cmp.lift * 100)}%", "diff": diff, "p": p, "verdict": verdict}


def cells(page, variant: str) -> dict[str, str]:
    row = page.locator(f"#view-experiments tr[data-variant='{variant}']")
    return {col: row.locator(f"td[data-col='{col}']").inner_text().strip()
            for col in ("exposed", "conversions", "rate", "lift", "diff", "p", "verdict")}


# ---------------------------------------------------------------- visitors, through the REST API


def produce(shop, experiment: dict) -> None:
    """Anonymous visitors (POST /visitor-tokens) exposed (GET /experiments/assignments?expose=) until every
    variant has its exposures of PLAN; the first ones of each variant place an order (POST /events)."""
    exp = ab.Experiment.from_dict(experiment)
    exposed = {v: [] for v in PLAN}
    for _ in range(400):
        if all(len(exposed[v]) == PLAN[v][0] for v in PLAN):
            break
        minted = requests.post(shop.url("visitor-tokens"), json={}, timeout=10)
        assert minted.status_code == 200, minted.text
        visitor = minted.json()
        variant = ab.assign(exp, visitor["customerId"]).id  # assignment is a pure function of the ids
        if len(exposed[variant]) == PLAN[variant][0]:
            continue
        auth = {"Authorization": f"Bearer {visitor['token']}"}
        shown = requests.get(shop.url("experiments/assignments"), params={"expose": exp.id}, headers=auth, timeout=10)
        assert shown.status_code == 200, shown.text
        mine = next(a for a in shown.json()["assignments"] if a["experimentId"] == exp.id)
        assert mine["variantId"] == variant and mine["exposed"] is True, mine
        exposed[variant].append(auth)
    assert all(len(exposed[v]) == PLAN[v][0] for v in PLAN), {v: len(x) for v, x in exposed.items()}
    for variant, (_, conversions) in PLAN.items():
        for i, auth in enumerate(exposed[variant][:conversions]):
            event = requests.post(shop.url("events"), json={"eventId": f"order-{variant}-{i}", "type": "order_placed",
                                                            "value": 99}, headers=auth, timeout=10)
            assert event.status_code == 200 and event.json()["experiments"] == [exp.id], event.text


def test_an_admin_creates_runs_and_rolls_out_an_experiment(new_page, shop):
    page = open_console(new_page, shop, accept_dialogs=True, agent_id="admin")
    open_experiments(page)
    view = page.locator("#view-experiments")
    expect(view.get_by_role("status").first).to_have_text("No experiments yet")

    # checked in the page: a missing name and a bad variant id are shown, field by field
    page.fill("#ex-v1-id", "has space")
    page.click("#ex-create")
    errors = page.locator("#ex-errors")
    expect(errors).to_be_focused()
    expect(errors).to_contain_text("Please fix 4 problem(s):")
    expect(errors).to_contain_text("Name: 1 to 120 characters")
    expect(errors).to_contain_text("Variant 2 id: 1 to 32 letters, digits or _ . -")
    expect(errors).to_contain_text("Variant 1 greeting: 1 to 500 characters")
    expect(errors).to_contain_text("Variant 2 greeting: 1 to 500 characters")
    expect(page.locator("#ex-name")).to_have_attribute("aria-invalid", "true")
    errors.get_by_role("button", name="Variant 2 id: 1 to 32 letters, digits or _ . -").click()
    expect(page.locator("#ex-v1-id")).to_be_focused()

    page.fill("#ex-name", "Greeting wording")
    expect(page.locator("#ex-kind")).to_have_value("greeting")
    page.fill("#ex-v1-id", "warm")
    page.click("#ex-add-variant")
    page.fill("#ex-v2-id", "short")
    for i, variant in enumerate(PLAN):
        page.fill(f"#ex-v{i}-value", VALUES[variant])
    expect(page.locator("#ex-add-variant")).to_be_enabled()

    # what the API refuses (here: a weight the page would not send, changed on the way) is shown as it says
    def tamper(route):
        if route.request.method != "POST":
            return route.continue_()
        body = json.loads(route.request.post_data)
        body["variants"][1]["weight"] = 0
        route.fulfill(response=route.fetch(post_data=json.dumps(body)))

    page.route("**/experiments", tamper)
    page.click("#ex-create")
    expect(errors).to_contain_text("The server refused the experiment (invalid_request):")
    expect(errors).to_contain_text("body.variants.1.weight")
    expect(page.locator("#ex-v1-weight")).to_have_attribute("aria-invalid", "true")
    page.unroute("**/experiments", tamper)
    assert requests.get(shop.url("experiments"), headers=shop.admin, timeout=10).json()["items"] == []

    page.click("#ex-create")
    expect(page.locator("#ex-detail-title")).to_have_text("Greeting wording")
    expect(page.locator(".ex-message")).to_contain_text("Created “Greeting wording” (a draft)")
    expect(page.locator("#ex-status")).to_have_text("Draft")
    listed = requests.get(shop.url("experiments"), headers=shop.admin, timeout=10).json()["items"]
    assert [(e["name"], e["kind"], e["status"]) for e in listed] == [("Greeting wording", "greeting", "draft")]
    assert [(v["id"], v["weight"], v["value"]) for v in listed[0]["variants"]] == \
        [(v, 50, VALUES[v]) for v in PLAN]
    assert listed[0]["attributionWindowSeconds"] == 24 * 3600
    eid = listed[0]["experimentId"]

    page.click("#ex-start")
    expect(page.locator(".ex-message")).to_have_text("The experiment is now: Running")
    expect(page.locator("#ex-status")).to_have_text("Running")
    expect(page.locator("#ex-stop")).to_be_visible()

    running = requests.get(shop.url(f"experiments/{eid}"), headers=shop.admin, timeout=10).json()
    produce(shop, running)
    page.click("#ex-refresh")
    expect(page.locator("tr[data-variant='short'] td[data-col='exposed']")).to_have_text("20")
    for variant in PLAN:
        assert cells(page, variant) == expected_row(variant), variant
    expect(page.locator("tr[data-variant='warm']")).to_have_attribute("data-verdict", "better")
    expect(page.locator("tr[data-variant='short']")).to_have_attribute("data-verdict", "notYet")
    expect(page.locator("#ex-winner")).to_have_value("warm")  # the significant one is suggested
    screenshot(page, "console-experiment-results")
    assert axe_violations(page) == []

    # stop (no winner: the defaults again), then roll out the winner
    page.click("#ex-stop")
    expect(page.locator(".ex-message")).to_have_text("The experiment is now: Stopped")
    expect(page.locator("#ex-status")).to_have_text("Stopped")
    expect(page.locator("#ex-stop")).to_have_count(0)
    page.click("#ex-rollout")
    expect(page.locator(".ex-message")).to_have_text(
        "The experiment is stopped and variant “warm” is rolled out to every visitor")
    expect(page.locator(".ex-rolled")).to_have_text("Variant “warm” is rolled out to every visitor.")
    expect(page.locator("#ex-rollout")).to_have_count(0)
    newcomer = requests.post(shop.url("visitor-tokens"), json={}, timeout=10).json()
    got = requests.get(shop.url("experiments/assignments"), timeout=10,
                       headers={"Authorization": f"Bearer {newcomer['token']}"}).json()["assignments"]
    assert [(a["variantId"], a["rolledOut"]) for a in got] == [("warm", True)]
    for variant in PLAN:  # the numbers stay
        assert cells(page, variant) == expected_row(variant), variant

    # Chinese
    page.get_by_role("button", name="中文").click()
    expect(page.locator("#view-experiments thead")).to_contain_text("转化率")
    expect(page.locator("#view-experiments thead")).to_contain_text("相对对照组提升")
    expect(page.locator("tr[data-variant='warm'] td[data-col='verdict']")).to_have_text("显著优于对照组")
    expect(page.locator("tr[data-variant='short'] td[data-col='verdict']")).to_have_text("尚不显著")
    expect(page.locator("tr[data-variant='control'] td[data-col='verdict']")).to_have_text("对照组")
    expect(page.locator("tr[data-variant='warm'] td[data-col='diff']")).to_contain_text("个百分点")
    expect(page.locator("#ex-status")).to_have_text("已停止")
    expect(page.get_by_role("button", name="实验", exact=True)).to_be_visible()
    screenshot(page, "console-experiment-results-zh")
    assert axe_violations(page) == []
    page.click("#ex-back")
    row = page.locator("#view-experiments tbody tr", has_text="Greeting wording")
    expect(row).to_contain_text("欢迎语")
    expect(row).to_contain_text("已停止 · 已全量：warm")
    expect(page.get_by_role("button", name="Greeting wording")).to_be_focused()
    expect(page.locator("#ex-new-title")).to_have_text("新建实验")
    screenshot(page, "console-experiments-zh")
    assert axe_violations(page) == []


def test_a_stale_action_reloads_and_supervisors_only_read(new_page, shop):
    created = requests.post(shop.url("experiments"), headers=shop.admin, timeout=10, json={
        "name": "Invitation delay", "kind": "proactive_delay",
        "variants": [{"id": "now", "weight": 1, "value": 0}, {"id": "later", "weight": 3, "value": 20}]})
    assert created.status_code == 201, created.text
    eid = created.json()["experimentId"]

    page = open_console(new_page, shop, accept_dialogs=True, agent_id="admin")
    open_experiments(page)
    page.get_by_role("button", name="Invitation delay").click()
    expect(page.locator("#ex-detail-title")).to_be_focused()
    expect(page.locator("#ex-status")).to_have_text("Draft")
    expect(page.locator("tr[data-variant='later'] td").nth(1)).to_have_text("75%")  # traffic share of the weights
    expect(page.locator("tr[data-variant='later'] .ex-value")).to_have_text("20 s")
    expect(page.locator("tr[data-variant='later'] td[data-col='verdict']")).to_have_text("Not enough data")
    # someone else starts it meanwhile: the page's Start gets 409, reloads and says so
    assert requests.post(shop.url(f"experiments/{eid}/start"), headers=shop.admin, timeout=10).status_code == 200
    page.click("#ex-start")
    message = page.locator(".ex-message")
    expect(message).to_contain_text("The experiment had changed meanwhile")
    expect(message).to_contain_text("its status is now: Running")
    expect(message).to_be_focused()
    expect(page.locator("#ex-status")).to_have_text("Running")
    expect(page.locator("#ex-stop")).to_be_visible()
    # a routing-mode form: the values are a choice
    page.click("#ex-back")
    page.select_option("#ex-kind", "routing_mode")
    expect(page.locator("#ex-v0-value")).to_have_value("bot_first")
    expect(page.locator("#ex-v1-value")).to_have_value("human_first")
    expect(page.locator("#ex-window")).to_have_attribute("aria-describedby", "ex-window-help")

    # a supervisor reads the list and the results, without the admins' form and actions
    sue = open_console(new_page, shop, accept_dialogs=True, agent_id="sue")
    open_experiments(sue)
    expect(sue.locator("#view-experiments tbody tr")).to_have_count(2)
    expect(sue.locator("#ex-form")).to_have_count(0)
    expect(sue.locator(".ex-admins")).to_have_text(
        "Only admins create, start and stop experiments; supervisors see the results.")
    sue.get_by_role("button", name="Invitation delay").click()
    expect(sue.locator("#ex-status")).to_have_text("Running")
    expect(sue.locator("tr[data-variant='now'] td[data-col='exposed']")).to_have_text("0")
    expect(sue.locator("#ex-stop")).to_have_count(0)
    assert axe_violations(sue) == []

    # agents do not see the entry
    agent = open_console(new_page, shop, accept_dialogs=True, agent_id="agent-1")
    expect(agent.get_by_role("tab", name="Queue")).to_be_visible()
    agent.wait_for_timeout(6000)  # a snapshot poll has answered
    expect(agent.get_by_role("button", name="Experiments")).to_be_hidden()
    expect(agent.get_by_role("button", name="Tickets")).to_be_visible()
