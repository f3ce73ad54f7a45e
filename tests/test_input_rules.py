"""Input that used to build without a word (issue 22): a grant wider than the graph says, a secret copied into a
non-secret object, a file read from anywhere, or an object Kubernetes, cert-manager or Linkerd would refuse later.
Each case is one SettingsError naming the key or graph path, what is wrong and the fix, before anything is registered;
where the graph opts in explicitly, the access matrix shows exactly whom the grant covers.

Most cases call `load_settings` (pure, fast); one runs the program to show nothing is registered.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from read.errors import SettingsError
from read.settings import load_declarations, load_settings
from harness import PROJECT_DIR, run_program, stack_config, wire_value

EXAMPLE = yaml.safe_load((PROJECT_DIR / "services.yaml").read_text())

# staging as one stack: its matrix then covers the sharded namespaces too (staging is sharded like prod).
WHOLE_MESH = {"policyShards": False}


def settings_for(stack: str, *, graph: dict | None = None, tmp_path: Path | None = None, project_dir: Path = PROJECT_DIR,
                 **changes):
    config, secret_keys = stack_config(stack)
    if graph is not None:
        graph_file = tmp_path / "graph.yaml"
        graph_file.write_text(yaml.safe_dump(graph))
        config["mtls-mesh:serviceGraph"] = str(graph_file)
        config["mtls-mesh:allowFilesOutsideProject"] = "true"
    for key, value in changes.items():
        config[f"mtls-mesh:{key}"] = wire_value(value)
    return load_settings(config, stack, secret_keys=frozenset(secret_keys), project_dir=project_dir,
                         declarations=load_declarations())


def refused(stack: str = "staging", **kwargs) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        settings_for(stack, **kwargs)
    return caught.value


def problem(error: SettingsError, where: str, *words: str) -> str:
    """The problem at `where` (a config key, or a graph path after the file name) that says all of `words`."""
    here = [p for p in error.problems if p.where == where or p.where.endswith(f": {where}")]
    assert here, f"no problem at {where!r}; got: {[str(p) for p in error.problems]}"
    text = [str(p) for p in here if all(w in str(p) for w in words)]
    assert text, f"expected {words} at {where}; got {[str(p) for p in here]}"
    return text[0]


def graph_with(edit) -> dict:
    document = copy.deepcopy(EXAMPLE)
    edit(document)
    return document


def _set(path: str, value):
    def edit(document):
        node = document
        *parents, last = path.split("/")
        for part in parents:
            node = node[part]
        node[last] = value
    return edit


# ---- no grant wider than the graph -------------------------------------------------------------------------------

def _share_account(document, flag=None):
    for key in ("checkout", "catalog"):
        document["services"][key]["serviceAccount"] = "shop"
        if flag is not None:
            document["services"][key]["sharedServiceAccount"] = flag


def _default_caller(document, flag=None):
    document["services"]["frontend"]["serviceAccount"] = "default"
    if flag is not None:
        document["services"]["frontend"]["sharedServiceAccount"] = flag


@pytest.mark.parametrize("edit,where,words", [
    (_share_account, "services.catalog.serviceAccount", ("also the account of services.checkout", "sharedServiceAccount: true")),
    (_share_account, "services.checkout.serviceAccount", ("also the account of services.catalog", "own serviceAccount")),
    # One side opting in is not enough: each service whose identity is shared must say so.
    (lambda d: (_share_account(d), d["services"]["checkout"].update(sharedServiceAccount=True)),
     "services.catalog.serviceAccount", ("share one mesh identity",)),
    (_default_caller, "services.frontend.serviceAccount", ("'default' account", "sharedServiceAccount: true")),
    (_set("services/ledger/allow", [{"service": "billing", "ports": []}]), "services.ledger.allow[0].ports",
     ("is empty, which would allow every port", "ports: [http]", "drop 'ports'")),
    (_set("namespaces/payments", {"skipOutboundPorts": [443]}), "namespaces.payments.skipOutboundPorts",
     ("port 443", "services.billing.egress[0] ('stripe')", "egress allow-list", "Remove the port")),
    (_set("namespaces/web", {"skipOutboundPorts": [9090]}), "namespaces.web.skipOutboundPorts",
     ("port 9090", "services.checkout calls services.billing", "without mTLS", "Remove the port")),
    (_set("services/frontend/selector", {"linkerd.io/control-plane-ns": "linkerd"}),
     "services.frontend.selector.linkerd.io/control-plane-ns", ("every meshed pod", "own labels")),
    (_set("services/frontend/selector", {"app": "frontend", "linkerd.io/proxy-deployment": "frontend"}),
     "services.frontend.selector.linkerd.io/proxy-deployment", ("proxy injector",)),
])
def test_a_grant_wider_than_the_graph_is_refused(tmp_path, edit, where, words):
    problem(refused(graph=graph_with(edit), tmp_path=tmp_path), where, *words)


def test_a_skipped_port_of_a_proxy_free_callee_is_still_fine(tmp_path):
    """postgres (meshed: false) is skipped on purpose by its callers' namespaces: naming it too changes nothing."""
    settings_for("staging", graph=graph_with(_set("namespaces/payments", {"skipOutboundPorts": [5432]})), tmp_path=tmp_path)


def test_a_declared_shared_account_shows_every_service_it_covers(tmp_path):
    run = run_program("staging", graph=graph_with(lambda d: _share_account(d, True)), tmp_path=tmp_path,
                      set_config=WHOLE_MESH)
    matrix = run.exports["accessMatrix"]
    # billing allows checkout only; catalog carries the same identity, so the matrix says it is admitted too.
    assert matrix["payments/billing:grpc"]["allowed"] == ["web/catalog", "web/checkout"]
    authn = [o for o in run.objects("MeshTLSAuthentication") if o["metadata"]["namespace"] == "payments"
             and "shop.web.serviceaccount.identity.linkerd.cluster.local" in o["spec"]["identities"]]
    assert authn, "billing's caller identity is the shared account's"
    # Unchanged where the graph is unchanged.
    assert matrix["web/checkout:http"]["allowed"] == ["web/frontend"]


def test_a_declared_default_account_caller_shows_the_whole_namespace(tmp_path):
    run = run_program("staging", graph=graph_with(lambda d: _default_caller(d, True)), tmp_path=tmp_path,
                      set_config=WHOLE_MESH)
    matrix = run.exports["accessMatrix"]
    assert matrix["web/checkout:http"]["allowed"] == ["web/* (service account default)", "web/frontend"]
    assert matrix["web/catalog:grpc"]["allowed"] == ["web/* (service account default)", "web/checkout", "web/frontend"]


def test_a_refused_grant_registers_nothing(tmp_path):
    with pytest.raises(SettingsError) as caught:
        run_program("staging", graph=graph_with(_share_account), tmp_path=tmp_path)
    assert caught.value.registrations == []


# ---- egress: what Kubernetes accepts, and nothing inside the cluster ---------------------------------------------

def _egress(cidrs=(), hosts=()):
    entry = {"name": "ext", "ports": [443]}
    if cidrs:
        entry["cidrs"] = list(cidrs)
    if hosts:
        entry["hosts"] = list(hosts)
    return graph_with(_set("services/billing/egress", [entry]))


@pytest.mark.parametrize("cidr,words", [
    ("1.2.3.4", ("is an address, not a CIDR", "1.2.3.4/32")),
    ("2001:db8::1", ("is an address, not a CIDR", "2001:db8::1/128")),
    ("fe80::%eth0/64", ("zone identifier", "Drop the '%<zone>'")),
    ("2001:DB8::/32", ("not in canonical form", "Write it as 2001:db8::/32")),
    ("203.0.113.5/24", ("has host bits set",)),
    ("::ffff:10.0.0.0/104", ("IPv4-mapped", "Write it as IPv4: 10.0.0.0/8")),
    ("::ffff:203.0.113.0/120", ("IPv4-mapped", "Write it as IPv4: 203.0.113.0/24")),
])
def test_an_egress_cidr_must_be_what_a_network_policy_accepts(tmp_path, cidr, words):
    problem(refused(graph=_egress(cidrs=[cidr]), tmp_path=tmp_path), "services.billing.egress[0].cidrs[0]", *words)


@pytest.mark.parametrize("cidr,cluster", [
    ("::/0", ["10.0.0.0/8"]),                  # every address, IPv4-mapped ones included
    ("::/64", ["10.0.0.0/8"]),                 # holds ::ffff:0:0/96
    ("64:ff9b::a00:0/104", ["10.0.0.0/8"]),    # NAT64 of 10/8
    ("2002:a00::/24", ["10.0.0.0/8"]),         # 6to4 of 10/8
    ("2001:db8::/32", ["2001:db8:1::/48"]),    # plain IPv6 overlap
])
def test_ipv6_egress_that_reaches_the_cluster_is_refused(tmp_path, cidr, cluster):
    error = refused(graph=_egress(cidrs=[cidr]), tmp_path=tmp_path, clusterNetworks=cluster)
    problem(error, "services.billing.egress[0].cidrs[0]", f"overlaps the cluster network {cluster[0]}", "allow")


def test_ipv6_egress_outside_the_cluster_still_builds(tmp_path):
    settings_for("staging", graph=_egress(cidrs=["2002:cb00:7100::/40", "64:ff9b::cb00:7100/120", "2001:db8::/32"]),
                 tmp_path=tmp_path, clusterNetworks=["10.0.0.0/8"])


@pytest.mark.parametrize("host,words", [
    ("a" * 64 + ".example.com", ("is not a DNS name", "labels of at most 63")),
    (".".join(["a" * 60] * 5) + ".com", ("is not a DNS name", "at most 253")),
    ("postgres.data.svc.cluster.local", ("in-cluster service name", "'allow' list")),
    ("postgres.data.svc", ("in-cluster service name",)),
    ("*.svc.cluster.local", ("in-cluster service name",)),
])
def test_an_egress_host_must_be_a_dns_name_outside_the_cluster(tmp_path, host, words):
    problem(refused(graph=_egress(hosts=[host]), tmp_path=tmp_path), "services.billing.egress[0].hosts[0]", *words)


@pytest.mark.parametrize("key,words", [
    ("a" * 64, ("is not a valid label key", "at most 63")),
    ("a" * 254 + "/app", ("is not a valid label key", "253")),
])
def test_a_label_key_is_a_qualified_name(tmp_path, key, words):
    error = refused(graph=graph_with(_set("services/frontend/selector", {key: "x"})), tmp_path=tmp_path)
    problem(error, f"services.frontend.selector.{key[:60]}...", *words)


def test_a_label_key_at_the_limits_is_accepted(tmp_path):
    key = "a" * 253 + "/" + "b" * 63
    settings_for("staging", graph=graph_with(_set("services/frontend/selector", {key: "x"})), tmp_path=tmp_path)


@pytest.mark.parametrize("entry", ["a" * 64 + "=x", "a" * 254 + "/release=x"])
def test_monitoring_label_keys_are_qualified_names(entry):
    problem(refused("dev", monitoringLabels=[entry]), "mtls-mesh:monitoringLabels[0]", "is not a label key=value")


# ---- settings: what cert-manager, Linkerd and Vault accept ------------------------------------------------------

@pytest.mark.parametrize("stack,changes,key,words", [
    ("staging", {"certManagerNamespace": "web"}, "certManagerNamespace", ("is a namespace of", "default-deny", "own")),
    ("staging", {"certManagerNamespace": "batch"}, "certManagerNamespace", ("is a namespace of",)),
    ("staging", {"certManagerNamespace": "linkerd"}, "certManagerNamespace", ("the mesh or Kubernetes runs",)),
    ("staging", {"certManagerNamespace": "mtls-mesh-verify"}, "certManagerNamespace", ("the mesh or Kubernetes runs",)),
    ("staging", {"certManagerNamespace": "a" * 64}, "certManagerNamespace", ("not a valid namespace name", "63")),
    ("dev", {"trustDomain": "a" * 44 + ".com"}, "trustDomain",
     ("48 characters", "identity issuer's common name (65 characters)", "cert-manager's webhook", "at most 40")),
    ("dev", {"trustDomain": "a" * 37 + ".com"}, "trustDomain",
     ("41 characters", "workload root's common name (65 characters)", "at most 40")),
    ("dev", {"prometheusServiceAccounts": ["monitoring/" + ".".join(["p" * 60] * 4)]},
     "prometheusServiceAccounts[0]", ("is not a DNS name of at most 253",)),
    ("dev", {"prometheusServiceAccounts": ["m" * 64 + "/prometheus"]}, "prometheusServiceAccounts[0]",
     ("is not namespace/serviceaccount",)),
    ("dev", {"prometheusServiceAccounts": ["monitoring/default"]}, "prometheusServiceAccounts[0]",
     ("'default' account", "every pod there")),
    ("dev", {"kubeletNetworks": ["fe80::%eth0/64"]}, "kubeletNetworks[0]", ("zone identifier",)),
    ("dev", {"clusterNetworks": ["::ffff:10.0.0.0/104"]}, "clusterNetworks[0]", ("IPv4-mapped", "10.0.0.0/8")),
    ("dev", {"prometheusNetworks": ["::ffff:0:0/96"]}, "prometheusNetworks[0]", ("IPv4-mapped", "0.0.0.0/0")),
    ("dev", {"trustAnchor": ""}, "trustAnchor", ("is empty", "2026-11")),
    ("staging", {"vaultNamespace": "platform\nmesh"}, "vaultNamespace", ("U+000A", "retype the value")),
    ("staging", {"vaultNamespace": "platform mesh"}, "vaultNamespace", ("not a Vault namespace path",)),
    ("dev", {"kubeContext": "dev\u202e"}, "kubeContext", ("U+202E", "RIGHT-TO-LEFT OVERRIDE")),
])
def test_a_setting_refused_later_upstream_is_refused_now(stack, changes, key, words):
    problem(refused(stack, **changes), f"mtls-mesh:{key}", *words)


def test_the_longest_trust_domain_fits_every_common_name():
    run = run_program("dev", set_config={"trustDomain": "a" * 36 + ".com"})
    names = [o["spec"]["commonName"] for o in run.objects("Certificate") if "a" * 36 in o["spec"].get("commonName", "")]
    names += [r.inputs["subject"]["commonName"] for r in run.of_type("tls:index/selfSignedCert:SelfSignedCert")]
    assert names and max(len(n) for n in names) == 64, names


# ---- URLs: no secrets in non-secret objects, nothing Go would read differently ----------------------------------

@pytest.mark.parametrize("key,url,words", [
    ("vaultAddress", "https://admin:hunter2@vault.example.com:8200", ("contains credentials", "spec.vault.server")),
    ("vaultAddress", "https://token@vault.example.com:8200", ("contains credentials",)),
    ("vaultKubernetesHost", "https://u:hunter2@k8s.example.com:6443", ("contains credentials",)),
    ("linkerdHelmRepository", "https://u:hunter2@helm.example.com/edge", ("contains credentials",)),
    ("vaultAddress", "https://vault .example.com:8200", ("space or control character",)),
    ("vaultAddress", "https://vault.example.com:8200/\x7f", ("space or control character",)),
    ("vaultAddress", "https://vault.example.com:0", ("has port 0", ":8200")),
    ("vaultAddress", "https://vault.\u202eexample.com:8200", ("U+202E",)),
    ("vaultAddress", "https://vаult.example.com:8200", ("non-ASCII", "punycode")),
    ("vaultAddress", "https://vault.example.com:8200/?x=1", ("query or fragment",)),
    ("vaultAddress", "https://vault_1.example.com:8200", ("does not name a host",)),
    # Credentials and something else wrong: still never quoted, by this problem or another.
    ("vaultAddress", "https://u:hunter2 x@vault.example.com:8200", ("contains credentials",)),
    ("vaultAddress", "https://u:hunter2@vault.example.com:99999", ("contains credentials",)),
    ("vaultAddress", "https://u:hunter2@vault.internal:8200", ("contains credentials",)),
    ("vaultAddress", "http://u:hunter2@vault.example.com:8200", ("contains credentials",)),
    ("linkerdHelmRepository", "ftp://u:hunter2@[::1", ("contains credentials",)),
])
def test_a_url_setting_is_refused_before_it_is_copied_anywhere(key, url, words):
    error = refused("staging", **{key: url}, vaultCaBundleFile="")
    problem(error, f"mtls-mesh:{key}", *words)
    assert "hunter2" not in str(error), "a password must never be quoted"


# ---- files: only from the project, never quoted -----------------------------------------------------------------

SECRET = "root:$6$s3cr3t-hash$:19000:0:99999:7:::"


@pytest.fixture
def outside(tmp_path) -> Path:
    secret = tmp_path / "shadow"
    secret.write_text(f"{SECRET}\ndaemon:*:19000:0:99999:7:::\n")
    return secret


@pytest.mark.parametrize("key", ["serviceGraph", "vaultCaBundleFile", "vaultKubernetesCaFile"])
def test_a_file_outside_the_project_is_refused_and_not_read(outside, key):
    error = refused("staging", **{key: str(outside), "allowFilesOutsideProject": False})
    text = problem(error, f"mtls-mesh:{key}", "outside the project directory", "allowFilesOutsideProject true")
    assert SECRET not in str(error) and "s3cr3t" not in str(error)
    assert text


def test_a_relative_path_that_climbs_out_is_refused(outside):
    climb = "../" * (len(PROJECT_DIR.parts) + 2) + str(outside).lstrip("/")
    problem(refused("staging", serviceGraph=climb), "mtls-mesh:serviceGraph", "outside the project directory")


def test_a_symlink_inside_the_project_to_a_file_outside_is_refused(tmp_path, outside):
    project = tmp_path / "project"
    project.mkdir()
    (project / "services.yaml").symlink_to(outside)
    error = refused("staging", project_dir=project, serviceGraph="services.yaml", vaultCaBundleFile="",
                    vaultKubernetesCaFile="", vaultPublicCa=True)
    problem(error, "mtls-mesh:serviceGraph", "outside the project directory (symbolic links followed)")
    assert "s3cr3t" not in str(error)


@pytest.mark.parametrize("content", [
    f"{SECRET}\n",                                   # a plain-text file
    "password: s3cr3t\ntoken: s3cr3t-token\n",       # a YAML file that is not a graph
    '{"private_key": "s3cr3t", "client_email": "x"}\n',
])
def test_a_file_that_is_not_a_graph_is_never_quoted(tmp_path, content):
    foreign = tmp_path / "foreign.yaml"
    foreign.write_text(content)
    error = refused("staging", serviceGraph=str(foreign), allowFilesOutsideProject=True)
    assert "s3cr3t" not in str(error) and "private_key" not in str(error) and "password" not in str(error)


def test_allow_files_outside_project_reads_an_outside_graph(tmp_path):
    graph_file = tmp_path / "graph.yaml"
    graph_file.write_text((PROJECT_DIR / "services.yaml").read_text())
    settings = settings_for("staging", serviceGraph=str(graph_file), allowFilesOutsideProject=True)
    assert set(settings.graph.services) == set(EXAMPLE["services"])


# ---- every declared setting is checked, whatever the mode -------------------------------------------------------

DECLARATIONS = load_declarations()
WRONG = {"boolean": "x", "array": "not-a-list", "string": "bad\nvalue", "integer": "many"}


@pytest.mark.parametrize("key", sorted(DECLARATIONS))
def test_every_declared_setting_is_validated_in_every_mode(key):
    """dev (self-signed, non-prod) takes the fewest branches: a setting only read on another branch is still checked."""
    error = refused("dev", **{key: WRONG[DECLARATIONS[key].type]})
    assert [p for p in error.problems if p.where == f"mtls-mesh:{key}"], \
        f"{key}: no problem; got {[str(p) for p in error.problems]}"


@pytest.mark.parametrize("key", sorted(k for k, d in DECLARATIONS.items() if d.type == "boolean"))
def test_every_boolean_says_what_it_accepts(key):
    problem(refused("dev", **{key: "x"}), f"mtls-mesh:{key}", "must be true or false")


# ---- networks: what a list covers, whatever way it is written (issue 30) ----------------------------------------

PRIVATE_RANGES = ["10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]


def test_every_private_range_together_is_narrow_enough_under_deny():
    """The widest lists a real cluster needs (the defaults, with every unique-local IPv6 address) still build."""
    settings = settings_for("staging", kubeletNetworks=PRIVATE_RANGES, prometheusNetworks=PRIVATE_RANGES,
                            clusterNetworks=PRIVATE_RANGES)
    assert settings.policy.kubelet_networks == settings.policy.cluster_networks == tuple(PRIVATE_RANGES)


def test_networks_that_cover_everything_are_the_audit_default():
    """In audit nothing is enforced: kubeletNetworks' default is every address, however it is written."""
    settings = settings_for("dev", kubeletNetworks=["0.0.0.0/1", "128.0.0.0/1", "::/1", "8000::/1"])
    assert settings.policy.kubelet_networks == ("0.0.0.0/1", "128.0.0.0/1", "::/1", "8000::/1")


def test_a_split_cover_is_named_as_the_whole_list():
    error = refused("staging", prometheusNetworks=[f"{16 * i}.0.0.0/4" for i in range(16)])
    text = problem(error, "mtls-mesh:prometheusNetworks", "admits every IPv4 address", "together cover 0.0.0.0/0",
                   "enforce deny", "narrowest network")
    assert "prometheusNetworks[" not in text


def test_the_egress_deny_never_excepts_a_whole_block(tmp_path):
    """The graph's egress CIDRs and clusterNetworks together may cover all of IPv4 (egress to the whole Internet, which
    the graph says): the Deny network then has no IPv4 block, never 0.0.0.0/0 except everything."""
    from plan.linkerd.authorization import outside_cluster
    all_but_10 = ["0.0.0.0/5", "8.0.0.0/7", "11.0.0.0/8", "12.0.0.0/6", "16.0.0.0/4", "32.0.0.0/3", "64.0.0.0/2",
                  "128.0.0.0/1"]
    settings = settings_for("staging", clusterNetworks=["10.0.0.0/8", "fd00::/8"])
    assert outside_cluster(settings.policy, all_but_10) == [{"cidr": "::/0", "except": ["fd00::/8"]}]
    assert outside_cluster(settings.policy) == [{"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]},
                                                {"cidr": "::/0", "except": ["fd00::/8"]}]

    run = run_program("staging", graph=graph_with(_set("services/billing/egress", [
        {"name": "internet", "cidrs": all_but_10, "ports": [443]}])), tmp_path=tmp_path,
        # One stack holds payments' objects (staging is sharded: its platform holds none of them).
        set_config={"clusterNetworks": ["10.0.0.0/8", "fd00::/8"], "policyShards": False})
    deny = [o for o in run.objects("EgressNetwork") if o["spec"]["trafficPolicy"] == "Deny"
            and o["metadata"]["namespace"] == "payments"]
    assert deny and deny[0]["spec"]["networks"] == [{"cidr": "::/0", "except": ["fd00::/8"]}]
