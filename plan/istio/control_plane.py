"""Istio's control plane on the operator's trust chain: the values of the pinned charts `base`, `istiod`
(istio-control/istio-discovery) and `cert-manager-istio-csr`, as plain data.

istiod runs with its CA off (`ENABLE_CA_SERVER=false`: no CA, and no writer of `istio-ca-root-cert`,
pilot/pkg/bootstrap/server.go `maybeCreateCA`/`shouldStartNsController` [I]); every proxy sends its CSR to istio-csr
(`global.caAddress`, injected as CA_ADDR), which has cert-manager sign it with the Istio CA of trust.py and verifies the
chain against the roots it pins (`app.tls.rootCAFile`, a trust-manager Bundle of the mesh anchors, mounted as a
directory). istio-csr writes `istio-ca-root-cert` in every namespace.

istiod's serving certificate (Certificate `istiod`, Secret `istiod-tls`, which the istiod chart mounts by itself) is
ours, not the chart's (`istiodCertificateEnable: false`): built here as the chart's templates/certificate.yaml renders
it, plus `pulumi.com/waitFor: condition=Ready`, so istiod is installed only once it is issued. `root_cert_check`: a Job
in istio-system that completes once istio-csr has written `istio-ca-root-cert` there, for istiod to wait on. Both mounts
are optional in istiod's Deployment, so without these istiod could start and run silently without them.

Values are pure builders; tests/test_istio_control_plane.py renders each chart with them and checks each key against
the chart. Keys and facts: ../shared/reference/ISTIO-MULTICLUSTER.md A1 ([I], [IC], [CSR] as named there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plan.istio.names import (DEFAULT_CLUSTER_ID, ISTIO_CHART_VERSION, ISTIO_CSR, ISTIO_CSR_CHART_VERSION,
                              ISTIO_CSR_NAMESPACE, ISTIO_CSR_POD_LABELS, ISTIO_CSR_SERVICE_PORT, ISTIO_NAMESPACE,
                              ISTIOD_POD_LABELS, WORKLOAD_CERTIFICATE_LIFETIME)
from plan.cert_manager import CERT_MANAGER_API
from plan.istio.names import (ISTIOD, ISTIOD_CERTIFICATE, ISTIOD_CERTIFICATE_ACCOUNT, ISTIOD_TLS_SECRET,
                              ROOT_CERT_CONFIG_MAP)
from plan.istio.trust import ISTIO_CA, ISTIO_ROOTS, ISTIO_ROOTS_DIR, ISTIO_ROOTS_FILE
from plan.objects import WAIT_FOR_READY, metadata
from read.settings import Settings

# Replicas in a highly available control plane: one can be down for maintenance and one fail meanwhile.
HA_REPLICAS = 3
# After each anchor-rotation phase. istio-csr reloads its root file by itself (pkg/tls/rootca/rootca.go `Watch`
# [CSR]) and the agents renew hourly, so restarts may be unneeded; until a rotation without them is proven on a
# cluster (docs/istio.md), the same conservative sequence as Linkerd's: istiod and istio-csr, then every sidecar.
# By name (istio-discovery templates/deployment.yaml `istiod`, istio-csr _helpers.tpl the chart's name): a gateway
# deployed in istio-system is not part of the control plane and restarts with the workloads.
ROTATION_RESTART = (f"kubectl -n {ISTIO_NAMESPACE} rollout restart deploy/cert-manager-istio-csr deploy/istiod && "
                    f"kubectl -n {ISTIO_NAMESPACE} rollout status deploy/cert-manager-istio-csr deploy/istiod; "
                    "then restart every meshed workload (kubectl rollout restart deploy -n <namespace>)")
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
                # The program registers that Certificate itself (istiod_certificate), so that istiod can wait for it.
                "istiodCertificateEnable": False,
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


# The chart's defaults for istiod's certificate (values.yaml istiodCertificateDuration/RenewBefore) [CSR].
ISTIOD_CERTIFICATE_DURATION = "1h"
ISTIOD_CERTIFICATE_RENEW_BEFORE = "30m"
# The one deliberate difference from the chart's default key (RSA 2048, from app.server.serving.signatureAlgorithm):
# the mesh's certificate profile, ECDSA P-256 (the policy pack's `certificate-profiles`), as the chart renders it with
# istiodPrivateKeyAlgorithm ECDSA and istiodPrivateKeySize 256.
ISTIOD_PRIVATE_KEY_VALUES = {"istiodPrivateKeyAlgorithm": "ECDSA", "istiodPrivateKeySize": 256}
ISTIOD_PRIVATE_KEY = {"rotationPolicy": "Always", "algorithm": "ECDSA", "size": 256}


def istiod_certificate(settings: Settings) -> dict[str, Any]:
    """istiod's serving certificate as istio-csr v0.17.0's templates/certificate.yaml renders it with our values and
    ISTIOD_PRIVATE_KEY_VALUES (the default revision only, no additional DNS names), which
    tests/test_istio_control_plane.py checks field by field.
    WAIT_FOR_READY: pulumi-kubernetes reports it created only once cert-manager has issued `istiod-tls`."""
    return {
        "apiVersion": CERT_MANAGER_API, "kind": "Certificate",
        "metadata": metadata(ISTIOD_CERTIFICATE, ISTIO_NAMESPACE, annotations=WAIT_FOR_READY),
        "spec": {
            "commonName": f"{ISTIOD}.{ISTIO_NAMESPACE}.svc",
            "dnsNames": [f"{ISTIOD}.{ISTIO_NAMESPACE}.svc"],
            "uris": [f"spiffe://{settings.trust_domain}/ns/{ISTIO_NAMESPACE}/sa/{ISTIOD_CERTIFICATE_ACCOUNT}"],
            "secretName": ISTIOD_TLS_SECRET,
            "duration": ISTIOD_CERTIFICATE_DURATION,
            "renewBefore": ISTIOD_CERTIFICATE_RENEW_BEFORE,
            "privateKey": dict(ISTIOD_PRIVATE_KEY),
            "revisionHistoryLimit": 1,
            "issuerRef": {"name": ISTIO_CA, "kind": "Issuer", "group": "cert-manager.io"},
        },
    }


ROOT_CERT_CHECK = "mtls-mesh-istio-root-cert-check"
# Polls the API server with the Job's own token until the ConfigMap exists; 404 means not yet written, anything else
# (403: the Role is wrong) fails at once with the reason.
ROOT_CERT_CHECK_SCRIPT = r'''set -u
sa=/var/run/secrets/kubernetes.io/serviceaccount
url="https://kubernetes.default.svc/api/v1/namespaces/$NAMESPACE/configmaps/$CONFIG_MAP"
n=0
while :; do
  n=$((n + 1))
  code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' --cacert "$sa/ca.crt" \
    -H "Authorization: Bearer $(cat "$sa/token")" "$url" 2>/dev/null || true)
  case "$code" in
    200) echo "OK: $NAMESPACE/$CONFIG_MAP exists"; exit 0 ;;
    404|000|5*) ;;
    *) echo "FAIL: reading $NAMESPACE/$CONFIG_MAP returned HTTP $code"; exit 1 ;;
  esac
  if [ "$n" -ge "$ATTEMPTS" ]; then
    echo "FAIL: istio-csr has not written $NAMESPACE/$CONFIG_MAP after $n attempts (last HTTP $code); istiod would start without its roots"
    exit 1
  fi
  sleep 2
done
'''


def root_cert_check(settings: Settings) -> list[dict[str, Any]]:
    """A ServiceAccount that may only `get` the ConfigMap `istio-ca-root-cert` in istio-system, and a Job under it
    that completes once that ConfigMap exists (pulumi-kubernetes waits for a Job to complete, docs/operations.md).
    The image is the verification clients' (sh and curl)."""
    labels = {"app.kubernetes.io/name": ROOT_CERT_CHECK}
    container = {"name": "check", "image": settings.verification.client_image, "command": ["sh", "-c", ROOT_CERT_CHECK_SCRIPT],
                 "env": [{"name": "NAMESPACE", "value": ISTIO_NAMESPACE}, {"name": "CONFIG_MAP", "value": ROOT_CERT_CONFIG_MAP},
                         {"name": "ATTEMPTS", "value": "120"}],
                 "terminationMessagePolicy": "FallbackToLogsOnError",
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                 "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 65532,
                                     "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(ROOT_CERT_CHECK, ISTIO_NAMESPACE)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": metadata(ROOT_CERT_CHECK, ISTIO_NAMESPACE),
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [ROOT_CERT_CONFIG_MAP],
                    "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": metadata(ROOT_CERT_CHECK, ISTIO_NAMESPACE),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROOT_CERT_CHECK},
         "subjects": [{"kind": "ServiceAccount", "name": ROOT_CERT_CHECK, "namespace": ISTIO_NAMESPACE}]},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata(ROOT_CERT_CHECK, ISTIO_NAMESPACE, labels),
         "spec": {"backoffLimit": 1, "activeDeadlineSeconds": 600,
                  "template": {"metadata": {"labels": labels},
                               "spec": {"serviceAccountName": ROOT_CERT_CHECK, "restartPolicy": "Never",
                                        "containers": [container]}}}},
    ]
