"""search: ``patient`` answered from the ``subject`` reference rows; its own rows dropped

``fhir_server.search.shared_rows``: a reference parameter whose path is a broader one's
(``patient`` and ``subject``) no longer has index rows of its own. Upgrade deletes them;
downgrade writes them again from the subject rows, with the extractor's rule (a target of
type Patient, or an absolute URL of no known type).

Revision ID: 0006
Revises: 0005
"""
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# The registry's shared parameters at this revision (registry._share_rows): (own, broader).
SHARED = [(f"{t}.patient", f"{t}.subject") for t in
          ("Observation", "DeviceUseStatement", "Encounter", "RiskAssessment", "MedicationAdministration")]


def upgrade() -> None:
    for own, _ in SHARED:
        op.execute(f"DELETE FROM idx_reference WHERE param = '{own}'")


def downgrade() -> None:
    for own, broader in SHARED:
        op.execute(
            "INSERT INTO idx_reference (rid, param, target_type, target_id, url) "
            f"SELECT rid, '{own}', target_type, target_id, url FROM idx_reference "
            f"WHERE param = '{broader}' AND (target_type = 'Patient' "
            "OR (target_type IS NULL AND url IS NOT NULL))")
