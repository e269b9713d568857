"""Settlement schema: policies, holders, the double-entry ledger, quotes, settlements, refunds,
the event cursor, risk profiles and alerts, idempotency records.

Hand-written. What the database enforces, and where:

| invariant                                   | PostgreSQL                         | SQLite            |
|---------------------------------------------|------------------------------------|-------------------|
| personal balance >= 0                       | CHECK                              | CHECK             |
| ledger rows immutable                       | BEFORE UPDATE/DELETE/TRUNCATE trig | BEFORE UPDATE/DELETE trigger |
| every ledger transaction sums to zero       | deferred constraint trigger        | checked in code   |
| a ledger transaction has at least two legs  | deferred constraint trigger        | checked in code   |
| one ledger tx per settlement/refund         | UNIQUE (kind, ref)                 | UNIQUE            |

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
IMMUTABLE = ("ledger_tx", "ledger_entry", "settlement", "refund")

PG_FUNCTIONS = (
    """
CREATE FUNCTION essc_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% rows are immutable (% refused)', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'restrict_violation';
END $$
""",
    """
CREATE FUNCTION essc_ledger_tx_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  total bigint;
BEGIN
  SELECT coalesce(sum(amount_fen), 0) INTO total FROM ledger_entry WHERE tx_id = NEW.tx_id;
  IF total <> 0 THEN
    RAISE EXCEPTION 'ledger transaction % does not balance (sum % fen)', NEW.tx_id, total
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$
""",
    """
CREATE FUNCTION essc_ledger_tx_has_legs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT count(*) FROM ledger_entry WHERE tx_id = NEW.id) < 2 THEN
    RAISE EXCEPTION 'ledger transaction % has fewer than two legs', NEW.id
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$
""",
)


def _postgres_triggers() -> None:
    for function in PG_FUNCTIONS:
        op.execute(function)
    for table in IMMUTABLE:
        op.execute(
            f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION essc_immutable()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION essc_immutable()"
        )
    op.execute(
        "CREATE CONSTRAINT TRIGGER ledger_entry_balanced AFTER INSERT ON ledger_entry "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION essc_ledger_tx_balanced()"
    )
    op.execute(
        "CREATE CONSTRAINT TRIGGER ledger_tx_has_legs AFTER INSERT ON ledger_tx "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION essc_ledger_tx_has_legs()"
    )


def _sqlite_triggers() -> None:
    for table in IMMUTABLE:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} rows are immutable'); END"
            )


def upgrade() -> None:
    op.create_table(
        "idempotency_record",
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(32), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("client_id", "key", name="pk_idempotency_record"),
    )
    op.create_index("ix_idempotency_record_expires_at", "idempotency_record", ["expires_at"])

    op.create_table(
        "policy",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("params_sha256", sa.String(64), nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("loaded_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_policy"),
        sa.UniqueConstraint(
            "region_code", "year", "version", name="uq_policy_region_code_year_version"
        ),
    )

    op.create_table(
        "holder",
        sa.Column("holder_ref", sa.String(64), nullable=False),
        sa.Column("insured_region", sa.String(6), nullable=False),
        sa.Column("insurance_type", sa.String(16), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("gender", sa.String(8), nullable=True),
        sa.Column("opening_applied", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("holder_ref", name="pk_holder"),
    )

    op.create_table(
        "holder_year",
        sa.Column("holder_ref", sa.String(64), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("deductible_used_fen", sa.BigInteger(), nullable=False),
        sa.Column("fund_paid_fen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("deductible_used_fen >= 0", name="ck_holder_year_deductible_nonneg"),
        sa.CheckConstraint("fund_paid_fen >= 0", name="ck_holder_year_fund_paid_nonneg"),
        sa.PrimaryKeyConstraint("holder_ref", "year", name="pk_holder_year"),
    )

    op.create_table(
        "account",
        sa.Column("id", sa.String(160), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner_ref", sa.String(128), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=True),
        sa.Column("balance_fen", sa.BigInteger(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "kind <> 'personal' OR (balance_fen IS NOT NULL AND balance_fen >= 0)",
            name="ck_account_personal_balance_nonneg",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_account"),
    )

    op.create_table(
        "ledger_tx",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.Column("posted_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_tx"),
        sa.UniqueConstraint("kind", "ref", name="uq_ledger_tx_kind_ref"),
    )
    op.create_index("ix_ledger_tx_posted_at", "ledger_tx", ["posted_at"])

    op.create_table(
        "ledger_entry",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("tx_id", sa.String(40), nullable=False),
        sa.Column("account_id", sa.String(160), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("posted_at", TS, nullable=False),
        sa.CheckConstraint("amount_fen <> 0", name="ck_ledger_entry_amount_nonzero"),
        sa.ForeignKeyConstraint(
            ["tx_id"], ["ledger_tx.id"], name="fk_ledger_entry_tx_id_ledger_tx"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name="fk_ledger_entry_account_id_account"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entry"),
    )
    op.create_index("ix_ledger_entry_tx_id", "ledger_entry", ["tx_id"])
    op.create_index("ix_ledger_entry_account_posted", "ledger_entry", ["account_id", "posted_at"])

    op.create_table(
        "quote",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("hospital_client_id", sa.String(128), nullable=False),
        sa.Column("hospital_level", sa.Integer(), nullable=False),
        sa.Column("treatment_region", sa.String(6), nullable=False),
        sa.Column("settlement_token", sa.String(40), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("ecard_id", sa.String(64), nullable=False),
        sa.Column("partner_client_id", sa.String(128), nullable=False),
        sa.Column("holder_ref", sa.String(64), nullable=False),
        sa.Column("insured_region", sa.String(6), nullable=False),
        sa.Column("policy_id", sa.BigInteger(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("visit_type", sa.String(16), nullable=False),
        sa.Column("cross_region", sa.Boolean(), nullable=False),
        sa.Column("total_fen", sa.BigInteger(), nullable=False),
        sa.Column("deductible_fen", sa.BigInteger(), nullable=False),
        sa.Column("fund_pay_fen", sa.BigInteger(), nullable=False),
        sa.Column("account_pay_fen", sa.BigInteger(), nullable=False),
        sa.Column("cash_pay_fen", sa.BigInteger(), nullable=False),
        sa.Column("assumed_balance_fen", sa.BigInteger(), nullable=False),
        sa.Column("assumed_deductible_used_fen", sa.BigInteger(), nullable=False),
        sa.Column("assumed_fund_paid_fen", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["policy_id"], ["policy.id"], name="fk_quote_policy_id_policy"),
        sa.PrimaryKeyConstraint("id", name="pk_quote"),
    )
    op.create_index("ix_quote_expires_at", "quote", ["expires_at"])

    op.create_table(
        "settlement",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("quote_id", sa.String(40), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("hospital_client_id", sa.String(128), nullable=False),
        sa.Column("holder_ref", sa.String(64), nullable=False),
        sa.Column("ecard_id", sa.String(64), nullable=False),
        sa.Column("insured_region", sa.String(6), nullable=False),
        sa.Column("treatment_region", sa.String(6), nullable=False),
        sa.Column("cross_region", sa.Boolean(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("total_fen", sa.BigInteger(), nullable=False),
        sa.Column("deductible_fen", sa.BigInteger(), nullable=False),
        sa.Column("fund_pay_fen", sa.BigInteger(), nullable=False),
        sa.Column("account_pay_fen", sa.BigInteger(), nullable=False),
        sa.Column("cash_pay_fen", sa.BigInteger(), nullable=False),
        sa.Column("risk_score", sa.Integer(), nullable=False),
        sa.Column("risk_flags", sa.JSON(), nullable=False),
        sa.Column("settled_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["quote_id"], ["quote.id"], name="fk_settlement_quote_id_quote"),
        sa.PrimaryKeyConstraint("id", name="pk_settlement"),
        sa.UniqueConstraint("quote_id", name="uq_settlement_quote_id"),
        sa.UniqueConstraint("token_sha256", name="uq_settlement_token_sha256"),
    )
    op.create_index(
        "ix_settlement_hospital_settled", "settlement", ["hospital_client_id", "settled_at"]
    )
    op.create_index("ix_settlement_holder_settled", "settlement", ["holder_ref", "settled_at"])

    op.create_table(
        "refund",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("settlement_id", sa.String(40), nullable=False),
        sa.Column("hospital_client_id", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("refunded_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["settlement_id"], ["settlement.id"], name="fk_refund_settlement_id_settlement"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_refund"),
        sa.UniqueConstraint("settlement_id", name="uq_refund_settlement_id"),
    )
    op.create_index("ix_refund_hospital_client_id", "refund", ["hospital_client_id"])

    op.create_table(
        "event_cursor",
        sa.Column("consumer", sa.String(64), nullable=False),
        sa.Column("after_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("consumer", name="pk_event_cursor"),
    )
    op.create_table(
        "processed_event",
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("processed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_processed_event"),
    )

    op.create_table(
        "risk_profile",
        sa.Column("subject", sa.String(160), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("mean", sa.Float(), nullable=False),
        sa.Column("m2", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("subject", name="pk_risk_profile"),
    )
    op.create_table(
        "risk_failure",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("holder_ref", sa.String(64), nullable=False),
        sa.Column("hospital_client_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_risk_failure"),
    )
    op.create_index("ix_risk_failure_holder_at", "risk_failure", ["holder_ref", "at"])
    op.create_table(
        "risk_alert",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("holder_ref", sa.String(64), nullable=False),
        sa.Column("hospital_client_id", sa.String(128), nullable=False),
        sa.Column("quote_id", sa.String(40), nullable=True),
        sa.Column("settlement_id", sa.String(40), nullable=True),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("resolved_by", sa.String(128), nullable=True),
        sa.Column("resolution", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_risk_alert"),
    )
    op.create_index("ix_risk_alert_status_created", "risk_alert", ["status", "created_at"])

    if op.get_bind().dialect.name == "postgresql":
        _postgres_triggers()
    else:
        _sqlite_triggers()


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_tx_has_legs ON ledger_tx")
        op.execute("DROP TRIGGER IF EXISTS ledger_entry_balanced ON ledger_entry")
    for table in (
        "risk_alert",
        "risk_failure",
        "risk_profile",
        "processed_event",
        "event_cursor",
        "refund",
        "settlement",
        "quote",
        "ledger_entry",
        "ledger_tx",
        "account",
        "holder_year",
        "holder",
        "policy",
        "idempotency_record",
    ):
        op.drop_table(table)
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS essc_ledger_tx_has_legs()")
        op.execute("DROP FUNCTION IF EXISTS essc_ledger_tx_balanced()")
        op.execute("DROP FUNCTION IF EXISTS essc_immutable()")
