"""CertManager: cert-manager and trust-manager (optionally installed), the issuers of the mesh, the Linkerd identity
issuer Certificate, the trust bundle Linkerd reads, and certificates for workloads that terminate TLS themselves.

Every object is built by a pure function below; the component only registers them, in order: install -> anchor
material and issuers -> Certificates and the Bundle.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Mapping

import pulumi
import pulumi_kubernetes as k8s

from .graph import Service, spiffe_id
from .k8s import WAIT_FOR_READY, WAIT_FOR_SYNCED, metadata, register, register_group
from .namespaces import LINKERD_NAMESPACE
from .settings import Settings, VaultSettings
from .vault_pki import VAULT_ISSUER_SERVICE_ACCOUNT, VAULT_TOKEN_AUDIENCE, issuer_signing_path, workload_signing_path

JETSTACK_CHARTS = "https://charts.jetstack.io"
CERT_MANAGER_API = "cert-manager.io/v1"
TRUST_MANAGER_API = "trust.cert-manager.io/v1alpha1"
# Names Linkerd reads with identity.externalCA and identity.issuer.scheme kubernetes.io/tls.
IDENTITY_ISSUER_SECRET = "linkerd-identity-issuer"
TRUST_ROOTS = "linkerd-identity-trust-roots"
TRUST_ROOTS_KEY = "ca-bundle.crt"
ANCHOR_KEY = "ca.crt"
IDENTITY_ISSUER_USAGES = ["cert sign", "crl sign", "server auth", "client auth"]
WORKLOAD_USAGES = ["digital signature", "key agreement", "server auth", "client auth"]


def anchor_object_name(anchor: str) -> str:
    return f"mtls-mesh-anchor-{anchor}"


def identity_issuer_name(anchor: str) -> str:
    return f"mtls-mesh-identity-{anchor}"


def workload_issuer_name(anchor: str) -> str:
    return f"mtls-mesh-workload-{anchor}"


def identity_name(trust_domain: str) -> str:
    return f"identity.linkerd.{trust_domain}"


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


def anchor_secret(anchor: str, namespace: str, certificate_pem: Any, private_key_pem: Any) -> dict[str, Any]:
    """A self-signed anchor as the CA issuer reads it (tls.crt/tls.key), in cert-manager's namespace."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": metadata(anchor_object_name(anchor), namespace),
            "stringData": {"tls.crt": certificate_pem, "tls.key": private_key_pem}}


def anchor_config_map(anchor: str, namespace: str, certificate_pem: Any) -> dict[str, Any]:
    """A Vault root certificate, public, where trust-manager can source it."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(anchor_object_name(anchor), namespace),
            "data": {ANCHOR_KEY: certificate_pem}}


def bundle_source(settings: Settings, anchor: str) -> dict[str, Any]:
    if settings.pki.mode == "self-signed":
        return {"secret": {"name": anchor_object_name(anchor), "key": "tls.crt"}}
    return {"configMap": {"name": anchor_object_name(anchor), "key": ANCHOR_KEY}}


def trust_bundle(settings: Settings) -> dict[str, Any]:
    """The ConfigMap Linkerd trusts (linkerd-identity-trust-roots/ca-bundle.crt), in the control-plane namespace only.
    During a rotation it carries the previous and the next anchor."""
    return {
        "apiVersion": TRUST_MANAGER_API, "kind": "Bundle", "metadata": metadata(TRUST_ROOTS, annotations=WAIT_FOR_SYNCED),
        "spec": {
            "sources": [bundle_source(settings, anchor) for anchor in settings.pki.rotation.bundle_anchors],
            "target": {"configMap": {"key": TRUST_ROOTS_KEY},
                       "namespaceSelector": {"matchLabels": {"linkerd.io/is-control-plane": "true"}}},
        },
    }


def ca_cluster_issuer(name: str, anchor: str) -> dict[str, Any]:
    return {"apiVersion": CERT_MANAGER_API, "kind": "ClusterIssuer", "metadata": metadata(name, annotations=WAIT_FOR_READY),
            "spec": {"ca": {"secretName": anchor_object_name(anchor)}}}


def vault_cluster_issuer(name: str, vault: VaultSettings, path: str) -> dict[str, Any]:
    """A ClusterIssuer signing through Vault, logging in with a short-lived bound token of a dedicated account."""
    spec: dict[str, Any] = {
        "server": vault.address,
        "path": path,
        "auth": {"kubernetes": {
            "mountPath": f"/v1/auth/{vault.kubernetes_auth_path}",
            "role": vault.auth_role,
            "serviceAccountRef": {"name": VAULT_ISSUER_SERVICE_ACCOUNT, "audiences": [VAULT_TOKEN_AUDIENCE]},
        }},
    }
    if vault.namespace:
        spec["namespace"] = vault.namespace
    if vault.ca_bundle_pem:
        spec["caBundle"] = base64.b64encode(vault.ca_bundle_pem.encode()).decode()
    # Waiting for Ready makes a failing Vault login (auth role, audience, policy) fail `pulumi up` right here.
    return {"apiVersion": CERT_MANAGER_API, "kind": "ClusterIssuer", "metadata": metadata(name, annotations=WAIT_FOR_READY),
            "spec": {"vault": spec}}


def token_request_rbac(namespace: str) -> list[dict[str, Any]]:
    """The account cert-manager requests Vault login tokens for, and the right to do exactly that (cert-manager#6673)."""
    role_name = f"{VAULT_ISSUER_SERVICE_ACCOUNT}-token"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(VAULT_ISSUER_SERVICE_ACCOUNT, namespace)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": metadata(role_name, namespace),
         "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"],
                    "resourceNames": [VAULT_ISSUER_SERVICE_ACCOUNT], "verbs": ["create"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": metadata(role_name, namespace),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
         "subjects": [{"kind": "ServiceAccount", "name": "cert-manager", "namespace": namespace}]},
    ]


def identity_issuer_certificate(settings: Settings) -> dict[str, Any]:
    """The Linkerd identity issuer exactly as Linkerd requires it: an ECDSA P-256 CA named identity.linkerd.<domain>,
    rotated with a new key each renewal; issuer-only rotation needs no restarts."""
    name = identity_name(settings.trust_domain)
    return {
        "apiVersion": CERT_MANAGER_API, "kind": "Certificate",
        "metadata": metadata(IDENTITY_ISSUER_SECRET, LINKERD_NAMESPACE, annotations=WAIT_FOR_READY),
        "spec": {
            "secretName": IDENTITY_ISSUER_SECRET,
            "duration": settings.pki.issuer_duration.go(),
            "renewBefore": settings.pki.issuer_renew_before.go(),
            "issuerRef": {"name": identity_issuer_name(settings.pki.rotation.issuing_anchor), "kind": "ClusterIssuer",
                          "group": "cert-manager.io"},
            "commonName": name,
            "dnsNames": [name],
            "isCA": True,
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "usages": list(IDENTITY_ISSUER_USAGES),
        },
    }


def workload_secret_name(service: Service) -> str:
    return f"{service.name}-mesh-tls"


def workload_dns_names(service: Service) -> list[str]:
    ns = service.namespace
    return [f"{service.name}.{ns}.svc", f"{service.name}.{ns}.svc.cluster.local"]


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
            "issuerRef": {"name": workload_issuer_name(settings.pki.rotation.issuing_anchor), "kind": "ClusterIssuer",
                          "group": "cert-manager.io"},
            "dnsNames": workload_dns_names(service),
            "uris": [spiffe_id(service.service_account, service.namespace, settings.trust_domain)],
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "usages": list(WORKLOAD_USAGES),
        },
    }


def issuer_objects(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every ClusterIssuer: one identity issuer per anchor still in use, one workload issuer for the issuing anchor."""
    issuers: dict[str, dict[str, Any]] = {}
    issuing = settings.pki.rotation.issuing_anchor
    for anchor in settings.pki.rotation.anchors:
        name = identity_issuer_name(anchor)
        issuers[name] = (ca_cluster_issuer(name, anchor) if settings.vault is None
                         else vault_cluster_issuer(name, settings.vault, issuer_signing_path(settings.vault, anchor)))
    name = workload_issuer_name(issuing)
    issuers[name] = (ca_cluster_issuer(name, issuing) if settings.vault is None
                     else vault_cluster_issuer(name, settings.vault, workload_signing_path(settings.vault, issuing)))
    return issuers


@dataclass
class AnchorMaterial:
    """One anchor as the cluster needs it: its certificate, its key in dev, and what must exist before it is used."""

    certificate_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str] | None = None
    ready: list[pulumi.Resource] = field(default_factory=list)


@dataclass
class CertManagerArgs:
    settings: Settings
    anchors: Mapping[str, AnchorMaterial]
    namespaces: Mapping[str, pulumi.Resource]
    linkerd_namespace: pulumi.Resource
    vault_login_ready: list[pulumi.Resource] = field(default_factory=list)


class CertManager(pulumi.ComponentResource):
    def __init__(self, name: str, args: CertManagerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:cert_manager:CertManager", name, None, opts)
        settings = args.settings
        cm = settings.cert_manager
        child = pulumi.ResourceOptions(parent=self)

        def after(*resources: pulumi.Resource | None, **extra: Any) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=[r for r in resources if r is not None], **extra)

        installed: list[pulumi.Resource] = []
        trust_manager = None
        if cm.install:
            cert_manager = k8s.helm.v3.Release(
                # A fixed release name: without one pulumi-kubernetes appends a random suffix, and the chart names its
                # service account after the release, so the token-request binding would name an account that does
                # not exist and cert-manager could never log in to Vault.
                f"{name}-cert-manager", name="cert-manager", chart="cert-manager", version=cm.chart_version,
                repository_opts={"repo": JETSTACK_CHARTS}, namespace=cm.namespace, create_namespace=True,
                values=cert_manager_values(settings.monitoring.labels if settings.monitoring.enabled else None),
                opts=child)
            trust_manager = k8s.helm.v3.Release(
                f"{name}-trust-manager", name="trust-manager", chart="trust-manager", version=cm.trust_manager_chart_version,
                repository_opts={"repo": JETSTACK_CHARTS}, namespace=cm.namespace,
                values=trust_manager_values(cm.namespace), opts=after(cert_manager))
            installed = [cert_manager]

        # What cert-manager objects elsewhere wait for.
        self.installed: list[pulumi.Resource] = installed
        rbac = []
        if settings.vault is not None:
            rbac = [register(f"{name}-{obj['kind'].lower()}", obj, after(*installed)) for obj in token_request_rbac(cm.namespace)]

        sources: list[pulumi.Resource] = []
        for anchor, material in args.anchors.items():
            obj = (anchor_secret(anchor, cm.namespace, material.certificate_pem, material.private_key_pem)
                   if material.private_key_pem is not None
                   else anchor_config_map(anchor, cm.namespace, material.certificate_pem))
            sources.append(register(f"{name}-anchor-{anchor}", obj, after(*installed, *material.ready)))

        # An issuer is usable only once its anchor's signing chain is complete (Vault: set-signed, role written).
        anchor_ready = [resource for material in args.anchors.values() for resource in material.ready]
        self.issuers: dict[str, pulumi.Resource] = {
            issuer_name: register(f"{name}-{issuer_name}", obj,
                                  after(*installed, *sources, *anchor_ready, *rbac, *args.vault_login_ready))
            for issuer_name, obj in issuer_objects(settings).items()
        }
        issuing = settings.pki.rotation.issuing_anchor
        self.identity_issuer = register(
            f"{name}-identity-issuer", identity_issuer_certificate(settings),
            after(self.issuers[identity_issuer_name(issuing)], args.linkerd_namespace))
        self.trust_bundle = register(f"{name}-trust-roots", trust_bundle(settings),
                                     after(trust_manager, *sources, args.linkerd_namespace))
        # Workload certificates grow with the graph: one ConfigGroup per namespace (see k8s.register_group).
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for service in settings.graph.services.values():
            if service.certificate:
                by_namespace.setdefault(service.namespace, []).append(workload_certificate(settings, service))
        self.workload_certificates = {
            namespace: register_group(f"{name}-workload-{namespace}", certificates, child,
                                      after=[self.issuers[workload_issuer_name(issuing)], args.namespaces[namespace]])
            for namespace, certificates in by_namespace.items()
        }
        self.register_outputs({
            "identityIssuer": identity_issuer_name(issuing),
            "bundleAnchors": list(settings.pki.rotation.bundle_anchors),
            "workloadCertificates": sorted(f"{c['metadata']['namespace']}/{c['metadata']['name']}"
                                           for group in by_namespace.values() for c in group),
        })
