"""Personal data in free text: find it, and mask it so a person can still recognise it.

Pure (stdlib ``re`` and ``datetime`` only). Every detector validates what it matches, so that a
random number is not taken for personal data more often than it has to be:

- ``mobile``: mainland China mobile numbers, ``1[3-9]`` + 9 digits, optionally prefixed by +86 / 86 /
  0086, plain or grouped 3-4-4 by spaces or dashes, not part of a longer digit run;
- ``id``: 身份证 resident ID numbers, 18 characters (17 digits + digit or X) with a province code, a
  real birth date (1900..today) and the ISO 7064 MOD 11-2 check character, or the old 15-digit form
  with a real 19YYMMDD date; optionally grouped 6-8-4 (6-6-3 for the old form);
- ``card``: bank card numbers, 13-19 digits, plain or grouped by 4 (or 4-6-5), passing the Luhn check,
  unless those digits are an ID number or a (prefixed) mobile number;
- ``email``: local@domain.tld with an ASCII local part and a dotted domain;
- ``intl_phone``: ``+`` country code and 7-14 more digits, with optional spaces, dashes, parentheses.

Where spans overlap, one wins, in this order: email, id, card, mobile, intl_phone (an e-mail address
made of a phone number is masked as an e-mail address; +86 numbers are masked as mobiles).

``mask`` never raises and is idempotent: ``mask(mask(x)) == mask(x)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from typing import NamedTuple

KINDS = ("email", "id", "card", "mobile", "intl_phone")  # precedence order on overlap
_PRIORITY = {kind: rank for rank, kind in enumerate(KINDS)}


class Span(NamedTuple):
    kind: str
    start: int
    end: int


# ID numbers ------------------------------------------------------------------------------------
_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
     50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 81, 82, 83}
)  # first digit 1-6 (mainland provinces) or 8 (Hong Kong, Macau, Taiwan residence permits)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID18 = re.compile(r"(?<!\d)\d{6}([ -]?)\d{8}\1\d{3}[\dXx](?!\d)")
_ID15 = re.compile(r"(?<!\d)\d{6}([ -]?)\d{6}\1\d{3}(?!\d)")


def id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits of an ID number."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS)) % 11]


def _real_date(year: int, month: int, day: int) -> bool:
    try:
        born = date(year, month, day)
    except ValueError:
        return False
    return 1900 <= year and born <= date.today()


def is_id_number(value: str) -> bool:
    """A valid 18-character (check character verified) or 15-digit resident ID number."""
    value = value.upper()
    if len(value) == 18:
        if not (value[:17].isdigit() and (value[17].isdigit() or value[17] == "X")) or not value.isascii():
            return False
        dated = _real_date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
        return int(value[:2]) in _PROVINCES and dated and id_check_char(value[:17]) == value[17]
    if len(value) == 15 and value.isdigit() and value.isascii():
        return int(value[:2]) in _PROVINCES and _real_date(1900 + int(value[6:8]), int(value[8:10]), int(value[10:12]))
    return False


# bank cards ------------------------------------------------------------------------------------
_CARD = re.compile(
    r"(?<!\d)(?:\d{13,19}"
    r"|\d{4}([ -])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?"
    r"|\d{4}([ -])\d{6}\2\d{5})(?!\d)"
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    return (digits.isascii() and digits.isdigit() and 13 <= len(digits) <= 19 and luhn_ok(digits)
            and not is_id_number(digits) and not _MOBILE_DIGITS.fullmatch(digits))


# phones ----------------------------------------------------------------------------------------
_MOBILE = re.compile(
    r"(?<![\d+])(?:(?:\+|00)?86[ -]?)?"
    r"1[3-9]\d(?:\d{8}|([ -])\d{4}\1\d{4})(?!\d)"
)
_MOBILE_DIGITS = re.compile(r"(?:0086|86)?1[3-9]\d{9}")
_INTL = re.compile(r"(?<![\w+])\+[1-9][0-9 ()\-]{6,40}")
_COUNTRY_1 = frozenset("17")
_COUNTRY_2 = frozenset(
    {20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54, 55,
     56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98}
)


def _intl_span(text: str, match: re.Match) -> tuple[int, int] | None:
    start, end = match.start(), match.end()
    while end > start and not text[end - 1].isdigit():
        end -= 1
    body = text[start + 1 : end]
    digits = sum(c.isdigit() for c in body)
    if not 8 <= digits <= 17:  # a country code (1-3 digits) and 7-14 more
        return None
    if re.search(r"[ ()\-]{3,}|--|  |\(\)|\(\d*\(|\)\d*\)", body) or body.count("(") != body.count(")"):
        return None
    if end < len(text) and text[end] in "0123456789":
        return None
    return start, end


# e-mail ----------------------------------------------------------------------------------------
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
)


# finding ---------------------------------------------------------------------------------------
def _candidates(text: str) -> Iterable[Span]:
    for m in _EMAIL.finditer(text):
        yield Span("email", m.start(), m.end())
    for pattern in (_ID18, _ID15):
        for m in pattern.finditer(text):
            if is_id_number(re.sub(r"[ -]", "", m.group())):
                yield Span("id", m.start(), m.end())
    for m in _CARD.finditer(text):
        if is_card_number(re.sub(r"[ -]", "", m.group())):
            yield Span("card", m.start(), m.end())
    for m in _MOBILE.finditer(text):
        yield Span("mobile", m.start(), m.end())
    for m in _INTL.finditer(text):
        found = _intl_span(text, m)
        if found:
            yield Span("intl_phone", *found)


def find(text: object) -> list[Span]:
    """Non-overlapping spans of personal data, in text order. Never raises: anything that is not a
    string (None included) has no spans."""
    if not isinstance(text, str) or not text:
        return []
    try:
        return _spans(text)
    except Exception:  # noqa: BLE001 - a detector bug must not break the caller (mask fails closed)
        return []


def _spans(text: str) -> list[Span]:
    chosen: list[Span] = []
    for span in sorted(_candidates(text), key=lambda s: (_PRIORITY[s.kind], s.start, -s.end)):
        if all(span.end <= other.start or other.end <= span.start for other in chosen):
            chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)


# masking ---------------------------------------------------------------------------------------
def _digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit())


def _mask_one(kind: str, value: str) -> str:
    if kind == "email":
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if kind == "id":
        compact = re.sub(r"[ -]", "", value).upper()
        return compact[:3] + "*" * (len(compact) - 7) + compact[-4:]
    if kind == "card":
        return "**** **** **** " + _digits(value)[-4:]
    if kind == "mobile":
        digits = _digits(value)
        number, prefix_digits = digits[-11:], digits[:-11]
        prefix = ("+" if value.startswith("+") else "") + prefix_digits + (" " if prefix_digits else "")
        return f"{prefix}{number[:3]}****{number[-4:]}"
    if kind == "intl_phone":
        digits = _digits(value)
        group = re.match(r"\+\(?(\d{1,3})(?=[ )\-])", value)
        if group:
            code = group.group(1)
        elif digits[0] in _COUNTRY_1:
            code = digits[:1]
        elif int(digits[:2]) in _COUNTRY_2:
            code = digits[:2]
        else:
            code = digits[:3]
        rest = digits[len(code):]
        return f"+{code} " + "*" * max(len(rest) - 4, 0) + rest[-4:]
    return "***"


def _placeholder(kind: str, value: str) -> str:
    return f"[{kind}]"


def _mask_pass(text: str, keep: bool, kinds: frozenset[str] | None) -> str:
    out, last = [], 0
    for span in _spans(text):
        if kinds is not None and span.kind not in kinds:
            continue
        value = text[span.start : span.end]
        out.append(text[last : span.start])
        out.append((_mask_one if keep else _placeholder)(span.kind, value))
        last = span.end
    out.append(text[last:])
    return "".join(out)


_ANY_DIGIT = re.compile(r"\d")


def mask(text: object, keep: bool = True, kinds: Iterable[str] | None = None) -> str:
    """The text with personal data masked.

    keep=True (default) keeps what a person needs to recognise the value: mobile 138****5678, ID
    110***********123X, card **** **** **** 1234, e-mail a***@example.com, +44 ******7890.
    keep=False replaces each value with a placeholder ([mobile], [id], [card], [email], [intl_phone]).
    kinds limits masking to some kinds (all by default).
    None gives "", any other non-string its str(). Idempotent; never raises."""
    if text is None:
        return ""
    try:
        if not isinstance(text, str):
            text = str(text)
        only = frozenset(kinds) if kinds is not None else None
        for _ in range(8):  # to a fixed point, so that masking twice changes nothing
            masked = _mask_pass(text, keep, only)
            if masked == text:
                return masked
            text = masked
        return text
    except Exception:  # noqa: BLE001 - fail closed: no digit, no address survives
        try:
            return _ANY_DIGIT.sub("*", str(text)).replace("@", "*")
        except Exception:  # noqa: BLE001
            return "[unprintable]"


# stored text (issue 8: a workspace that masks personal data in what it stores) -----------------
class Redaction(NamedTuple):
    """A text with its personal data masked, and what was masked: ``spans[i]`` is where the masked form of
    ``values[i]`` stands in ``text``. The values are sealed (kefu.ports.PiiVault) before they are stored."""

    text: str
    spans: list[tuple[int, int]]
    values: list[str]


def redact(text: str) -> Redaction:
    """Mask personal data as ``mask`` does (the recognisable form), in one pass, remembering the originals and
    where their masked forms are, so that ``restore`` can put them back for someone allowed to see them."""
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    values: list[str] = []
    last = length = 0
    for span in find(text):
        value = text[span.start : span.end]
        masked = _mask_one(span.kind, value)
        before = text[last : span.start]
        out += [before, masked]
        length += len(before)
        spans.append((length, length + len(masked)))
        values.append(value)
        length += len(masked)
        last = span.end
    out.append(text[last:])
    return Redaction("".join(out), spans, values)


def restore(text: str, spans: list, values: list) -> str | None:
    """The original of a redacted text; None when spans and values do not fit it (a damaged record)."""
    if len(spans) != len(values):
        return None
    out, last = [], 0
    for span, value in zip(spans, values):
        if not (isinstance(span, (list, tuple)) and len(span) == 2 and isinstance(value, str)):
            return None
        start, end = span
        if not (isinstance(start, int) and isinstance(end, int) and last <= start <= end <= len(text)):
            return None
        out += [text[last:start], value]
        last = end
    out.append(text[last:])
    return "".join(out)


def reveal(vault, workspace: str, conversation_id: str, text: str, record: dict | None) -> str:
    """The text as written, from a stored text and its "pii" record (None: it was stored as written), opening the
    sealed values with the vault (kefu.ports.PiiVault). Raises when they cannot be opened or do not fit."""
    if not record:
        return text
    original = restore(text, record.get("spans") or [], vault.open(workspace, conversation_id, record["sealed"]))
    if original is None:
        raise ValueError("a masked message's record does not fit its text")
    return original
