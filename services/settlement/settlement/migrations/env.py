"""Alembic environment of the settlement database."""

from settlement import models  # noqa: F401  (registers the tables on the metadata)
from settlement.db import Base
from shared.migrate import run_env

run_env(Base.metadata)
