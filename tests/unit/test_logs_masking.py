"""Every line of the kefu logger is written with personal data masked."""

from __future__ import annotations

import json
import logging
import sys
from datetime import date

import pytest
from kefu import pii
from kefu.logs import logger, masked_json

_first17 = f"440301{date(1990, 3, 7):%Y%m%d}123"
ID_NUMBER = _first17 + pii.id_check_char(_first17)
RAW = {
    "mobile": ("13812345678", "138****5678"),
    "id": (ID_NUMBER, f"440***********{ID_NUMBER[-4:]}"),
    "card": ("6222021234567890128", "**** **** **** 0128"),
    "email": ("li.lei@example.com", "l***@example.com"),
    "intl_phone": ("+44 20 7946 0958", "+44 ******0958"),
}


class _CurrentStdout:
    """Whatever sys.stdout is when a line is written: capsys swaps it in only for the test call."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def lines(capsys):
    """The JSON lines the kefu logger writes to stdout during the test, captured by capsys. (The
    handler keeps the stdout of import time; point it at the current one for the test.)"""
    handler = logger.registered_handler
    previous = handler.setStream(_CurrentStdout())

    def read():
        return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]

    yield read
    handler.setStream(previous)


def _text(records) -> str:
    return json.dumps(records, ensure_ascii=False)


@pytest.mark.parametrize("kind", list(RAW))
def test_message_is_masked(lines, kind):
    raw, masked = RAW[kind]
    logger.info(f"customer wrote {raw} today")
    logger.warning("customer wrote %s today", raw)
    records = lines()
    assert [r["message"] for r in records] == [f"customer wrote {masked} today"] * 2
    assert raw not in _text(records)


def test_extra_values_and_nested_structures_are_masked(lines):
    logger.info(
        "profile",
        extra={
            "phone": RAW["mobile"][0],
            "phone_number": 13812345678,
            "customer": {"ids": [RAW["id"][0]], "cards": (RAW["card"][0],), "email": RAW["email"][0]},
            "intl": RAW["intl_phone"][0],
            "count": 3,
        },
    )
    (record,) = lines()
    assert record["phone"] == "138****5678" and record["phone_number"] == "138****5678"
    assert record["customer"] == {"ids": [RAW["id"][1]], "cards": [RAW["card"][1]], "email": RAW["email"][1]}
    assert record["intl"] == RAW["intl_phone"][1] and record["count"] == 3
    for raw, _ in RAW.values():
        assert raw not in _text(record)


def test_dict_messages_and_appended_keys_are_masked(lines):
    logger.append_keys(customer_email=RAW["email"][0])
    try:
        logger.info({"event": "login", "phone": RAW["mobile"][0]})
    finally:
        logger.remove_keys(["customer_email"])
    (record,) = lines()
    assert record["message"] == {"event": "login", "phone": "138****5678"}
    assert record["customer_email"] == "l***@example.com"


def test_exception_message_and_stack_trace_are_masked(lines):
    def fail():
        raise ValueError(f"no account for {RAW['email'][0]} / {RAW['card'][0]} / {RAW['id'][0]}")

    try:
        fail()
    except ValueError:
        logger.exception("lookup failed for %s", RAW["mobile"][0])
    (record,) = lines()
    assert record["message"] == "lookup failed for 138****5678"
    assert "ValueError: no account for l***@example.com / **** **** **** 0128 / 440***" in record["exception"]
    assert record["exception_name"] == "ValueError"
    text = _text(record)
    for raw, _ in RAW.values():
        assert raw not in text


def test_chained_exceptions_are_masked(lines):
    try:
        try:
            raise KeyError(RAW["mobile"][0])
        except KeyError as error:
            raise RuntimeError(f"wrapping {RAW['intl_phone'][0]}") from error
    except RuntimeError:
        logger.error("boom", exc_info=True)
    text = _text(lines())
    assert RAW["mobile"][0] not in text and "7946 0958" not in text
    assert "138****5678" in text and "+44 ******0958" in text


def test_stdlib_child_loggers_are_masked_too(lines):
    logging.getLogger("kefu.somewhere").warning("child saw %s", RAW["id"][0])
    (record,) = lines()
    assert record["message"] == f"child saw {RAW['id'][1]}"


def test_ordinary_lines_are_unchanged(lines):
    logger.info("routed conversation c-42 to queue sales", extra={"attempt": 2, "ok": True, "ratio": 0.5, "none": None})
    (record,) = lines()
    assert record["message"] == "routed conversation c-42 to queue sales"
    assert (record["attempt"], record["ok"], record["ratio"]) == (2, True, 0.5)
    assert record["timestamp"] and record["level"] == "INFO"


def test_serializer_never_raises_and_never_leaks():
    class Unprintable:
        def __str__(self):
            raise RuntimeError(RAW["mobile"][0])

    line = masked_json({"message": "x", "thing": Unprintable(), (1, 2): RAW["email"][0]})
    assert RAW["mobile"][0] not in line and RAW["email"][0] not in line
    assert json.loads(line)["thing"] == "[unprintable]"
