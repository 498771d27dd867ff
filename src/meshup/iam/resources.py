"""What policies see of a mesh: the one mapping from the domain's mesh to authorization facts."""

from __future__ import annotations

from meshup.iam.service import MeshFacts
from meshup.meshes.model import Mesh


def mesh_facts(mesh: Mesh) -> MeshFacts:
    """The mesh's id (for its URN), enterprise project and tags (``g:ResourceTag/<key>``)."""
    return MeshFacts(mesh.id, mesh.enterprise_project_id, mesh.tag_pairs)
