"""Alembic environment of the identity database."""

from shared.migrate import run_env

from identity import models  # noqa: F401  (registers the tables on the metadata)
from identity.db import Base

run_env(Base.metadata)
