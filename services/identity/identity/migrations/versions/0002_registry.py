"""Holder registry, physical cards, clients, verifications, SMS outbox, event outbox.

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

TZ = sa.DateTime(timezone=True)
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "holder",
        sa.Column("holder_ref", sa.String(32), nullable=False),
        sa.Column("id_number_enc", sa.LargeBinary(), nullable=False),
        sa.Column("id_number_bidx", sa.LargeBinary(32), nullable=False),
        sa.Column("name_enc", sa.LargeBinary(), nullable=False),
        sa.Column("phone_enc", sa.LargeBinary(), nullable=False),
        sa.Column("phone_bidx", sa.LargeBinary(32), nullable=False),
        sa.Column("gender", sa.String(6), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("insured_region", sa.String(6), nullable=False),
        sa.Column("insurance_type", sa.String(10), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("holder_ref", name="pk_holder"),
        sa.UniqueConstraint("id_number_bidx", name="uq_holder_id_number_bidx"),
    )
    op.create_index("ix_holder_phone_bidx", "holder", ["phone_bidx"])

    op.create_table(
        "card",
        sa.Column("card_ref", sa.String(32), nullable=False),
        sa.Column("card_number", sa.String(9), nullable=False),
        sa.Column("holder_ref", sa.String(32), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("card_ref", name="pk_card"),
        sa.UniqueConstraint("card_number", name="uq_card_card_number"),
        sa.ForeignKeyConstraint(
            ["holder_ref"], ["holder.holder_ref"], name="fk_card_holder_ref_holder"
        ),
    )
    op.create_index("ix_card_holder_ref", "card", ["holder_ref"])
    # Exactly one active card per holder, enforced by the database on both dialects.
    op.create_index(
        "uq_card_one_active_per_holder",
        "card",
        ["holder_ref"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )

    op.create_table(
        "card_status_change",
        sa.Column("id", SEQ, sa.Identity(), nullable=False),
        sa.Column("card_ref", sa.String(32), nullable=False),
        sa.Column("from_status", sa.String(10), nullable=True),
        sa.Column("to_status", sa.String(10), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("changed_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_card_status_change"),
        sa.ForeignKeyConstraint(
            ["card_ref"], ["card.card_ref"], name="fk_card_status_change_card_ref_card"
        ),
    )
    op.create_index("ix_card_status_change_card_ref", "card_status_change", ["card_ref"])

    op.create_table(
        "client",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=True),
        sa.Column("level", sa.SmallInteger(), nullable=True),
        sa.Column("scopes", sa.String(512), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("jwks", sa.JSON(), nullable=True),
        sa.Column("jwks_uri", sa.String(512), nullable=True),
        sa.Column("jwks_fetched_at", TZ, nullable=True),
        sa.Column("secret_hash", sa.String(256), nullable=True),
        sa.Column("webhook_url", sa.String(512), nullable=True),
        sa.Column("webhook_secret_enc", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("disabled_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("client_id", name="pk_client"),
    )
    op.create_index("ix_client_status", "client", ["status"])

    op.create_table(
        "used_assertion",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("jti", sa.String(128), nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti", name="pk_used_assertion"),
    )
    op.create_index("ix_used_assertion_expires_at", "used_assertion", ["expires_at"])

    op.create_table(
        "verification",
        sa.Column("verification_id", sa.String(40), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("holder_ref", sa.String(32), nullable=False),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("otp_hash", sa.LargeBinary(32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("verified_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("verification_id", name="pk_verification"),
        sa.ForeignKeyConstraint(
            ["holder_ref"], ["holder.holder_ref"], name="fk_verification_holder_ref_holder"
        ),
    )
    op.create_index("ix_verification_client_id", "verification", ["client_id"])

    op.create_table(
        "sms_message",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("phone_enc", sa.LargeBinary(), nullable=False),
        sa.Column("phone_bidx", sa.LargeBinary(32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("code", sa.String(6), nullable=False),
        sa.Column("sent_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sms_message"),
    )
    op.create_index("ix_sms_message_phone_bidx", "sms_message", ["phone_bidx"])

    op.create_table(
        "outbox_event",
        sa.Column("seq", SEQ, sa.Identity(), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("occurred_at", TZ, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox_event"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_event_id"),
    )

    op.create_table(
        "idempotency_record",
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(32), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("client_id", "key", name="pk_idempotency_record"),
    )
    op.create_index("ix_idempotency_record_expires_at", "idempotency_record", ["expires_at"])


def downgrade() -> None:
    for table in (
        "idempotency_record",
        "outbox_event",
        "sms_message",
        "verification",
        "used_assertion",
        "client",
        "card_status_change",
        "card",
        "holder",
    ):
        op.drop_table(table)
