"""ORM models of the settlement database."""

from __future__ import annotations
