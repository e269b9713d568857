"""Alembic environment of the identity database."""

from identity import models  # noqa: F401  (registers the tables on the metadata)
from identity.db import Base
from shared.migrate import run_env

run_env(Base.metadata)
