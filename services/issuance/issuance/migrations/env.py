"""Alembic environment of the issuance database."""

from issuance import models  # noqa: F401  (registers the tables on the metadata)
from issuance.db import Base
from shared.migrate import run_env

run_env(Base.metadata)
