"""Members' roles (member | coordinator), from MemberJoined / MemberUpdated: card disputes are
emailed to the group's coordinators.

0001 creates member_directory from the current metadata, so on a new database the column and its
check exist already: hence IF NOT EXISTS. Rows kept before this revision get NULL (role unknown)
until the member's next MemberUpdated; see the README ("Card disputes").

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE member_directory ADD COLUMN IF NOT EXISTS role TEXT")
    op.execute(
        """
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'member_directory_role') THEN
                ALTER TABLE member_directory
                    ADD CONSTRAINT member_directory_role CHECK (role IN ('member', 'coordinator'));
            END IF;
        END $$
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE member_directory DROP CONSTRAINT IF EXISTS member_directory_role")
    op.execute("ALTER TABLE member_directory DROP COLUMN IF EXISTS role")
