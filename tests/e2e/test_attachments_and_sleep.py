"""In a real browser: attachments (a customer's image shown as a preview to the agent, the agent's PDF as a
download link, a refused type explained and nothing sent), and a tab that slept on a dead socket catching up."""

from __future__ import annotations

import base64

import pytest
import requests
from playwright.sync_api import expect

from .conftest import Desk, axe_violations, screenshot
from .test_chat import customer_page, say

# a 2 × 2 red PNG
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP4z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==")
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture(scope="module")
def shop(stack, store, signing_key):
    return Desk(stack, store, signing_key)


def test_files_both_ways(new_page, shop):
    alice = new_page()
    alice.goto(f"{shop.stack.base_url}/agent.html#token={shop.token('agent', 'agent-1')}")
    expect(alice.locator("#presence")).to_be_enabled()
    customer = customer_page(new_page, shop, name="发图的人")
    expect(customer.locator("#attach")).to_be_disabled()  # files go into an open conversation
    say(customer, "我的商品坏了，看图")
    expect(customer.locator("#attach")).to_be_enabled()

    customer.set_input_files("#files", files=[{"name": "坏了.png", "mimeType": "image/png", "buffer": PNG}])
    chip = customer.locator("#tray .chip.ready")
    expect(chip).to_contain_text("坏了.png")
    customer.press("#text", "Enter")  # files only: the text may be empty
    expect(customer.locator("#tray")).to_be_hidden()
    mine = customer.locator("#log li.msg.mine.sent", has=customer.locator(".attachments"))
    expect(mine.locator("img")).to_have_attribute("alt", "坏了.png")

    alice.locator("#convs button", has_text="发图的人").click()
    preview = alice.locator("#log li.msg.theirs .attachments img")
    expect(preview).to_have_attribute("alt", "坏了.png")
    alice.wait_for_function("() => { const i = document.querySelector('#log li.msg.theirs .attachments img');"
                            " return i && i.complete && i.naturalWidth === 2; }")  # the bytes, from storage
    link = alice.locator("#log li.msg.theirs .attachments a")
    assert requests.get(link.get_attribute("href"), timeout=10).content == PNG

    alice.set_input_files("#files", files=[{"name": "退货单.pdf", "mimeType": "application/pdf", "buffer": PDF}])
    expect(alice.locator("#tray .chip.ready")).to_contain_text("退货单.pdf")
    alice.fill("#text", "请填写这张退货单")
    alice.press("#text", "Enter")
    got = customer.locator("#log li.msg.theirs", has_text="请填写这张退货单")
    download = got.locator(".attachments a.file")
    expect(download).to_contain_text("退货单.pdf")
    expect(download).to_have_attribute("download", "退货单.pdf")
    assert requests.get(download.get_attribute("href"), timeout=10).content == PDF
    screenshot(customer, "customer-attachments")
    screenshot(alice, "agent-attachments")
    assert axe_violations(customer) == []
    assert axe_violations(alice) == []

    # a page posing as a picture is refused before anything is sent
    customer.set_input_files("#files", files=[{"name": "x.html", "mimeType": "text/html", "buffer": b"<script>1</script>"}])
    expect(customer.locator("#tray .chip.failed")).to_be_visible()
    expect(customer.locator("#banner")).to_contain_text("x.html")
    customer.locator("#tray .chip.failed button").click()
    expect(customer.locator("#tray")).to_be_hidden()
    assert customer.locator("#log li.msg.mine").count() == 2  # nothing more was sent


def test_a_tab_that_slept_on_a_dead_socket_catches_up_when_it_wakes(new_page, shop):
    """A frozen or sleeping tab's socket can die without a close event (half-open): nothing arrives and
    nothing says so. When the tab is visible again the client probes it, drops it, reconnects and syncs."""
    alice = new_page()
    alice.goto(f"{shop.stack.base_url}/agent.html#token={shop.token('agent', 'agent-2')}")
    expect(alice.locator("#presence")).to_be_enabled()
    alice.select_option("#presence", "online")
    customer = customer_page(new_page, shop, name="睡着的标签页")
    say(customer, "我先离开一下")
    alice.locator("#convs button", has_text="睡着的标签页").click(timeout=20_000)
    # the customer's tab "sleeps": its socket goes silent both ways and never closes
    customer.evaluate("""() => { const s = window.kefuClient.socket;
        s.onmessage = null; s.onclose = null; s.onerror = null; s.send = () => {}; }""")
    for line in ("第一条", "第二条", "第三条"):
        alice.fill("#text", line)
        alice.press("#text", "Enter")
        expect(alice.locator("#log li.msg.mine.sent", has_text=line)).to_be_visible()
    customer.wait_for_timeout(500)
    assert customer.locator("#log li.msg.theirs", has_text="第一条").count() == 0  # asleep: nothing arrived
    customer.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")  # the tab is shown again
    for line in ("第一条", "第二条", "第三条"):
        expect(customer.locator("#log li.msg.theirs", has_text=line)).to_have_count(1, timeout=15_000)
    expect(customer.locator("#conn")).to_have_attribute("data-state", "open")
    seqs = customer.locator("#log li.msg[data-seq]").evaluate_all("els => els.map((e) => Number(e.dataset.seq))")
    assert seqs == sorted(set(seqs)), seqs  # in order, none twice
