"""ORM models of the issuance database."""

from __future__ import annotations
