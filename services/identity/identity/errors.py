"""Domain errors of the identity service, each one problem type (RFC 9457)."""

from __future__ import annotations

from shared.problems import ConflictError, LockedError, NotFoundError, ProblemError


class HolderNotFoundError(NotFoundError):
    slug, title = "holder-not-found", "Holder not found"


class CardNotFoundError(NotFoundError):
    slug, title = "card-not-found", "Card not found"


class ClientNotFoundError(NotFoundError):
    slug, title = "client-not-found", "Client not found"


class VerificationNotFoundError(NotFoundError):
    slug, title = "verification-not-found", "Verification not found"


class CardTransitionError(ConflictError):
    slug, title = "card-transition-invalid", "Card status change not allowed"


class CardNumberTakenError(ConflictError):
    slug, title = "card-number-taken", "Card number already registered"


class DetailsMismatchError(ProblemError):
    """One message whichever detail was wrong (API.md: indistinguishable answers)."""

    status, slug, title = 422, "verification-failed", "Verification failed"

    def __init__(self) -> None:
        super().__init__("The details do not match a holder with an active social security card.")


class FaceAttestationRejectedError(ProblemError):
    status, slug, title = 422, "face-attestation-rejected", "Face attestation rejected"


class OtpInvalidError(ProblemError):
    status, slug, title = 422, "otp-invalid", "Wrong code"


class VerificationExpiredError(ProblemError):
    status, slug, title = 422, "verification-expired", "Verification expired"


class VerificationLockedError(LockedError):
    slug, title = "verification-locked", "Verification locked"


class VerificationDoneError(ConflictError):
    slug, title = "verification-already-confirmed", "Verification already confirmed"


class ClientRejectedError(ProblemError):
    status, slug, title = 422, "client-rejected", "Client registration rejected"


class JwksUriRejectedError(ProblemError):
    status, slug, title = 422, "jwks-uri-rejected", "jwks_uri rejected"
