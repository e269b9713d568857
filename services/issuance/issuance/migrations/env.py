"""Alembic environment of the issuance database."""

from shared.migrate import run_env

from issuance import models  # noqa: F401  (registers the tables on the metadata)
from issuance.db import Base

run_env(Base.metadata)
