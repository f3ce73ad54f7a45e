"""The RBAC resource (the CRD's spec.names.plural) of each Linkerd policy kind the program writes or reads, for the
preview identity's ClusterRole and the shards' workspaces (plan/preview_identity.py RESOURCES): linkerd-crds chart
templates/policy/*.yaml, linkerd2 edge-26.8.3 (tests/test_preview_identity.py checks them against the pinned CRDs).
"""

from __future__ import annotations

KIND_RESOURCES = {
    ("policy.linkerd.io", "Server"): "servers",
    ("policy.linkerd.io", "AuthorizationPolicy"): "authorizationpolicies",
    ("policy.linkerd.io", "MeshTLSAuthentication"): "meshtlsauthentications",
    ("policy.linkerd.io", "NetworkAuthentication"): "networkauthentications",
    ("policy.linkerd.io", "HTTPRoute"): "httproutes",
    ("policy.linkerd.io", "EgressNetwork"): "egressnetworks",
    ("policy.linkerd.io", "ServerAuthorization"): "serverauthorizations",
    # A cluster stack's Links (plan/linkerd/multicluster.py): the linkerd-multicluster chart's templates/link-crd.yaml.
    ("multicluster.linkerd.io", "Link"): "links",
}
