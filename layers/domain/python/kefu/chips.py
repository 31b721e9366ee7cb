"""The customer chat's quick replies ("chips"): a short per-workspace list of suggestions the customer can tap
instead of typing (查订单 / Track my order, 退货 / Return an item, 转人工 / Talk to a person). Pure functions,
no I/O (storage: adapters/channel_store.py; REST: GET/PUT /workspaces/{ws}/customer-quick-replies).

Not to be confused with the console's quick-reply library (/quick-replies), which agents type after "/".

A chip is {"id": "track-order", "text": {"zh": "查订单", "en": "Track my order"}}: a stable id (what the sent
message's meta.quickReply names, so wording can change without losing the statistics) and its wording in
Chinese and/or English (at least one; the chat shows the visitor's language, else the other one). Tapping a chip
sends its wording as the customer's message, through the normal message path: the bot answers it.

Wording is text: the chat renders it with textContent, and what looks like markup (`<b>`, `&amp;`), control
characters and line breaks are refused here rather than shown as odd text.

A/B experiments of kind quick_reply_wording (kefu.experiments) replace the wording (`apply_wording`): a variant's
value is a text (the first chip's), a list of texts (by position) or an object {chipId: text}; the variant's text
is shown whatever the visitor's language. Chips a variant does not name keep their wording.
"""

from __future__ import annotations

import re

from .errors import InvalidRequest

MAX_CHIPS = 6
MAX_CHIP_TEXT = 40
MAX_WORDINGS = 10  # texts in a list-valued variant (the console's form allows 10 lines; past the 6th are unused)
LANGS = ("zh", "en")
CHIP_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
# markup (a tag or an entity), control characters (line breaks included) and bidi overrides
_MARKUP_RE = re.compile(r"<\s*/?\s*[A-Za-z!?][^>]*>|&#?[A-Za-z0-9]+;")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def check_text(text: object, where: str, max_len: int = MAX_CHIP_TEXT) -> str:
    """The wording, stripped; InvalidRequest if it is empty, too long, or markup."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest(f"{where}: a non-empty text")
    text = text.strip()
    if len(text) > max_len:
        raise InvalidRequest(f"{where}: at most {max_len} characters")
    if _CONTROL_RE.search(text):
        raise InvalidRequest(f"{where}: one line of text, without control characters")
    if _MARKUP_RE.search(text):
        raise InvalidRequest(f"{where}: plain text, not markup (it is shown as text)")
    return text


def check_chips(items: object) -> list[dict]:
    """The validated, normalised list of chips (InvalidRequest says what is wrong)."""
    if not isinstance(items, list) or len(items) > MAX_CHIPS:
        raise InvalidRequest(f"items: at most {MAX_CHIPS} quick replies")
    out: list[dict] = []
    for i, raw in enumerate(items):
        where = f"items[{i}]"
        if not isinstance(raw, dict):
            raise InvalidRequest(f"{where}: an object with id and text")
        chip_id = raw.get("id")
        if not isinstance(chip_id, str) or not CHIP_ID_RE.match(chip_id):
            raise InvalidRequest(f"{where}.id: 1 to 32 of a-z 0-9 -, starting with a letter or digit")
        text = raw.get("text")
        if not isinstance(text, dict) or not text or set(text) - set(LANGS):
            raise InvalidRequest(f"{where}.text: an object with the wording in zh and/or en")
        out.append({"id": chip_id, "text": {lang: check_text(text[lang], f"{where}.text.{lang}")
                                             for lang in LANGS if lang in text}})
    ids = [c["id"] for c in out]
    if len(ids) != len(set(ids)):
        raise InvalidRequest("items: every id once")
    return out


def check_wording(value: object, where: str) -> object:
    """A quick_reply_wording variant's value: a text, a list of 1 to MAX_WORDINGS texts, or {chipId: text}."""
    what = (f"quick-reply wording is a text, a list of 1 to {MAX_WORDINGS} texts, or an object {{chipId: text}}, "
            f"of at most {MAX_CHIP_TEXT} characters each, without markup")
    try:
        if isinstance(value, str):
            return check_text(value, where)
        if isinstance(value, list) and 1 <= len(value) <= MAX_WORDINGS:
            return [check_text(t, f"{where}[{i}]") for i, t in enumerate(value)]
        if isinstance(value, dict) and 1 <= len(value) <= MAX_CHIPS and all(CHIP_ID_RE.match(k) for k in value):
            return {k: check_text(t, f"{where}.{k}") for k, t in value.items()}
    except InvalidRequest as refused:
        raise InvalidRequest(f"{refused.message} ({what})") from None
    raise InvalidRequest(f"{where}: {what}")


def apply_wording(chips: list[dict], value: object) -> list[dict]:
    """The chips as a quick_reply_wording variant words them: each chip gets `wording` (the variant's text) where
    the variant names it; the others are unchanged. The widget does the same (web/customer.html)."""
    if isinstance(value, str):
        by_index = {0: value}
    elif isinstance(value, list):
        by_index = dict(enumerate(value))
    else:
        by_index = {}
    by_id = value if isinstance(value, dict) else {}
    out = []
    for i, chip in enumerate(chips):
        wording = by_id.get(chip["id"], by_index.get(i))
        out.append({**chip, "wording": wording} if isinstance(wording, str) else dict(chip))
    return out
