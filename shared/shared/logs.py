"""JSON logging with a redaction step: no ID number, name, phone or token reaches a log line.

Every record becomes one JSON object carrying the service name and the request
id. Before formatting, :class:`RedactingFilter` scrubs values of known sensitive
keys (``extra={...}`` members and dict arguments) and anything in the message
that looks like an 18-character citizen ID number, a mainland mobile number, a
JWT/JWS, a 40-character settlement token or a bearer credential.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

import orjson

from shared.requestctx import current_request_id

REDACTED = "[redacted]"

SENSITIVE_KEYS = frozenset(
    {
        "name",
        "holder_name",
        "id_number",
        "phone",
        "card_number",
        "token",
        "access_token",
        "identity_assertion",
        "credential",
        "qr_token",
        "settlement_token",
        "client_secret",
        "client_assertion",
        "face_attestation",
        "authorization",
        "password",
        "pin",
        "old_pin",
        "code",
        "secret",
    }
)

_PATTERNS: tuple[re.Pattern[str], ...] = (
    # compact JWS / JWT: base64url JSON header starting with '{"'
    re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"),
    # Authorization header values
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    # GB 11643 citizen ID numbers (18 characters, last may be X)
    re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])"),
    # mainland mobile numbers, optionally with +86
    re.compile(r"(?<!\d)(?:\+?86)?1[3-9]\d{9}(?!\d)"),
    # 40-character opaque tokens (settlement tokens)
    re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{40}(?![A-Za-z0-9_-])"),
)

_RESERVED = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName", "color_message"}
)


def redact_text(text: str) -> str:
    """Replace every sensitive-looking substring of ``text``."""
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def redact_value(key: str, value: Any) -> Any:
    """Redact ``value`` if ``key`` names sensitive data; scrub nested structures."""
    if key.lower() in SENSITIVE_KEYS:
        return REDACTED
    return _scrub(value)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {str(k): redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact_text(str(value))


class RedactingFilter(logging.Filter):
    """Scrub a record in place before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the record
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        for key in list(vars(record)):
            if key not in _RESERVED:
                setattr(record, key, redact_value(key, getattr(record, key)))
        if record.exc_info and record.exc_info[1] is not None:
            # Exception messages can quote inputs; keep the type and scrubbed text only.
            exc = record.exc_info[1]
            record.exc_text = f"{type(exc).__name__}: {redact_text(str(exc))}"
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, service, request id, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "service": self.service,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id:
            out["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RESERVED and key not in out:
                out[key] = value
        if record.exc_text:
            out["error"] = record.exc_text
        return orjson.dumps(out, default=str).decode()


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route the root logger (and uvicorn's) to stdout as redacted JSON lines.

    Called by each app factory; idempotent, so tests that build many apps in one
    process do not stack handlers.
    """
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_essc_handler", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stdout)
        handler._essc_handler = True  # type: ignore[attr-defined]
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter(service))
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True
    # Access lines come from our own middleware, with the route template, not the raw path.
    logging.getLogger("uvicorn.access").disabled = True
