"""The per-request context that logs and outgoing calls read: the request id."""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

_request_id: ContextVar[str | None] = ContextVar("essc_request_id", default=None)

# A caller-supplied id is echoed only if it is short and harmless in logs and headers.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id() -> str:
    """A fresh random request id (128 bits, hex)."""
    return secrets.token_hex(16)


def accept_request_id(candidate: str | None) -> str:
    """The caller's id if it is valid, otherwise a new one."""
    if candidate and _VALID_REQUEST_ID.match(candidate):
        return candidate
    return new_request_id()


def current_request_id() -> str | None:
    """The id of the request being served in this task, if any."""
    return _request_id.get()


def set_request_id(value: str | None) -> object:
    """Bind ``value`` for the current task; returns a token for :func:`reset_request_id`."""
    return _request_id.set(value)


def reset_request_id(token: object) -> None:
    """Undo :func:`set_request_id`."""
    _request_id.reset(token)  # type: ignore[arg-type]
