"""The settlement service's domain errors: each one status, one problem type, one plain title."""

from __future__ import annotations

from shared.problems import ProblemError


class PolicyNotFoundError(ProblemError):
    status, slug, title = 404, "policy-not-found", "No policy for this region"


class PolicyMissingError(ProblemError):
    status, slug, title = 422, "policy-missing", "No policy for the insured region"


class HospitalProfileError(ProblemError):
    status, slug, title = 403, "hospital-profile-incomplete", "Hospital profile incomplete"


class SettlementTokenInvalidError(ProblemError):
    status, slug, title = 422, "settlement-token-invalid", "Settlement token invalid"


class SettlementTokenUsedError(ProblemError):
    status, slug, title = 409, "settlement-token-used", "Settlement token already used"


class EcardNotActiveError(ProblemError):
    status, slug, title = 403, "ecard-not-active", "E-card not active"


class PaymentNotEnabledError(ProblemError):
    status, slug, title = 403, "payment-not-enabled", "E-card cannot pay"


class BillTooLargeError(ProblemError):
    status, slug, title = 422, "validation-error", "Request validation failed"


class QuoteNotFoundError(ProblemError):
    status, slug, title = 404, "quote-not-found", "No such quote"


class QuoteExpiredError(ProblemError):
    status, slug, title = 422, "quote-expired", "Quote expired"


class QuoteStaleError(ProblemError):
    status, slug, title = 409, "quote-stale", "Quote stale"


class QuoteAlreadySettledError(ProblemError):
    status, slug, title = 409, "quote-already-settled", "Quote already settled"


class SettlementNotFoundError(ProblemError):
    status, slug, title = 404, "settlement-not-found", "No such settlement"


class AlreadyRefundedError(ProblemError):
    status, slug, title = 409, "settlement-already-refunded", "Settlement already refunded"


class RiskReviewError(ProblemError):
    status, slug, title = 422, "risk-review", "Held for risk review"


class EcardNotFoundError(ProblemError):
    status, slug, title = 404, "ecard-not-found", "No such e-card"


class HolderNotFoundError(ProblemError):
    status, slug, title = 404, "holder-not-found", "No such holder"


class AlertNotFoundError(ProblemError):
    status, slug, title = 404, "alert-not-found", "No such alert"


class AlertAlreadyResolvedError(ProblemError):
    status, slug, title = 409, "alert-already-resolved", "Alert already resolved"


class InvalidCursorError(ProblemError):
    status, slug, title = 422, "validation-error", "Request validation failed"
