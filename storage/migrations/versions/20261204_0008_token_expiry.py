"""api_tokens: tokens made before every token had a lifetime expire 90 days after this upgrade (issue 9 #7)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 18:40:00
"""

from __future__ import annotations

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE api_tokens SET expires_at = now() + interval '90 days' WHERE expires_at IS NULL")


def downgrade() -> None:
    pass  # the lifetimes given stay: forgetting them would make tokens immortal again
