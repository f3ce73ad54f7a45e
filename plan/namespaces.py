"""Namespace markings every mesh writes the same way: which workload namespaces the service graph keeps out of the
mesh, and which shard stack registers a namespace's policy. Each mesh's own namespace objects (its injection switch,
its annotations) are in plan/linkerd/namespaces.py and plan/istio/namespaces.py; which ports stay out of a proxy is
plan/edges.py's.
"""

from __future__ import annotations

# Marks a workload namespace the service graph keeps out of the mesh on purpose (the policy pack checks for it).
OUT_OF_MESH = "mtls-mesh.io/out-of-mesh"
# On a platform stack's namespace whose policy a shard stack registers: which shard (`kubectl get ns -L` shows the
# owner, and the policy pack checks that namespace's authorization in the shard's preview, not the platform's).
POLICY_SHARD = "mtls-mesh.io/policy-shard"
