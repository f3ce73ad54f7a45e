"""Istio's post-deploy verification (plan/istio/verification.py): every object validates (core kinds with
kubernetes-validate, Istio's against the pinned base chart's CRDs), the policy admits exactly what each phase promises
(computed from the emitted objects alone), the Jobs re-run exactly when the mesh changes, and the check each client runs
is run here for real against local servers answering every way the canary's sidecar could."""

from __future__ import annotations

import http.server
import ipaddress
import os
import socket
import socketserver
import subprocess
import threading
from contextlib import contextmanager
from functools import lru_cache

import jsonschema
import pytest
import yaml

from conformance import _to_jsonschema, unknown_fields, validate_object
from istio_settings import TRUST_DOMAIN, settings_of
from tools import CHART_PATHS, CHARTS, curl
from plan.istio.names import NAMESPACE_INJECTION_LABEL, POD_INJECTION_LABEL
from istio_conformance import Cluster, Pod
from test_istio_authorization import check_access_matrix
from plan.istio.authorization import SIDECAR_LABEL
from plan.istio.verification import (CHECK_SCRIPT, NATIVE_SIDECAR_ANNOTATION, check_jobs, policy_objects,
                                     verification_matrix, verification_objects)
from plan.verification import (ALLOWED, CANARY, CANARY_PORT, CLIENTS, NAMESPACE, OTHER, UNMESHED, canary_objects,
                               expectation, verification_graph)

PHASES = ("deny", "audit", "all-authenticated", "cluster-authenticated", "all-unauthenticated", "cluster-unauthenticated")


def settings_in(phase: str, **changes):
    return settings_of("staging", trustDomain=TRUST_DOMAIN, defaultInboundPolicy=phase, **changes)


@lru_cache(maxsize=1)
def istio_schemas():
    """(apiVersion, kind) -> schema, for every served version in the pinned base chart's CRDs (files/crd-all.gen.yaml)."""
    found = {}
    text = (CHARTS / CHART_PATHS["base"] / "files" / "crd-all.gen.yaml").read_text()
    for document in yaml.safe_load_all(text):
        if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
            for version in document["spec"]["versions"]:
                if version.get("served"):
                    found[(f"{document['spec']['group']}/{version['name']}", document["spec"]["names"]["kind"])] = \
                        version["schema"]["openAPIV3Schema"]
    return found


def validate_istio(obj):
    schema = istio_schemas().get((obj["apiVersion"], obj["kind"]))
    if schema is None:
        return [f"no served CRD for {obj['apiVersion']} {obj['kind']}"]
    errors = [e.message for e in jsonschema.Draft7Validator(_to_jsonschema(schema)).iter_errors(obj)]
    return errors + [f"{p}: not in the schema" for p in unknown_fields(obj, schema)]


@pytest.mark.parametrize("phase", ["deny", "audit"])
def test_every_object_validates(phase, needs_shared):
    objects = verification_objects(settings_in(phase))
    kinds = {o["kind"] for o in objects}
    assert kinds >= {"Namespace", "ServiceAccount", "Deployment", "Service", "Job", "CronJob", "PeerAuthentication"}
    for obj in objects:
        problems = validate_istio(obj) if obj["apiVersion"].endswith("istio.io/v1") else validate_object(obj)
        assert problems == [], f"{obj['kind']} {obj['metadata']['name']}: {problems}"
    (canary,) = [o for o in policy_objects(settings_in("deny")) if o["spec"].get("rules")]
    broken = {**canary, "spec": {**canary["spec"], "rule": canary["spec"]["rules"]}}
    assert validate_istio(broken), "the schema check finds a misspelled field"
    assert not [o for o in objects if o["kind"] == "NetworkPolicy"], "a refusal must come from Istio, not the network"


def pods(settings) -> dict[str, Pod]:
    """The canary and each client as pods, labelled as their Deployment and Jobs label them (plus the injector's label
    where a sidecar is injected), at addresses inside the cluster networks."""
    network = ipaddress.ip_network(next(c for c in settings.policy.cluster_networks if ":" not in c))
    found = {}
    for index, (name, labels) in enumerate(
            [(CANARY, canary_objects("x")[0]["spec"]["template"]["metadata"]["labels"]),
             *((client, job["spec"]["template"]["metadata"]["labels"]) for client, job in
               zip(CLIENTS, check_jobs(settings)))]):
        sidecar = name != UNMESHED
        found[name] = Pod(name, NAMESPACE, {**labels, **(SIDECAR_LABEL if sidecar else {})}, name,
                          str(network.network_address + 10 + index), sidecar,
                          f"{CANARY}.{NAMESPACE}.svc.cluster.local" if name == CANARY else "")
    return found


@pytest.mark.parametrize("phase", PHASES)
def test_the_policy_admits_exactly_what_the_phase_promises(phase):
    """Decided by tests/istio_conformance.py's evaluator from the emitted objects alone (Istio's order, PeerAuthentication
    scopes, dry runs), for each client as its Job runs: what each check expects."""
    settings = settings_in(phase)
    cluster = Cluster(policy_objects(settings), TRUST_DOMAIN)
    pod = pods(settings)
    for client in CLIENTS:
        assert cluster.mesh_allows(pod[client], pod[CANARY], CANARY_PORT) == (expectation(client, phase) == "allow"), \
            (client, phase)


@pytest.mark.parametrize("phase", PHASES)
def test_the_canarys_matrix_rows_are_what_the_evaluator_finds(phase):
    """The canary's `accessMatrix` rows (one per port of the canary and of its clients, as Linkerd's) read back from
    the objects, checked entry by entry against the evaluator as the graph's are; under deny the canary admits exactly
    `verify-allowed`."""
    settings = settings_in(phase)
    objects = policy_objects(settings)
    matrix = verification_matrix(settings)
    assert set(matrix) == {f"{NAMESPACE}/{name}:http" for name in (CANARY, ALLOWED, OTHER)}
    check_access_matrix(objects, verification_graph(), settings.policy, TRUST_DOMAIN)
    if phase == "deny":
        assert matrix[f"{NAMESPACE}/{CANARY}:http"] == {"allowed": [f"{NAMESPACE}/{ALLOWED}"], "others": "denied"}
    assert not {o["kind"] for o in objects} & {"ServiceEntry", "NetworkPolicy"}
    assert not [o for o in objects if o["kind"] == "Sidecar" and "workloadSelector" in o["spec"]], \
        "verify-other's Sidecar would drop its call before the canary's authorization refuses it"
    (namespace_sidecar,) = [o["spec"] for o in objects if o["kind"] == "Sidecar"]
    assert namespace_sidecar["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY" if phase == "deny" else "ALLOW_ANY"}


def test_the_canarys_rows_are_in_the_plans_access_matrix():
    from plan.mesh import compile_mesh
    settings = settings_in("deny", mesh="istio", linkerdViz=False)
    matrix = compile_mesh(settings).access_matrix
    assert {k: v for k, v in matrix.items() if k.startswith(f"{NAMESPACE}/")} == verification_matrix(settings)


def test_injection_is_istios_label_and_jobs_use_native_sidecars():
    settings = settings_in("deny")
    namespace = next(o for o in verification_objects(settings) if o["kind"] == "Namespace")
    assert namespace["metadata"]["labels"][NAMESPACE_INJECTION_LABEL] == "enabled"
    for job in check_jobs(settings):
        pod = job["spec"]["template"]
        env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
        meshed = env["CLIENT"] != UNMESHED
        # A label, not an annotation (reference A4); the annotation form would be ignored.
        assert pod["metadata"]["labels"][POD_INJECTION_LABEL] == ("true" if meshed else "false")
        assert POD_INJECTION_LABEL not in pod["metadata"].get("annotations", {})
        assert (pod["metadata"].get("annotations", {}).get(NATIVE_SIDECAR_ANNOTATION) == "true") == meshed
        assert env["IDENTITY"] == (f"spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{env['CLIENT']}" if meshed else "")
        assert env["EXPECT"] == expectation(env["CLIENT"], "deny") and pod["spec"]["serviceAccountName"] == env["CLIENT"]
    template = (CHARTS / CHART_PATHS["istiod"] / "files" / "injection-template.yaml").read_text()
    assert f"`{NATIVE_SIDECAR_ANNOTATION}`" in template, "the injection template reads the per-pod annotation"


def job_names(**changes):
    return sorted(j["metadata"]["name"] for j in check_jobs(settings_in("deny", **changes)))


@pytest.mark.parametrize("changes", [{"defaultInboundPolicy": "audit"}, {"trustDomain": "other.example.org"},
                                     {"nextTrustAnchor": "2027-05", "anchorRotationPhase": "add-next"},
                                     {"verificationClientImage": "mirror.example.com/curl:8.11.1"}])
def test_the_checks_run_again_when_the_mesh_changes(changes):
    before = job_names()
    after = sorted(j["metadata"]["name"] for j in check_jobs(settings_of(
        "staging", **{"trustDomain": TRUST_DOMAIN, "defaultInboundPolicy": "deny", **changes})))
    assert not set(before) & set(after), changes


def test_the_checks_do_not_run_again_on_unrelated_updates():
    assert job_names(proxyLogLevel="info") == job_names()


# ---- the check itself, run for real ------------------------------------------------------------------------------

def identity(client: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{client}"


def xfcc(client_id: str) -> str:
    """Envoy's X-Forwarded-Client-Cert as the canary's sidecar appends it (By, Hash, Subject, URI), after an element a
    client could have sent itself."""
    forged = f"By=spiffe://{TRUST_DOMAIN}/ns/x/sa/y;URI={identity(OTHER)}"
    return f'{forged},By={identity(CANARY)};Hash=3f1a;Subject="";URI={client_id}'


@contextmanager
def canary(status: int, client_id: str | None, body: str = "RBAC: access denied"):
    """A stand-in for the canary behind its sidecar: answers `status`; a 200 echoes the headers as traefik/whoami does."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            text = "Hostname: canary-7d9f\nGET / HTTP/1.1\nHost: canary\nUser-Agent: curl\n"
            if client_id is not None:
                text += f"X-Forwarded-Client-Cert: {xfcc(client_id)}\n"
            payload = (text if status == 200 else body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def closes_without_answer():
    """What a STRICT sidecar does to a plaintext client: accepts the connection, reads, closes it without HTTP."""
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.recv(4096)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_check(url: str, client: str, phase: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.path.dirname(curl()) + ":/usr/bin:/bin", "URL": url, "CLIENT": client, "PHASE": phase,
           "EXPECT": expectation(client, phase), "IDENTITY": "" if client == UNMESHED else identity(client),
           "ATTEMPTS": "2", "RETRY_DELAY": "0"}
    return subprocess.run(["sh", "-c", CHECK_SCRIPT], env=env, capture_output=True, text=True, timeout=60)


ANSWERS = {"200 right id": (200, "self"), "200 wrong id": (200, identity("intruder")), "200 no id": (200, None),
           "403 rbac": (403, None), "403 app": (403, "app"), "closed": "closed", "refused": None}


def passing_answers(client: str, phase: str) -> set[str]:
    if expectation(client, phase) == "refuse":
        return {"403 rbac", "closed"} if client == UNMESHED else {"403 rbac"}
    return {"200 no id"} if client == UNMESHED else {"200 right id"}


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("client", CLIENTS)
def test_the_check_passes_only_on_the_answer_its_phase_promises(client, phase):
    results = {}
    for answer, behaviour in ANSWERS.items():
        if behaviour is None:
            results[answer] = run_check(f"http://127.0.0.1:{free_port()}/", client, phase)
        elif behaviour == "closed":
            with closes_without_answer() as url:
                results[answer] = run_check(url, client, phase)
        else:
            status, seen = behaviour
            body = "Forbidden by the application\n" if seen == "app" else "RBAC: access denied"
            with canary(status, identity(client) if seen == "self" else None if seen == "app" else seen, body) as url:
                results[answer] = run_check(url, client, phase)
    passed = {answer for answer, result in results.items() if result.returncode == 0}
    assert passed == passing_answers(client, phase), {a: r.stdout.strip() for a, r in results.items()}
    for answer, result in results.items():
        assert result.stdout.startswith("OK:" if answer in passed else "FAIL:"), result.stdout
    assert ALLOWED in CLIENTS
