"""Post-deploy verification: the canary and its checks conform, its policy is in the access matrix exactly as meant, the
Jobs re-run exactly when the mesh changes, and the check each client runs is run here for real against a local HTTP
server answering every way the canary's proxy could."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import threading
from contextlib import contextmanager

import pytest

from plan.linkerd.verification import CHECK_SCRIPT
from plan.verification import ALLOWED, CLIENTS, UNMESHED, expectation
from conformance import validate_object
from harness import PROJECT_DIR, run_program
from tools import curl

NS = "mtls-mesh-verify"
PHASES = ("deny", "audit", "all-authenticated", "cluster-authenticated", "all-unauthenticated", "cluster-unauthenticated")


def verify_objects(run):
    return [o for o in run.objects() if o["metadata"].get("namespace") == NS or
            (o["kind"] == "Namespace" and o["metadata"]["name"] == NS)]


def test_verification_is_on_in_dev_and_staging_and_off_in_prod(dev, staging, prod):
    assert len(dev.objects("Job")) == 3 and len(staging.objects("Job")) == 3
    assert not verify_objects(prod)


def test_every_verification_object_conforms(staging, dev, needs_shared):
    for run in (staging, dev):
        objects = verify_objects(run)
        assert {o["kind"] for o in objects} >= {"Namespace", "ServiceAccount", "Deployment", "Service", "Job", "CronJob",
                                                "Server", "MeshTLSAuthentication", "AuthorizationPolicy"}
        for obj in objects:
            assert validate_object(obj) == [], f"{obj['kind']} {obj['metadata']['name']}"


@pytest.mark.parametrize("stack,others", [("staging", "denied"), ("dev", "audit")])
def test_the_canary_admits_exactly_one_identity_in_the_stacks_phase(stack, others, request):
    run = request.getfixturevalue(stack)
    entry = run.exports["accessMatrix"][f"{NS}/canary:http"]
    assert {k: entry[k] for k in ("allowed", "others")} == {"allowed": [f"{NS}/{ALLOWED}"], "others": others}
    # Besides the allowed caller, only the kubelet's httpGet probes (Linkerd's probe route), from kubeletNetworks.
    assert [r["allowed"] for r in entry.get("routes", {}).values()] in ([], [[]])
    authn = run.object("MeshTLSAuthentication", "canary", NS)
    assert authn["spec"]["identities"] == [f"{ALLOWED}.{NS}.serviceaccount.identity.linkerd.cluster.local"]
    assert run.object("Namespace", NS)["metadata"]["annotations"]["config.linkerd.io/default-inbound-policy"] == (
        "deny" if stack == "staging" else "audit")
    assert not [o for o in run.objects("NetworkPolicy") if o["metadata"]["namespace"] == NS], \
        "a refusal in the checks must come from Linkerd, not from the network"


def test_each_job_expects_what_its_phase_promises(staging, dev):
    for run, phase in ((staging, "deny"), (dev, "audit")):
        for job in run.objects("Job"):
            env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
            assert env["EXPECT"] == expectation(env["CLIENT"], phase) and env["PHASE"] == phase
            annotations = job["spec"]["template"]["metadata"]["annotations"]
            assert annotations["linkerd.io/inject"] == ("disabled" if env["CLIENT"] == UNMESHED else "enabled")
            assert job["spec"]["template"]["spec"]["serviceAccountName"] == env["CLIENT"]
    assert [expectation(c, "deny") for c in CLIENTS] == ["allow", "refuse", "refuse"]
    assert [expectation(c, "audit") for c in CLIENTS] == ["allow", "allow", "allow"]
    assert [expectation(c, "all-authenticated") for c in CLIENTS] == ["allow", "allow", "refuse"]


def job_names(stack="staging", **changes):
    return sorted(o["metadata"]["name"] for o in run_program(stack, set_config=changes).objects("Job"))


@pytest.mark.parametrize("changes", [{"linkerdChartVersion": "2026.9.1"}, {"defaultInboundPolicy": "all-authenticated",
                                                                           "inboundPolicyOverrides": []},
                                     {"nextTrustAnchor": "2027-05", "anchorRotationPhase": "add-next"},
                                     {"verificationClientImage": "mirror.example.com/curl:8.11.1"}])
def test_the_checks_run_again_when_the_mesh_changes(staging, changes):
    before = sorted(o["metadata"]["name"] for o in staging.objects("Job"))
    after = job_names(**changes)
    assert not set(before) & set(after), f"{changes} must give the Jobs new names, so they run again"


@pytest.mark.parametrize("changes", [{"proxyLogLevel": "info"}, {"alerts": False}, {"controllerLogLevel": "debug"}])
def test_the_checks_do_not_run_again_on_unrelated_updates(staging, changes):
    assert job_names(**changes) == sorted(o["metadata"]["name"] for o in staging.objects("Job"))


def test_the_checks_wait_for_the_canary_its_policy_and_the_control_plane(staging):
    control_plane = staging.named("linkerd-control-plane").urn
    canary = staging.named("verify-deployment-canary").urn
    policy = staging.named("verify-policy").urn
    for job in staging.of_type("kubernetes:batch/v1:Job"):
        assert {control_plane, canary, policy} <= set(job.dependencies), job.name


def test_a_stack_cannot_claim_the_verification_namespace(tmp_path):
    import yaml
    from read.errors import SettingsError
    graph = yaml.safe_load((PROJECT_DIR / "services.yaml").read_text())
    graph["namespaces"][NS] = {}
    with pytest.raises(SettingsError, match="meshVerification: needs the namespace 'mtls-mesh-verify'"):
        run_program("staging", graph=graph, tmp_path=tmp_path)


# ---- the check itself, run for real ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def canary(status: int, client_id: str | None):
    """A stand-in for the canary behind its proxy: answers `status`, echoing the headers the proxy would have added
    (traefik/whoami prints each request header as `Name: value`)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = "Hostname: canary-7d9f\nGET / HTTP/1.1\nHost: canary\nUser-Agent: curl\n"
            if client_id is not None:
                body += f"L5d-Client-Id: {client_id}\n"
            payload = (body if status == 200 else "Forbidden\n").encode()
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


def identity(client: str) -> str:
    return f"{client}.{NS}.serviceaccount.identity.linkerd.cluster.local"


def run_check(url: str, client: str, phase: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.path.dirname(curl()) + ":/usr/bin:/bin", "URL": url, "CLIENT": client, "PHASE": phase,
           "EXPECT": expectation(client, phase), "IDENTITY": "" if client == UNMESHED else identity(client),
           "ATTEMPTS": "2", "RETRY_DELAY": "0"}
    return subprocess.run(["sh", "-c", CHECK_SCRIPT], env=env, capture_output=True, text=True, timeout=60)


# What the canary's proxy can answer, by the identity it saw (None: no proxy on the client side).
ANSWERS = {"200 right id": (200, "self"), "200 wrong id": (200, identity("intruder")), "200 no id": (200, None),
           "403": (403, None), "refused": None}


def passing_answers(client: str, phase: str) -> set[str]:
    if expectation(client, phase) == "refuse":
        return {"403"}
    return {"200 no id"} if client == UNMESHED else {"200 right id"}


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("client", CLIENTS)
def test_the_check_passes_only_on_the_answer_its_phase_promises(client, phase):
    results = {}
    for answer, behaviour in ANSWERS.items():
        if behaviour is None:
            url = f"http://127.0.0.1:{free_port()}/"  # nothing listens: a refused connection
            results[answer] = run_check(url, client, phase)
            continue
        status, seen = behaviour
        with canary(status, identity(client) if seen == "self" else seen) as url:
            results[answer] = run_check(url, client, phase)
    passed = {answer for answer, result in results.items() if result.returncode == 0}
    assert passed == passing_answers(client, phase), {a: r.stdout.strip() for a, r in results.items()}
    for answer, result in results.items():
        assert result.stdout.startswith("OK:" if answer in passed else "FAIL:"), result.stdout
