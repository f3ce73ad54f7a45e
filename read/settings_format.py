"""The format of the stack settings beyond what `Pulumi.yaml` declares: the choices, patterns and list shapes of each
setting, declared once.

`Pulumi.yaml` declares every setting's name, type, default and description (the Pulumi CLI checks stack files against
those types); this module adds what a type cannot say. read/settings.py validates with these same constants,
and `python -m read.schema` turns the declarations plus this table into schema/stack-settings.schema.json, so
the program and the published schema cannot drift apart.

Rules that involve more than one value (pkiMode vault needs vaultAddress, a duration shorter than another, a
namespace that must be in the graph, a file that must exist) are the validator's alone: `CANNOT_CHECK` lists them.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from read.cli_yaml import default_text, load, reload
from read.graph_format import (CLUSTER_NAME_MAX, DNS_LABEL, LABEL_KEY, MAX_NAMESPACES, SHARD_NAME_MAX, Pattern, Rule,
                               Text)

PROJECT = "mtls-mesh"
PROJECT_DIR = Path(__file__).resolve().parents[1]
MISSING = object()


# Settings every single and platform stack must set. Pulumi.yaml gives them the default "" all the same: the CLI
# refuses a stack that leaves out a key without a default ("Stack '...' is missing configuration value",
# pulumi pkg/workspace/config.go `mergeConfig`), and a shard stack, whose settings are its platform's, sets none of
# them. The program treats the default "" as not set (settings._Config._raw).
REQUIRED_SETTINGS = ("environment", "kubeContext", "trustAnchor")


@dataclass(frozen=True)
class Declaration:
    """One setting as Pulumi.yaml declares it (its default as the CLI decodes it: read/cli_yaml.py)."""

    key: str
    type: str
    description: str
    default: Any = MISSING
    items: str | None = None

    @property
    def required(self) -> bool:
        return self.default is MISSING or self.key in REQUIRED_SETTINGS

    @property
    def default_text(self) -> str | None:
        """The text the CLI hands the program when a stack does not set the key (None: it has no default)."""
        return None if self.default is MISSING else default_text(self.default)

    def is_default(self, text: str) -> bool:
        """Whether a config value is the one the CLI fills in for an absent key: a stack file that leaves the key out
        and one that sets it to its default hand the program the same text, so both mean "not set"."""
        if self.default is MISSING:
            return False
        if text == self.default_text:
            return True
        # A list spelled differently (spaces, as tools other than the CLI write it); no default is long.
        if self.type == "array" and len(text) <= 4096:
            try:
                return json.loads(text) == self.default
            except (ValueError, RecursionError):
                return False
        return False


def load_declarations(project_file: Path = PROJECT_DIR / "Pulumi.yaml") -> dict[str, Declaration]:
    """The `config:` block of Pulumi.yaml, as the CLI sees it: decoded by the CLI's YAML rules (read/cli_yaml.py), so
    a default reads as the value the CLI hands a stack that does not set the key."""
    return dict(_declarations(project_file.read_text(encoding="utf-8-sig")))


@functools.lru_cache(maxsize=16)
def _declarations(text: str) -> dict[str, Declaration]:
    project = reload(load(text)) or {}
    declarations = {}
    for key, spec in (project.get("config") or {}).items():
        declarations[key] = Declaration(
            key=key, type=spec["type"], description=spec.get("description", ""),
            default=MISSING if spec.get("default") is None else spec["default"],
            items=(spec.get("items") or {}).get("type"),
        )
    return declarations


ENVIRONMENTS = ("dev", "staging", "prod")
PKI_MODES = ("vault", "self-signed")
# Values of config.linkerd.io/default-inbound-policy (and the chart's proxy.defaultInboundPolicy).
INBOUND_POLICIES = ("audit", "all-unauthenticated", "cluster-unauthenticated", "all-authenticated",
                    "cluster-authenticated", "deny")
ROTATION_PHASES = ("none", "add-next", "issue-from-next", "drop-previous")
# Who runs `pulumi up` for a stack (deliveredBy): the GitHub workflows, or the Pulumi Kubernetes Operator, whose
# workspace pod is the only place the program runs with kubeContext in-cluster (deploy/operator_stacks.py).
DELIVERERS = ("workflows", "operator")
# The service mesh a stack installs (mesh): plan/linkerd/ or plan/istio/, from the same graph and trust chain.
MESHES = ("linkerd", "istio")
VAULT_AUTH_MODES = ("external", "in-cluster")
CONTROLLER_LOG_LEVELS = ("error", "warn", "info", "debug", "trace")
# Settings that are on, off, or decided by the environment.
AUTO_TRUE_FALSE = ("auto", "true", "false")
# Settings that are secrets: read from config but not declared in Pulumi.yaml (see the note there).
SECRET_SETTINGS = ("vaultToken",)
# A setting stored with `pulumi config set --secret` either stays a Pulumi secret in every resource input it reaches
# (MAY_BE_SECRET: where that is), or is refused with what it is (CANNOT_BE_SECRET): a value Pulumi cannot keep secret
# (an object name, a label, a URN, a resource id, chart values every pod shows) is no secret wherever it is stored.
# Every declared setting is in exactly one of the two (tests/test_secret_settings.py), and no error ever quotes a
# marked value (errors.hiding).
MAY_BE_SECRET = {
    "vaultToken": "the Vault provider's token",
    "kubeContext": "the Kubernetes provider's context",
    "kubeconfig": "the Kubernetes provider's kubeconfig",
    "vaultKubernetesHost": "the Kubernetes auth mount's config (kubernetes_host)",
    "linkerdHelmRepository": "the Linkerd Helm releases' repository",
}
# Settings whose text reaches no resource (the program only reads the file they name).
READ_ONLY_SETTINGS = ("serviceGraph", "vaultKubernetesCaFile")
_SWITCH = "a true/false switch, not a credential: what it turns on or off shows in every preview"
_RESOURCE_ID = "which Pulumi never keeps secret"
CANNOT_BE_SECRET = {
    # Paths to public CA certificates: every tool that reads a stack file outside Pulumi (the handover, changed_stacks,
    # the review and Operator generators) must open them, and cannot decrypt the stack's secrets.
    "vaultCaBundleFile": "the path of a public CA bundle, which the deploy tools open outside Pulumi and the program "
                         "copies into every Issuer",
    "vaultKubernetesCaFile": "the path of the API server's public CA, which the deploy tools open outside Pulumi",
    "environment": "the environment profile, which the stack exports as its `environment` output",
    "deliveredBy": "who delivers the stack, which the workflows and deploy/ read from the stack file in plain text",
    "mesh": "which mesh the stack installs, which every registered resource's type and name shows",
    "policyShards": "a switch the shard stacks and the workflows read from the platform's stack file in plain text",
    "platformStack": "the name of the platform stack, which the StackReference's name (part of its URN) carries",
    "shard": "a shard of the service graph, part of the stack's name and of its `shard` output",
    "cluster": "a cluster name, part of every Link, credentials Secret and mirrored service name its peers see",
    "clusterPeers": "stack names, which the peers' StackReferences' names (part of their URNs) carry",
    "meshRootStack": "the name of the stack owning the mesh root, which its StackReference's name (part of its URN) "
                     "carries",
    "clusterApiServer": "an API server address, written into the plain part of every peer's Link kubeconfig",
    "trustDomain": "the trust domain, part of every mesh identity, certificate and authorization object",
    "serviceGraph": "the path of the service graph, which every problem in the graph is reported under",
    "allowFilesOutsideProject": _SWITCH,
    "adoptNamespaces": "a list of namespace names, which are Kubernetes object names",
    "defaultInboundPolicy": "a rollout phase, written into every meshed namespace's annotations",
    "inboundPolicyOverrides": "namespace=phase pairs, written into namespaces' annotations",
    "pkiMode": "a choice of which resources the stack registers, which every preview shows",
    "allowSelfSignedInProd": _SWITCH,
    "protectPki": _SWITCH,
    "trustAnchor": "an anchor id, part of Vault mount paths, Kubernetes object names and resource names (URNs)",
    "nextTrustAnchor": "an anchor id, part of Vault mount paths, Kubernetes object names and resource names (URNs)",
    "anchorRotationPhase": "a rotation phase, which the stack exports as its `trustRotation` output",
    "allowRotationJump": _SWITCH,
    "allowMeshSwitch": _SWITCH,
    "trustAnchorValidity": "a certificate lifetime, written into the trust anchors every proxy is handed",
    "identityIssuerDuration": "a certificate lifetime, written into the identity issuer Certificate and its Vault "
                              "login's policy",
    "identityIssuerRenewBefore": "a renewal time, written into the identity issuer Certificate object",
    "workloadCertDuration": "a certificate lifetime, written into Certificate objects and Vault PKI roles",
    "vaultAddress": "Vault's address, written into the AIA and CRL URLs of every certificate the Vault PKI issues, "
                    "which every TLS handshake shows",
    "vaultNamespace": "a Vault namespace, part of the AIA and CRL URLs of every certificate the Vault PKI issues, "
                      "which every TLS handshake shows",
    "vaultMountPrefix": "a prefix of Vault mount paths, which are the mounts' resource ids (" + _RESOURCE_ID + ") and "
                        "part of the AIA and CRL URLs of every certificate they issue",
    "vaultIntermediateTtl": "a certificate lifetime, written into the intermediate certificates every proxy is handed",
    "vaultIntermediateRenewals": "renewal ids, part of resource names (URNs)",
    "vaultKubernetesAuthPath": "the path of a Vault auth mount, part of the resource ids of the mount and its login "
                               "roles (" + _RESOURCE_ID + ") and of every Issuer's spec",
    "vaultKubernetesAuthCreate": _SWITCH,
    "vaultKubernetesAuthMode": "a choice of how Vault reviews tokens, which decides the resources every preview shows",
    "vaultPublicCa": _SWITCH,
    "vaultAuthRole": "a prefix of Vault login role and policy names, part of their resource ids (" + _RESOURCE_ID + ")",
    "vaultAuthTokenTtl": "a token lifetime, written into the Vault login roles",
    "vaultWorkloadRole": "a prefix of Vault PKI role names, part of the roles' resource ids (" + _RESOURCE_ID + ")",
    "installCertManager": _SWITCH,
    "certManagerNamespace": "a namespace name, which is a Kubernetes object name",
    "certManagerServiceAccount": "a service account name, written into RoleBindings' subjects",
    "certManagerChartVersion": "a chart version, which the Helm release and its labels show",
    "trustManagerChartVersion": "a chart version, which the Helm release and its labels show",
    "linkerdChartVersion": "a chart version, which the Helm releases, their labels and the `linkerd` output show",
    "linkerdHighAvailability": "a choice the stack exports in its `linkerd` output",
    "proxyCpuRequest": "a resource quantity, which Linkerd's injector writes into every meshed pod's spec",
    "proxyCpuLimit": "a resource quantity, which Linkerd's injector writes into every meshed pod's spec",
    "proxyMemoryRequest": "a resource quantity, which Linkerd's injector writes into every meshed pod's spec",
    "proxyMemoryLimit": "a resource quantity, which Linkerd's injector writes into every meshed pod's spec",
    "proxyLogLevel": "a log filter, which Linkerd's injector writes into every meshed pod's proxy environment",
    "controllerLogLevel": "a log level, written into the Linkerd controllers' container arguments",
    "clusterDefaultInboundPolicy": "a policy, written into the Linkerd configuration and every proxy's environment",
    "linkerdCni": _SWITCH,
    "linkerdViz": _SWITCH,
    "prometheusServiceAccounts": "service account names, part of the mesh identities in authorization objects",
    "prometheusNetworks": "networks, written into NetworkAuthentications and NetworkPolicies",
    "kubeletNetworks": "networks, written into NetworkAuthentications and the Linkerd configuration",
    "clusterNetworks": "networks, written into NetworkPolicies and the Linkerd configuration",
    "networkPolicies": _SWITCH,
    "networkPolicyEgress": _SWITCH,
    "alerts": _SWITCH,
    "monitoringLabels": "labels, written into the alert rules' and the PodMonitor's metadata",
    "meshVerification": "a choice of whether the verification canary is registered, which every preview shows",
    "verificationServerImage": "an image reference, written into the canary's pod spec",
    "verificationClientImage": "an image reference, written into the verification Jobs' pod specs",
    "previewIdentity": "a name written into the preview identity's admission policy, its RBAC bindings and every "
                       "preview",
}
# Config of the default providers, which the program's explicit providers never read: key -> the setting to use.
IGNORED_PROVIDER_KEYS = {
    "kubernetes:context": "kubeContext", "kubernetes:kubeconfig": "kubeconfig",
    "vault:address": "vaultAddress", "vault:namespace": "vaultNamespace", "vault:token": "vaultToken",
}

# The characters no setting may hold (settings._invisible_character: Unicode categories Cc, Cf, Zl and Zp), as a
# class of the Basic Multilingual Plane: the same in every regex engine, and stable across Unicode versions
# (tests/test_schema.py compares it with the running Python's unicodedata). The 120 such characters beyond the BMP
# (tag characters, U+110BD, ...) are left to the validator.
INVISIBLE = (r"\u0000-\u001f\u007f-\u009f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e"
             r"\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb")
# Any text a setting may hold: what a string setting without a pattern of its own must match.
TEXT = Pattern(f"[^{INVISIBLE}]*")
# An integer setting's text (the CLI hands every value over as text).
INTEGER = Pattern(r"-?[0-9]{1,18}")
# A DNS-1123 subdomain whose labels are at most 63 characters (the whole at most 253: a max_length).
DNS_NAME = Pattern(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*")
DNS_SUBDOMAIN = Pattern(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
ANCHOR_ID_MAX = 20
# A stack name as the project's stack files and the Operator's Stack objects (mtls-mesh-<stack>, at most 42) use it.
STACK_NAME = Pattern(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
STACK_NAME_MAX = 32
# A shard stack's settings: which platform and shard, and how this runner reaches the cluster; the rest is the
# platform's (docs/shards.md).
SHARD_STACK_SETTINGS = ("platformStack", "shard", "kubeContext", "kubeconfig")
# Namespaces the program runs things in itself, where cert-manager must not go (besides the graph's own).
VERIFICATION_NAMESPACE = "mtls-mesh-verify"
NOT_FOR_CERT_MANAGER = ("linkerd", "linkerd-viz", "linkerd-cni", VERIFICATION_NAMESPACE, "kube-public",
                        "kube-node-lease")
VAULT_PATH = Pattern(r"[A-Za-z0-9][A-Za-z0-9_-]*(/[A-Za-z0-9][A-Za-z0-9_-]*)*")
VAULT_ROLE = Pattern(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# A Vault Enterprise namespace path; surrounding '/' are dropped before it is matched.
VAULT_NAMESPACE = Pattern(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
# The shape of a URL setting: its scheme (any case: the URL parser lowers it) and printable ASCII without spaces;
# settings._url_problem parses the rest (host, port, credentials, query).
URL_CHARACTERS = "[!-~]+"
HTTP_URL = Pattern(f"[Hh][Tt][Tt][Pp][Ss]?://{URL_CHARACTERS}")
HELM_REPOSITORY_URL = Pattern(f"([Hh][Tt][Tt][Pp][Ss]|[Oo][Cc][Ii])://{URL_CHARACTERS}")
CHART_VERSION = Pattern(r"v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?")
# Linkerd's edge charts are dated versions without a 'v' (edge-26.8.3 is chart 2026.8.3).
LINKERD_CHART_VERSION = Pattern(r"[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?")
# Kubernetes resource quantities (apimachinery's resource.Quantity): a number with an optional SI or binary suffix.
QUANTITY = Pattern(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")
# An image reference: registry/repository[:tag][@sha256:<64 hex>] (a digest pins what an air-gapped mirror serves).
IMAGE = Pattern(r"[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*"
                r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?")
# A Go duration as read/durations.py reads it (surrounding blanks dropped); whether it is a whole number of
# seconds within Go's range is arithmetic, checked by the validator.
DURATION = Pattern(r"\s*([0-9]{1,20}(\.[0-9]{1,20})?(h|m|s))+\s*")
# Only the shape of a network (ipaddress parses it, and refuses host bits); a bare address is a /32 or /128.
NETWORK_SHAPE = Pattern(r"[0-9A-Fa-f:.]+(/[0-9]{1,3})?")
# namespace/serviceaccount: a namespace of at most 63 characters, an account name of at most 253.
SERVICE_ACCOUNT_REF = Pattern(rf"(?=[^/]{{1,63}}/){DNS_LABEL.body}/(?!.{{254}}){DNS_NAME.body}")
# key=value, the value a label value of at most 63 characters.
LABEL_PAIR = Pattern(rf"{LABEL_KEY.body}=([A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?)?")
LOG_FILTER = Pattern(f"[^\\s{INVISIBLE}]+")
# Who a pull request's preview runs as in the cluster (plan/preview_identity.py): a ServiceAccount, or a user or group
# name as the cluster's authenticator reports it (an EKS access entry's group, an OIDC claim, a client certificate's
# O=). The characters keep the name a plain CEL string literal. Kubernetes' own users and groups (system:...) are
# refused: a policy bound to system:authenticated or system:serviceaccounts would refuse every writer's requests, and
# the read access it grants would go to everyone.
PREVIEW_IDENTITY = Pattern(rf"serviceaccount:{DNS_LABEL.body}/{DNS_NAME.body}|(user|group):[A-Za-z0-9][-A-Za-z0-9:@._+=/~]*")
PREVIEW_IDENTITY_FORBIDDEN = Pattern(r"(user|group):system:.*")
PREVIEW_IDENTITY_MAX = 260


def _optional(pattern: Pattern) -> Pattern:
    """The pattern, or the empty string (the setting's 'unset' default)."""
    return Pattern(f"({pattern.body})?")


def _choices(values: tuple[str, ...]) -> Pattern:
    return Pattern("|".join(v.replace(".", r"\.") for v in values))


_DURATION = Text("A Go duration such as 48h0m0s, 90m or 8760h", DURATION)


# What each setting's value (or, for a list setting, each item) must look like, beyond its declared type. A setting
# missing here takes any value of its type. `min_items` is the fewest items a list setting may hold when it is set.
VALUES: dict[str, Text] = {
    "environment": Text(choices=ENVIRONMENTS),
    "kubeContext": Text(min_length=1),
    "vaultNamespace": Text(pattern=Pattern(f"/*({VAULT_NAMESPACE.body})?/*")),
    "vaultAddress": Text(pattern=_optional(HTTP_URL)),
    "vaultKubernetesHost": Text(pattern=_optional(HTTP_URL)),
    "linkerdHelmRepository": Text(pattern=HELM_REPOSITORY_URL),
    "vaultIntermediateRenewals": Text("A renewal id, e.g. 2031-05", DNS_LABEL, ANCHOR_ID_MAX),
    "deliveredBy": Text(choices=DELIVERERS),
    "mesh": Text(choices=MESHES),
    "previewIdentity": Text("serviceaccount:<namespace>/<name>, user:<name> or group:<name>", PREVIEW_IDENTITY,
                            PREVIEW_IDENTITY_MAX, forbidden_pattern=PREVIEW_IDENTITY_FORBIDDEN,
                            examples=("group:mtls-mesh-preview", "serviceaccount:ci/mtls-mesh-preview")),
    "platformStack": Text("The platform stack's name (its stack file is stacks/Pulumi.<name>.yaml)",
                          _optional(STACK_NAME), max_length=STACK_NAME_MAX),
    "shard": Text("A shard of the service graph", _optional(DNS_LABEL), max_length=SHARD_NAME_MAX),
    "cluster": Text("One of the service graph's clusters", _optional(DNS_LABEL), max_length=CLUSTER_NAME_MAX),
    "clusterPeers": Text("A peer cluster stack's name (its stack file is stacks/Pulumi.<name>.yaml)", STACK_NAME,
                         max_length=STACK_NAME_MAX),
    "meshRootStack": Text("The stack owning the mesh root (its stack file is stacks/Pulumi.<name>.yaml)",
                          _optional(STACK_NAME), max_length=STACK_NAME_MAX),
    "clusterApiServer": Text(pattern=_optional(HTTP_URL)),
    "trustDomain": Text(pattern=DNS_NAME, max_length=253),
    "adoptNamespaces": Text(pattern=DNS_LABEL, max_length=63),
    "defaultInboundPolicy": Text(choices=INBOUND_POLICIES),
    "inboundPolicyOverrides": Text("namespace=policy", Pattern(f"{DNS_LABEL.body}=({_choices(INBOUND_POLICIES).body})"),
                                   examples=("legacy=audit",)),
    "pkiMode": Text(choices=PKI_MODES),
    "trustAnchor": Text(pattern=DNS_LABEL, max_length=ANCHOR_ID_MAX),
    "nextTrustAnchor": Text(pattern=_optional(DNS_LABEL), max_length=ANCHOR_ID_MAX),
    "anchorRotationPhase": Text(choices=ROTATION_PHASES),
    "trustAnchorValidity": _DURATION,
    "identityIssuerDuration": _DURATION,
    "identityIssuerRenewBefore": _DURATION,
    "workloadCertDuration": _DURATION,
    "vaultMountPrefix": Text(pattern=VAULT_PATH),
    "vaultIntermediateTtl": _DURATION,
    "vaultKubernetesAuthPath": Text(pattern=VAULT_PATH),
    "vaultKubernetesAuthMode": Text(choices=VAULT_AUTH_MODES),
    "vaultAuthRole": Text(pattern=VAULT_ROLE),
    "vaultAuthTokenTtl": _DURATION,
    "vaultWorkloadRole": Text(pattern=VAULT_ROLE),
    "certManagerNamespace": Text(pattern=DNS_LABEL, max_length=63, forbidden=NOT_FOR_CERT_MANAGER),
    "certManagerServiceAccount": Text(pattern=DNS_SUBDOMAIN, max_length=253),
    "certManagerChartVersion": Text(pattern=CHART_VERSION),
    "trustManagerChartVersion": Text(pattern=CHART_VERSION),
    "linkerdChartVersion": Text(pattern=LINKERD_CHART_VERSION),
    "linkerdHighAvailability": Text(choices=AUTO_TRUE_FALSE),
    "proxyCpuRequest": Text(pattern=_optional(QUANTITY)),
    "proxyCpuLimit": Text(pattern=_optional(QUANTITY)),
    "proxyMemoryRequest": Text(pattern=_optional(QUANTITY)),
    "proxyMemoryLimit": Text(pattern=_optional(QUANTITY)),
    "proxyLogLevel": Text(pattern=LOG_FILTER),
    "controllerLogLevel": Text(choices=CONTROLLER_LOG_LEVELS),
    "clusterDefaultInboundPolicy": Text(choices=INBOUND_POLICIES),
    "prometheusServiceAccounts": Text("namespace/serviceaccount", SERVICE_ACCOUNT_REF),
    "prometheusNetworks": Text("A CIDR, e.g. 10.0.0.0/8", NETWORK_SHAPE),
    "kubeletNetworks": Text("A CIDR, e.g. 10.0.0.0/16", NETWORK_SHAPE),
    "clusterNetworks": Text("A CIDR, e.g. 10.0.0.0/8", NETWORK_SHAPE),
    "monitoringLabels": Text("A label key=value", LABEL_PAIR),
    "meshVerification": Text(choices=AUTO_TRUE_FALSE),
    "verificationServerImage": Text(pattern=IMAGE),
    "verificationClientImage": Text(pattern=IMAGE),
}
# List settings that may not be set to an empty list (an empty one would open or close everything).
MIN_ITEMS = {"kubeletNetworks": 1, "clusterNetworks": 1}
# List settings whose entries may not repeat.
UNIQUE_ITEMS = ("vaultIntermediateRenewals", "clusterPeers")
# List settings: the JSON text of one, and its entries (docs/service-graph.md, 'Limits'). The namespace lists name graph namespaces;
# the others (networks, accounts, labels) are a handful in any cluster.
MAX_LIST_SETTING_BYTES = 1024 * 1024
MAX_LIST_ENTRIES = 100
LIST_SETTING_LIMITS = {"adoptNamespaces": MAX_NAMESPACES, "inboundPolicyOverrides": MAX_NAMESPACES}


CANNOT_CHECK = (
    Rule("between settings", "a setting that depends on another (pkiMode vault needs vaultAddress, the rotation phase "
         "needs nextTrustAnchor, a certificate must not outlive its issuer, self-signed in prod needs "
         "allowSelfSignedInProd, installCertManager decides certManagerServiceAccount, deliveredBy and kubeContext, "
         "a deny rollout needs kubeletNetworks and prometheusNetworks set, and together narrower than every "
         "address of a family and than a /7)",
         ("is required with pkiMode vault", "required when vaultKubernetesAuthCreate", "self-signed in a prod",
          "must be shorter than", "needs the anchor being rotated in", "anchorRotationPhase is none",
          "is the current anchor", "is shorter than the proxies'", "this program installs runs as",
          "but kubeContext is",
          "is operator: only the Pulumi Kubernetes Operator", "looks private", "is for audit rollouts",
          "admits every address, and", "admits every IPv", "admits more IPv")),
    Rule("duration values", "a duration's length: at least an hour, 60 days or 1 minute where required, a whole "
         "number of seconds, within Go's time.Duration",
         ("shorter than an hour", "under 60 days", "between 1m and 1h", "longest duration Go can hold",
          "whole number of seconds")),
    Rule("the service graph", "a namespace named in a setting must be one of the graph's (and meshed, for an "
         "override), and listed once; cert-manager's namespace must not be one of the graph's",
         ("is not a namespace of", "is not meshed", "is overridden twice", "is a namespace of",
                                         "is set twice", "needs the namespace")),
    Rule("files", "a file named by a setting must exist in the project (unless allowFilesOutsideProject), be a "
         "regular file within its size limit, and hold what it should",
         ("outside the project directory", "cannot read", "file not found", "is not a usable file path",
          "holds no PEM", "is a named pipe", "is a device", "has no CA for kubeContext")),
    Rule("URLs", "URLs are parsed as the program's URL parser reads them (host, port range and not 0, no credentials, "
         "query or fragment; https outside dev): the schema checks the scheme and the characters",
         ("is not a URL", "is not an http(s) URL", "is plain http", "is not an https:// or oci://",
          "contains credentials", "has port 0", "has a query or fragment", "does not name a host")),
    Rule("network values", "a CIDR must parse with no host bits set, and not be IPv4-mapped IPv6; clusterNetworks "
         "together must not cover every address of a family, nor more than a /7 of one",
         ("is not a CIDR", "has host bits set", "IPv4-mapped", "covers every IPv", "covers more IPv")),
    Rule("names built on a setting", "the trust domain must leave every certificate common name within X.509's 64 "
         "characters and every mesh identity a DNS name (the builders make those names); a Prometheus account must "
         "not be a namespace's 'default' account, which every pod there runs as",
         ("passes the 64 X.509 allows", "longer than a DNS name may be", "is not a DNS name of at most 253",
          "'default' account")),
    Rule("shard stacks", "a shard stack holds only platformStack, shard and how to reach the cluster; the platform's "
         "stack file must exist and set policyShards; the shard must be one of its graph's and the stack be named "
         "<platformStack>-<shard>; a stack that is not a shard sets neither",
         ("a shard stack holds only", "platform stack file", "does not set policyShards", "is not a shard of",
          "a shard stack is named", "is set, but platformStack is not", "is set, but shard is not")),
    Rule("multi-cluster stacks", "a cluster stack's settings against its peers' stack files and the graph: cluster "
         "must be one of the graph's clusters and is Linkerd only; clusterPeers, meshRootStack and clusterApiServer "
         "need cluster; each peer's file must exist, name another cluster, list this stack back (in a list), and "
         "agree on environment, trust domain, PKI, anchors, rotation phase and service graph; the root stack owns the "
         "root; a secondary's Vault names must not meet the root stack's nor a secondary peer's",
         ("is set, but cluster is not", "is set, but mesh is", "peer stack file", "is this stack itself",
          "is not a cluster of", "in its stack file", "does not list this stack", "is the cluster of",
          "owns the mesh root", "is required with clusterPeers", "the mesh root stack file",
          "peers' stack files cannot be read", "possibly the same as")),
    Rule("unique within a list", "a renewal id, label or override is listed once", ("is listed twice",)),
    Rule("size of a list", f"a list setting's JSON text is at most {MAX_LIST_SETTING_BYTES:,} characters",
         ("characters long, more than the limit",)),
    Rule("characters beyond the BMP", "invisible characters (Unicode Cc, Cf, Zl, Zp) beyond the Basic Multilingual "
         "Plane, such as tag characters", ()),
)
