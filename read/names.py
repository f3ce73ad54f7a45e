"""Names the program derives from the stack's settings alone, which both the settings' validation and the builders
need: the self-signed roots' subjects, which carry the trust domain (the identity issuer's is graph.identity_issuer_name).

Here, not in the builders' modules, so that validating the settings imports nothing that builds objects (the
builders import the settings' types; the reverse import made an import circle, issue 23).
"""

from __future__ import annotations


def anchor_common_name(trust_domain: str) -> str:
    """The mesh roots' subject, for every stack whatever its mesh: the subject Linkerd's docs give a trust anchor,
    which every existing stack's live root carries. Not per mesh: both meshes sign under the same anchors, and a new
    subject is a new root, so changing it (or a stack switching mesh) would replace the live root, an unplanned
    rotation (docs/layout.md, "One graph, two meshes")."""
    return f"root.linkerd.{trust_domain}"


def workload_root_common_name(trust_domain: str) -> str:
    return f"workload-root.mtls-mesh.{trust_domain}"
