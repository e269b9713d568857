"""The issuance service's domain errors: each one status, one problem slug, one title."""

from __future__ import annotations

from typing import Any

from shared.problems import ProblemError


class EcardNotFoundError(ProblemError):
    """No such e-card for this app (another app's e-card is reported the same way)."""

    status, slug, title = 404, "ecard-not-found", "E-card not found"


class AssertionInvalidError(ProblemError):
    status, slug, title = 422, "assertion-invalid", "Identity assertion invalid"


class AssertionUsedError(ProblemError):
    status, slug, title = 422, "assertion-used", "Identity assertion already used"


class CardNotActiveError(ProblemError):
    status, slug, title = 409, "card-not-active", "Physical card not active"


class EcardNotActiveError(ProblemError):
    status, slug, title = 403, "ecard-not-active", "E-card not active"


class EcardStateConflictError(ProblemError):
    status, slug, title = 409, "ecard-state-conflict", "E-card state does not allow this"


class PinRejectedError(ProblemError):
    """A proposed PIN breaks a rule (``errors`` names the field)."""

    status, slug, title = 422, "pin-rejected", "PIN not acceptable"

    def __init__(self, detail: str, *, field: str = "pin", **kwargs: Any) -> None:
        super().__init__(detail, errors=[{"field": field, "message": detail}], **kwargs)


class PinRequiredError(ProblemError):
    status, slug, title = 422, "pin-required", "PIN required"

    def __init__(self, detail: str, *, field: str = "pin") -> None:
        super().__init__(detail, errors=[{"field": field, "message": detail}])


class PinIncorrectError(ProblemError):
    status, slug, title = 422, "pin-incorrect", "PIN incorrect"


class PinLockedError(ProblemError):
    status, slug, title = 423, "pin-locked", "Payment locked after too many wrong PINs"


class PinNotSetError(ProblemError):
    status, slug, title = 409, "pin-not-set", "No PIN set"


class PaymentNotEnabledError(ProblemError):
    status, slug, title = 403, "payment-not-enabled", "Payment not enabled (sign level 1)"


class QrInvalidError(ProblemError):
    status, slug, title = 422, "qr-invalid", "QR code invalid"


class QrExpiredError(ProblemError):
    status, slug, title = 422, "qr-expired", "QR code expired"


class QrAlreadyUsedError(ProblemError):
    status, slug, title = 409, "qr-already-used", "QR code already used"


class SettlementTokenInvalidError(ProblemError):
    status, slug, title = 404, "settlement-token-invalid", "Settlement token invalid"


class SettlementTokenUsedError(ProblemError):
    status, slug, title = 409, "settlement-token-used", "Settlement token already used"


class SessionExpiredError(ProblemError):
    status, slug, title = 410, "session-expired", "Link expired"
