"""Alembic environment of the settlement database."""

from shared.migrate import run_env

from settlement import models  # noqa: F401  (registers the tables on the metadata)
from settlement.db import Base

run_env(Base.metadata)
