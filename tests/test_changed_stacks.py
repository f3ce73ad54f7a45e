"""A pull request previews exactly the stacks it changes, decided by compiling the base and the head
(deploy/changed_stacks.py, plan/changes.py); the review comment merges the previewed stacks' matrices
(deploy/review_matrices.py, deploy/review_comment.py).

Each test works on two copies of the project (base, head) that it shards itself: prod becomes a platform stack with
the shards storefront (web) and payments (payments), whatever the repository's own stack files say."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import PROJECT_DIR

sys.path.insert(0, str(PROJECT_DIR))
from deploy import changed_stacks, review_comment, review_matrices  # noqa: E402
from deploy.changed_stacks import Checkout, choose  # noqa: E402

COPIED = ("Pulumi.yaml", "__main__.py", "requirements.txt", "requirements-dev.txt", "services.yaml", "read", "plan",
          "components", "policy", ".github", "stacks", "deploy")
SHARDS = {"web": "storefront", "payments": "payments"}


def copy_project(target: Path) -> Path:
    target.mkdir()
    for name in COPIED:
        source = PROJECT_DIR / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "venv"))
        elif source.exists():
            shutil.copy2(source, target / name)
    return target


def edit_yaml(path: Path, change) -> None:
    document = yaml.safe_load(path.read_text()) or {}
    change(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def set_config(root: Path, stack: str, **values) -> None:
    edit_yaml(root / "stacks" / f"Pulumi.{stack}.yaml",
              lambda d: d.setdefault("config", {}).update({f"mtls-mesh:{k}": v for k, v in values.items()}))


def shard(root: Path, shards: dict[str, str] = SHARDS, platform: str = "prod") -> None:
    """`platform` a platform stack, each namespace in `shards` in its shard, one stack file per shard."""
    def namespaces(graph):
        for namespace, name in shards.items():
            graph["namespaces"][namespace] = {**(graph["namespaces"][namespace] or {}), "shard": name}
    edit_yaml(root / "services.yaml", namespaces)
    set_config(root, platform, policyShards=True)
    for name in set(shards.values()):
        (root / "stacks" / f"Pulumi.{platform}-{name}.yaml").write_text(
            f"config:\n  mtls-mesh:platformStack: {platform}\n  mtls-mesh:shard: {name}\n")


def edit_graph(root: Path, change) -> None:
    edit_yaml(root / "services.yaml", change)


def service(graph, name):
    return graph["services"][name]


@pytest.fixture(scope="module")
def sharded_project(tmp_path_factory) -> Path:
    root = copy_project(tmp_path_factory.mktemp("project") / "base")
    shard(root)
    return root


@pytest.fixture
def base_head(sharded_project, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(sharded_project, base)
    head = tmp_path / "head"
    shutil.copytree(sharded_project, head)
    return base, head


def chosen(base: Path, head: Path, skip=("dev", "staging")) -> list[str]:
    """The stacks chosen; staging (sharded like prod, from the same graph) is left out where it tells nothing new."""
    return sorted(c.stack for c in choose(base, head, skip) if c.selected)


# --- what a pull request previews ------------------------------------------------------------------------------------

def test_an_unchanged_pull_request_previews_nothing(base_head):
    base, head = base_head
    choices = choose(base, head, ("dev",))
    assert sorted(c.stack for c in choices) == ["prod", "prod-payments", "prod-storefront", "staging",
                                                "staging-payments", "staging-storefront"]
    assert [c for c in choices if c.selected] == []
    roles = {c.stack: (c.role, c.platform) for c in choices}
    assert roles["prod-payments"] == ("shard", "prod") and roles["prod"] == ("platform", "prod")
    assert roles["staging"] == ("platform", "staging"), "staging is sharded like prod"
    assert roles["staging-payments"] == ("shard", "staging")


def test_one_teams_allow_list_previews_exactly_that_shard(base_head):
    base, head = base_head
    edit_graph(head, lambda g: service(g, "ledger")["allow"][0]["ports"].append("admin"))
    assert chosen(base, head, skip=("dev",)) == ["prod-payments", "staging-payments"], \
        "staging is sharded like prod, from the same graph: its payments shard changed too"
    edit_graph(head, lambda g: service(g, "catalog")["allow"].remove("checkout"))
    assert chosen(base, head) == ["prod-payments", "prod-storefront"]


def test_a_new_namespace_in_a_shard_previews_the_platform_and_that_shard(base_head):
    base, head = base_head

    def add(graph):
        graph["namespaces"]["shop"] = {"shard": "storefront"}
        graph["services"]["basket"] = {"namespace": "shop", "ports": [{"name": "http", "port": 8080,
                                                                        "protocol": "HTTP/1"}],
                                       "allow": ["frontend"]}
    edit_graph(head, add)
    assert chosen(base, head) == ["prod", "prod-storefront"]
    reasons = {c.stack: c.reason for c in choose(base, head, ("dev", "staging"))}
    assert "outside the shards" in reasons["prod"] and reasons["prod-payments"] == "unchanged"
    assert "namespace shop" in reasons["prod"] and "contract" in reasons["prod-storefront"]


def test_a_stack_setting_previews_the_platform_and_all_its_shards(base_head):
    base, head = base_head
    set_config(head, "prod", kubeletNetworks=["10.30.0.0/18"])
    assert chosen(base, head) == ["prod", "prod-payments", "prod-storefront"]


def test_a_setting_only_the_platform_compiles_previews_only_the_platform(base_head):
    """Compiling, not path guessing: the stack file changed, yet the shards' objects did not."""
    base, head = base_head
    set_config(head, "prod", protectPki=False)
    assert chosen(base, head) == ["prod"]
    set_config(head, "prod", linkerdViz=True)
    assert chosen(base, head) == ["prod", "prod-payments", "prod-storefront"], \
        "viz's Prometheus is admitted to every namespace's metrics: every shard's policy changes"


def test_an_edge_across_shards_previews_both_sides(base_head):
    """The callee's shard authorizes the caller (its Server's policy); the caller's shard lets the call out (its
    egress NetworkPolicy): both sides' objects change, and nothing else."""
    base, head = base_head
    edit_graph(head, lambda g: service(g, "billing")["allow"].append("frontend"))
    assert chosen(base, head) == ["prod-payments", "prod-storefront"]


def test_a_linkerd_upgrade_previews_every_shard_through_its_contract(base_head):
    """The shards' objects are the same, but each compiled against another platform (its contract changed): each
    preview shows whether the platform has applied it yet."""
    base, head = base_head
    set_config(head, "prod", linkerdChartVersion="2025.11.1")
    assert chosen(base, head) == ["prod", "prod-payments", "prod-storefront"]
    reasons = {c.stack: c.reason for c in choose(base, head, ("dev", "staging"))}
    assert reasons["prod-payments"] == "its part of the plan changed: contract", "the reason names what changed"


def test_the_kubernetes_context_is_every_stacks_provider(base_head):
    base, head = base_head
    set_config(head, "prod", kubeContext="prod-eu2")
    assert chosen(base, head) == ["prod", "prod-payments", "prod-storefront"]


@pytest.mark.parametrize("path", ["plan/mesh.py", "components/k8s.py", "policy/mesh_policies.py", "__main__.py",
                                  "requirements.txt", "Pulumi.yaml", ".github/workflows/pull-request.yml"])
def test_a_program_or_pack_change_previews_everything(base_head, path):
    base, head = base_head
    with open(head / path, "a") as file:
        file.write("\n# changed\n")
    choices = choose(base, head, ("dev",))
    assert [c.stack for c in choices if c.selected] == ["prod", "prod-payments", "prod-storefront", "staging",
                                                        "staging-payments", "staging-storefront"]
    assert all(path in c.reason for c in choices)


def test_generated_files_are_not_program_changes(base_head):
    base, head = base_head
    (head / "plan" / "__pycache__").mkdir(exist_ok=True)
    (head / "plan" / "__pycache__" / "mesh.cpython-311.pyc").write_bytes(b"\0")
    (head / "policy" / "venv").mkdir()
    (head / "policy" / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    assert chosen(base, head) == []


def test_a_stack_the_base_cannot_give_is_previewed_with_the_reason(base_head):
    base, head = base_head
    shard(head, {**SHARDS, "data": "ledgers"})
    choices = {c.stack: c for c in choose(base, head, ("dev", "staging"))}
    assert choices["prod-ledgers"].selected and choices["prod-ledgers"].reason == "new in this pull request"
    assert choices["prod-ledgers"].new and not choices["prod"].new and not choices["prod-payments"].new, \
        "only a stack file the base lacks is known to be missing from the backend"
    assert choices["prod"].selected, "the platform names data's new shard on its Namespace"
    assert choices["prod-payments"].selected, "data left the payments shard (services.yaml gives it to payments)"
    set_config(base, "prod", defaultInboundPolicy="denny")
    choices = {c.stack: c for c in choose(base, head, ("dev", "staging"))}
    assert all(c.selected for c in choices.values())
    assert "the base cannot be compared" in choices["prod-payments"].reason
    assert "defaultInboundPolicy" in choices["prod"].reason


def test_a_stack_that_does_not_compile_at_the_head_is_previewed_to_show_why(base_head):
    base, head = base_head
    set_config(head, "prod", defaultInboundPolicy="denny")
    choices = {c.stack: c for c in choose(base, head, ("dev", "staging"))}
    assert all(c.selected and "does not compile at the head" in c.reason for c in choices.values())


def test_a_shard_whose_platform_is_not_sharded_is_previewed_to_show_why(base_head):
    base, head = base_head
    set_config(head, "prod", policyShards=False)
    choices = {c.stack: c for c in choose(base, head, ("dev", "staging"))}
    assert "does not set policyShards" in choices["prod-payments"].reason and choices["prod-payments"].selected


def test_a_changed_secret_previews_its_stack(base_head):
    base, head = base_head
    # Only dev may hold vaultToken (staging and prod refuse it in config: every preview could decrypt it).
    for root, text in ((base, "v1:AAAA"), (head, "v1:BBBB")):
        set_config(root, "dev", vaultToken={"secure": text})
    assert chosen(base, head, skip=("staging",)) == ["dev"]


def test_each_distinct_input_compiles_once(base_head, monkeypatch):
    base, head = base_head
    compiled = []
    original = changed_stacks.compile_mesh
    monkeypatch.setattr(changed_stacks, "compile_mesh", lambda s: compiled.append(s.stack) or original(s))
    choose(base, head, ("dev",))
    assert sorted(compiled) == ["prod", "staging"], "unchanged inputs: one compile per platform, shared by its shards"
    compiled.clear()
    edit_graph(head, lambda g: service(g, "ledger")["allow"].append("checkout"))
    choose(base, head, ("dev",))
    assert sorted(compiled) == ["prod", "prod", "staging", "staging"]


def test_the_command_prints_the_matrix_and_says_why(base_head, tmp_path):
    base, head = base_head
    edit_graph(head, lambda g: service(g, "ledger")["allow"][0]["ports"].append("admin"))
    reasons = tmp_path / "reasons.json"
    result = subprocess.run([sys.executable, "-m", "deploy.changed_stacks", "--base", str(base), "--head", str(head),
                             "--skip", "dev", "--skip", "staging", "--reasons", str(reasons)],
                            capture_output=True, text=True, cwd=PROJECT_DIR)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"stack": "prod-payments", "platform": "prod", "role": "shard", "new": False}]
    assert "prod-storefront: no preview (unchanged)" in result.stderr
    assert {r["stack"]: r["selected"] for r in json.loads(reasons.read_text())} == \
        {"prod": False, "prod-payments": True, "prod-storefront": False}


def test_more_stacks_than_a_matrix_runs_is_an_error(base_head, monkeypatch, capsys):
    base, head = base_head
    monkeypatch.setattr(changed_stacks, "MATRIX_LIMIT", 2)
    (head / "plan" / "mesh.py").write_text((head / "plan" / "mesh.py").read_text() + "\n")
    assert changed_stacks.main(["--base", str(base), "--head", str(head)]) == 2
    assert "more than the 2 jobs one GitHub matrix runs" in capsys.readouterr().err


def test_the_matrices_merge_to_the_single_stacks(base_head):
    """A platform's and its shards' matrices, merged, are what the same settings give as one stack."""
    _, head = base_head
    checkout = Checkout(head)
    merged = {"accessMatrix": {}, "egressMatrix": {}}
    for stack in ("prod", "prod-storefront", "prod-payments"):
        part = checkout.matrices(stack)
        for name in merged:
            assert not merged[name].keys() & part[name].keys(), f"{stack} repeats entries"
            merged[name].update(part[name])
    owners = checkout.matrices("prod-payments")["owners"]
    assert owners["payments"] == "prod-payments" and owners["web"] == "prod-storefront" and owners["data"] == "prod-payments" and owners["ingress"] == "prod"
    set_config(head, "prod", policyShards=False)
    single = Checkout(head).matrices("prod")
    assert merged == {name: single[name] for name in merged}
    assert any(key.startswith("payments/") for key in single["egressMatrix"])


def test_a_file_name_that_is_no_stack_name_is_refused(base_head, capsys):
    base, head = base_head
    (head / "stacks" / "Pulumi.x$(id).yaml").write_text("config:\n  mtls-mesh:platformStack: prod\n"
                                                       "  mtls-mesh:shard: payments\n")
    assert changed_stacks.main(["--base", str(base), "--head", str(head), "--skip", "dev"]) == 2
    assert "'x$(id)': not a stack name" in capsys.readouterr().err


# --- the one review comment ------------------------------------------------------------------------------------------

def run_pipeline(base: Path, head: Path, out: Path, outcomes=None, not_in_backend=()) -> list[dict]:
    """What the workflow does: choose, one review file per chosen stack, then the comment. A stack new in the pull
    request, or in `not_in_backend`, is one the preview job's check finds missing: no preview (outcome skipped)."""
    review = out / "review"
    review.mkdir(parents=True)
    chosen_stacks = json.loads(subprocess.run(
        [sys.executable, "-m", "deploy.changed_stacks", "--base", str(base), "--head", str(head), "--skip", "dev",
         "--reasons", str(review / "_selection.json")], capture_output=True, text=True, cwd=PROJECT_DIR,
        check=True).stdout)
    for entry in chosen_stacks:
        new = entry["new"] or entry["stack"] in not_in_backend
        outcome = "skipped" if new else (outcomes or {}).get(entry["stack"], "success")
        if outcome is None:
            continue  # the job never ran: no artifact
        review_matrices.main(["--stack", entry["stack"], "--head", str(head), "--base", str(base), "--outcome",
                              outcome, "--url", "https://example.invalid/run/1", "--new-stack", str(new).lower(),
                              "--out", str(review / entry["stack"] / "review.json")])
    return chosen_stacks


def test_the_comment_merges_the_previewed_stacks_matrices(base_head, tmp_path):
    base, head = base_head
    edit_graph(head, lambda g: service(g, "billing")["allow"].append("frontend"))
    run_pipeline(base, head, tmp_path, {"staging-payments": None, "prod-storefront": "failure"})
    comment_file = tmp_path / "comment.md"
    assert review_comment.main([str(tmp_path / "review"), "--out", str(comment_file)]) == 0
    comment = comment_file.read_text()
    assert comment.startswith(review_comment.MARKER + "\n")
    prod = comment.split("#### prod\n", 1)[1].split("#### staging\n", 1)[0]
    rows = [line for line in prod.splitlines() if line.startswith("| `prod-")]
    assert rows[0].startswith("| `prod-payments` | [previewed](https://example.invalid/run/1) |")
    assert rows[1].startswith("| `prod-storefront` | [**preview failed**]")
    changed = [line for line in prod.splitlines() if "| changed |" in line]
    assert len(changed) == 1 and "`payments/billing:grpc`" in changed[0] and "web/frontend" in changed[0]
    assert "| `payments` | `prod-payments` |" in prod and "| `web` | `prod-storefront` |" in prod
    assert "| `data` | `prod-payments` |" in prod and "| `ingress` | `prod` |" in prod
    merged = prod.split("Access matrix of the previewed stacks, merged", 1)[1].split("</details>", 1)[0]
    assert "`payments/ledger:http` | `prod-payments`" in merged and "`web/frontend:http` | `prod-storefront`" in merged
    staging = comment.split("#### staging\n", 1)[1]
    assert "| `staging-payments` | not run" in staging
    assert "Not previewed, their part of the plan is unchanged: `prod`, `staging`." in comment


def test_a_new_stack_shows_as_new_with_its_compiled_matrices(base_head, tmp_path):
    """A pull request that adds a shard: its stack is not in the backend, so its job runs no preview; the comment
    shows it as new (not as failed or skipped), each of its entries as added, and its matrices merged with the rest.
    A stack whose file is at the base but which the backend lacks is new too, compared with the base."""
    base, head = base_head
    shard(head, {**SHARDS, "data": "ledgers"})
    chosen_stacks = run_pipeline(base, head, tmp_path, not_in_backend=("prod-payments",))
    assert {e["stack"]: e["new"] for e in chosen_stacks if e["platform"] == "prod"} == \
        {"prod": False, "prod-ledgers": True, "prod-payments": False}
    review = json.loads((tmp_path / "review" / "prod-ledgers" / "review.json").read_text())
    assert review["preview"] == {"outcome": "skipped", "url": "https://example.invalid/run/1", "new": True}
    assert review["accessMatrix"] and review["base"] is None, "compiled at the head; the base has no such stack"
    comment = review_comment.render(*review_comment.read_dir(tmp_path / "review"))
    prod = comment.split("#### prod\n", 1)[1].split("#### staging\n", 1)[0]
    new = f"[{review_comment.NEW_STACK}](https://example.invalid/run/1)"
    row = next(line for line in prod.splitlines() if line.startswith("| `prod-ledgers` |"))
    access, egress = len(review["accessMatrix"]), len(review["egressMatrix"])
    assert row == f"| `prod-ledgers` | {new} | new in this pull request | data | {access} | {egress} |"
    assert "skipped" not in row and "failed" not in row
    assert ("`prod-ledgers` is new: it is not in the state backend yet, so it was not previewed; its first deploy "
            "creates it. Its matrices below are compiled from this pull request's stack files, every entry added.") \
        in prod
    added = [line for line in prod.splitlines() if line.startswith("| `prod-ledgers` | ") and "| added |" in line]
    assert len(added) == access + egress
    merged = prod.split("Access matrix of the previewed stacks, merged", 1)[1].split("</details>", 1)[0]
    assert all(f"{review_comment._cell(entry)} | `prod-ledgers`" in merged for entry in review["accessMatrix"])
    payments = next(line for line in prod.splitlines() if line.startswith("| `prod-payments` |"))
    assert payments.startswith(f"| `prod-payments` | {new} |")
    assert "`prod-payments` is new" in prod and "compared with the base's." in prod
    assert "| `prod` | [previewed]" in prod


def test_a_comment_longer_than_github_takes_is_cut_with_a_note(tmp_path):
    huge = {f"ns{i % 7}/service-{i}:http": {"allowed": [f"caller-{j}" for j in range(20)], "others": "denied"}
            for i in range(3000)}
    review = {"stack": "prod", "platform": "prod", "role": "single", "preview": {"outcome": "success", "url": ""},
              "accessMatrix": huge, "egressMatrix": {}, "owners": {}, "namespaces": ["ns0"], "problem": None,
              "base": {"accessMatrix": {}, "egressMatrix": {}}, "baseProblem": None}
    (tmp_path / "review").mkdir()
    (tmp_path / "review" / "prod.json").write_text(json.dumps(review))
    out, full = tmp_path / "comment.md", tmp_path / "full.md"
    review_comment.main([str(tmp_path / "review"), "--out", str(out), "--full", str(full), "--run-url", "https://r"])
    comment, whole = out.read_text(), full.read_text()
    assert len(whole) > review_comment.COMMENT_LIMIT >= len(comment)
    assert comment.count("<details>") == comment.count("</details>")
    assert "the whole comment is the artifact `review-comment` of this run (https://r)" in comment
    kept = int(re.search(r"\*\*Cut at ([\d,]+) of", comment).group(1).replace(",", ""))
    assert comment[:kept] == whole[:kept] and kept > review_comment.COMMENT_LIMIT - 1000, "cut at a line, near the limit"
    short = tmp_path / "short.md"
    review_comment.main([str(tmp_path / "review"), "--out", str(short), "--limit", "10000000", "--run-url", "https://r"])
    assert short.read_text() == whole


def test_nothing_chosen_says_so(tmp_path):
    (tmp_path / "review").mkdir()
    (tmp_path / "review" / "_selection.json").write_text(json.dumps(
        [{"stack": "prod", "platform": "prod", "role": "single", "selected": False, "reason": "unchanged"}]))
    text = review_comment.render(*review_comment.read_dir(tmp_path / "review"))
    assert "nothing was previewed" in text and "`prod`" in text


def test_a_file_a_setting_names_is_an_input(base_head):
    """The CA bundle that Vault's provider and the Vault Issuers trust: a new bundle previews every stack that reads
    it, and no shard (their objects do not carry it)."""
    base, head = base_head
    ca = head / "stacks" / "ca"
    (ca / "example-internal-ca.pem").write_text((ca / "kubernetes-prod-eu1.pem").read_text())
    choices = {c.stack: c for c in choose(base, head, ("dev",)) if c.selected}
    assert sorted(choices) == ["prod", "staging"], "the shards' objects do not change"
    assert "setting vault" in choices["staging"].reason and "setting vault" in choices["prod"].reason


def test_what_changed_names_added_and_removed_components():
    from plan.changes import changed_components
    assert changed_components({"a": "1", "b": "2"}, {"a": "1", "c": "3"}) == ["c", "b"]
    assert changed_components({"a": "1"}, {"a": "2"}) == ["a"] and changed_components({"a": "1"}, {"a": "1"}) == []


# --- changes of ownership (plan/ownership.py): named, with the steps the deploy takes -------------------------------

def test_a_namespace_moved_between_shards_is_named_as_a_transition(base_head):
    base, head = base_head
    edit_graph(head, lambda g: g["namespaces"]["data"].update(shard="storefront"))
    assert chosen(base, head) == ["prod", "prod-payments", "prod-storefront"]
    moves = changed_stacks.transitions(base, head, ("dev", "staging"))
    assert [m["transition"] for m in moves] == ["prod"]
    assert moves[0]["steps"] == ["namespace 'data': shard to shard, from stack 'prod-payments' to 'prod-storefront' "
                                 "(handover: `pulumi state move` of authz-data, certs-workload-data before the `up`s)"]
    assert moves[0]["command"] == "python -m deploy.transitions apply --stack prod"


def test_an_allow_list_change_is_no_transition(base_head):
    base, head = base_head
    edit_graph(head, lambda g: service(g, "billing")["allow"].append("frontend"))
    assert changed_stacks.transitions(base, head, ("dev", "staging")) == []


def test_a_removed_shard_is_retired_not_orphaned(base_head, tmp_path, capsys):
    """Its stack file deleted, its namespace back to the platform: the stack is listed (no head to preview) with
    what retires it, and the transition names the handover and the retirement."""
    base, head = base_head
    edit_graph(head, lambda g: g["namespaces"]["web"].pop("shard"))
    (head / "stacks" / "Pulumi.prod-storefront.yaml").unlink()
    choices = {c.stack: c for c in choose(base, head, ("dev", "staging"))}
    assert not choices["prod-storefront"].selected
    assert "stack file is removed" in choices["prod-storefront"].reason
    assert "python -m deploy.transitions apply --stack prod" in choices["prod-storefront"].reason
    steps = changed_stacks.transitions(base, head, ("dev", "staging"))[0]["steps"]
    assert steps[0].startswith("namespace 'web': shard to platform, from stack 'prod-storefront' to 'prod'")
    assert steps[1].startswith("stack 'prod-storefront' retired")
    reasons = tmp_path / "reasons.json"
    assert changed_stacks.main(["--base", str(base), "--head", str(head), "--skip", "dev", "--skip", "staging",
                                "--reasons", str(reasons)]) == 0
    assert "a change of ownership" in capsys.readouterr().err
    comment = review_comment.render([], json.loads(reasons.read_text()))
    assert "#### prod: a change of ownership" in comment and "stack 'prod-storefront' retired" in comment
    assert "`python -m deploy.transitions apply --stack prod`" in comment


def test_policy_shards_off_hands_every_shard_back(base_head):
    base, head = base_head
    set_config(head, "prod", policyShards=False)
    for name in ("payments", "storefront"):
        (head / "stacks" / f"Pulumi.prod-{name}.yaml").unlink()
    steps = changed_stacks.transitions(base, head, ("dev", "staging"))[0]["steps"]
    assert sum("shard to platform" in s for s in steps) == 3, steps
    assert sum("retired" in s for s in steps) == 2, steps
