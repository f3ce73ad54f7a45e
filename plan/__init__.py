"""Compile: `plan.mesh.compile_mesh(settings)` returns the MeshPlan, every object the stack manages as plain data.
No Pulumi import. What is the same for any mesh (namespaces, the trust chain: Vault, cert-manager, trust-manager) is
here; each mesh's own objects (control plane values, authorization CRDs, alerts on its metrics, in-cluster checks)
live in a package of their own, plan/linkerd/ today."""
