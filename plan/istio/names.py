"""Istio's and istio-csr's own names, as the pinned sources spell them; nothing outside plan/istio/ should name them.

Sources (keys as in ../shared/reference/ISTIO-MULTICLUSTER.md): [IC] the pinned chart copy
`../shared/upstream/charts/istio-1.29.6/manifests/charts` (istio/istio 1.29.6, 7019d6d3608e); [CSR] the pinned chart
`../shared/upstream/charts/istio-csr-v0.17.0/deploy/charts/istio-csr` and cert-manager/istio-csr v0.17.0 (d8fadec3b039).
tests/test_istio_control_plane.py checks the chart-made names against the rendered charts.
"""

from __future__ import annotations

# --- charts: name in the repository, pinned version, repository ------------------------------------------------------
ISTIO_CHART_VERSION = "1.29.6"
# manifests/charts/istio-control/istio-discovery/README.md [IC]: `helm repo add istio <this>`.
ISTIO_REPOSITORY = "https://istio-release.storage.googleapis.com/charts"
BASE_CHART = "base"
ISTIOD_CHART = "istiod"
ISTIO_CSR_CHART = "cert-manager-istio-csr"
ISTIO_CSR_CHART_VERSION = "v0.17.0"
ISTIO_CSR_REPOSITORY = "https://charts.jetstack.io"
# Fixed release names: the istiod chart's objects are named `istiod` whatever the release, but istio-csr's are named
# after the chart (below), and a fixed name keeps pulumi-kubernetes from adding a suffix.
BASE_RELEASE = "istio-base"
ISTIOD_RELEASE = "istiod"
ISTIO_CSR_RELEASE = "cert-manager-istio-csr"

# --- namespaces ----------------------------------------------------------------------------------------------------
# istiod's namespace and the mesh's root namespace (global.istioNamespace, meshConfig.rootNamespace default [IC]).
ISTIO_NAMESPACE = "istio-system"
# istio-csr runs beside istiod: its CertificateRequests (app.certmanager.namespace), the Istio CA's key and the
# Certificate `istiod` (app.istio.namespace) are all in istio-system, so one namespace holds everything that can mint
# a mesh identity (whoever may create CertificateRequests there can, reference A1 "Security boundary").
ISTIO_CSR_NAMESPACE = ISTIO_NAMESPACE

# --- istiod ----------------------------------------------------------------------------------------------------------
ISTIOD = "istiod"                            # Deployment, Service (templates/deployment.yaml, service.yaml [IC])
ISTIOD_POD_LABELS = {"app": "istiod", "istio": "pilot"}  # the pod template's labels (deployment.yaml [IC])
ISTIOD_TLS_SECRET = "istiod-tls"             # mounted (optional) at /var/run/secrets/istiod/tls (deployment.yaml [IC])
ISTIOD_TLS_DIR = "/var/run/secrets/istiod/tls"
MESH_CONFIG_MAP = "istio"                    # data.mesh (templates/configmap.yaml [IC])
INJECTOR_CONFIG_MAP = "istio-sidecar-injector"  # data.config (template), data.values (templates/istiod-injector-configmap.yaml [IC])
# The roots every proxy (and istiod) trusts: istio-csr writes it in every namespace (pkg/controller/configmap.go
# [CSR]); with istiod's CA off nothing else may (reference A1).
ROOT_CERT_CONFIG_MAP = "istio-ca-root-cert"
ROOT_CERT_KEY = "root-cert.pem"
# istio-csr's Certificate for istiod names this account in its URI SAN (templates/certificate.yaml [CSR]).
ISTIOD_CERTIFICATE = "istiod"
ISTIOD_CERTIFICATE_ACCOUNT = "istiod-service-account"
# CLUSTER_ID's default when global.multiCluster.clusterName is empty (deployment.yaml [IC]), and istio-csr's
# app.server.clusterID default (values.yaml [CSR]).
DEFAULT_CLUSTER_ID = "Kubernetes"

# --- istio-csr -------------------------------------------------------------------------------------------------------
ISTIO_CSR = "cert-manager-istio-csr"         # Deployment, Service, accounts: `.Chart.Name` (_helpers.tpl [CSR])
ISTIO_CSR_POD_LABELS = {"app": ISTIO_CSR}    # the Deployment's selector (templates/deployment.yaml [CSR])
ISTIO_CSR_SERVICE_PORT = 443                 # service.port (values.yaml, templates/service.yaml [CSR])
ISTIO_CSR_GRPC_PORT = 6443                   # app.server.serving.port: the CSR gRPC server, the Service's target
ISTIO_CSR_METRICS_PORT = 9402                # app.metrics.port
ISTIO_CSR_READINESS_PORT = 6060              # app.readinessProbe.port
# The longest workload certificate istio-csr asks cert-manager for (app.server.maxCertificateDuration default [CSR]).
WORKLOAD_CERTIFICATE_LIFETIME = "1h"

# --- ports on a sidecar pod and on istiod (injection template, istiod Deployment and Service [IC]; reference A3) ------
PROXY_OUTBOUND_PORT = 15001                  # in-pod outbound capture
PROXY_INBOUND_PORT = 15006                   # in-pod inbound capture; never a wire port
HBONE_PORT = 15008                           # ambient only
ISTIOD_PLAINTEXT_XDS_PORT = 15010
ISTIOD_XDS_PORT = 15012                      # xDS over TLS: egress from every sidecar pod
ISTIOD_MONITORING_PORT = 15014
ISTIOD_WEBHOOK_PORT = 15017                  # Service port 443
PROXY_STATUS_PORT = 15020                    # agent: merged metrics and rewritten app probes
PROXY_READINESS_PORT = 15021                 # the sidecar's own readiness
ENVOY_PROMETHEUS_PORT = 15090
# Excluded from inbound capture by the injection template (`-d "15090,15021,<statusPort>"`): never meet mTLS or policy.
UNCAPTURED_INBOUND_PORTS = (ENVOY_PROMETHEUS_PORT, PROXY_READINESS_PORT, PROXY_STATUS_PORT)

# --- labels and annotations (reference A2-A4) -------------------------------------------------------------------------
NAMESPACE_INJECTION_LABEL = "istio-injection"          # = "enabled" on a namespace
REVISION_LABEL = "istio.io/rev"
POD_INJECTION_LABEL = "sidecar.istio.io/inject"        # a pod *label* ("true"/"false"), not an annotation
TLS_MODE_LABEL = "security.istio.io/tlsMode"           # = "istio", added by the injector
EXCLUDE_INBOUND_PORTS = "traffic.sidecar.istio.io/excludeInboundPorts"
EXCLUDE_OUTBOUND_PORTS = "traffic.sidecar.istio.io/excludeOutboundPorts"
REWRITE_PROBES = "sidecar.istio.io/rewriteAppHTTPProbers"
DRY_RUN = "istio.io/dry-run"

# --- kinds ---------------------------------------------------------------------------------------------------------
# The RBAC resource (CRD spec.names.plural) of each Istio kind the plan writes: base chart files/crd-all.gen.yaml [IC].
KIND_RESOURCES = {("security.istio.io", "PeerAuthentication"): "peerauthentications",
                  ("security.istio.io", "AuthorizationPolicy"): "authorizationpolicies",
                  ("networking.istio.io", "Sidecar"): "sidecars",
                  ("networking.istio.io", "ServiceEntry"): "serviceentries",
                  ("monitoring.coreos.com", "ServiceMonitor"): "servicemonitors"}
