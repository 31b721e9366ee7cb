"""Attachments in a real browser: a customer sends an image (a preview on the agent's side), the agent
answers with a PDF (a download link on the customer's side), a refused type says why and sends nothing."""

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
