"""Log lines never carry an ID number, a phone, a name given as a field, or a token."""

from __future__ import annotations

import io
import json
import logging

from shared.logs import JsonFormatter, RedactingFilter, redact_text

ID_NUMBER = "360426199101010071"
PHONE = "13800138000"
JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def _capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter("probe"))
    logger = logging.getLogger(f"probe.{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_message_patterns_are_redacted() -> None:
    logger, stream = _capture()
    logger.info("holder %s phone %s token %s", ID_NUMBER, PHONE, JWT)
    logger.info("Authorization: Bearer abc.def-ghi")
    out = stream.getvalue()
    for secret in (ID_NUMBER, PHONE, JWT, "abc.def-ghi"):
        assert secret not in out
    assert out.count("[redacted]") >= 4


def test_sensitive_extra_fields_are_redacted() -> None:
    logger, stream = _capture()
    logger.info(
        "verify",
        extra={
            "holder_name": "张三",
            "name_masked": "张*",
            "card_number": "A12345678",
            "body": {"phone": "x", "nested": [ID_NUMBER]},
        },
    )
    record = json.loads(stream.getvalue())
    assert record["holder_name"] == "[redacted]"
    assert record["card_number"] == "[redacted]"
    assert record["body"] == {"phone": "[redacted]", "nested": ["[redacted]"]}
    assert "张三" not in stream.getvalue()


def test_exception_text_is_scrubbed() -> None:
    logger, stream = _capture()
    try:
        raise ValueError(f"bad id {ID_NUMBER}")
    except ValueError:
        logger.exception("failed")
    out = stream.getvalue()
    assert ID_NUMBER not in out
    assert "ValueError" in out


def test_redact_text_keeps_ordinary_text() -> None:
    assert redact_text("settled 123.45 yuan in 310000") == "settled 123.45 yuan in 310000"
