"""The checks across each Link (plan/linkerd/multicluster_verification.py): valid Jobs, expectations that follow the
canary's graph edges through the peer's policy builders (not written down), and a script that passes only on the
outcome it expects, run here with a stand-in curl."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from conformance import validate_object
from plan.linkerd import multicluster as mc
from plan.linkerd import multicluster_verification as mv
from plan.verification import ALLOWED, CANARY, NAMESPACE, OTHER, UNMESHED, canary_objects
from read.errors import Problems
from read.graph import parse_graph

TD = "prod.example"
IMAGE = "curlimages/curl:8.11.1"


def west(peer=None) -> mc.Cluster:
    peer = peer or mc.Peer("east", TD, api_server="https://east.example:6443", gateway_addresses=("192.0.2.10",))
    return mc.Cluster("west", TD, peers=(peer,))


def graph(canary_allows):
    """The verification graph with the canary admitting `canary_allows`."""
    port = [{"name": "http", "port": 8080, "protocol": "HTTP/1"}]
    document = {"namespaces": {NAMESPACE: {}},
                "services": {CANARY: {"namespace": NAMESPACE, "ports": port, "allow": list(canary_allows)},
                             ALLOWED: {"namespace": NAMESPACE, "ports": port},
                             OTHER: {"namespace": NAMESPACE, "ports": port}}}
    problems = Problems()
    parsed = parse_graph(document, "test", problems)
    assert parsed is not None, problems.items
    return parsed


def outcome(cluster, mode=mc.REMOTE_DISCOVERY, g=None):
    return {e.client: e.expect for e in mv.expectations(cluster, cluster.peers[0], mode, g)}


def test_three_jobs_per_linked_peer_valid_against_core_schemas():
    jobs = mv.link_checks(west(), IMAGE, "abc")
    assert [j["metadata"]["labels"][mv.CLIENT_LABEL] for j in jobs] == ["allowed", "other", "unmeshed"]
    for job in jobs:
        assert validate_object(job) == [], job["metadata"]["name"]
        assert job["metadata"]["labels"][mv.TARGET_CLUSTER_LABEL] == "east"
        env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["URL"] == f"http://{CANARY}-east.{NAMESPACE}.svc.cluster.local:8080/"
    unmeshed = jobs[2]["spec"]["template"]
    assert unmeshed["metadata"]["annotations"]["linkerd.io/inject"] == "disabled"
    assert {j["spec"]["template"]["spec"]["serviceAccountName"] for j in jobs} == {ALLOWED, OTHER, UNMESHED}


def test_no_jobs_for_a_peer_this_cluster_does_not_link_to():
    peer = mc.Peer("east", TD, mirrors_from=False)
    assert mv.link_checks(west(peer), IMAGE, "abc") == []


def test_expectations_follow_the_canarys_edges():
    assert outcome(west()) == {ALLOWED: "allow", OTHER: "refuse", UNMESHED: "refuse"}
    assert outcome(west(), g=graph([ALLOWED, OTHER])) == {ALLOWED: "allow", OTHER: "allow", UNMESHED: "refuse"}
    assert outcome(west(), g=graph([])) == {ALLOWED: "refuse", OTHER: "refuse", UNMESHED: "refuse"}


def test_outside_deny_the_peers_canary_namespace_admits_other_meshed_callers():
    """The canary's namespace follows the rollout phase: a meshed caller outside the edges gets in where the phase
    admits authenticated clients, and its check is left out where that depends on the clusters' networks; the
    unmeshed one never reaches a remote-discovery mirror. The gateway's own policy does not follow the phase."""
    def by_phase(phase, mode=mc.REMOTE_DISCOVERY):
        return {e.client: e.expect for e in mv.expectations(west(), west().peers[0], mode, phase=phase)}

    assert by_phase("all-authenticated") == {ALLOWED: "allow", OTHER: "allow", UNMESHED: "refuse"}
    assert by_phase("cluster-authenticated") == {ALLOWED: "allow", UNMESHED: "refuse"}
    assert by_phase("all-authenticated", mc.GATEWAY) == {ALLOWED: "allow", OTHER: "refuse", UNMESHED: "refuse"}


def test_the_identity_the_canary_must_see_is_the_one_the_mode_carries():
    (allowed, *_) = mv.expectations(west(), west().peers[0], mc.REMOTE_DISCOVERY)
    assert allowed.identity == mc.identity(ALLOWED, NAMESPACE, TD)
    (through_gateway, other, _) = mv.expectations(west(), west().peers[0], mc.GATEWAY)
    assert through_gateway.identity == mc.gateway_identity(TD)  # the gateway terminates the caller's mTLS
    assert other.expect == "refuse"  # the gateway's any-meshed names only the allowed caller


def test_a_change_of_expectation_changes_the_jobs_names():
    before = {j["metadata"]["name"] for j in mv.link_checks(west(), IMAGE, "abc")}
    after = {j["metadata"]["name"] for j in mv.link_checks(west(), IMAGE, "abc", graph=graph([ALLOWED, OTHER]))}
    assert before.isdisjoint(after)
    long_peer = mc.Peer("e" * mc.CLUSTER_NAME_MAX, TD)
    assert all(len(j["metadata"]["name"]) <= 63 for j in mv.link_checks(west(long_peer), IMAGE, "abc"))


def test_the_exported_canary_carries_the_modes_label():
    objects = mv.exported_canary_objects(canary_objects("traefik/whoami:v1.10"), mc.REMOTE_DISCOVERY)
    service = next(o for o in objects if o["kind"] == "Service")
    assert service["metadata"]["labels"][mc.EXPORTED] == "remote-discovery"
    export = mv.canary_export(mc.Cluster("east", TD, peers=(mc.Peer("west", TD),)))
    assert [(c.cluster, c.service_account) for c in export.callers] == [("west", ALLOWED)]
    assert mc.export_problems(mc.Cluster("east", TD, peers=(mc.Peer("west", TD),), exports=(export,))) == []


# --- the script, with a stand-in curl ----------------------------------------------------------------------------

FAKE_CURL = """#!/bin/sh
# Stands in for curl: the body goes where -o says, the status is printed (-w), the exit code is FAKE_RC.
out=""
while [ $# -gt 0 ]; do
  case "$1" in -o) out="$2"; shift ;; esac
  shift
done
[ -n "$out" ] && printf 'HTTP/1.1 200\\r\\nL5d-Client-Id: %s\\r\\n' "$FAKE_SEEN" > "$out"
[ "$FAKE_RC" = 0 ] || echo "curl: ($FAKE_RC) stand-in failure" >&2
printf '%s' "$FAKE_CODE"
exit "$FAKE_RC"
"""


@pytest.fixture
def fake_curl(tmp_path):
    path = tmp_path / "bin"
    path.mkdir()
    curl = path / "curl"
    curl.write_text(FAKE_CURL)
    curl.chmod(curl.stat().st_mode | stat.S_IEXEC)
    return path


def run_check(fake_curl, tmp_path, expect, rc, code, seen="", identity="a.b.serviceaccount.identity.linkerd.td"):
    env = {"PATH": f"{fake_curl}:{os.environ['PATH']}", "TMPDIR": str(tmp_path), "ATTEMPTS": "2",
           "RETRY_DELAY": "0", "CLIENT": "c", "PEER": "east", "EXPECT": expect, "URL": "http://canary-east/",
           "IDENTITY": identity, "FAKE_RC": str(rc), "FAKE_CODE": code, "FAKE_SEEN": seen}
    return subprocess.run(["sh", "-c", mv.CROSS_CHECK_SCRIPT], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("expect,rc,code,seen,passes", [
    ("allow", 0, "200", "a.b.serviceaccount.identity.linkerd.td", True),
    ("allow", 0, "200", "someone.else", False),  # admitted, but not as itself
    ("allow", 0, "403", "", False),
    ("allow", 7, "000", "", False),  # could never connect
    ("refuse", 0, "403", "", True),
    ("refuse", 56, "000", "", True),  # the gateway reset the connection
    ("refuse", 7, "000", "", True),  # no endpoint for an unmeshed client
    ("refuse", 0, "200", "", False),  # admitted: the link does not enforce
    ("refuse", 6, "000", "", False),  # the mirror's name never resolved: proves nothing
])
def test_the_check_passes_only_on_the_expected_outcome(fake_curl, tmp_path, expect, rc, code, seen, passes):
    done = run_check(fake_curl, tmp_path, expect, rc, code, seen)
    assert (done.returncode == 0) is passes, done.stdout + done.stderr
