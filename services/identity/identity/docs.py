"""OpenAPI documentation helpers: the problem+json schema and per-status error responses.

Defined once in :mod:`shared.openapi` (every service documents its problems alike);
re-exported here for identity's routers and schemas.
"""

from __future__ import annotations

from shared.openapi import FieldError, Problem, problems

__all__ = ["FieldError", "Problem", "problems"]
