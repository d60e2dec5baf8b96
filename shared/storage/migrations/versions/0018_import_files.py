"""the files an import has read, known by their first records too

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06

An import knows a file by its name, to resume it. Another file under a name imported
before was taken for it: its lines up to the earlier file's length were skipped as
"read by an earlier run" (found from outside). ``import_files`` keeps a digest of each
file's first records; a file whose first records differ is refused, not skipped.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "import_files",
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_import_files")),
    )


def downgrade() -> None:
    op.drop_table("import_files")
