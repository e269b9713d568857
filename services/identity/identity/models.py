"""ORM models of the identity database."""

from __future__ import annotations
