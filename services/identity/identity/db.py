"""The identity service's declarative base and its per-request session dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

from shared.db import new_metadata, request_session


class Base(DeclarativeBase):
    """Every table of the identity database (and only of it)."""

    metadata = new_metadata()


SessionDep = Annotated[AsyncSession, Depends(request_session, scope="function")]
