"""E-cards, scans, settlement tokens, web-page sessions, the event cursor and the webhook outbox.

Hand-written; runs on SQLite and PostgreSQL.

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

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ecard",
        sa.Column("seq", BigId, autoincrement=True, nullable=False),
        sa.Column("ecard_id", sa.String(32), nullable=False),
        sa.Column("partner_client_id", sa.String(128), nullable=False),
        sa.Column("holder_ref", sa.String(128), nullable=False),
        sa.Column("link_key", sa.String(300), nullable=True),
        sa.Column("pairwise_id", sa.String(64), nullable=False),
        sa.Column("card_ref", sa.String(128), nullable=False),
        sa.Column("sign_no", sa.String(32), nullable=False),
        sa.Column("sign_seq", sa.Integer(), nullable=False),
        sa.Column("sign_level", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("app_suspended", sa.Boolean(), nullable=False),
        sa.Column("card_state", sa.String(16), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("insured_region", sa.String(6), nullable=False),
        sa.Column("insurance_type", sa.String(16), nullable=False),
        sa.Column("gender", sa.String(8), nullable=False),
        sa.Column("birth_date_enc", sa.LargeBinary(), nullable=False),
        sa.Column("name_masked_enc", sa.LargeBinary(), nullable=False),
        sa.Column("id_number_masked_enc", sa.LargeBinary(), nullable=False),
        sa.Column("pin_hash", sa.String(200), nullable=True),
        sa.Column("pin_failures", sa.Integer(), nullable=False),
        sa.Column("qr_not_before", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("valid_until", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("unlinked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_ecard"),
        sa.UniqueConstraint("ecard_id", name="uq_ecard_ecard_id"),
        sa.UniqueConstraint("link_key", name="uq_ecard_link_key"),
        sa.UniqueConstraint("sign_no", name="uq_ecard_sign_no"),
    )
    op.create_index("ix_ecard_holder_card", "ecard", ["holder_ref", "card_ref"])
    op.create_index("ix_ecard_holder_ref", "ecard", ["holder_ref"])
    op.create_index("ix_ecard_partner_client_id", "ecard", ["partner_client_id"])

    op.create_table(
        "scan",
        sa.Column("scan_id", sa.String(32), nullable=False),
        sa.Column("jti", sa.String(24), nullable=False),
        sa.Column("ecard_seq", sa.BigInteger(), nullable=False),
        sa.Column("scanner_client_id", sa.String(128), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("qr_purpose", sa.String(16), nullable=False),
        sa.Column("qr_expires_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("scan_id", name="pk_scan"),
        sa.UniqueConstraint("jti", name="uq_scan_jti"),
    )
    op.create_index("ix_scan_ecard_seq", "scan", ["ecard_seq"])

    op.create_table(
        "settlement_token",
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("scan_id", sa.String(32), nullable=False),
        sa.Column("ecard_seq", sa.BigInteger(), nullable=False),
        sa.Column("hospital_client_id", sa.String(128), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("redeemed_at", TS, nullable=True),
        sa.Column("redemption_ref", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_settlement_token"),
    )

    op.create_table(
        "used_assertion",
        sa.Column("jti", sa.String(128), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("jti", name="pk_used_assertion"),
    )
    op.create_index("ix_used_assertion_expires_at", "used_assertion", ["expires_at"])

    op.create_table(
        "h5_session",
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("ecard_seq", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_h5_session"),
    )
    op.create_index("ix_h5_session_expires_at", "h5_session", ["expires_at"])

    op.create_table(
        "event_cursor",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("after_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_event_cursor"),
    )
    op.execute(
        "INSERT INTO event_cursor (name, after_seq, updated_at) "
        "VALUES ('identity', 0, CURRENT_TIMESTAMP)"
    )
    op.create_table(
        "processed_event",
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("processed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_processed_event"),
    )

    op.create_table(
        "webhook_outbox",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("partner_client_id", sa.String(128), nullable=False),
        sa.Column("ecard_id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_outbox"),
        sa.UniqueConstraint("event_id", name="uq_webhook_outbox_event_id"),
    )
    op.create_index(
        "ix_webhook_outbox_pending",
        "webhook_outbox",
        ["next_attempt_at"],
        postgresql_where=sa.text("delivered_at IS NULL"),
        sqlite_where=sa.text("delivered_at IS NULL"),
    )

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


def downgrade() -> None:
    for table in (
        "idempotency_record",
        "webhook_outbox",
        "processed_event",
        "event_cursor",
        "h5_session",
        "used_assertion",
        "settlement_token",
        "scan",
        "ecard",
    ):
        op.drop_table(table)
