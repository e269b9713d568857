"""The e-card's effective status from its independent causes, and the webhook of each change.

Causes: the app's link (``link_key``), the app's own suspension (``app_suspended``) and the
physical card (``card_state``: active, suspended, revoked). Every writer changes a cause and
calls :func:`refresh` in the same transaction, which recomputes ``status`` and, when it
changed, adds the partner's webhook to the outbox.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from issuance.models import Ecard
from issuance.webhooks import service as webhook_service
from shared.wire import EcardStatus, EcardWebhookType

CARD_ACTIVE = "active"
CARD_SUSPENDED = "suspended"
CARD_REVOKED = "revoked"

_EVENT_FOR = {
    EcardStatus.ACTIVE: EcardWebhookType.RESUMED,
    EcardStatus.SUSPENDED: EcardWebhookType.SUSPENDED,
    EcardStatus.REVOKED: EcardWebhookType.REVOKED,
}


def effective_status(ecard: Ecard) -> EcardStatus:
    if ecard.link_key is None:
        return EcardStatus.UNLINKED
    if ecard.card_state == CARD_REVOKED:
        return EcardStatus.REVOKED
    if ecard.app_suspended or ecard.card_state == CARD_SUSPENDED:
        return EcardStatus.SUSPENDED
    return EcardStatus.ACTIVE


def refresh(
    session: Any, ecard: Ecard, *, now: datetime, reason: str, reissued: bool = False
) -> EcardStatus:
    """Recompute ``ecard.status``; queue ``ecard.<change>`` (or ``ecard.reissued``) if due."""
    old = ecard.status
    new = effective_status(ecard)
    ecard.status = new.value
    ecard.updated_at = now
    event: EcardWebhookType | None = None
    if reissued:
        event = EcardWebhookType.REISSUED
    elif new.value != old:
        event = _EVENT_FOR.get(new)
    if event is not None:
        webhook_service.enqueue(session, ecard, event, now=now, reason=reason)
    return new
