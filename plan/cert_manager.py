"""cert-manager's side of the mesh, as objects: cert-manager and trust-manager's values (optionally installed), the
issuer shapes every mesh uses (a `ca:` or Vault Issuer), the anchors' ConfigMaps and key Secrets, the workload roots'
bundle for clients of TLS-terminating workloads, and certificates for workloads that terminate TLS themselves. Each
mesh's own CA under the anchors is its own: plan/linkerd/identity.py (the identity issuer and Linkerd's trust
bundle), plan/istio/trust.py (the Istio CA).

Every issuer is a namespaced Issuer, so a namespace can only use its own: the mesh CA's issuers live in the mesh's
control-plane namespace; with
Vault, each namespace with certificate services has a workload issuer whose Vault login signs only that namespace's
names. There are no ClusterIssuers (a ClusterIssuer is usable from every namespace, and cert-manager approves every
request by default). Without Vault there is no in-cluster workload issuer at all: the program signs those certificates.

Every object is built by a pure function below; register_cert_manager.CertManager registers them, in order: install
-> anchor material and issuers -> Certificates and the Bundles.
"""

from __future__ import annotations

import base64
from typing import Any, Callable, Mapping

from read.graph import Service, spiffe_id, workload_dns_names
from plan.objects import WAIT_FOR_READY, WAIT_FOR_SYNCED, metadata
from read.settings import CertManagerSettings, Settings, VaultSettings
from plan.vault_pki import VAULT_ISSUER_SERVICE_ACCOUNT, VAULT_TOKEN_AUDIENCE, issuer_signing_path, workload_signing_path

JETSTACK_CHARTS = "https://charts.jetstack.io"
CERT_MANAGER_API = "cert-manager.io/v1"
TRUST_MANAGER_API = "trust.cert-manager.io/v1alpha1"
TRUST_ROOTS_KEY = "ca-bundle.crt"
# The workload roots, in every namespace of the graph (same key as the mesh roots' bundle).
WORKLOAD_TRUST = "mtls-mesh-workload-trust"
ANCHOR_KEY = "ca.crt"
WORKLOAD_USAGES = ["digital signature", "key agreement", "server auth", "client auth"]


def anchor_object_name(anchor: str) -> str:
    return f"mtls-mesh-anchor-{anchor}"


def workload_anchor_object_name(anchor: str) -> str:
    return f"mtls-mesh-workload-anchor-{anchor}"


def identity_issuer_name(anchor: str) -> str:
    return f"mtls-mesh-identity-{anchor}"


def workload_issuer_name(anchor: str) -> str:
    return f"mtls-mesh-workload-{anchor}"


def cert_manager_values(monitoring_labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """With the mesh's alerts on, a ServiceMonitor (chart values prometheus.servicemonitor.*) makes the cluster's
    Prometheus scrape the certmanager_* metrics the expiry and readiness alerts are written on."""
    values: dict[str, Any] = {"crds": {"enabled": True}}
    if monitoring_labels is not None:
        # honorLabels: the metrics' own `namespace` (the Certificate's) must survive the scrape; with the chart's
        # default (false) Prometheus renames it `exported_namespace` and sets `namespace` to cert-manager's own, and
        # every per-namespace certificate alert would match nothing (or everything).
        values["prometheus"] = {"enabled": True,
                                "servicemonitor": {"enabled": True, "honorLabels": True,
                                                   "labels": dict(monitoring_labels)}}
    return values


def trust_manager_values(trust_namespace: str) -> dict[str, Any]:
    return {"crds": {"enabled": True}, "app": {"trust": {"namespace": trust_namespace}}}


def anchor_secret(anchor: str, certificate_pem: Any, private_key_pem: Any, namespace: str) -> dict[str, Any]:
    """A self-signed anchor as the mesh CA's issuer reads it (tls.crt/tls.key). Only in the mesh control plane's
    namespace (MeshPlan.anchor_key_namespace): whoever can read Secrets there already holds the mesh CA's key, which
    every proxy trusts just the same."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": metadata(anchor_object_name(anchor), namespace),
            "stringData": {"tls.crt": certificate_pem, "tls.key": private_key_pem}}


def anchor_config_map(anchor: str, namespace: str, certificate_pem: Any) -> dict[str, Any]:
    """A mesh root certificate, public, where trust-manager can source it (its trust namespace)."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(anchor_object_name(anchor), namespace),
            "data": {ANCHOR_KEY: certificate_pem}}


def workload_anchor_config_map(anchor: str, namespace: str, certificate_pem: Any) -> dict[str, Any]:
    """A workload root certificate, public, where trust-manager can source it."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(workload_anchor_object_name(anchor), namespace),
            "data": {ANCHOR_KEY: certificate_pem}}


def roots_bundle(settings: Settings, name: str, key: str, namespace_selector: dict[str, Any]) -> dict[str, Any]:
    """A trust-manager Bundle of the mesh roots a mesh's CA trusts: the anchors the bundle carries in this rotation
    phase (the previous and the next during a rotation), as ConfigMap `name`/`key` where `namespace_selector` says."""
    return {
        "apiVersion": TRUST_MANAGER_API, "kind": "Bundle", "metadata": metadata(name, annotations=WAIT_FOR_SYNCED),
        "spec": {
            "sources": [{"configMap": {"name": anchor_object_name(anchor), "key": ANCHOR_KEY}}
                        for anchor in settings.pki.rotation.bundle_anchors],
            "target": {"configMap": {"key": key}, "namespaceSelector": namespace_selector},
        },
    }


def anchor_issuers(settings: Settings, namespace: str, issuer_name_of: Callable[[str], str],
                   auth_role: str | None) -> dict[str, dict[str, Any]]:
    """The issuers of a mesh's CA, one per anchor still in use, by name, all in `namespace` (its control plane's):
    without Vault a `ca:` Issuer on the anchor's key Secret there, with Vault one signing through the anchor's
    intermediate mount with the mesh CA's own login (`auth_role`)."""
    issuers: dict[str, dict[str, Any]] = {}
    for anchor in settings.pki.rotation.anchors:
        name = issuer_name_of(anchor)
        if settings.vault is None:
            issuers[name] = ca_issuer(name, namespace, anchor_object_name(anchor))
        else:
            assert auth_role is not None
            issuers[name] = vault_issuer(name, namespace, settings.vault, issuer_signing_path(settings.vault, anchor),
                                         auth_role)
    return issuers


def mesh_ca_certificate(settings: Settings, name: str, namespace: str, issuer: str, common_name: str,
                        usages: list[str], dns_names: list[str] | None = None) -> dict[str, Any]:
    """A mesh's CA under the issuing anchor (Linkerd's identity issuer, the Istio CA): ECDSA P-256, a new key at every
    renewal, the settings' issuer lifetime; its Secret is named like the Certificate."""
    spec: dict[str, Any] = {
        "secretName": name,
        "duration": settings.pki.issuer_duration.go(),
        "renewBefore": settings.pki.issuer_renew_before.go(),
        "issuerRef": {"name": issuer, "kind": "Issuer", "group": "cert-manager.io"},
        "commonName": common_name,
    }
    if dns_names is not None:
        spec["dnsNames"] = dns_names
    spec.update({"isCA": True, "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                 "usages": list(usages)})
    return {"apiVersion": CERT_MANAGER_API, "kind": "Certificate",
            "metadata": metadata(name, namespace, annotations=WAIT_FOR_READY), "spec": spec}


def workload_trust_bundle(settings: Settings) -> dict[str, Any]:
    """The workload roots, as a ConfigMap `mtls-mesh-workload-trust/ca-bundle.crt` in every namespace of the graph:
    what a client of a TLS-terminating workload verifies against. It follows the anchors' rotation phases, so during a
    rotation clients trust certificates from both the previous and the next workload root."""
    return {
        "apiVersion": TRUST_MANAGER_API, "kind": "Bundle",
        "metadata": metadata(WORKLOAD_TRUST, annotations=WAIT_FOR_SYNCED),
        "spec": {
            "sources": [{"configMap": {"name": workload_anchor_object_name(anchor), "key": ANCHOR_KEY}}
                        for anchor in settings.pki.rotation.bundle_anchors],
            "target": {"configMap": {"key": TRUST_ROOTS_KEY},
                       # The API server labels every namespace with its own name (Linkerd's chart selects its webhook
                       # namespaces on the same label, values.yaml); this selects exactly the graph's.
                       "namespaceSelector": {"matchExpressions": [
                           {"key": "kubernetes.io/metadata.name", "operator": "In",
                            "values": sorted(settings.graph.namespaces)}]}},
        },
    }


def ca_issuer(name: str, namespace: str, secret_name: str) -> dict[str, Any]:
    return {"apiVersion": CERT_MANAGER_API, "kind": "Issuer",
            "metadata": metadata(name, namespace, annotations=WAIT_FOR_READY),
            "spec": {"ca": {"secretName": secret_name}}}


def vault_issuer(name: str, namespace: str, vault: VaultSettings, path: str, auth_role: str) -> dict[str, Any]:
    """An Issuer signing through Vault, logging in with a short-lived bound token of its namespace's own account.
    Namespaced on purpose: only Certificates in `namespace` can use it, and its Vault login can do nothing else."""
    spec: dict[str, Any] = {
        "server": vault.address,
        "path": path,
        "auth": {"kubernetes": {
            "mountPath": f"/v1/auth/{vault.kubernetes_auth_path}",
            "role": auth_role,
            "serviceAccountRef": {"name": VAULT_ISSUER_SERVICE_ACCOUNT, "audiences": [VAULT_TOKEN_AUDIENCE]},
        }},
    }
    if vault.namespace:
        spec["namespace"] = vault.namespace
    if vault.ca_bundle_pem:
        spec["caBundle"] = base64.b64encode(vault.ca_bundle_pem.encode()).decode()
    # Waiting for Ready makes a failing Vault login (auth role, audience, policy) fail `pulumi up` right here.
    return {"apiVersion": CERT_MANAGER_API, "kind": "Issuer",
            "metadata": metadata(name, namespace, annotations=WAIT_FOR_READY), "spec": {"vault": spec}}


def token_request_rbac(namespace: str, cert_manager: CertManagerSettings) -> list[dict[str, Any]]:
    """In one issuing namespace: the account cert-manager requests Vault login tokens for, and the right for
    cert-manager's controller to do exactly that (cert-manager#6673)."""
    role_name = f"{VAULT_ISSUER_SERVICE_ACCOUNT}-token"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(VAULT_ISSUER_SERVICE_ACCOUNT, namespace)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": metadata(role_name, namespace),
         "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"],
                    "resourceNames": [VAULT_ISSUER_SERVICE_ACCOUNT], "verbs": ["create"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": metadata(role_name, namespace),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
         "subjects": [{"kind": "ServiceAccount", "name": cert_manager.service_account, "namespace": cert_manager.namespace}]},
    ]


def workload_secret_name(service: Service) -> str:
    return f"{service.name}-mesh-tls"


def workload_certificate(settings: Settings, service: Service) -> dict[str, Any]:
    """A certificate for a workload that terminates TLS itself, with the SPIFFE ID of its service account."""
    return {
        "apiVersion": CERT_MANAGER_API, "kind": "Certificate",
        "metadata": metadata(workload_secret_name(service), service.namespace),
        "spec": {
            "secretName": workload_secret_name(service),
            "secretTemplate": {"labels": {"app.kubernetes.io/part-of": "mtls-mesh"}},
            "duration": settings.pki.workload_duration.go(),
            "renewBefore": settings.pki.workload_renew_before.go(),
            "issuerRef": {"name": workload_issuer_name(settings.pki.rotation.issuing_anchor), "kind": "Issuer",
                          "group": "cert-manager.io"},
            "dnsNames": workload_dns_names(service),
            "uris": [spiffe_id(service.service_account, service.namespace, settings.trust_domain)],
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "usages": list(WORKLOAD_USAGES),
        },
    }


def workload_issuer(settings: Settings, namespace: str) -> dict[str, Any]:
    """One namespace's workload issuer (Vault only), signing through that namespace's own PKI role."""
    vault, issuing = settings.vault, settings.pki.rotation.issuing_anchor
    assert vault is not None
    return vault_issuer(workload_issuer_name(issuing), namespace, vault,
                        workload_signing_path(vault, issuing, namespace), vault.namespace_auth_role(namespace))


def workload_tls_secret(service: Service, certificate_pem: Any, private_key_pem: Any, ca_pem: Any) -> dict[str, Any]:
    """Without Vault, the program itself signs workload certificates (see register_trust.SelfSignedWorkloadCertificates) and hands
    them over in the Secret cert-manager would have written: same name, same keys."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": metadata(workload_secret_name(service), service.namespace),
            "stringData": {"tls.crt": certificate_pem, "tls.key": private_key_pem, "ca.crt": ca_pem}}
