"""Linkerd: the values of its charts (CRDs, control plane with our external CA, optional CNI plugin and viz extension)
and the cert-manager certificates of every Linkerd webhook. register_linkerd.py registers them.

The chart's own webhook certificates are regenerated on every render and silently expire after a year; here a
dedicated webhook CA (a separate trust chain from the mesh identity) issues them, cert-manager renews them, and
cainjector writes the CA into each webhook configuration (`externalSecret` + `injectCaFrom`).

Values are pure builders so that a test can walk them against the chart's own values.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from plan.cert_manager import CERT_MANAGER_API
from plan.objects import WAIT_FOR_READY, metadata
from plan.linkerd.namespaces import LINKERD_NAMESPACE, VIZ_NAMESPACE
from read.settings import PROXY_LEAF_LIFETIME, Settings

CNI_NAMESPACE = "linkerd-cni"
# After each anchor-rotation phase: the control plane reloads the bundle and the identity issuer, then every proxy
# (components/rotation.py says when).
ROTATION_RESTART = (f"kubectl -n {LINKERD_NAMESPACE} rollout restart deploy && kubectl -n {LINKERD_NAMESPACE} rollout status "
                    "deploy; then restart every meshed workload (kubectl rollout restart deploy -n <namespace>)")
# Webhook serving certificates. `linkerd check` warns below 60 days of validity, so they are renewed with 90 days left.
WEBHOOK_CERT_DURATION = "8760h0m0s"
WEBHOOK_CERT_RENEW_BEFORE = "2160h0m0s"
WEBHOOK_CA_DURATION = "87600h0m0s"
WEBHOOK_CA_RENEW_BEFORE = "8760h0m0s"
WEBHOOK_SELF_SIGNER = "mtls-mesh-webhook-selfsigned"
WEBHOOK_CA = "mtls-mesh-webhook-ca"


@dataclass(frozen=True)
class Webhook:
    """One Linkerd webhook: the chart values key that configures it, the Certificate and the Secret it reads."""

    values_key: str
    namespace: str
    certificate: str
    secret: str
    service: str
    pkcs8: bool = False

    @property
    def dns_name(self) -> str:
        return f"{self.service}.{self.namespace}.svc"

    @property
    def inject_ca_from(self) -> str:
        return f"{self.namespace}/{self.certificate}"


CONTROL_PLANE_WEBHOOKS = (
    Webhook("proxyInjector", LINKERD_NAMESPACE, "linkerd-proxy-injector", "linkerd-proxy-injector-k8s-tls",
            "linkerd-proxy-injector"),
    Webhook("profileValidator", LINKERD_NAMESPACE, "linkerd-sp-validator", "linkerd-sp-validator-k8s-tls",
            "linkerd-sp-validator"),
    # The policy controller (Rust) only reads PKCS#8 keys.
    Webhook("policyValidator", LINKERD_NAMESPACE, "linkerd-policy-validator", "linkerd-policy-validator-k8s-tls",
            "linkerd-policy-validator", pkcs8=True),
)
VIZ_WEBHOOKS = (
    Webhook("tap", VIZ_NAMESPACE, "tap", "tap-k8s-tls", "tap"),
    Webhook("tapInjector", VIZ_NAMESPACE, "linkerd-tap-injector", "tap-injector-k8s-tls", "tap-injector"),
)


def webhooks(settings: Settings) -> tuple[Webhook, ...]:
    return CONTROL_PLANE_WEBHOOKS + (VIZ_WEBHOOKS if settings.linkerd.viz else ())


# The chart's values-ha.yaml, as values: replicas, PDBs, anti-affinity, failing closed, and resources for every
# controller. A test compares this with the upstream file, so an upgrade that changes the HA profile is noticed.
_CONTROLLER_RESOURCES = {"cpu": {"limit": "", "request": "100m"}, "memory": {"limit": "250Mi", "request": "50Mi"}}
HA_VALUES: dict[str, Any] = {
    "enablePodDisruptionBudget": True,
    "controller": {"podDisruptionBudget": {"maxUnavailable": 1}},
    "deploymentStrategy": {"rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}},
    "enablePodAntiAffinity": True,
    "proxy": {"resources": {"cpu": {"request": "100m"}, "memory": {"limit": "250Mi", "request": "20Mi"}}},
    "controllerReplicas": 3,
    "controllerResources": _CONTROLLER_RESOURCES,
    "destinationResources": _CONTROLLER_RESOURCES,
    "identityResources": {"cpu": {"limit": "", "request": "100m"}, "memory": {"limit": "250Mi", "request": "10Mi"}},
    "heartbeatResources": _CONTROLLER_RESOURCES,
    "proxyInjectorResources": _CONTROLLER_RESOURCES,
    "webhookFailurePolicy": "Fail",
    "spValidatorResources": _CONTROLLER_RESOURCES,
    "highAvailability": True,
}


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def crds_values() -> dict[str, Any]:
    """Linkerd's own CRDs, plus the Gateway API CRDs the program's objects use: TLSRoute (egress hosts) and, with
    `enableHttpRoutes`, GRPCRoute (kubelet gRPC probes on gRPC ports) beside HTTPRoute.

    They are installed from the first deployment, whether or not the graph has egress hosts yet: Linkerd's policy
    controller watches only the route kinds whose CRDs existed when it started, so a CRD added later would need a
    control-plane restart before its routes took effect. The other Gateway API kinds are left to the cluster.
    """
    return {"installGatewayAPI": False, "enableTlsRoutes": True, "enableHttpRoutes": True}


def control_plane_values(settings: Settings) -> dict[str, Any]:
    """The linkerd-control-plane values of one stack."""
    linkerd = settings.linkerd
    values: dict[str, Any] = {
        "identityTrustDomain": settings.trust_domain,
        # Trust roots come from trust-manager's Bundle and the issuer from cert-manager's Certificate.
        "identity": {"externalCA": True,
                     "issuer": {"scheme": "kubernetes.io/tls", "issuanceLifetime": PROXY_LEAF_LIFETIME.go()}},
        "controllerLogLevel": linkerd.controller_log_level,
        "proxy": {"logLevel": linkerd.proxy_log_level, "defaultInboundPolicy": linkerd.cluster_default_inbound_policy},
        "cniEnabled": linkerd.cni,
        # The same networks the authorization component treats as the cluster and as the kubelet's.
        "clusterNetworks": ",".join(settings.policy.cluster_networks),
        "policyController": {"probeNetworks": list(settings.policy.kubelet_networks)},
    }
    for webhook in CONTROL_PLANE_WEBHOOKS:
        values[webhook.values_key] = {"externalSecret": True, "injectCaFrom": webhook.inject_ca_from}
    if linkerd.high_availability:
        values = deep_merge(HA_VALUES, values)
    if linkerd.proxy_resources:
        values = deep_merge(values, {"proxy": {"resources": linkerd.proxy_resources}})
    return values


def viz_values(settings: Settings) -> dict[str, Any]:
    values: dict[str, Any] = {"linkerdNamespace": LINKERD_NAMESPACE, "identityTrustDomain": settings.trust_domain}
    for webhook in VIZ_WEBHOOKS:
        values[webhook.values_key] = {"externalSecret": True, "injectCaFrom": webhook.inject_ca_from}
    if settings.linkerd.high_availability:
        values["enablePodAntiAffinity"] = True
    return values


def webhook_ca_objects(namespace: str) -> list[dict[str, Any]]:
    """A CA of its own for the webhooks of one namespace (the API server trusts it for those webhooks and nothing else),
    behind namespaced Issuers: a ClusterIssuer would sign anything, CAs included, for any namespace that asks."""
    issuer_ref = {"kind": "Issuer", "group": "cert-manager.io"}
    return [
        {"apiVersion": CERT_MANAGER_API, "kind": "Issuer", "metadata": metadata(WEBHOOK_SELF_SIGNER, namespace),
         "spec": {"selfSigned": {}}},
        {"apiVersion": CERT_MANAGER_API, "kind": "Certificate",
         "metadata": metadata(WEBHOOK_CA, namespace, annotations=WAIT_FOR_READY),
         "spec": {"secretName": WEBHOOK_CA, "isCA": True, "commonName": f"mtls-mesh {namespace} webhook CA",
                  "duration": WEBHOOK_CA_DURATION, "renewBefore": WEBHOOK_CA_RENEW_BEFORE,
                  "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                  "usages": ["cert sign", "crl sign"],
                  "issuerRef": {"name": WEBHOOK_SELF_SIGNER, **issuer_ref}}},
        {"apiVersion": CERT_MANAGER_API, "kind": "Issuer",
         "metadata": metadata(WEBHOOK_CA, namespace, annotations=WAIT_FOR_READY), "spec": {"ca": {"secretName": WEBHOOK_CA}}},
    ]


def webhook_certificate(webhook: Webhook) -> dict[str, Any]:
    private_key: dict[str, Any] = {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}
    if webhook.pkcs8:
        private_key["encoding"] = "PKCS8"
    return {
        "apiVersion": CERT_MANAGER_API, "kind": "Certificate",
        "metadata": metadata(webhook.certificate, webhook.namespace, annotations=WAIT_FOR_READY),
        "spec": {
            "secretName": webhook.secret,
            "commonName": webhook.dns_name,
            "dnsNames": [webhook.dns_name],
            "duration": WEBHOOK_CERT_DURATION,
            "renewBefore": WEBHOOK_CERT_RENEW_BEFORE,
            "isCA": False,
            "privateKey": private_key,
            "usages": ["server auth"],
            "issuerRef": {"name": WEBHOOK_CA, "kind": "Issuer", "group": "cert-manager.io"},
        },
    }
