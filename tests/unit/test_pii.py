"""kefu.pii: validated detectors for personal data, and readable, idempotent masks."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kefu import pii
from kefu.pii import Span

PROVINCES = sorted(pii._PROVINCES)


def make_id(region: str, born: date, seq: str) -> str:
    first17 = f"{region}{born:%Y%m%d}{seq}"
    return first17 + pii.id_check_char(first17)


def luhn_complete(body: str) -> str:
    for check in "0123456789":
        if pii.luhn_ok(body + check):
            return body + check
    raise AssertionError("unreachable")


ids = st.builds(
    make_id,
    st.builds(lambda p, rest: f"{p}{rest:04d}", st.sampled_from(PROVINCES), st.integers(0, 9999)),
    st.dates(min_value=date(1900, 1, 1), max_value=date.today()),
    st.integers(0, 999).map(lambda n: f"{n:03d}"),
)
cards = st.builds(
    luhn_complete,
    st.integers(12, 18).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n)).filter(
        lambda body: body[0] != "0"
    ),
).filter(lambda card: not pii.is_id_number(card) and not pii._MOBILE_DIGITS.fullmatch(card))
mobiles = st.builds(lambda second, rest: f"1{second}{rest:09d}", st.sampled_from("3456789"), st.integers(0, 10**9 - 1))
no_pii_text = st.text(
    alphabet=st.characters(blacklist_categories=("Nd", "Cs"), blacklist_characters="@+＠"), max_size=200
)
fast = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- known values ------------------------------------------------------------------------------
VALID_ID = make_id("110105", date(1949, 12, 31), "002")


@pytest.mark.parametrize(
    ("text", "kind", "masked"),
    [
        ("call 13812345678 now", "mobile", "call 138****5678 now"),
        ("call 138 1234 5678", "mobile", "call 138****5678"),
        ("call 138-1234-5678.", "mobile", "call 138****5678."),
        ("+86 138 1234 5678", "mobile", "+86 138****5678"),
        ("+8613812345678", "mobile", "+86 138****5678"),
        ("008613812345678", "mobile", "0086 138****5678"),
        ("电话19912345678谢谢", "mobile", "电话199****5678谢谢"),
        (f"身份证{VALID_ID}", "id", f"身份证110***********{VALID_ID[-4:]}"),
        ("ID 11010519491231002x", None, None),  # lower-case x: found only if the check char is X
        ("card 4111 1111 1111 1111", "card", "card **** **** **** 1111"),
        ("card 4111-1111-1111-1111", "card", "card **** **** **** 1111"),
        ("卡号6222021234567890128", "card", "卡号**** **** **** 0128"),
        ("amex 3782 822463 10005", "card", "amex **** **** **** 0005"),
        ("mail a.b@example.com.", "email", "mail a***@example.com."),
        ("13812345678@qq.com", "email", "1***@qq.com"),
        ("+44 20 7946 0958", "intl_phone", "+44 ******0958"),
        ("+1 (415) 555-2671", "intl_phone", "+1 ******2671"),
        ("+447946095800", "intl_phone", "+44 ******5800"),
        ("+33 1 23 45 67 89", "intl_phone", "+33 *****6789"),
    ],
)
def test_known_values(text, kind, masked):
    spans = pii.find(text)
    if kind is None:
        return
    assert [s.kind for s in spans] == [kind]
    assert pii.mask(text) == masked


def test_id_old_form_and_lowercase_x():
    found = None
    for seq in range(1000):
        candidate = make_id("110105", date(1980, 2, 29), f"{seq:03d}")
        if candidate.endswith("X"):
            found = candidate
            break
    assert found
    lower = found[:-1] + "x"
    assert pii.find(f"id {lower}") == [Span("id", 3, 21)]
    assert pii.mask(lower) == f"110***********{found[-4:]}"
    assert pii.find("old 110105491231002") == [Span("id", 4, 19)]
    assert pii.mask("110105491231002") == "110********1002"


@pytest.mark.parametrize(
    "text",
    [
        "138123456789",  # 12 digits: not a mobile
        "2138123456789",  # inside a longer digit run
        "12812345678",  # 12x is not a mobile prefix
        "1381234567",  # too short
        "4111111111111112",  # Luhn fails
        "411111111111",  # 12 digits: too short for a card
        VALID_ID[:-1] + ("0" if VALID_ID[-1] != "0" else "1"),  # wrong check character
        "110105" + "20991231" + "0021",  # future birth date (and whatever the check char)
        "110105" + "19490230" + "0021",  # 30 February
        "710105" + "19491231" + "0021",  # no such province prefix
        "order 2024112100123 shipped",  # a 13-digit order number that fails Luhn
        "version 1.2.3, build 20240101, at 12:30",
        "user@localhost",  # no dotted domain
        "+12345",  # too short for a phone
        "price +100 dollars",
    ],
)
def test_not_personal_data(text):
    assert all(s.kind != "id" for s in pii.find(text))
    if not text.startswith(("110105", "710105")):
        assert pii.find(text) == []
        assert pii.mask(text) == text


def test_precedence_id_over_card_over_phone():
    # an 18-digit valid ID that also passes Luhn is an ID, not a card
    for seq in range(1000):
        candidate = make_id("440301", date(1990, 3, 7), f"{seq:03d}")
        if candidate[-1] != "X" and pii.luhn_ok(candidate):
            break
    assert pii.find(candidate) == [Span("id", 0, 18)]
    # 86 + mobile is 13 digits; when those pass Luhn they are still a phone number
    for n in range(1000):
        digits = f"86139{n:08d}"
        if pii.luhn_ok(digits):
            break
    assert pii.find(digits) == [Span("mobile", 0, 13)]
    # overlapping detectors resolve to one span
    assert pii.find("+86 138 1234 5678") == [Span("mobile", 0, 17)]
    assert pii.find("x 13812345678@163.com y") == [Span("email", 2, 21)]


def test_several_in_one_text_in_order():
    text = f"我是张三，电话13812345678，邮箱zs@example.cn，身份证{VALID_ID}，卡 4111 1111 1111 1111，+44 20 7946 0958"
    assert [s.kind for s in pii.find(text)] == ["mobile", "email", "id", "card", "intl_phone"]
    masked = pii.mask(text)
    for raw in ("13812345678", "zs@example.cn", VALID_ID, "4111 1111 1111 1111", "7946 0958"):
        assert raw not in masked
    assert pii.mask(text, keep=False) == "我是张三，电话[mobile]，邮箱[email]，身份证[id]，卡 [card]，[intl_phone]"
    assert pii.mask(text, kinds={"email"}) == text.replace("zs@example.cn", "z***@example.cn")


@pytest.mark.parametrize("value", [None, "", "😀" * 5000, "1" * 10_000, "a@" * 5000, "+1 " * 4000, 12, b"x", object()])
def test_never_raises(value):
    assert isinstance(pii.mask(value), str)
    assert isinstance(pii.find(value), list)
    assert pii.mask(None) == ""


def test_a_detector_bug_fails_closed(monkeypatch):
    def broken(text):
        raise RuntimeError("bug")

    monkeypatch.setattr(pii, "_candidates", broken)
    assert pii.find("13812345678") == []
    assert pii.mask("call 13812345678 or a@b.cn") == "call *********** or a*b.cn"


def test_pathological_inputs_are_fast():
    import time

    for text in ("a" * 10_000 + "@", "a." * 5000 + "@", "x@" + "a-" * 5000, "+1" + " (1)" * 3000, "1-" * 5000):
        started = time.perf_counter()
        pii.mask(text)
        assert time.perf_counter() - started < 1.0


# -- properties --------------------------------------------------------------------------------
@fast
@given(ids, st.sampled_from(["", "身份证号：", "id ", "ID="]), st.sampled_from(["", "。", " ok", "号"]))
def test_generated_ids_are_found_and_masked(id_number, before, after):
    text = before + id_number + after
    assert pii.find(text) == [Span("id", len(before), len(before) + 18)]
    masked = pii.mask(text)
    assert id_number not in masked
    assert masked == before + id_number[:3] + "*" * 11 + id_number[-4:] + after


@fast
@given(ids, st.integers(0, 16), st.integers(1, 9))
def test_ids_with_a_changed_digit_are_not_ids(id_number, position, delta):
    digit = str((int(id_number[position]) + delta) % 10)
    changed = id_number[:position] + digit + id_number[position + 1 :]
    assert all(s.kind != "id" for s in pii.find(changed))


@fast
@given(cards, st.sampled_from(["", " ", "-"]))
def test_generated_cards_are_found_and_masked(card, separator):
    text = card
    if separator and len(card) == 16:
        text = separator.join(card[i : i + 4] for i in range(0, 16, 4))
    assert pii.find(f"卡号{text}") == [Span("card", 2, 2 + len(text))]
    assert pii.mask(f"卡号{text}") == f"卡号**** **** **** {card[-4:]}"


@fast
@given(cards, st.integers(1, 9))
def test_luhn_invalid_numbers_are_not_cards(card, delta):
    broken = card[:-1] + str((int(card[-1]) + delta) % 10)
    assert all(s.kind != "card" for s in pii.find(broken))


@fast
@given(mobiles, st.sampled_from(["", "+86", "+86 ", "86", "0086", "0086-"]), st.sampled_from(["", " ", "-"]))
def test_generated_mobiles_are_found_and_masked(mobile, prefix, separator):
    grouped = separator.join((mobile[:3], mobile[3:7], mobile[7:])) if separator else mobile
    text = f"tel: {prefix}{grouped}."
    spans = pii.find(text)
    assert [s.kind for s in spans] == ["mobile"]
    masked = pii.mask(text)
    assert mobile not in masked and grouped not in masked
    assert f"{mobile[:3]}****{mobile[-4:]}" in masked


@fast
@given(
    st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,20}", fullmatch=True),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?){0,2}\.[a-z]{2,6}", fullmatch=True),
)
def test_generated_emails_are_found_and_masked(local, domain):
    address = f"{local}@{domain}"
    text = f"邮箱 {address} 谢谢"
    assert pii.find(text) == [Span("email", 3, 3 + len(address))]
    assert pii.mask(text) == f"邮箱 {local[0]}***@{domain} 谢谢"


@fast
@given(no_pii_text)
def test_text_without_digits_or_at_is_unchanged(text):
    assert pii.find(text) == []
    assert pii.mask(text) == text


@fast
@given(st.text(max_size=300) | st.text(alphabet="0123456789 -+()@.abcX", max_size=120))
def test_mask_is_idempotent_and_never_raises(text):
    once = pii.mask(text)
    assert pii.mask(once) == once
    assert pii.mask(once, keep=False) == pii.mask(pii.mask(once, keep=False), keep=False)
    spans = pii.find(text)
    assert all(a.end <= b.start for a, b in pairwise(spans))
    assert all(0 <= s.start < s.end <= len(text) for s in spans)


@fast
@given(st.lists(st.one_of(ids, cards, mobiles, no_pii_text), max_size=6))
def test_mixed_text_keeps_no_raw_value(parts):
    text = " | ".join(parts)
    masked = pii.mask(text)
    for part in parts:
        if part.isascii() and (part.isdigit() or (part[:-1].isdigit() and part[-1] in "Xx")):
            assert part not in masked


def test_future_dates_are_not_birth_dates():
    tomorrow = date.today() + timedelta(days=1)
    assert not pii.is_id_number(make_id("110105", tomorrow, "001"))
    assert pii.is_id_number(make_id("110105", date.today(), "001"))
    assert not pii.is_id_number(make_id("110105", date(1899, 12, 31), "001"))


# stored text: redact, restore, reveal ---------------------------------------------------------------
class DictVault:
    """A PiiVault that keeps sealed values in memory, bound to (workspace, conversation) like KMS's context."""

    def __init__(self):
        self.sealed: dict[str, tuple[str, str, list[str]]] = {}

    def seal(self, workspace, conversation_id, values):
        key = f"s{len(self.sealed)}"
        self.sealed[key] = (workspace, conversation_id, list(values))
        return key

    def open(self, workspace, conversation_id, sealed):
        ws, conversation, values = self.sealed[sealed]
        if (ws, conversation) != (workspace, conversation_id):
            raise PermissionError("encryption context mismatch")
        return values


@fast
@given(st.lists(st.one_of(ids, cards, mobiles, no_pii_text), max_size=6))
def test_redact_masks_like_mask_and_restores_exactly(parts):
    text = " ".join(parts)
    redaction = pii.redact(text)
    assert pii.mask(redaction.text) == pii.mask(text)
    assert len(redaction.spans) == len(redaction.values) == len(pii.find(text))
    assert pii.restore(redaction.text, redaction.spans, redaction.values) == text
    for (start, end), value in zip(redaction.spans, redaction.values):
        assert redaction.text[start:end] != value and value in text


def test_restore_refuses_records_that_do_not_fit():
    redaction = pii.redact("call 13812345678 or 13912345678")
    assert redaction.text == "call 138****5678 or 139****5678"
    assert pii.restore(redaction.text, redaction.spans, redaction.values) == "call 13812345678 or 13912345678"
    assert pii.restore(redaction.text, redaction.spans, redaction.values[:1]) is None
    assert pii.restore(redaction.text, [[0, 999]], ["x"]) is None
    assert pii.restore(redaction.text, list(reversed(redaction.spans)), redaction.values) is None
    assert pii.restore(redaction.text, [["a", "b"]], ["x"]) is None
    assert pii.redact("no personal data") == ("no personal data", [], [])


def test_reveal_opens_only_with_the_same_workspace_and_conversation():
    vault = DictVault()
    redaction = pii.redact("my card 4111 1111 1111 1111")
    record = {"spans": [list(s) for s in redaction.spans], "sealed": vault.seal("ws", "c1", redaction.values)}
    assert pii.reveal(vault, "ws", "c1", redaction.text, record) == "my card 4111 1111 1111 1111"
    assert pii.reveal(vault, "ws", "c1", "stored as written", None) == "stored as written"
    with pytest.raises(PermissionError):
        pii.reveal(vault, "ws", "c2", redaction.text, record)
    with pytest.raises(ValueError):
        pii.reveal(vault, "ws", "c1", "shorter", record)
