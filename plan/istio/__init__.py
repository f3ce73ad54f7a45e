"""Istio as the mesh (`mesh: istio`, issue 32): what only Istio needs, beside plan/linkerd/, built from the same
Settings and service graph.

- names.py: Istio's and istio-csr's own names (namespaces, services, labels, annotations, ports);
- control_plane.py: the values of the pinned base, istiod and istio-csr charts;
- trust.py: the cert-manager and Vault objects of Istio's chain under the mesh root the Linkerd path uses;
- authorization.py: PeerAuthentication, AuthorizationPolicy, Sidecar, ServiceEntry and NetworkPolicies from the graph.
"""
