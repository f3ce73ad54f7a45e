"""Istio's control plane on the operator's trust chain: the values of the pinned charts `base`, `istiod`
(istio-control/istio-discovery) and `cert-manager-istio-csr`, as plain data.

istiod runs with its CA off (`ENABLE_CA_SERVER=false`: no CA, and no writer of `istio-ca-root-cert`,
pilot/pkg/bootstrap/server.go `maybeCreateCA`/`shouldStartNsController` [I]); every proxy sends its CSR to istio-csr
(`global.caAddress`, injected as CA_ADDR), which has cert-manager sign it with the Istio CA of trust.py and verifies the
chain against the roots it pins (`app.tls.rootCAFile`, a trust-manager Bundle of the mesh anchors, mounted as a
directory). istio-csr also issues istiod's serving certificate (`istiodCertificateEnable`: Certificate `istiod`,
Secret `istiod-tls`, which the istiod chart mounts by itself) and writes `istio-ca-root-cert` in every namespace.

Values are pure builders; tests/test_istio_control_plane.py renders each chart with them and checks each key against
the chart. Keys and facts: ../shared/reference/ISTIO-MULTICLUSTER.md A1 ([I], [IC], [CSR] as named there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plan.istio.names import (DEFAULT_CLUSTER_ID, ISTIO_CHART_VERSION, ISTIO_CSR, ISTIO_CSR_CHART_VERSION,
                              ISTIO_CSR_NAMESPACE, ISTIO_CSR_POD_LABELS, ISTIO_CSR_SERVICE_PORT, ISTIO_NAMESPACE,
                              ISTIOD_POD_LABELS, WORKLOAD_CERTIFICATE_LIFETIME)
from plan.istio.trust import ISTIO_CA, ISTIO_ROOTS, ISTIO_ROOTS_DIR, ISTIO_ROOTS_FILE
from read.settings import Settings

# Replicas in a highly available control plane: one can be down for maintenance and one fail meanwhile.
HA_REPLICAS = 3
# istiod scales on CPU above that (autoscale.yaml); its HPA then owns `replicas` (deployment.yaml omits it).
HA_ISTIOD_MAX_REPLICAS = 5
_ROOTS_VOLUME = "mtls-mesh-istio-roots"


@dataclass(frozen=True)
class IstioSettings:
    """What an Istio stack chooses beyond the shared settings; the shape a `read/settings.py` `IstioSettings` (beside
    LinkerdSettings) will have once `mesh: istio` is a setting."""

    high_availability: bool
    # istiod's CLUSTER_ID and istio-csr's app.server.clusterID: they must be equal (kube_jwt.go [I]).
    cluster_name: str = DEFAULT_CLUSTER_ID
    chart_version: str = ISTIO_CHART_VERSION
    istio_csr_chart_version: str = ISTIO_CSR_CHART_VERSION


def istio_settings(settings: Settings, high_availability: str = "auto",
                   cluster_name: str = DEFAULT_CLUSTER_ID) -> IstioSettings:
    """`auto`: highly available in prod, as linkerdHighAvailability's `auto` (read/settings.py `_linkerd`)."""
    ha = settings.is_prod if high_availability == "auto" else high_availability == "true"
    return IstioSettings(high_availability=ha, cluster_name=cluster_name)


def ca_address() -> str:
    """istio-csr's Service: named after the chart (`.Chart.Name`, _helpers.tpl [CSR]), port 443 -> 6443."""
    return f"{ca_host()}:{ISTIO_CSR_SERVICE_PORT}"


def ca_host() -> str:
    return f"{ISTIO_CSR}.{ISTIO_CSR_NAMESPACE}.svc"


def _anti_affinity(pod_labels: dict[str, str]) -> dict[str, Any]:
    """Never two replicas on one node; spread over zones where there are zones."""
    selector = {"matchLabels": dict(pod_labels)}
    return {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": selector, "topologyKey": "kubernetes.io/hostname"}],
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"labelSelector": selector, "topologyKey": "topology.kubernetes.io/zone"}}],
    }}


def base_values(settings: Settings, istio: IstioSettings) -> dict[str, Any]:
    """The base chart: Istio's CRDs, templated (so `helm upgrade` updates them), installed before istiod."""
    return {"base": {"enableCRDTemplates": True}, "global": {"istioNamespace": ISTIO_NAMESPACE}}


def istiod_values(settings: Settings, istio: IstioSettings) -> dict[str, Any]:
    values: dict[str, Any] = {
        "global": {
            "istioNamespace": ISTIO_NAMESPACE,
            "caAddress": ca_address(),
            "multiCluster": {"clusterName": istio.cluster_name},
        },
        # A string: the chart writes `value: "{{ $val }}"`, and istiod reads the variable as a boolean.
        "env": {"ENABLE_CA_SERVER": "false"},
        "meshConfig": {"trustDomain": settings.trust_domain},
    }
    if istio.high_availability:
        values.update({
            "autoscaleEnabled": True, "autoscaleMin": HA_REPLICAS, "autoscaleMax": HA_ISTIOD_MAX_REPLICAS,
            # The chart renders its PodDisruptionBudget only above one replica (poddisruptionbudget.yaml); one at a time.
            "pdb": {"maxUnavailable": 1},
            "affinity": _anti_affinity({"app": ISTIOD_POD_LABELS["app"]}),
        })
    else:
        values.update({"autoscaleEnabled": False, "replicaCount": 1})
    return values


def istio_csr_values(settings: Settings, istio: IstioSettings) -> dict[str, Any]:
    values: dict[str, Any] = {
        "app": {
            "certmanager": {
                "namespace": ISTIO_NAMESPACE,
                "issuer": {"enabled": True, "name": ISTIO_CA, "kind": "Issuer", "group": "cert-manager.io"},
                "preserveCertificateRequests": False,
            },
            "tls": {
                "trustDomain": settings.trust_domain,
                "rootCAFile": ISTIO_ROOTS_FILE,
                "certificateDNSNames": [ca_host()],
                "istiodCertificateEnable": True,
            },
            "server": {"clusterID": istio.cluster_name, "maxCertificateDuration": WORKLOAD_CERTIFICATE_LIFETIME},
            "istio": {"namespace": ISTIO_NAMESPACE, "revisions": ["default"]},
            "controller": {"leaderElectionNamespace": ISTIO_CSR_NAMESPACE},
        },
        # The Bundle's ConfigMap as a directory: a subPath mount would never see trust-manager's updates.
        "volumes": [{"name": _ROOTS_VOLUME, "configMap": {"name": ISTIO_ROOTS}}],
        "volumeMounts": [{"name": _ROOTS_VOLUME, "mountPath": ISTIO_ROOTS_DIR, "readOnly": True}],
    }
    if istio.high_availability:
        values.update({"replicaCount": HA_REPLICAS,
                       "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
                       "affinity": _anti_affinity(ISTIO_CSR_POD_LABELS)})
    return values
