"""Stack settings: read the stack's config once, validate all of it, and hand components one frozen object.

`Pulumi.yaml` declares every setting (type, default, description); this module reads those declarations, so the CLI
and the program agree on names, types and defaults, and a misspelled key is caught instead of silently ignored.
`runtime.read_stack_config` is the only code that touches Pulumi config; `load_settings` is pure (no Pulumi import)
and raises one `SettingsError` listing every problem, each under its key, before any resource is registered. Checks
that need the objects the settings produce (name collisions) run on the compiled plan (plan.py), right after.
"""

from __future__ import annotations

import ipaddress
import json
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlparse

import yaml

from read.durations import Duration
from read.errors import Problems, did_you_mean, hiding, short, short_url
from read.graph import (DEFAULT_SERVICE_ACCOUNT, ServiceGraph, cidr_problem, identity_issuer_name, is_dns_subdomain,
                    mesh_identity)
from read.inputs import MAX_PEM_BYTES, InputError, read_text_file
from read.fragments import load_service_graph
from read.names import anchor_common_name, workload_root_common_name

# The choices and patterns of the settings are declared once, in settings_format (which also renders them into
# schema/stack-settings.schema.json); the checks below use those same constants.
from read.settings_format import (  # noqa: E402 (re-exported: other modules import these names from here)
    ANCHOR_ID_MAX, AUTO_TRUE_FALSE, CHART_VERSION, CONTROLLER_LOG_LEVELS, DELIVERERS, DNS_LABEL, DNS_NAME,
    DNS_SUBDOMAIN, ENVIRONMENTS, IGNORED_PROVIDER_KEYS, IMAGE, INBOUND_POLICIES, INTEGER, LABEL_PAIR,
    CANNOT_BE_SECRET, LINKERD_CHART_VERSION, LIST_SETTING_LIMITS, MAX_LIST_ENTRIES, MAX_LIST_SETTING_BYTES,
    MAY_BE_SECRET, MESHES, MISSING, READ_ONLY_SETTINGS,
    NOT_FOR_CERT_MANAGER, PKI_MODES, PREVIEW_IDENTITY, PREVIEW_IDENTITY_FORBIDDEN, PREVIEW_IDENTITY_MAX, PROJECT,
    PROJECT_DIR, QUANTITY, ROTATION_PHASES, SECRET_SETTINGS,
    SERVICE_ACCOUNT_REF, STACK_NAME, STACK_NAME_MAX, VAULT_AUTH_MODES, VAULT_NAMESPACE, VAULT_PATH, VAULT_ROLE,
    VERIFICATION_NAMESPACE, Declaration, load_declarations,
)
from read.graph_format import CLUSTER_NAME_MAX

# kubeContext value for a program running inside the target cluster (the Pulumi Kubernetes Operator's workspace pod).
IN_CLUSTER = "in-cluster"
# Linkerd proxies' leaf certificates live this long (identity.issuer.issuanceLifetime); the issuer must outlast them.
PROXY_LEAF_LIFETIME = Duration.parse("24h")
# `linkerd check` warns when a trust anchor is valid for less than this.
LINKERD_CHECK_ANCHOR_MINIMUM = Duration.parse("1440h")
# Config of the default providers, which the program's explicit providers never read.
_IGNORED_PROVIDER_KEYS = IGNORED_PROVIDER_KEYS
_VAULT_NAMESPACE = VAULT_NAMESPACE.python
_VAULT_PATH = VAULT_PATH.python
_DNS_LABEL = DNS_LABEL.python
_DNS_SUBDOMAIN = DNS_SUBDOMAIN.python
# X.509 caps a common name at 64 characters (RFC 5280 ub-common-name); cert-manager's webhook refuses a Certificate
# whose commonName is longer (ValidateCertificateSpec, internal/apis/certmanager/validation/certificate.go).
MAX_COMMON_NAME = 64
_NOT_FOR_CERT_MANAGER = NOT_FOR_CERT_MANAGER
# The cert-manager Helm release's fixed name; its chart names the controller's service account after it.
CERT_MANAGER_RELEASE = "cert-manager"
_MISSING = MISSING


class Secret:
    """A secret setting: its value never appears in a repr, a log line or an error message. The plan carries it as
    it is; components hand it to Pulumi as `pulumi.Output.secret` (components/providers.secret_input)."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('[secret]')"

    __str__ = __repr__


def revealed(value: "str | Secret") -> str:
    """The text of a setting that may be stored as a secret (MAY_BE_SECRET), for a check that compares it."""
    return value.reveal() if isinstance(value, Secret) else value


def secret_refusal(key: str, *, array: bool = False) -> tuple[str, str]:
    """What is wrong with `key` stored as a secret when it cannot be one, and the fix (settings_format.CANNOT_BE_SECRET)."""
    full = f"{PROJECT}:{key}"
    what = f"is stored as a secret, but it is {CANNOT_BE_SECRET[key]}"
    if array:
        return what, (f"Store it in plain text: pulumi config rm {full}, then pulumi config set --path '{full}[0]' "
                      "<value> for each entry")
    return what, f"Store it in plain text: pulumi config set {full} <value>"


@dataclass(frozen=True)
class KubernetesSettings:
    # Either may be stored as a secret (settings_format.MAY_BE_SECRET): then a Secret, which components pass on as one.
    context: "str | Secret"
    kubeconfig: "str | Secret"
    # Who runs `pulumi up` of the stack (deliveredBy): an Operator stack's provider is configured the same way inside
    # and outside the Operator (components/providers.py), so its previews match its state from anywhere.
    delivered_by: str = "workflows"

    @property
    def in_cluster(self) -> bool:
        return revealed(self.context) == IN_CLUSTER


@dataclass(frozen=True)
class PreviewIdentity:
    """Who a pull request's `pulumi preview` runs as in the cluster (previewIdentity): `kind` serviceaccount, user or
    group; `namespace` only for a ServiceAccount."""

    kind: str
    name: str
    namespace: str = ""

    @property
    def username(self) -> str | None:
        """The name the API server authenticates it as (None for a group, which is matched among a user's groups)."""
        if self.kind == "serviceaccount":
            return f"system:serviceaccount:{self.namespace}:{self.name}"
        return self.name if self.kind == "user" else None


DEFAULT_PREVIEW_IDENTITY = PreviewIdentity("group", "mtls-mesh-preview")


@dataclass(frozen=True)
class RolloutSettings:
    default_policy: str
    overrides: Mapping[str, str]

    def policy_for(self, namespace: str) -> str:
        return self.overrides.get(namespace, self.default_policy)


@dataclass(frozen=True)
class AnchorRotation:
    """Where a trust-anchor rotation stands. The bundle and the issuing anchor follow from the phase."""

    phase: str
    current: str
    next: str

    @property
    def bundle_anchors(self) -> tuple[str, ...]:
        """Anchors the trust bundle carries, oldest first."""
        return {
            "none": (self.current,),
            "add-next": (self.current, self.next),
            "issue-from-next": (self.current, self.next),
            "drop-previous": (self.next,),
        }[self.phase]

    @property
    def issuing_anchor(self) -> str:
        """The anchor the Linkerd identity issuer chains to."""
        return self.current if self.phase in ("none", "add-next") else self.next

    @property
    def anchors(self) -> tuple[str, ...]:
        """Every anchor this phase still needs to exist (in the bundle or signing)."""
        return tuple(dict.fromkeys((*self.bundle_anchors, self.issuing_anchor)))


@dataclass(frozen=True)
class PkiSettings:
    mode: str
    protect: bool
    rotation: AnchorRotation
    anchor_validity: Duration
    issuer_duration: Duration
    issuer_renew_before: Duration
    workload_duration: Duration
    # Let this update skip the rotation guard (components/rotation.py): recovery, or adopting an existing mesh.
    allow_rotation_jump: bool = False

    @property
    def workload_renew_before(self) -> Duration:
        """Renew when a third of the lifetime remains, i.e. two thirds of the way through."""
        return Duration(self.workload_duration.seconds // 3)


@dataclass(frozen=True)
class VaultSettings:
    address: str
    namespace: str
    ca_bundle_pem: str
    # A Secret when vaultCaBundleFile is stored as one (the path; the certificates are public).
    ca_bundle_path: "str | Secret"
    mount_prefix: str
    root_ttl: Duration
    intermediate_ttl: Duration
    kubernetes_auth_path: str
    create_kubernetes_auth: bool
    kubernetes_host: "str | Secret"
    auth_role: str
    auth_token_ttl: Duration
    workload_role: str
    token: Secret | None = field(default=None, repr=False)
    # external: Vault outside the cluster reviews tokens with a reviewer account's JWT and this CA; in-cluster: with
    # its own pod's service account.
    kubernetes_auth_mode: str = "external"
    kubernetes_ca_pem: str = ""
    # Each id: every intermediate re-signed by its root (a new vaultIntermediateTtl); the last one is its mount's
    # default issuer (docs/operations.md, 'Renewing the Vault intermediate').
    intermediate_renewals: tuple[str, ...] = ()
    # A secondary cluster of a multi-cluster environment (meshRootStack set): its intermediates, workload roots,
    # Kubernetes auth mount and logins carry the cluster's name, so no two clusters share one and one cluster's login
    # can sign only for its own identity issuer (plan/vault_pki.py). "": the names a single-cluster stack has, which
    # the stack owning the mesh root keeps when it becomes the first cluster (docs/multicluster.md, 'Turning an
    # existing environment into its first cluster': renaming would replace its protected intermediate and every
    # login under running workloads).
    cluster: str = ""
    # A secondary cluster's (meshRootStack set): the vaultMountPrefix of the stack owning the environment's mesh root,
    # read from its stack file, whose root mounts sign this cluster's intermediates. None: this stack owns its roots.
    mesh_root_prefix: str | None = None

    @property
    def owns_root(self) -> bool:
        """Whether this stack creates the mesh root mounts (else it signs under the root-owning stack's)."""
        return self.mesh_root_prefix is None

    @property
    def _cluster_prefix(self) -> str:
        return f"{self.mount_prefix}-{self.cluster}" if self.cluster else self.mount_prefix

    def root_mount(self, anchor: str) -> str:
        return f"{self.mount_prefix if self.mesh_root_prefix is None else self.mesh_root_prefix}-root-{anchor}"

    def intermediate_mount(self, anchor: str) -> str:
        return f"{self._cluster_prefix}-int-{anchor}"

    def workload_mount(self, anchor: str) -> str:
        """The workload chain's root: a CA the proxies never trust (see vault_pki)."""
        return f"{self._cluster_prefix}-workload-{anchor}"

    @property
    def login_prefix(self) -> str:
        """What every login (Kubernetes auth role and its policy) of this stack is named after: Vault's policies are
        global to its namespace, so two clusters' logins must not share a name."""
        return f"{self.auth_role}-{self.cluster}" if self.cluster else self.auth_role

    @property
    def identity_auth_role(self) -> str:
        """The login (and its policy) of the Linkerd namespace's identity issuer."""
        return f"{self.login_prefix}-identity"

    def namespace_auth_role(self, namespace: str) -> str:
        """The login (and its policy) of one namespace's workload issuer."""
        return f"{self.login_prefix}-ns-{namespace}"

    def namespace_workload_role(self, namespace: str) -> str:
        """The PKI role that signs one namespace's workload certificates and no other names."""
        return f"{self.workload_role}-{namespace}"


def vault_for_cluster(vault: VaultSettings, cluster: str, mesh_root_prefix: str | None) -> VaultSettings:
    """A cluster stack's Vault settings. The stack owning the mesh root (mesh_root_prefix None) keeps its
    single-cluster names, so an environment's existing stack becomes its first cluster without replacing anything.
    A secondary gets its cluster's names (VaultSettings.cluster) and the root stack's mount prefix; the Kubernetes
    auth mount the program creates is its own (`<vaultKubernetesAuthPath>-<cluster>`): each cluster has its own API
    server and token reviewer, and a mount holds one of each. An existing mount (vaultKubernetesAuthCreate false) is
    the operator's to name per cluster."""
    if mesh_root_prefix is None:
        return vault
    path = vault.kubernetes_auth_path
    if cluster and vault.create_kubernetes_auth:
        path = f"{path}-{cluster}"
    return replace(vault, cluster=cluster, mesh_root_prefix=mesh_root_prefix, kubernetes_auth_path=path)


@dataclass(frozen=True)
class CertManagerSettings:
    install: bool
    namespace: str
    chart_version: str
    trust_manager_chart_version: str
    # The account cert-manager's controller runs as: it requests the Vault login tokens of the issuers' accounts.
    service_account: str = "cert-manager"


@dataclass(frozen=True)
class LinkerdSettings:
    chart_version: str
    repository: "str | Secret"
    high_availability: bool
    proxy_resources: Mapping[str, Mapping[str, str]]
    proxy_log_level: str
    controller_log_level: str
    cluster_default_inbound_policy: str
    cni: bool
    viz: bool


@dataclass(frozen=True)
class PolicySettings:
    prometheus_service_accounts: tuple[tuple[str, str], ...]  # (name, namespace)
    prometheus_networks: tuple[str, ...]
    kubelet_networks: tuple[str, ...]
    cluster_networks: tuple[str, ...]
    network_policies: bool
    network_policy_egress: bool


@dataclass(frozen=True)
class MonitoringSettings:
    enabled: bool
    labels: Mapping[str, str]


@dataclass(frozen=True)
class VerificationSettings:
    """The post-deploy mesh checks (plan/linkerd/verification.py)."""

    enabled: bool
    server_image: str
    client_image: str


@dataclass(frozen=True)
class ClusterPeer:
    """Another cluster stack of the environment that this cluster links with (both ways), as its own stack file
    declares it: read at compile time, in previews too. What exists only once the peer has applied (its gateway's
    addresses, the remote-access token, its applied rotation) is not here: it comes from the peer's stack outputs at
    registration."""

    stack: str
    cluster: str
    trust_domain: str
    # Its API server as this cluster's mirror controller reaches it (the peer's clusterApiServer).
    api_server: str
    # Where its traffic comes from (the peer's clusterNetworks): what this cluster's gateway admits.
    networks: tuple[str, ...]


@dataclass(frozen=True)
class MulticlusterSettings:
    """This stack's cluster of a multi-cluster environment (the `cluster` setting; docs/multicluster.md). Settings
    carry None instead for a single-cluster stack (`cluster: ""`), which runs every service of the graph."""

    cluster: str
    peers: tuple[ClusterPeer, ...] = ()
    # The stack owning the environment's mesh root; "" when this stack does (meshRootStack).
    mesh_root_stack: str = ""
    # This cluster's API server as its peers reach it (clusterApiServer).
    api_server: str = ""

    @property
    def owns_mesh_root(self) -> bool:
        return not self.mesh_root_stack

    def peer(self, cluster: str) -> ClusterPeer | None:
        return next((p for p in self.peers if p.cluster == cluster), None)


@dataclass(frozen=True)
class StackFileConfig:
    """Another stack's config as the Pulumi CLI would hand it to that stack (read.stack_files.read_stack_file), and
    where it was read from, for messages."""

    where: str
    raw: Mapping[str, str]
    secret_keys: frozenset[str] = frozenset()


# Reads another stack's file by stack name (None when there is none): how a cluster stack sees its peers.
PeerReader = Callable[[str], "StackFileConfig | None"]


@dataclass(frozen=True)
class Settings:
    stack: str
    environment: str
    trust_domain: str
    kubernetes: KubernetesSettings
    graph: ServiceGraph
    adopt_namespaces: tuple[str, ...]
    rollout: RolloutSettings
    pki: PkiSettings
    vault: VaultSettings | None
    cert_manager: CertManagerSettings
    linkerd: LinkerdSettings
    policy: PolicySettings
    monitoring: MonitoringSettings
    verification: VerificationSettings = VerificationSettings(False, "", "")
    # A platform stack: namespaces with a `shard` get their policy and workload Certificates from shard stacks.
    policy_shards: bool = False
    # A shard stack: its platform (whose settings these are) and the shard it registers.
    platform_stack: str | None = None
    shard: str | None = None
    preview_identity: PreviewIdentity = DEFAULT_PREVIEW_IDENTITY
    # Which mesh the stack installs (plan/mesh.py picks plan/linkerd/ or plan/istio/ by it).
    mesh: str = "linkerd"
    # A cluster of a multi-cluster environment; None for a single-cluster stack (cluster "").
    multicluster: MulticlusterSettings | None = None
    # Skip, for one update, the check of a change of mesh (plan/ownership.py `mesh_switch_problem`).
    allow_mesh_switch: bool = False

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"




class _NotAString:
    """What a JSON number in a list setting becomes: it fails the list-of-strings check, unconverted."""


def _not_a_string(_text: str) -> _NotAString:
    return _NotAString()


class _Config:
    """Typed access to the raw config strings, recording a problem (with the full key) for each bad value."""

    def __init__(self, raw: Mapping[str, str], secret_keys: frozenset[str], declarations: dict[str, Declaration],
                 problems: Problems):
        self.secret_keys = secret_keys
        self.declarations = declarations
        self.problems = problems
        self._said: set[tuple[str, str]] = set()
        self.raw = raw
        # Settings stored as secrets that cannot be one (load_settings stops right after these: no check reads, or
        # reports anything about, a marked value it may not keep).
        self.refused = refused_secrets(raw, secret_keys, declarations)
        for key in self.refused:
            problems.add(self.full(key), *secret_refusal(key, array=declarations[key].type == "array"))
        for key, other in _exposed_secrets(raw, secret_keys, declarations):
            self.refused.append(key)
            fix = (f"Store {self.full(other)} as a secret too, or store this one in plain text" if other in MAY_BE_SECRET
                   else f"Store it in plain text: pulumi config set {self.full(key)} <value>")
            problems.add(self.full(key), f"is stored as a secret, but its value is also part of {self.full(other)}, "
                         "which is not, and reaches resources as it is", fix)

    @staticmethod
    def full(key: str) -> str:
        return f"{PROJECT}:{key}"

    def problems_for(self, key: str) -> bool:
        return any(said == key for said, _ in self._said)

    def is_secret(self, key: str) -> bool:
        return self.full(key) in self.secret_keys and self.full(key) in self.raw

    def kept_secret(self, key: str, value: str) -> "str | Secret":
        """A MAY_BE_SECRET setting's value as the plan carries it: a Secret when it is stored as one."""
        return Secret(value) if self.is_secret(key) and key in MAY_BE_SECRET else value

    def add(self, key: str, what: str, fix: str = "") -> None:
        # Settings are read more than once (every declared one up front, then where it is used): say each thing once.
        if (key, what) in self._said:
            return
        self._said.add((key, what))
        self.problems.add(self.full(key), what, fix)

    def is_set(self, key: str) -> bool:
        """Whether the stack sets `key` to something other than its default. The CLI fills in every Pulumi.yaml
        default before the program starts (read/stack_files.py), so a key being present says nothing: a stack that
        leaves it out and one that sets it to its default look the same, and both count as not set."""
        full = self.full(key)
        if full not in self.raw:
            return False
        declaration = self.declarations.get(key)
        return declaration is None or not declaration.is_default(str(self.raw[full]))

    def _raw(self, key: str) -> Any:
        declaration = self.declarations[key]
        value = self.raw.get(self.full(key), _MISSING)
        if value is _MISSING or (declaration.required and not self.is_set(key)):
            if declaration.required:
                # Present but empty is what the CLI hands a stack that leaves the key out (its default "").
                what = "is required but not set" + (": it is empty" if value is not _MISSING else "")
                self.add(key, what, f"Set it: pulumi config set {key} <value>  ({declaration.description})")
                return None
            return declaration.default
        return value

    def string(self, key: str) -> str:
        value = self._raw(key)
        text = "" if value is None else str(value)
        invisible = _invisible_character(text)
        if invisible:
            self.add(key, f"contains {invisible}", "No setting takes control, format or line-separator characters: "
                     "retype the value (a pasted newline or direction mark is the usual cause)")
        return text

    def boolean(self, key: str) -> bool:
        value = self._raw(key)
        if isinstance(value, bool) or value is None:
            return bool(value)
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        self.add(key, f"must be true or false, not {short(value)}")
        return bool(self.declarations[key].default)

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._raw(key)
        limit = LIST_SETTING_LIMITS.get(key, MAX_LIST_ENTRIES)
        example = f"e.g. pulumi config set --path '{key}[0]' <value>"
        if isinstance(value, str):
            if len(value) > MAX_LIST_SETTING_BYTES:
                self.add(key, f"is {len(value):,} characters long, more than the limit of {MAX_LIST_SETTING_BYTES:,}",
                         "See docs/service-graph.md, 'Limits'")
                return ()
            try:
                # Numbers are never converted (a 5,000-digit one is more than Python's int() takes, and no list
                # setting holds numbers); nesting is a RecursionError in the C scanner, not a crash.
                value = json.loads(value, parse_int=_not_a_string, parse_float=_not_a_string,
                                   parse_constant=_not_a_string)
            except (ValueError, RecursionError):  # json.JSONDecodeError is a ValueError
                self.add(key, f"must be a list of strings, not {short(value)}", example)
                return ()
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.add(key, "must be a list of strings", example)
            return ()
        if len(value) > limit:
            self.add(key, f"lists {len(value):,} entries, more than the limit of {limit:,}", "See docs/service-graph.md, 'Limits'")
            return ()
        for index, item in enumerate(value):
            invisible = _invisible_character(item)
            if invisible:
                self.add(f"{key}[{index}]", f"contains {invisible}", "Retype the value")
        return tuple(value)

    def duration(self, key: str) -> Duration | None:
        text = self.string(key)
        try:
            return Duration.parse(text)
        except ValueError as err:
            self.add(key, str(err))
            return None

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.string(key)
        if value not in choices:
            self.add(key, f"{short(value)} is not one of {', '.join(choices)}", did_you_mean(value, choices))
        return value

    def secret(self, key: str) -> Secret | None:
        full = self.full(key)
        if full not in self.raw:
            return None
        if full not in self.secret_keys:
            self.add(key, "is stored in plaintext", f"Store it encrypted: pulumi config set --secret {key} <value>")
        return Secret(str(self.raw[full]))


def refused_secrets(raw: Mapping[str, str], secret_keys: frozenset[str] | set[str],
                    declarations: Mapping[str, Declaration]) -> list[str]:
    """The declared settings stored as secrets that cannot be one (settings_format.CANNOT_BE_SECRET)."""
    return [key for key in declarations
            if f"{PROJECT}:{key}" in secret_keys and f"{PROJECT}:{key}" in raw and key not in MAY_BE_SECRET]


# A secret value shorter than this is not looked for in other settings: 'dev' is part of many a plain value.
_SHORTEST_EXPOSED_SECRET = 4


def _exposed_secrets(raw: Mapping[str, str], secret_keys: frozenset[str] | set[str],
                     declarations: Mapping[str, Declaration]) -> list[tuple[str, str]]:
    """(key, other) for each setting stored as a secret (that may be one) whose value is also part of another
    setting's plain value (set, or its default): the staging file's kubeContext staging-eu1 is part of its
    vaultKubernetesHost, so a secret kubeContext there would be in the auth config's kubernetes_host for all to read."""
    plain = {}
    for key, declaration in declarations.items():
        full = f"{PROJECT}:{key}"
        if full in secret_keys or key in READ_ONLY_SETTINGS:
            continue
        value = raw.get(full, declaration.default)
        plain[key] = value if isinstance(value, str) else json.dumps(value) if value is not MISSING else ""
    exposed = []
    for key in MAY_BE_SECRET:
        full = f"{PROJECT}:{key}"
        value = raw.get(full)
        if full not in secret_keys or not isinstance(value, str) or len(value) < _SHORTEST_EXPOSED_SECRET:
            continue
        other = next((k for k, text in plain.items() if k != key and value in text), None)
        if other is not None:
            exposed.append((key, other))
    return exposed


def marked_values(raw: Mapping[str, str], secret_keys: frozenset[str] | set[str],
                  declarations: Mapping[str, Declaration]) -> list[str]:
    """The values stored as secrets that reading the settings may touch (every one but the refused settings', which
    nothing reads): each value, and each entry of a list value."""
    refused = {f"{PROJECT}:{key}" for key in refused_secrets(raw, secret_keys, declarations)}
    values = []
    for full in secret_keys:
        value = raw.get(full)
        if full in refused or not isinstance(value, str):
            continue
        # The value, and the forms checks derive from it: stripped (vaultNamespace), and a path as pathlib writes
        # it (a file setting's "file not found at <path>").
        values += [value, value.strip(), value.strip("/"), str(PurePosixPath(value)) if value else ""]
        try:
            entries = json.loads(value)
        except (ValueError, RecursionError):
            continue
        if isinstance(entries, list):
            values += [entry for entry in entries if isinstance(entry, str)]
    return values


def _invisible_character(text: str) -> str:
    """The first character of `text` no setting may hold (C0/C1 controls such as a newline, format characters such as
    bidirectional marks and zero-width spaces, line and paragraph separators), described, or ''."""
    for char in text:
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            return f"the invisible character U+{ord(char):04X} ({unicodedata.name(char, 'a control character')})"
    return ""


def _check_declared(config: _Config) -> None:
    """Every declared setting is type-checked, whatever the mode: a setting read only on some branch (a boolean of
    the prod path, a Vault setting in dev) must not carry a mistake that surfaces the day the branch is taken."""
    for key, declaration in config.declarations.items():
        if declaration.type == "boolean":
            config.boolean(key)
        elif declaration.type == "array":
            config.strings(key)
        elif declaration.type == "integer":
            text = config.string(key)
            if not INTEGER.matches(text):
                config.add(key, f"must be a whole number, not {short(text)}")
        else:
            text = config.string(key)
            if declaration.required and not text and config.is_set(key):
                config.add(key, "is empty", f"Set it: pulumi config set {key} <value>  ({declaration.description})")


def project_file(config: _Config, key: str, project_dir: Path) -> Path | None:
    """The file a path setting names, relative to the project, or None (with a problem) when it resolves, symlinks
    followed, outside the project and allowFilesOutsideProject is false: a setting must not read, and an error
    must not quote, a file such as /etc/shadow or ~/.ssh/id_rsa by accident."""
    value = config.string(key)
    path = project_dir / value
    allow_outside = ("allowFilesOutsideProject" in config.declarations
                     and config.boolean("allowFilesOutsideProject"))
    if allow_outside:
        return path
    try:
        inside = path.resolve().is_relative_to(project_dir.resolve())
    except (OSError, RuntimeError, ValueError):
        return path  # a NUL byte or a symlink loop: reading it reports that
    if not inside:
        config.add(key, f"{short(value)} is outside the project directory (symbolic links followed)",
                   "Put the file inside the project and give its path relative to it, or set "
                   "allowFilesOutsideProject true to read files from elsewhere")
        return None
    return path


def provider_path(path: Path, project_dir: Path) -> str:
    """How a provider setting names a file: relative to the project when the file is in it, so the provider's
    inputs, which its state records, are the same from every checkout (a preview from another clone, the Operator's
    workspace, CI) and `pulumi preview --expect-no-changes` holds. A provider plugin runs in the project directory
    (pulumi pkg/resource/plugin/plugin.go `execPlugin`: `cmd.Dir = pwd`, the plugin context's Pwd, the project's
    root), so the relative path reads the same file. A file outside the project (allowFilesOutsideProject) keeps its
    absolute path: nothing else names it."""
    try:
        return path.resolve().relative_to(project_dir.resolve()).as_posix()
    except (OSError, RuntimeError, ValueError):
        return str(path)


def load_settings(raw: Mapping[str, str], stack: str, *, secret_keys: frozenset[str] = frozenset(),
                  project_dir: Path = PROJECT_DIR, declarations: dict[str, Declaration] | None = None,
                  updating: bool = False, peers: PeerReader | None = None,
                  cluster_stack: str | None = None) -> "Settings":
    """Build the validated settings of one stack, or raise SettingsError listing every problem.

    `updating`: this run is an update (`pulumi up`), not a preview; only updates are held to `deliveredBy`.
    `peers`: how to read the stack files a cluster stack names (clusterPeers, meshRootStack); read.stack_files passes
    one (this module cannot import it: it imports this one). `cluster_stack`: the stack the peers know this cluster by,
    when it is not `stack` (a shard's settings are its platform's, and so are its cluster and peers).
    """
    declarations = declarations if declarations is not None else load_declarations(project_dir / "Pulumi.yaml")
    # No problem quotes a value stored as a secret (errors.hiding).
    with hiding(marked_values(raw, secret_keys, declarations)):
        return _load_settings(raw, stack, secret_keys, project_dir, declarations, updating, peers,
                              cluster_stack or stack)


def _load_settings(raw: Mapping[str, str], stack: str, secret_keys: frozenset[str], project_dir: Path,
                   declarations: dict[str, Declaration], updating: bool, peers: PeerReader | None,
                   cluster_stack: str) -> "Settings":
    problems = Problems()
    config = _Config(raw, secret_keys, declarations, problems)
    _check_keys(config, raw)
    if config.refused:
        # A setting stored as a secret it cannot stay: said alone, since every later check could depend on its value.
        problems.raise_if_any(stack)
    _check_declared(config)

    environment = config.choice("environment", ENVIRONMENTS)
    context, kubeconfig = config.string("kubeContext"), config.string("kubeconfig")
    kubernetes = KubernetesSettings(config.kept_secret("kubeContext", context),
                                    config.kept_secret("kubeconfig", kubeconfig))
    if "kubeContext" in declarations and not context and config.is_set("kubeContext"):
        config.add("kubeContext", "is empty", "Name the kubeconfig context of this stack's cluster")
    if context == IN_CLUSTER and kubeconfig:
        config.add("kubeconfig", f"is set, but kubeContext is {IN_CLUSTER} (the pod's own service account)",
                   "Unset kubeconfig, or name a context of that kubeconfig")
    if "deliveredBy" in declarations:
        kubernetes = replace(kubernetes, delivered_by=_delivery(config, kubernetes, updating))
    preview_identity = _preview_identity(config) if "previewIdentity" in declarations else DEFAULT_PREVIEW_IDENTITY
    trust_domain = config.string("trustDomain")
    if len(trust_domain) > 253 or not DNS_NAME.matches(trust_domain):  # labels of at most 63: in the pattern
        config.add("trustDomain", f"{short(trust_domain)} is not a DNS name",
                   "At most 253 characters, labels of at most 63 lowercase letters, digits and '-', e.g. cluster.local")
    else:
        _check_common_names(config, trust_domain)

    graph_file = config.string("serviceGraph")
    graph_path = project_file(config, "serviceGraph", project_dir) if graph_file else None
    # A file, or a directory of per-team fragments merged into one graph (read/fragments.py).
    # The mesh first: the graph is checked for it (its proxy's ports and namespaces, read/meshes.py).
    mesh = _mesh(config) if "mesh" in declarations else "linkerd"
    graph = load_service_graph(graph_path, graph_file, problems, project_dir, mesh) if graph_path is not None else None
    if not graph_file:
        config.add("serviceGraph", "is empty", "Point it at the service-graph YAML, e.g. services.yaml")

    adopt = config.strings("adoptNamespaces")
    rollout = _rollout(config, graph)
    if graph is not None:
        for index, namespace in enumerate(adopt):
            if namespace not in graph.namespaces:
                config.add(f"adoptNamespaces[{index}]", f"{short(namespace)} is not a namespace of {graph.source}",
                           did_you_mean(namespace, graph.namespaces))

    pki = _pki(config, environment)
    # Vault settings are checked in every mode (a stack moving to Vault later must not find old mistakes then); they
    # are required, and turned into settings, only with pkiMode vault.
    vault = _vault(config, environment, project_dir, pki, used=config.string("pkiMode") == "vault")
    cert_manager = CertManagerSettings(
        install=config.boolean("installCertManager"),
        namespace=config.string("certManagerNamespace"),
        chart_version=config.string("certManagerChartVersion"),
        trust_manager_chart_version=config.string("trustManagerChartVersion"),
        service_account=config.string("certManagerServiceAccount"),
    )
    if not _DNS_SUBDOMAIN.match(cert_manager.service_account) or len(cert_manager.service_account) > 253:
        config.add("certManagerServiceAccount", f"{short(cert_manager.service_account)} is not a service account name",
                   "Lower-case letters, digits, '-' and '.', as `kubectl -n <certManagerNamespace> get sa` lists it")
    elif cert_manager.install and cert_manager.service_account != CERT_MANAGER_RELEASE:
        config.add("certManagerServiceAccount",
                   f"is {short(cert_manager.service_account)}, but the cert-manager this program installs runs as "
                   f"{CERT_MANAGER_RELEASE!r} (the chart names its account after the release)",
                   "Leave it unset, or set installCertManager false to use a cert-manager installed elsewhere")
    for key in ("certManagerChartVersion", "trustManagerChartVersion"):
        if not CHART_VERSION.matches(config.string(key)):
            config.add(key, f"{short(config.string(key))} is not a chart version", "Pin an exact version such as v1.21.1")
    if len(cert_manager.namespace) > 63 or not _DNS_LABEL.match(cert_manager.namespace):
        config.add("certManagerNamespace", f"{short(cert_manager.namespace)} is not a valid namespace name",
                   "At most 63 lowercase letters, digits and '-', starting and ending with a letter or digit")
    elif graph is not None and cert_manager.namespace in graph.namespaces:
        config.add("certManagerNamespace", f"'{cert_manager.namespace}' is a namespace of {graph.source}, whose "
                   "injection, default-deny policy and NetworkPolicies would apply to cert-manager",
                   "Run cert-manager in a namespace of its own, e.g. cert-manager")
    elif cert_manager.namespace in _NOT_FOR_CERT_MANAGER:
        config.add("certManagerNamespace", f"'{cert_manager.namespace}' is a namespace the mesh or Kubernetes runs "
                   "itself", "Run cert-manager in a namespace of its own, e.g. cert-manager")

    linkerd = _linkerd(config, environment)
    policy = _policy(config)
    if graph is not None:
        _check_deny_networks(config, graph, rollout, policy)
    monitoring = _monitoring(config)
    verification = _verification(config, environment, graph)

    if graph is not None:
        _check_egress_outside_cluster(problems, graph, policy)
        _check_identities(config, graph, policy, trust_domain)
    for key, other in (("shard", "platformStack"), ("platformStack", "shard")):
        if config.string(key) and not config.string(other):
            config.add(key, f"is set, but {other} is not: a shard stack names both its platform and its shard",
                       f"Set {other} too (docs/shards.md), or remove {key} from a stack that is not a shard")
    multicluster = _multicluster(config, cluster_stack, mesh, peers, graph) if "cluster" in declarations else None
    if vault is not None and multicluster is not None:
        vault = _cluster_vault(config, vault, multicluster, peers)
    problems.raise_if_any(stack)
    return Settings(
        stack=stack, environment=environment, trust_domain=trust_domain, kubernetes=kubernetes, graph=graph,
        adopt_namespaces=adopt, rollout=rollout, pki=pki, vault=vault, cert_manager=cert_manager, linkerd=linkerd,
        policy=policy, monitoring=monitoring, verification=verification,
        policy_shards=config.boolean("policyShards") if "policyShards" in declarations else False,
        preview_identity=preview_identity, mesh=mesh, multicluster=multicluster,
        allow_mesh_switch=config.boolean("allowMeshSwitch") if "allowMeshSwitch" in declarations else False,
    )


def _check_common_names(config: _Config, trust_domain: str) -> None:
    """Certificates whose common name contains the trust domain: each must stay within X.509's 64 characters. The
    names come from where the builders take them (graph.py, names.py), so the check cannot drift."""
    builders = ((identity_issuer_name, "the Linkerd identity issuer's common name", ", which cert-manager's webhook refuses"),
                (anchor_common_name, "the self-signed trust anchor's common name", ""),
                (workload_root_common_name, "the self-signed workload root's common name", ""))
    longest = max(len(build("")) for build, _, _ in builders)
    for build, what, consequence in builders:
        name = build(trust_domain)
        if len(name) > MAX_COMMON_NAME:
            config.add("trustDomain", f"is {len(trust_domain)} characters long, so {what} ({len(name)} characters) "
                       f"passes the {MAX_COMMON_NAME} X.509 allows{consequence}",
                       f"Use at most {MAX_COMMON_NAME - longest} characters, e.g. cluster.local")
            return


def _check_identities(config: _Config, graph: ServiceGraph, policy: PolicySettings, trust_domain: str) -> None:
    """Every mesh identity the program writes (MeshTLSAuthentication identities, the proxies' certificates) must be a
    DNS-1123 subdomain, as Linkerd's identity controller issues them: at most 253 characters, labels of at most 63."""
    if config.problems_for("trustDomain"):
        return
    for service in graph.services.values():
        identity = mesh_identity(service.service_account, service.namespace, trust_domain)
        if graph.is_meshed(service) and not is_dns_subdomain(identity):
            config.add("trustDomain", f"makes the identity of services.{service.key} ({len(identity)} characters) "
                       "longer than a DNS name may be", "Use a shorter trust domain, e.g. cluster.local")
            return
    for index, (name, namespace) in enumerate(policy.prometheus_service_accounts):
        identity = mesh_identity(name, namespace, trust_domain)
        if not is_dns_subdomain(identity):
            config.add(f"prometheusServiceAccounts[{index}]", f"makes the identity {short(identity)} "
                       f"({len(identity)} characters), which is not a DNS name of at most 253 characters",
                       "Use the service account's real (shorter) name, or a shorter trustDomain")


# IPv6 ranges that carry an IPv4 address, and where: IPv4-mapped (RFC 4291 2.5.5.2: ::ffff:a.b.c.d, which a
# dual-stack socket delivers to the IPv4 address), IPv4-compatible (deprecated ::a.b.c.d), NAT64 (RFC 6052
# 64:ff9b::a.b.c.d, translated by a NAT64 gateway) and 6to4 (RFC 3056 2002:aabb:ccdd::/48). (prefix, first bit of the
# IPv4 address within the 128.)
_IPV4_EMBEDDINGS = ((ipaddress.IPv6Network("::ffff:0:0/96"), 96), (ipaddress.IPv6Network("::/96"), 96),
                    (ipaddress.IPv6Network("64:ff9b::/96"), 96), (ipaddress.IPv6Network("2002::/16"), 16))


def ipv4_views(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[ipaddress.IPv4Network]:
    """The IPv4 ranges a network reaches: itself for IPv4; for IPv6, the IPv4 addresses embedded in the parts of it
    that are IPv4-mapped, NAT64 or 6to4 (::/0 reaches every IPv4 address)."""
    if network.version == 4:
        return [network]
    views = []
    for prefix, start in _IPV4_EMBEDDINGS:
        if prefix.subnet_of(network):
            views.append(ipaddress.IPv4Network("0.0.0.0/0"))
        elif network.subnet_of(prefix):  # so at least as long as the prefix: the IPv4 bits start within it
            bits = min(network.prefixlen - start, 32)
            value = (int(network.network_address) >> (128 - start - 32)) & 0xFFFFFFFF
            views.append(ipaddress.IPv4Network((value, bits), strict=False))
    return views


def networks_overlap(a: ipaddress.IPv4Network | ipaddress.IPv6Network,
                     b: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """Whether two networks share an address, counting an IPv4 address embedded in IPv6 as that address."""
    if a.version == b.version and a.overlaps(b):
        return True
    return any(x.overlaps(y) for x in ipv4_views(a) for y in ipv4_views(b))


# The most addresses of one family a list of networks may cover where it matters (kubeletNetworks and
# prometheusNetworks under deny, clusterNetworks always): as many as a /7. For IPv4 that is twice 10.0.0.0/8, more
# than every private range together (10/8, 100.64/10, 172.16/12, 192.168/16: the default); for IPv6, fc00::/7, every
# unique-local address. A node network, a monitoring pool or a cluster's pod and service ranges are far narrower; a list
# wider than this is most of the Internet however it is written (0.0.0.0/0 minus 10.0.0.0/8 is eight CIDRs).
WIDEST_NETWORK_PREFIX = 7


def network_coverage(cidrs: Iterable[str]) -> dict[int, list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    """What a list of networks covers, per IP version, merged (ipaddress.collapse_addresses, n log n): the same
    whatever way the list is written ([0.0.0.0/1, 128.0.0.0/1] is [0.0.0.0/0]). The IPv4 addresses an IPv6 range
    carries (IPv4-mapped, NAT64, 6to4: ipv4_views) count as IPv4 too."""
    by_version: dict[int, list] = {4: [], 6: []}
    for cidr in cidrs:
        network = ipaddress.ip_network(cidr)
        by_version[network.version].append(network)
        if network.version == 6:
            by_version[4] += ipv4_views(network)
    return {version: list(ipaddress.collapse_addresses(networks)) for version, networks in by_version.items()}


def coverage_problem(cidrs: Iterable[str], verb: str) -> str | None:
    """'admits every IPv4 address ...' when the networks together cover a whole address family, 'admits more IPv6
    addresses than a /7 ...' when wider than WIDEST_NETWORK_PREFIX allows, or None. `verb`: admits, covers."""
    coverage = network_coverage(cidrs)
    whole = [version for version, merged in coverage.items() if merged and merged[0].prefixlen == 0]
    if whole:
        family = " and ".join(f"IPv{v}" for v in whole)
        merged = " and ".join("0.0.0.0/0" if v == 4 else "::/0" for v in whole)
        return f"{verb} every {family} address (its entries together cover {merged})"
    for version, merged in coverage.items():
        bits = 32 if version == 4 else 128
        count = sum(network.num_addresses for network in merged)
        if count > 2 ** (bits - WIDEST_NETWORK_PREFIX):
            return (f"{verb} more IPv{version} addresses than a /{WIDEST_NETWORK_PREFIX} "
                    f"({_address_count(count)} together)")
    return None


def _address_count(count: int) -> str:
    return f"{count:,}" if count < 2 ** 40 else f"about 2^{count.bit_length() - 1}"


def _check_egress_outside_cluster(problems: Problems, graph: ServiceGraph, policy: PolicySettings) -> None:
    """An egress CIDR that overlaps the cluster's networks would open in-cluster pods past the graph's allow lists."""
    cluster = [ipaddress.ip_network(c) for c in policy.cluster_networks]
    for service in graph.services.values():
        for index, egress in enumerate(service.egress):
            for cidr_index, cidr in enumerate(egress.cidrs):
                network = ipaddress.ip_network(cidr)
                inside = [str(c) for c in cluster if networks_overlap(network, c)]
                if inside:
                    problems.add(graph.where(f"services.{service.key}.egress[{index}].cidrs[{cidr_index}]"),
                                 f"{cidr} overlaps the cluster network {inside[0]} (clusterNetworks)",
                                 "Egress is for destinations outside the cluster; allow in-cluster callers with 'allow'")


# Kubernetes resource quantities (apimachinery's resource.Quantity): a number with an optional SI or binary suffix.
_QUANTITY = QUANTITY.python
_PROXY_RESOURCE_KEYS = {("cpu", "request"): "proxyCpuRequest", ("cpu", "limit"): "proxyCpuLimit",
                        ("memory", "request"): "proxyMemoryRequest", ("memory", "limit"): "proxyMemoryLimit"}


def _linkerd(config: _Config, environment: str) -> LinkerdSettings:
    version = config.string("linkerdChartVersion")
    if not LINKERD_CHART_VERSION.matches(version):
        hint = "Chart versions of edge releases are dates: edge-26.8.3 is chart 2026.8.3"
        config.add("linkerdChartVersion", f"{short(version)} is not a chart version", hint)
    repository = config.string("linkerdHelmRepository")
    problem = _url_problem(repository)
    try:
        parsed = urlparse(repository)
        hostname, _ = parsed.hostname, parsed.port
    except ValueError:
        hostname = None
    if problem and ("credentials" in problem[0] or "query or fragment" in problem[0]):
        config.add("linkerdHelmRepository", *problem)
    elif problem or not hostname or parsed.scheme not in ("https", "oci"):
        config.add("linkerdHelmRepository", f"{short_url(repository)} is not an https:// or oci:// repository",
                   "e.g. https://helm.linkerd.io/edge")
    ha = config.choice("linkerdHighAvailability", AUTO_TRUE_FALSE)
    resources: dict[str, dict[str, str]] = {}
    for (resource, kind), key in _PROXY_RESOURCE_KEYS.items():
        value = config.string(key)
        if not value:
            continue
        if not _QUANTITY.match(value):
            example = "100m or 0.5" if resource == "cpu" else "64Mi or 1Gi"
            config.add(key, f"{short(value)} is not a Kubernetes quantity", f"e.g. {example}")
        resources.setdefault(resource, {})[kind] = value
    log_level = config.string("proxyLogLevel")
    if not log_level or any(c.isspace() for c in log_level):
        config.add("proxyLogLevel", f"{short(log_level)} is not a log filter", "e.g. warn,linkerd=info")
    return LinkerdSettings(
        chart_version=version, repository=config.kept_secret("linkerdHelmRepository", repository),
        high_availability=environment == "prod" if ha == "auto" else ha == "true",
        proxy_resources=resources, proxy_log_level=log_level,
        controller_log_level=config.choice("controllerLogLevel", CONTROLLER_LOG_LEVELS),
        cluster_default_inbound_policy=config.choice("clusterDefaultInboundPolicy", INBOUND_POLICIES),
        cni=config.boolean("linkerdCni"), viz=config.boolean("linkerdViz"),
    )


# Settings only the Linkerd control plane reads: with another mesh they would silently do nothing. Each with what it
# is, for the one error a stack that switches mesh gets (dev and staging turn linkerdViz on).
LINKERD_ONLY_SETTINGS = ("linkerdChartVersion", "linkerdHelmRepository", "linkerdHighAvailability", "linkerdCni",
                         "linkerdViz", *_PROXY_RESOURCE_KEYS.values(), "proxyLogLevel", "controllerLogLevel",
                         "clusterDefaultInboundPolicy")
# The Linkerd-only settings holding a URL (their credentials are refused, but the refusal must not quote them either).
_URL_SETTINGS = frozenset({"linkerdHelmRepository"})
_LINKERD_ONLY_WHAT = {
    "linkerdViz": "Linkerd's viz dashboard; this program installs no Istio dashboard",
    "linkerdCni": "Linkerd's CNI plugin; Istio's sidecars use their own init container here",
    "linkerdHighAvailability": "Linkerd's HA; Istio's follows the environment (prod)",
    "clusterDefaultInboundPolicy": "the Linkerd proxies' default outside the graph's namespaces",
}


def _shown_value(key: str, value: str) -> str:
    return short_url(value) if key in _URL_SETTINGS else value


def _mesh(config: _Config) -> str:
    """The mesh switch, and a refusal of the Linkerd-only settings a non-Linkerd stack sets (to other than their
    default: a stack leaving one out and one setting the default look the same, `_Config.is_set`). One problem, on
    `mesh`: the line a person switching mesh just changed, naming every line to remove with it (docs/istio.md,
    "Linkerd-only settings under Istio")."""
    mesh = config.choice("mesh", MESHES)
    if mesh != "linkerd" and mesh in MESHES:
        found = [key for key in LINKERD_ONLY_SETTINGS if key in config.declarations and config.is_set(key)]
        if found:
            # A value is shown so the line can be found; a secret one never is, nor a URL's credentials, query or
            # fragment (short_url, as everywhere a URL is quoted: linkerdHelmRepository may carry a token).
            lines = "; ".join(f"{config.full(key)}: {'[secret]' if config.is_secret(key) else _shown_value(key, config.raw[config.full(key)])} "
                              f"({_LINKERD_ONLY_WHAT.get(key, 'read only by the Linkerd control plane')})"
                              for key in found)
            config.add("mesh", f"is {mesh}, and the stack file still sets {len(found)} Linkerd-only setting(s), which "
                       f"{mesh} has no use for: {lines}",
                       f"Remove {'that line' if len(found) == 1 else 'those lines'} from the stack file "
                       f"({'; '.join(f'pulumi config rm {config.full(key)}' for key in found)}), or keep mesh linkerd")
    return mesh


def _networks(config: _Config, key: str) -> tuple[str, ...]:
    networks = []
    for index, value in enumerate(config.strings(key)):
        # Written out in canonical form, so only what the API server refuses whatever the form matters here.
        problem = cidr_problem(value, verbatim=False)
        if problem:
            config.add(f"{key}[{index}]", *problem)
            continue
        networks.append(str(ipaddress.ip_network(value, strict=True)))
    return tuple(networks)


def _policy(config: _Config) -> PolicySettings:
    accounts = []
    for index, value in enumerate(config.strings("prometheusServiceAccounts")):
        namespace, sep, name = value.partition("/")
        if not SERVICE_ACCOUNT_REF.matches(value):  # a namespace of at most 63, an account name of at most 253
            config.add(f"prometheusServiceAccounts[{index}]", f"{short(value)} is not namespace/serviceaccount",
                       "e.g. monitoring/kube-prometheus-stack-prometheus")
            continue
        if name == DEFAULT_SERVICE_ACCOUNT:
            config.add(f"prometheusServiceAccounts[{index}]", f"is the 'default' account of namespace '{namespace}', "
                       "which every pod there without its own account runs as: all of them could read /metrics",
                       "Name the account Prometheus runs as (kube-prometheus-stack creates its own)")
            continue
        accounts.append((name, namespace))
    kubelet = _networks(config, "kubeletNetworks")
    if not kubelet and config.is_set("kubeletNetworks"):
        config.add("kubeletNetworks", "is empty, so no kubelet probe of a proxy would be admitted under deny",
                   "List the node network, e.g. [10.0.0.0/16]")
    cluster = _networks(config, "clusterNetworks")
    if not cluster and not config.strings("clusterNetworks"):
        config.add("clusterNetworks", "is empty, so every address would count as outside the cluster",
                   "List the pod and service networks, e.g. [10.0.0.0/8]")
    # In every phase: the setting describes the cluster (Linkerd's clusterNetworks, read by its control plane whatever
    # the phase), and no cluster's own networks are (most of) the Internet. Under deny, every address in it counts as
    # in-cluster, so the egress deny (0.0.0.0/0 except clusterNetworks) would deny nothing of it.
    wide = coverage_problem(cluster, "covers")
    if wide:
        config.add("clusterNetworks", f"{wide}: it lists the cluster's own pod and service networks, and every address "
                   "in it counts as in-cluster, so the egress deny would not deny it",
                   "List only the cluster's pod and service CIDRs (pods: kubectl get nodes -o "
                   "jsonpath='{.items[*].spec.podCIDRs}' and the range they come from; services: the API server's "
                   "--service-cluster-ip-range), e.g. [10.0.0.0/8]")
    return PolicySettings(
        prometheus_service_accounts=tuple(accounts), prometheus_networks=_networks(config, "prometheusNetworks"),
        kubelet_networks=kubelet, cluster_networks=cluster,
        network_policies=config.boolean("networkPolicies"), network_policy_egress=config.boolean("networkPolicyEgress"),
    )


# How to find each network an operator must name before enforcing deny (kubelet probes, an unmeshed Prometheus).
_NETWORK_HINTS = {
    "kubeletNetworks": (
        "Kubelet probes come from the node: list the nodes' network (kubectl get nodes -o wide, INTERNAL-IP, and the "
        "subnet it belongs to), plus each node's bridge address in its pod CIDR when the CNI probes from there "
        "(kubelet, kubenet/bridge: kubectl get nodes -o jsonpath='{.items[*].spec.podCIDRs}'), e.g. [10.20.0.0/20]"),
    "prometheusNetworks": (
        "Set [] when Prometheus is meshed (it is then admitted by its identity, prometheusServiceAccounts), or the "
        "narrowest network it runs in, e.g. the pod CIDR of a node pool reserved for monitoring (kubectl -n "
        "monitoring get pods -o wide; kubectl get nodes -o jsonpath='{.items[*].spec.podCIDRs}'). Every address in it "
        "can read every proxy's /metrics"),
}


def _check_deny_networks(config: _Config, graph: ServiceGraph, rollout: "RolloutSettings",
                         policy: "PolicySettings") -> None:
    """Under deny, kubeletNetworks and prometheusNetworks are the only unauthenticated ways into a meshed pod (probes,
    /metrics, and Linkerd's own probe routes on every HTTP/1 port: policyController.probeNetworks). Their defaults
    (anywhere; every private range) suit an audit rollout, not enforcement: a stack with a deny namespace must name
    them itself, and neither may be a whole address family."""
    deny = sorted(ns.name for ns in graph.meshed_namespaces if rollout.policy_for(ns.name) == "deny")
    if deny:
        where = f"namespace{'s' if len(deny) > 1 else ''} {', '.join(deny)} enforce{'' if len(deny) > 1 else 's'} deny"
    elif rollout.default_policy == "deny":
        # No graph namespace enforces, but the verification canary's namespace follows the default phase.
        where = "defaultInboundPolicy is deny"
    else:
        return
    for key, networks in (("kubeletNetworks", policy.kubelet_networks), ("prometheusNetworks", policy.prometheus_networks)):
        if not config.is_set(key):
            config.add(key, f"is not set, and {where}: its default "
                            f"({', '.join(config.declarations[key].default) or 'none'}) is for audit rollouts, "
                            "whether written out or left to Pulumi.yaml", _NETWORK_HINTS[key])
            continue
        whole = [index for index, cidr in enumerate(networks) if ipaddress.ip_network(cidr).prefixlen == 0]
        for index in whole:
            config.add(f"{key}[{index}]", f"{networks[index]} admits every address, and {where}", _NETWORK_HINTS[key])
        # What the list covers, not how it is written: [0.0.0.0/1, 128.0.0.0/1] admits every address too.
        wide = None if whole else coverage_problem(networks, "admits")
        if wide:
            config.add(key, f"{wide}, and {where}", _NETWORK_HINTS[key])


def _monitoring(config: _Config) -> MonitoringSettings:
    labels: dict[str, str] = {}
    for index, entry in enumerate(config.strings("monitoringLabels")):
        key, sep, value = entry.partition("=")
        if not LABEL_PAIR.matches(entry):  # a qualified name, '=', a label value of at most 63
            config.add(f"monitoringLabels[{index}]", f"{short(entry)} is not a label key=value",
                       "e.g. release=kube-prometheus-stack (what your Prometheus' ruleSelector matches)")
            continue
        if key in labels:
            config.add(f"monitoringLabels[{index}]", f"label {short(key)} is set twice", "Keep one value per label")
        labels[key] = value
    return MonitoringSettings(enabled=config.boolean("alerts"), labels=labels)


# An image reference: registry/repository[:tag][@sha256:<64 hex>] (a digest pins what an air-gapped mirror serves).
_IMAGE = IMAGE.python


def _verification(config: _Config, environment: str, graph: ServiceGraph | None) -> VerificationSettings:
    mode = config.choice("meshVerification", AUTO_TRUE_FALSE)
    for key in ("verificationServerImage", "verificationClientImage"):
        if not _IMAGE.fullmatch(config.string(key)):
            config.add(key, f"{short(config.string(key))} is not an image reference",
                       "e.g. registry.example.com/traefik/whoami:v1.10.3@sha256:<digest>")
    enabled = environment in ("dev", "staging") if mode == "auto" else mode == "true"
    if enabled and graph is not None and VERIFICATION_NAMESPACE in graph.namespaces:
        config.add("meshVerification", f"needs the namespace '{VERIFICATION_NAMESPACE}', which {graph.source} declares",
                   "Rename that namespace, or set meshVerification false")
    return VerificationSettings(enabled, config.string("verificationServerImage"), config.string("verificationClientImage"))


def _delivery(config: _Config, kubernetes: KubernetesSettings, updating: bool) -> str:
    """One stack, one deliverer: the workflows and the Operator each run `pulumi up` on their own schedule, so a stack
    driven by both would be updated from two commits in turn. The Operator's workspace is the only place the program
    runs with kubeContext in-cluster (its Stack objects set it, deploy/operator_stacks.py); the workflows and people
    name a kubeconfig context."""
    delivered_by = config.choice("deliveredBy", DELIVERERS)
    context = revealed(kubernetes.context)
    if delivered_by == "workflows" and context == IN_CLUSTER:
        config.add("deliveredBy", f"is workflows, but kubeContext is {IN_CLUSTER}: the Pulumi Kubernetes Operator is "
                   "updating a stack the workflows deliver (a stack is driven by one of them, never both)",
                   "Delete the Operator's Stack object of this stack, or hand the stack to the Operator: set "
                   "deliveredBy operator in stacks/Pulumi.<stack>.yaml and regenerate deploy/operator/")
    elif delivered_by == "operator" and context != IN_CLUSTER and updating:
        config.add("deliveredBy", "is operator: only the Pulumi Kubernetes Operator updates this stack, and this "
                   f"`pulumi up` runs outside it (kubeContext {short(context)})",
                   "Merge the change and let the Operator apply it (previews are fine from anywhere), or set "
                   "deliveredBy workflows and delete the Operator's Stack object first")
    return delivered_by


def _preview_identity(config: _Config) -> PreviewIdentity:
    """The identity the cluster lets only dry-run (plan/preview_identity.py). Kubernetes' own users and groups are
    refused: bound to system:authenticated or system:serviceaccounts the policy would refuse every writer's requests
    (the controllers' too), and the read access would go to everyone."""
    value = config.string("previewIdentity")
    example = "e.g. group:mtls-mesh-preview, user:arn:aws:iam::111122223333:role/mtls-mesh-preview or " \
              "serviceaccount:ci/mtls-mesh-preview"
    if len(value) > PREVIEW_IDENTITY_MAX or not PREVIEW_IDENTITY.matches(value):
        config.add("previewIdentity", f"{short(value)} is not serviceaccount:<namespace>/<name>, user:<name> or "
                   f"group:<name> (at most {PREVIEW_IDENTITY_MAX} characters; a name of letters, digits and "
                   "-:@._+=/~)", example)
        return DEFAULT_PREVIEW_IDENTITY
    if PREVIEW_IDENTITY_FORBIDDEN.matches(value):
        config.add("previewIdentity", f"{short(value)} is one of Kubernetes' own users or groups, which every "
                   "component or every client belongs to: the policy would refuse their writes",
                   f"Name an identity only the preview job has; {example}")
        return DEFAULT_PREVIEW_IDENTITY
    kind, _, name = value.partition(":")
    if kind == "serviceaccount":
        namespace, _, account = name.partition("/")
        return PreviewIdentity(kind, account, namespace)
    return PreviewIdentity(kind, name)


def _check_keys(config: _Config, raw: Mapping[str, str]) -> None:
    known = set(config.declarations) | set(SECRET_SETTINGS)
    for full_key in sorted(raw):
        namespace, _, key = full_key.partition(":")
        if namespace == PROJECT and key not in known:
            config.add(key, "is not a setting of this program", did_you_mean(key, known))
        elif full_key in _IGNORED_PROVIDER_KEYS:
            config.problems.add(full_key, "is ignored: the program passes explicit providers their settings",
                                f"Set {PROJECT}:{_IGNORED_PROVIDER_KEYS[full_key]} instead")


def _rollout(config: _Config, graph: ServiceGraph | None) -> RolloutSettings:
    default_policy = config.choice("defaultInboundPolicy", INBOUND_POLICIES)
    overrides: dict[str, str] = {}
    for index, entry in enumerate(config.strings("inboundPolicyOverrides")):
        key = f"inboundPolicyOverrides[{index}]"
        namespace, sep, policy = entry.partition("=")
        if not sep:
            config.add(key, f"{short(entry)} is not namespace=policy", "e.g. legacy=audit")
            continue
        if policy not in INBOUND_POLICIES:
            config.add(key, f"{short(policy)} is not an inbound policy", f"{did_you_mean(policy, INBOUND_POLICIES)} Valid: {', '.join(INBOUND_POLICIES)}")
        if graph is not None and namespace not in graph.namespaces:
            config.add(key, f"{short(namespace)} is not a namespace of {graph.source}", did_you_mean(namespace, graph.namespaces))
        elif graph is not None and not graph.namespaces[namespace].meshed:
            config.add(key, f"namespace {short(namespace)} is not meshed, so it has no inbound policy", "Remove the override")
        if namespace in overrides:
            config.add(key, f"namespace {short(namespace)} is overridden twice")
        overrides[namespace] = policy
    return RolloutSettings(default_policy, overrides)


def _pki(config: _Config, environment: str) -> PkiSettings | None:
    mode = config.choice("pkiMode", PKI_MODES)
    if mode == "self-signed" and environment == "prod" and not config.boolean("allowSelfSignedInProd"):
        config.add("pkiMode", "is self-signed in a prod environment",
                   "Use pkiMode vault, or set allowSelfSignedInProd true if this really is intended")

    current, next_anchor = config.string("trustAnchor"), config.string("nextTrustAnchor")
    phase = config.choice("anchorRotationPhase", ROTATION_PHASES)
    for key, anchor in (("trustAnchor", current), ("nextTrustAnchor", next_anchor)):
        if anchor and (len(anchor) > ANCHOR_ID_MAX or not _DNS_LABEL.match(anchor)):
            config.add(key, f"{short(anchor)} is not a valid anchor id",
                       "Use at most 20 lowercase letters, digits and '-', e.g. 2026-11 (it names Vault mounts and cluster objects)")
    if phase == "none" and next_anchor:
        config.add("nextTrustAnchor", f"is {short(next_anchor)} but anchorRotationPhase is none",
                   "Start the rotation with anchorRotationPhase add-next, or clear nextTrustAnchor")
    if phase in ROTATION_PHASES and phase != "none":
        if not next_anchor:
            config.add("anchorRotationPhase", f"is {phase}, which needs the anchor being rotated in",
                       "Set nextTrustAnchor (rotation starts with add-next)")
        elif next_anchor == current:
            config.add("nextTrustAnchor", f"is the current anchor {short(current)}", "Give the new anchor a new id")

    durations = {key: config.duration(key) for key in (
        "trustAnchorValidity", "identityIssuerDuration", "identityIssuerRenewBefore", "workloadCertDuration")}
    if None in durations.values():
        return None
    anchor_validity = durations["trustAnchorValidity"]
    issuer, renew_before = durations["identityIssuerDuration"], durations["identityIssuerRenewBefore"]
    workload = durations["workloadCertDuration"]
    if renew_before >= issuer:
        config.add("identityIssuerRenewBefore", f"({renew_before}) must be shorter than identityIssuerDuration ({issuer})",
                   "cert-manager would renew the issuer continuously; Linkerd's default is 48h0m0s renewed 25h0m0s before expiry")
    if renew_before < PROXY_LEAF_LIFETIME:
        config.add("identityIssuerRenewBefore", f"({renew_before}) is shorter than the proxies' {PROXY_LEAF_LIFETIME} leaf certificates",
                   "A leaf signed just before renewal would outlive its issuer; use at least 24h0m0s")
    if issuer >= anchor_validity:
        config.add("identityIssuerDuration", f"({issuer}) must be shorter than trustAnchorValidity ({anchor_validity})",
                   "No certificate may outlive the anchor it chains to")
    if anchor_validity < LINKERD_CHECK_ANCHOR_MINIMUM:
        config.add("trustAnchorValidity", f"({anchor_validity}) is under 60 days, which `linkerd check` flags",
                   "Use years, e.g. 87600h, and rotate with the runbook")
    if workload < Duration.parse("1h"):
        config.add("workloadCertDuration", f"({workload}) is shorter than an hour", "cert-manager's minimum is 1h")
    if workload >= anchor_validity:
        config.add("workloadCertDuration", f"({workload}) must be shorter than trustAnchorValidity ({anchor_validity})")
    rotation = AnchorRotation(phase if phase in ROTATION_PHASES else "none", current, next_anchor)
    return PkiSettings(mode=mode, protect=config.boolean("protectPki"), rotation=rotation,
                       anchor_validity=anchor_validity, issuer_duration=issuer, issuer_renew_before=renew_before,
                       workload_duration=workload, allow_rotation_jump=config.boolean("allowRotationJump"))


def _url_problem(value: str) -> tuple[str, str] | None:
    """Why a URL setting is refused, or None. cert-manager and the Vault provider parse these with Go's net/url
    (url.Parse: no control characters, `stringContainsCTLByte`; a host of host characters, `parseHost`; a numeric
    port, `validOptionalPort`), so the rules here are at least as strict, plus: no credentials, since the URL is
    copied into non-secret objects (every Issuer's spec.vault.server); no port 0; an ASCII host (a bidi or
    look-alike character would pass net/url and fail, or worse succeed, at IDNA lookup)."""
    authority = value.partition("//")[2]
    for end in "/?#":
        authority = authority.partition(end)[0]
    if "@" in authority:
        # Checked first, on the raw text, and never quoted: whatever else is wrong, the value holds a password.
        return ("contains credentials (user:password@): the URL is copied into non-secret objects such as every "
                "Issuer's spec.vault.server", "Remove them from the URL; the program authenticates with vaultToken and "
                "Kubernetes auth")
    try:
        parsed = urlparse(value)
        hostname, port = parsed.hostname, parsed.port  # .port raises for a port out of range or not a number
    except ValueError as err:
        return f"{short_url(value)} is not a URL ({str(err)[:120]})", "e.g. https://vault.example.com:8200"
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return f"{short_url(value)} contains a space or control character", "Retype the URL without spaces"
    if not value.isascii():
        return (f"{short_url(value)} contains non-ASCII characters",
                "Write the host in ASCII (punycode for an international name, xn--...)")
    if parsed.username is not None or parsed.password is not None:
        return "contains credentials", "Remove them from the URL"
    if port == 0:
        return f"{short_url(value)} has port 0", "Give the port the server listens on, e.g. :8200"
    if parsed.query or parsed.fragment or value.endswith(("?", "#")):
        # Quoted with the query and fragment hidden (short_url), as everywhere a URL is quoted: ?token=... is a secret.
        return f"{short_url(value)} has a query or fragment", "Give only scheme, host, port and path"
    if hostname and not _is_url_host(hostname):
        return f"{short_url(value)} does not name a host", "e.g. https://vault.example.com:8200"
    return None


def _is_url_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return is_dns_subdomain(host.lower().rstrip("."))


def _url(config: _Config, key: str, environment: str) -> str:
    value = config.string(key)
    problem = _url_problem(value)
    if problem:
        config.add(key, *problem)
        return ""  # nothing else quotes a refused URL (it may hold a password)
    parsed = urlparse(value)
    hostname = parsed.hostname
    if parsed.scheme not in ("http", "https") or not hostname:
        config.add(key, f"{short_url(value)} is not an http(s) URL", "e.g. https://vault.example.com:8200")
    elif parsed.scheme == "http" and environment != "dev":
        config.add(key, f"{short_url(value)} is plain http in {environment}", "Use https outside dev: the token and keys cross this link")
    return value


_PRIVATE_SUFFIXES = (".internal", ".local", ".localdomain", ".svc", ".lan", ".corp", ".home.arpa", ".intranet")


def _looks_private(url: str) -> bool:
    """Whether a URL's host is one no public CA issues for: a private or loopback IP, or a private DNS suffix."""
    host = (urlparse(url).hostname or "").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host.endswith(_PRIVATE_SUFFIXES) or "." not in host
    return address.is_private or address.is_loopback or address.is_link_local


def _kubernetes_ca(config: _Config, project_dir: Path) -> str:
    """The API server's CA for Vault's token reviews: vaultKubernetesCaFile, else kubeContext's cluster in the
    kubeconfig (certificate-authority-data, or the certificate-authority file)."""
    ca_file = config.string("vaultKubernetesCaFile")
    if ca_file:
        path = project_file(config, "vaultKubernetesCaFile", project_dir)
        if path is None:
            return ""
        try:
            pem = read_text_file(path, MAX_PEM_BYTES)
        except InputError as err:
            config.add("vaultKubernetesCaFile", f"cannot read {short(ca_file)}: {err.what}", err.fix)
            return ""
        if "-----BEGIN CERTIFICATE-----" not in pem:
            config.add("vaultKubernetesCaFile", f"{short(ca_file)} holds no PEM certificate")
        return pem
    fix = ("Set vaultKubernetesCaFile to the API server's CA (kubectl config view --raw --minify -o "
           "jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d > k8s-ca.pem), or use "
           "vaultKubernetesAuthMode in-cluster if Vault runs in this cluster")
    pem = _kubeconfig_ca(config.string("kubeconfig"), config.string("kubeContext"))
    if not pem:
        config.add("vaultKubernetesCaFile", "is empty and the kubeconfig has no CA for kubeContext's cluster, which "
                   "Vault outside the cluster needs to review tokens", fix)
    return pem


def _kubeconfig_ca(kubeconfig: str, context: str) -> str:
    import base64
    import os

    path = Path(kubeconfig or (os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]) or Path.home() / ".kube" / "config")
    try:
        document = yaml.safe_load(read_text_file(path, MAX_PEM_BYTES * 4)) or {}
        contexts = {c["name"]: c["context"] for c in document.get("contexts") or []}
        clusters = {c["name"]: c["cluster"] for c in document.get("clusters") or []}
        cluster = clusters[contexts[context]["cluster"]]
        if cluster.get("certificate-authority-data"):
            return base64.b64decode(cluster["certificate-authority-data"]).decode()
        return read_text_file(Path(cluster["certificate-authority"]), MAX_PEM_BYTES)
    except (InputError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError):
        return ""


def _vault(config: _Config, environment: str, project_dir: Path, pki: PkiSettings | None, *,
           used: bool) -> VaultSettings | None:
    problems_before = len(config.problems.items)
    if not config.string("vaultAddress"):
        if used:
            config.add("vaultAddress", "is required with pkiMode vault", "Set it: pulumi config set vaultAddress https://vault.example.com:8200")
        address = ""
    else:
        address = _url(config, "vaultAddress", environment)
    create_auth = config.boolean("vaultKubernetesAuthCreate")
    kubernetes_host = config.string("vaultKubernetesHost")
    if used and create_auth and not kubernetes_host:
        config.add("vaultKubernetesHost", "is required when vaultKubernetesAuthCreate is true",
                   "Give the Kubernetes API address Vault can reach (kubectl cluster-info), or reuse an existing mount")
    elif kubernetes_host:
        _url(config, "vaultKubernetesHost", environment)

    auth_mode = config.choice("vaultKubernetesAuthMode", VAULT_AUTH_MODES)
    kubernetes_ca = _kubernetes_ca(config, project_dir) if used and auth_mode == "external" and create_auth else ""

    ca_bundle, ca_path = "", ""
    ca_file = config.string("vaultCaBundleFile")
    if used and not ca_file and address and not config.boolean("vaultPublicCa") and _looks_private(address):
        config.add("vaultCaBundleFile", f"is empty, but vaultAddress {short_url(address)} looks private",
                   "cert-manager and the Vault provider trust only public CAs by default: set vaultCaBundleFile to the "
                   "PEM of the CA behind Vault's TLS certificate, or set vaultPublicCa true if it is publicly issued")
    ca_file_path = project_file(config, "vaultCaBundleFile", project_dir) if ca_file else None
    if ca_file_path is not None:
        ca_path = provider_path(ca_file_path, project_dir)
        try:
            ca_bundle = read_text_file(ca_file_path, MAX_PEM_BYTES)
        except InputError as err:
            config.add("vaultCaBundleFile", f"cannot read {short(ca_file)}: {err.what}", err.fix)
        else:
            if "-----BEGIN CERTIFICATE-----" not in ca_bundle:
                config.add("vaultCaBundleFile", f"{short(ca_file)} holds no PEM certificate")

    for key in ("vaultMountPrefix", "vaultKubernetesAuthPath"):
        if not _VAULT_PATH.match(config.string(key)):
            config.add(key, f"{short(config.string(key))} is not a Vault path", "Letters, digits, '-', '_' and inner '/', no leading or trailing '/'")
    for key in ("vaultAuthRole", "vaultWorkloadRole"):
        if not VAULT_ROLE.matches(config.string(key)):
            config.add(key, f"{short(config.string(key))} is not a Vault role name", "Letters, digits, '-' and '_'")
    namespace = config.string("vaultNamespace").strip("/")
    if namespace and not _VAULT_NAMESPACE.fullmatch(namespace):
        config.add("vaultNamespace", f"{short(config.string('vaultNamespace'))} is not a Vault namespace path",
                   "Names of letters, digits, '-', '_' and '.', separated by '/', e.g. platform/mesh")

    intermediate_ttl = config.duration("vaultIntermediateTtl")
    token_ttl = config.duration("vaultAuthTokenTtl")
    renewals = config.strings("vaultIntermediateRenewals")
    for index, renewal in enumerate(renewals):
        key = f"vaultIntermediateRenewals[{index}]"
        if not isinstance(renewal, str) or len(renewal) > ANCHOR_ID_MAX or not _DNS_LABEL.match(renewal):
            config.add(key, f"{short(renewal)} is not a valid renewal id",
                       "Use at most 20 lowercase letters, digits and '-', e.g. 2031-05 (it names the re-signed "
                       "intermediate's resources)")
        elif renewal in renewals[:index]:
            config.add(key, f"{short(renewal)} is listed twice", "Append a new id for each renewal; never reuse one")
    if used and intermediate_ttl is not None and pki is not None:
        if intermediate_ttl >= pki.anchor_validity:
            config.add("vaultIntermediateTtl", f"({intermediate_ttl}) must be shorter than the root's trustAnchorValidity ({pki.anchor_validity})")
        if pki.issuer_duration >= intermediate_ttl:
            config.add("identityIssuerDuration", f"({pki.issuer_duration}) must be shorter than vaultIntermediateTtl ({intermediate_ttl})")
    if token_ttl is not None and not Duration.parse("1m") <= token_ttl <= Duration.parse("1h"):
        config.add("vaultAuthTokenTtl", f"({token_ttl}) should be between 1m and 1h",
                   "cert-manager logs in for each request; a short-lived token limits what a leaked one can do")
    token = config.secret("vaultToken")
    if token is not None and environment != "dev":
        # A pull request's preview of this stack holds the state passphrase (it must decrypt the state to diff it),
        # so a token in the stack's config would reach the pull request's own code: the deployer's, write-capable.
        config.add("vaultToken", "is in the stack's config, where every preview of this stack can decrypt it: a pull "
                   "request's code would run with the deployer's Vault token, not the preview's read-only one "
                   "(docs/delivery-security.md)",
                   "pulumi config rm mtls-mesh:vaultToken; give the token as VAULT_TOKEN in the deploy environment "
                   "(a GitHub environment secret), and the preview's read-only token as PREVIEW_VAULT_TOKEN")
    if not used or pki is None or len(config.problems.items) != problems_before:
        return None
    return VaultSettings(
        address=address, namespace=namespace, ca_bundle_pem=ca_bundle,
        ca_bundle_path=config.kept_secret("vaultCaBundleFile", ca_path), mount_prefix=config.string("vaultMountPrefix"),
        root_ttl=pki.anchor_validity, intermediate_ttl=intermediate_ttl,
        kubernetes_auth_path=config.string("vaultKubernetesAuthPath"), create_kubernetes_auth=create_auth,
        kubernetes_host=config.kept_secret("vaultKubernetesHost", kubernetes_host),
        auth_role=config.string("vaultAuthRole"), auth_token_ttl=token_ttl,
        workload_role=config.string("vaultWorkloadRole"), token=token,
        kubernetes_auth_mode=auth_mode, kubernetes_ca_pem=kubernetes_ca, intermediate_renewals=tuple(renewals),
    )


# What every cluster stack of an environment must agree on with its peers: one mesh (the same identities, B3 of
# ../shared/reference/ISTIO-MULTICLUSTER.md: equal trust domains make `sa.ns` one identity in every cluster), one
# root and rotation, and one service graph (each cluster compiles its part of the same edges).
PEER_AGREEMENT = ("environment", "trustDomain", "pkiMode", "trustAnchor", "nextTrustAnchor", "anchorRotationPhase",
                  "serviceGraph", "mesh")


def _multicluster(config: _Config, stack: str, mesh: str, peers: PeerReader | None,
                  graph: ServiceGraph | None) -> MulticlusterSettings | None:
    """The cluster settings, checked against the peers' and the mesh root stack's files (docs/multicluster.md)."""
    cluster = config.string("cluster")
    peer_stacks = config.strings("clusterPeers")
    root_stack = config.string("meshRootStack")
    api_server = config.string("clusterApiServer")
    if not cluster:
        for key in ("clusterPeers", "meshRootStack", "clusterApiServer"):
            if config.is_set(key):
                config.add(key, "is set, but cluster is not: only a cluster stack of a multi-cluster environment links "
                           "with peers or shares another stack's mesh root",
                           f"Set cluster to this stack's cluster (one of the graph's `clusters:`), or remove {key}")
        return None
    if len(cluster) > CLUSTER_NAME_MAX or not _DNS_LABEL.match(cluster):
        config.add("cluster", f"{short(cluster)} is not a cluster name",
                   f"At most {CLUSTER_NAME_MAX} lowercase letters, digits and '-' (the peers' mirror controllers name "
                   "a Service probe-<cluster> after it)")
    elif graph is not None and cluster not in graph.clusters:
        config.add("cluster", f"{short(cluster)} is not a cluster of {graph.source} (its `clusters:`)",
                   did_you_mean(cluster, tuple(graph.clusters)) or f"Declare it: clusters: {{{cluster}: {{}}}}")
    if mesh in MESHES and mesh != "linkerd":
        config.add("cluster", f"is set, but mesh is {mesh}: multi-cluster is built for Linkerd only so far",
                   "Set mesh linkerd, or leave cluster empty (one stack per cluster, each a single-cluster mesh)")
    if api_server:
        _url(config, "clusterApiServer", "prod")  # https everywhere: the peers send a token to it
    elif peer_stacks:
        config.add("clusterApiServer", "is required with clusterPeers: each peer's mirror controller reads this "
                   "cluster's services through it", "Set it to the API server address the peers reach, e.g. "
                   "https://api.east.example.com:6443")
    if root_stack == stack:
        config.add("meshRootStack", "is this stack itself", "Leave meshRootStack empty in the stack owning the root")
    own_root = root_stack or stack
    read_peers: list[ClusterPeer] = []
    files: dict[str, StackFileConfig | None] = {}

    def file_of(name: str) -> StackFileConfig | None:
        if name not in files:
            files[name] = peers(name) if peers is not None else None
        return files[name]

    if (peer_stacks or root_stack) and peers is None:
        config.add("clusterPeers" if peer_stacks else "meshRootStack", "names other stacks, but the peers' stack "
                   "files cannot be read here", "Load the settings with read.stack_files.load_stack_settings")
        return MulticlusterSettings(cluster, (), root_stack, api_server)
    for index, peer in enumerate(peer_stacks):
        key = f"clusterPeers[{index}]"
        if not STACK_NAME.matches(peer) or len(peer) > STACK_NAME_MAX:
            config.add(key, f"{short(peer)} is not a stack name",
                       f"At most {STACK_NAME_MAX} lowercase letters, digits and '-', e.g. prod-west")
            continue
        if peer in peer_stacks[:index]:
            config.add(key, f"{short(peer)} is listed twice", "List each peer stack once")
            continue
        if peer == stack:
            config.add(key, "is this stack itself", "List the environment's other cluster stacks")
            continue
        found = file_of(peer)
        if found is None:
            config.add(key, f"the peer stack file of {peer} (Pulumi.{peer}.yaml beside this stack's) is not there",
                       "Name an existing cluster stack of this environment")
            continue
        read = _peer(config, key, stack, peer, cluster, own_root, found)
        if read is not None and graph is not None and read.cluster not in graph.clusters:
            # Else the graph's cross-cluster edges from that cluster would be blamed on the graph (a caller's
            # cluster "not linked"), while the peer's file is what is wrong.
            config.add(key, f"its stack file ({found.where}) sets cluster {short(read.cluster)}, which is not a "
                       f"cluster of {graph.source} (its `clusters:`)",
                       did_you_mean(read.cluster, tuple(graph.clusters))
                       or f"Set the peer's cluster to one of {', '.join(graph.clusters)}")
        elif read is not None:
            clash = next((p for p in read_peers if p.cluster == read.cluster), None)
            if clash is not None:
                config.add(key, f"{read.cluster!r} is the cluster of {clash.stack} too",
                           "Each cluster has one stack per environment: list it once")
            else:
                read_peers.append(read)
    if root_stack and root_stack != stack and STACK_NAME.matches(root_stack):
        root = file_of(root_stack)
        if root is None:
            config.add("meshRootStack", f"the mesh root stack file Pulumi.{root_stack}.yaml is not there",
                       "Name the cluster stack of this environment that owns its mesh root")
        else:
            if root.raw.get(f"{PROJECT}:meshRootStack", ""):
                config.add("meshRootStack", f"{root_stack} names meshRootStack {short(root.raw[f'{PROJECT}:meshRootStack'])} "
                           f"in its stack file ({root.where}), so it does not own the mesh root",
                           "Name the stack whose meshRootStack is empty: the one that owns the root")
            for setting in ("environment", "trustDomain", "pkiMode"):
                theirs, ours = root.raw.get(f"{PROJECT}:{setting}", ""), config.string(setting)
                if theirs != ours:
                    config.add("meshRootStack", f"{root_stack}'s {setting} is {short(theirs)} in its stack file "
                               f"({root.where}), this stack's is {short(ours)}",
                               "The root stack is a cluster stack of this same environment and mesh")
    return MulticlusterSettings(cluster, tuple(read_peers), root_stack, api_server)


def _peer(config: _Config, key: str, stack: str, peer: str, cluster: str, own_root: str,
          found: StackFileConfig) -> ClusterPeer | None:
    """One peer, from its stack file: another cluster of the same mesh, which links back to this stack."""
    name = key
    raw = found.raw

    def value(setting: str) -> str:
        return str(raw.get(f"{PROJECT}:{setting}", ""))

    before = len(config.problems.items)
    peer_stack = found.where
    secret = [s for s in (*PEER_AGREEMENT, "cluster", "clusterPeers", "clusterNetworks", "clusterApiServer",
                          "meshRootStack") if f"{PROJECT}:{s}" in found.secret_keys]
    if secret:
        config.add(name, f"{', '.join(secret)} is stored as a secret in its stack file ({peer_stack}), which this "
                   "stack cannot decrypt", "Store it in plain text there: none of these settings may be a secret")
        return None
    if value("platformStack"):
        config.add(name, f"its stack file ({peer_stack}) is a shard stack", "Name the peer cluster's platform stack")
        return None
    peer_cluster = value("cluster")
    if not peer_cluster:
        config.add(name, f"does not set cluster in its stack file ({peer_stack}), so it is no cluster stack",
                   "Set cluster in the peer's stack file, or remove it from clusterPeers")
        return None
    if peer_cluster == cluster:
        config.add(name, f"is the cluster of this stack too ({short(cluster)}, in its stack file {peer_stack})",
                   "Give each cluster stack of the environment its own cluster")
    for setting in PEER_AGREEMENT:
        theirs, ours = value(setting), str(config.raw.get(f"{PROJECT}:{setting}", ""))
        if theirs != ours:
            config.add(name, f"sets {setting} {short(theirs)} in its stack file ({peer_stack}), this stack "
                       f"{short(ours)}: the clusters of an environment share one mesh, root and graph",
                       f"Set the same {setting} in both stack files")
    listed_peers = value("clusterPeers")
    try:
        their_peers = json.loads(listed_peers or "[]")
    except ValueError:  # a plain YAML string (`clusterPeers: dev-east`) reaches us as the CLI prints it: unquoted
        their_peers = None
    if not isinstance(their_peers, list) or not all(isinstance(entry, str) for entry in their_peers):
        # Else "does not list this stack" would send the user looking for a missing name that is right there.
        config.add(name, f"its clusterPeers in its stack file ({peer_stack}) is {short(listed_peers)}, not a list of "
                   "stack names", f"Write it as a YAML list in the peer's stack file, e.g. clusterPeers: [{stack}]")
    elif stack not in their_peers:
        config.add(name, f"does not list this stack ({stack}) among the clusterPeers in its stack file ({peer_stack}): "
                   "links go both ways", f"Add {stack} to the peer's clusterPeers")
    their_root = value("meshRootStack") or peer
    if their_root != own_root:
        config.add(name, f"has {their_root} as the owner of its mesh root (meshRootStack in its stack file, "
                   f"{peer_stack}), this stack {own_root}: the clusters of an environment share one root",
                   "Name the same meshRootStack in every cluster stack of the environment but the root's own")
    api_server = value("clusterApiServer")
    if not api_server or _url_problem(api_server) is not None or not api_server.lower().startswith("https://"):
        config.add(name, f"sets no https:// clusterApiServer in its stack file ({peer_stack}), which this cluster's "
                   "Link to it needs", "Set the peer's clusterApiServer to its API server as this cluster reaches it")
    networks: list[str] = []
    try:
        listed = json.loads(value("clusterNetworks") or "[]")
    except ValueError:
        listed = None
    for entry in listed if isinstance(listed, list) else [None]:
        if not isinstance(entry, str) or cidr_problem(entry, verbatim=False):
            config.add(name, f"its clusterNetworks in its stack file ({peer_stack}) are not a list of CIDRs",
                       "Fix the peer's stack file (its own preview says what is wrong)")
            break
        networks.append(str(ipaddress.ip_network(entry, strict=True)))
    if len(config.problems.items) != before:
        return None
    return ClusterPeer(peer, peer_cluster, value("trustDomain"), api_server, tuple(networks))


# What a secondary cluster takes from, or must share with, the stack owning the mesh root in Vault: it signs its
# intermediate under that stack's root mount (its name from vaultMountPrefix), on the same Vault and namespace.
ROOT_VAULT_AGREEMENT = ("vaultAddress", "vaultNamespace")


def _cluster_vault(config: _Config, vault: VaultSettings, multicluster: MulticlusterSettings,
                   peers: PeerReader | None) -> VaultSettings:
    """The Vault settings of a cluster stack (vault_for_cluster): its cluster's names, and a secondary's root mount
    prefix, read from the mesh root stack's file (plain data, in previews too)."""
    root_stack = multicluster.mesh_root_stack
    if not root_stack:
        return vault_for_cluster(vault, multicluster.cluster, None)
    root = peers(root_stack) if peers is not None else None
    if root is None:
        return vault_for_cluster(vault, multicluster.cluster, vault.mount_prefix)  # _multicluster said why
    for setting in ROOT_VAULT_AGREEMENT:
        theirs, ours = str(root.raw.get(f"{PROJECT}:{setting}", "")), str(config.raw.get(f"{PROJECT}:{setting}", ""))
        if theirs.rstrip("/") != ours.rstrip("/"):
            config.add("meshRootStack", f"{root_stack}'s {setting} is {short(theirs)} in its stack file ({root.where}), "
                       f"this stack's is {short(ours)}: this cluster signs its intermediate under that stack's Vault "
                       "root mount", f"Set the same {setting} in both stack files")
    prefix = str(root.raw.get(f"{PROJECT}:vaultMountPrefix", "")) or vault.mount_prefix
    ours = vault_for_cluster(vault, multicluster.cluster, prefix)
    clash = _root_name_clash(ours, prefix, str(root.raw.get(f"{PROJECT}:vaultAuthRole", "")) or vault.auth_role,
                             str(root.raw.get(f"{PROJECT}:vaultKubernetesAuthPath", "")) or vault.kubernetes_auth_path)
    if clash:
        config.add("cluster", f"{short(multicluster.cluster)} makes this secondary's Vault name {clash[0]} possibly "
                   f"the same as {clash[1]} of {root_stack}, the mesh root's stack, which keeps a single-cluster "
                   f"stack's names (as set in its stack file {root.where})", "Choose another cluster name, or another "
                   "vaultMountPrefix, vaultAuthRole or vaultKubernetesAuthPath for this stack")
    for peer in multicluster.peers:
        found = peers(peer.stack) if peer.stack != root_stack else None
        if found is None or any(f"{PROJECT}:{s}" in found.secret_keys for s in PEER_VAULT_NAMES):
            continue  # a name stored as a secret is not this stack's to read, nor to quote
        clash = _name_clash(_secondary_names(ours), _secondary_names(_peer_vault(vault, peer.cluster, found, root)))
        if clash:
            # Both register in one Vault namespace (each shares the root's, ROOT_VAULT_AGREEMENT), so one would declare
            # the other's mount or login as its own. Each stack compares only with the peers it lists.
            config.add("cluster", f"{short(multicluster.cluster)} makes this secondary's Vault name {clash[0]} possibly "
                       f"the same as {clash[1]} of {peer.stack}, the secondary of cluster {short(peer.cluster)} (as set "
                       f"in its stack file {found.where})", "Choose another cluster name for one of the two stacks, or "
                       "another vaultMountPrefix, vaultAuthRole or vaultKubernetesAuthPath for one of them")
    return ours


# The settings another secondary's Vault names are made of (_peer_vault).
PEER_VAULT_NAMES = ("vaultMountPrefix", "vaultAuthRole", "vaultKubernetesAuthPath", "vaultKubernetesAuthCreate")


def _peer_vault(vault: VaultSettings, cluster: str, found: StackFileConfig, root: StackFileConfig) -> VaultSettings:
    """The Vault names another secondary registers, as its own stack computes them (_cluster_vault) from its stack
    file (its own vaultMountPrefix, as ours: the root's only names the root mount it signs under), what the file
    leaves empty taken from this stack's."""

    def value(setting: str) -> str:
        return str(found.raw.get(f"{PROJECT}:{setting}", ""))

    create = value("vaultKubernetesAuthCreate").lower()
    theirs = replace(vault, auth_role=value("vaultAuthRole") or vault.auth_role,
                     kubernetes_auth_path=value("vaultKubernetesAuthPath") or vault.kubernetes_auth_path,
                     create_kubernetes_auth=create == "true" if create in ("true", "false")
                     else vault.create_kubernetes_auth,
                     mount_prefix=value("vaultMountPrefix") or vault.mount_prefix)
    prefix = str(root.raw.get(f"{PROJECT}:vaultMountPrefix", "")) or theirs.mount_prefix
    return vault_for_cluster(theirs, cluster, prefix)


def _secondary_names(vault: VaultSettings) -> list[str]:
    """The Vault names a secondary cluster stack registers (vault_for_cluster), as patterns (`*`: an anchor or a
    namespace). Its root mount is not among them: it signs under the root stack's."""
    anchor, namespace = "*", "*"
    return [vault.intermediate_mount(anchor), vault.workload_mount(anchor), vault.identity_auth_role,
            vault.namespace_auth_role(namespace), f"{vault.login_prefix}-preview", vault.kubernetes_auth_path]


def _name_clash(mine: list[str], theirs: list[str]) -> tuple[str, str] | None:
    """The first of `mine` that one name may match together with one of `theirs`, as (mine, theirs) with each `*`
    shown as `<...>`, or None. A pattern ends in at most one `*`, which stands for any rest of the name."""

    def may_match_both(a: str, b: str) -> bool:
        a_open, b_open = a.endswith("*"), b.endswith("*")
        a, b = a.rstrip("*"), b.rstrip("*")
        if a_open and b_open:
            return a.startswith(b) or b.startswith(a)
        if a_open:
            return b.startswith(a)
        return a.startswith(b) if b_open else a == b

    def shown(name: str) -> str:
        return name.replace("*", "<...>")

    return next(((shown(m), shown(t)) for m in mine for t in theirs if may_match_both(m, t)), None)


def _root_name_clash(ours: VaultSettings, prefix: str, role: str, auth_path: str) -> tuple[str, str] | None:
    """A Vault name of this secondary that may be one of the root stack's (docs/multicluster.md 'Trust across
    clusters'), as (ours, theirs), or None. The root stack keeps single-cluster names (`<prefix>-int-<anchor>`,
    `<role>-ns-<namespace>`, ...) and a secondary inserts its cluster (`<prefix>-<cluster>-int-<anchor>`), so a
    cluster named like one of the root's segments (`int`, `ns-x`, ...) could name the root's mount or login. Names
    are compared as patterns (`*`: an anchor or namespace), two patterns clashing when one name may match both."""
    anchor, namespace = "*", "*"
    theirs = [f"{prefix}-root-{anchor}", f"{prefix}-int-{anchor}", f"{prefix}-workload-{anchor}", f"{role}-identity",
              f"{role}-ns-{namespace}", f"{role}-preview", auth_path]
    return _name_clash(_secondary_names(ours), theirs)
