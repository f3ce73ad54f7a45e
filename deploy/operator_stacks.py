"""Pulumi Kubernetes Operator v2 objects for the stacks it delivers (`deliveredBy: operator`), from the stack files.

    venv/bin/python deploy/operator_stacks.py --repo https://github.com/<org>/mtls-mesh.git \\
        --backend s3://<bucket>?region=eu-west-1 --cloud aws --identity arn:aws:iam::<account>:role/<role>

writes deploy/operator/<stack>.yaml for each such stack (and removes the file of a stack that no longer is one):
the deployer ServiceAccount with the cloud's workload identity, its bindings, and the `Stack` (pulumi.com/v1). A
platform stack with policyShards also gets deploy/operator/<platform>-<shard>.yaml for each of its shard stacks: the
shard's Stack, run after the platform's, and a workspace identity that may write only its own namespaces' policy
(deploy/operator_shards.py).

- The Operator runs the program through the Automation API, which ignores `stackConfigDir` (pulumi/pulumi#10305), so
  each Stack carries its settings inline (the stack file's values; a test keeps them equal) with `kubeContext:
  in-cluster`: the Operator in each cluster deploys that cluster. No secret is written here: the passphrase (or the
  Pulumi Cloud token) and the Vault token are `envRefs` to a Kubernetes Secret.
- Promotion: the Stack tracks `refs/heads/deploy/<stack>` (`GitSource.Branch`, polled every
  `resyncFrequencySeconds`), a branch only the deploy workflow moves, after the previous environment's update of the
  same commit succeeded (deploy/promote.py). `spec.prerequisites` cannot do this: it names other Stacks in the same
  namespace and asks only that they succeeded lately, not at which commit (pulumi-kubernetes-operator
  `operator/api/pulumi/shared/stack_types.go`, `PrerequisiteRef`), and each environment is another cluster.
- Credentials: a DIY backend is reached with the cluster's workload identity (EKS IRSA, GKE Workload Identity, AKS
  workload identity) bound to the workspace pod's ServiceAccount (`StackSpec.ServiceAccountName`, copied to the
  Workspace and its pod: stack_controller.go `setupWorkspace`, workspace_controller.go); the pod label AKS needs goes
  through `workspaceTemplate.spec.podTemplate`, merged into the pod by strategic merge patch
  (workspace_controller.go `mergePodTemplateSpec`). Pulumi Cloud takes an access token (the Operator has no OIDC
  exchange for it: pulumi/pulumi-kubernetes-operator#697).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

import yaml

PROJECT_DIR = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script (venv/bin/python deploy/operator_stacks.py): the project's packages
    sys.path.insert(0, str(PROJECT_DIR))

from deploy.operator_shards import (GeneratorError, ShardStack, held_namespaces,  # noqa: E402
                                    last_applied_commit, shard_stack_files, shard_stack_object, shard_stacks,
                                    stack_object_name, workspace_rbac)
from read.stack_files import stack_file_entries  # noqa: E402

OUT = PROJECT_DIR / "deploy" / "operator"
NAMESPACE = "pulumi-operator"
DEFAULT_REPO = "https://github.com/example-org/mtls-mesh.git"
DEFAULT_BACKEND = "https://api.pulumi.com"
# A DIY backend's stacks belong to the organization "organization"; on Pulumi Cloud pass the real one (--org).
DEFAULT_ORG = "organization"
SERVICE_ACCOUNT = "mtls-mesh-deployer"
DELIVERED_BY = "mtls-mesh:deliveredBy"
# Workload identity per cloud: the ServiceAccount annotation its webhook or metadata server reads, and pod labels.
# EKS: https://docs.aws.amazon.com/eks/latest/userguide/associate-service-account-role.html (eks.amazonaws.com/role-arn)
# GKE: https://cloud.google.com/kubernetes-engine/docs/how-to/workload-identity (iam.gke.io/gcp-service-account)
# AKS: https://learn.microsoft.com/azure/aks/workload-identity-overview (azure.workload.identity/client-id on the
#      account, azure.workload.identity/use: "true" on the pod)
IDENTITY = {
    "aws": ("eks.amazonaws.com/role-arn", {}),
    "gcp": ("iam.gke.io/gcp-service-account", {}),
    "azure": ("azure.workload.identity/client-id", {"azure.workload.identity/use": "true"}),
}
# The DIY backends and the cloud whose identity reads them.
BACKEND_CLOUD = {"s3": "aws", "gs": "gcp", "azblob": "azure"}


def stacks(project_dir: Path = PROJECT_DIR) -> list[str]:
    return sorted(p.name.split(".")[1] for p in (project_dir / "stacks").glob("Pulumi.*.yaml"))


def stack_settings(stack: str, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """The settings the stack file itself holds (no defaults: the Operator's CLI fills them in), each decoded as the
    Pulumi CLI decodes it (read/stack_files.py), so the Stack object carries what the file means to the CLI."""
    config = stack_file_entries(project_dir / "stacks" / f"Pulumi.{stack}.yaml")
    secure = [k for k, v in config.items() if isinstance(v, dict) and set(v) == {"secure"}]
    if secure:
        raise GeneratorError(f"{stack}: {secure} are encrypted in the stack file; give them to the operator as envRefs")
    return config


def operator_stacks(project_dir: Path = PROJECT_DIR) -> list[str]:
    return [s for s in stacks(project_dir) if stack_settings(s, project_dir).get(DELIVERED_BY) == "operator"]


def check_delivery(stack: str, project_dir: Path = PROJECT_DIR) -> None:
    value = stack_settings(stack, project_dir).get(DELIVERED_BY, "workflows")
    if value != "operator":
        raise GeneratorError(
            f"{stack}: {DELIVERED_BY} is {value!r} in stacks/Pulumi.{stack}.yaml, so the workflows deliver it; an "
            "Operator Stack would update it too (a stack is driven by one of them, never both). To hand it to the "
            f"Operator, set {DELIVERED_BY}: operator there first (deploy.yml then promotes it instead of running up).")


def check_identity(backend: str, cloud: str | None, identity: str | None) -> None:
    scheme = urlparse(backend).scheme
    if scheme in ("http", "https"):
        if cloud or identity:
            raise GeneratorError(f"--cloud/--identity are for a DIY backend; {backend} is Pulumi Cloud, which takes "
                                 "an access token (Secret key accessToken)")
        return
    if scheme not in BACKEND_CLOUD:
        raise GeneratorError(f"--backend {backend}: not a backend the README offers (https:// Pulumi Cloud, s3://, "
                             "gs://, azblob://)")
    if cloud != BACKEND_CLOUD[scheme] or not identity:
        raise GeneratorError(f"--backend {backend} is read with {BACKEND_CLOUD[scheme]}'s workload identity: pass "
                             f"--cloud {BACKEND_CLOUD[scheme]} --identity <the role, service account or client id>")


def service_account(cloud: str | None, identity: str | None) -> list[dict[str, Any]]:
    annotations = {IDENTITY[cloud][0]: identity} if cloud else {}
    account = {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE, **({"annotations": annotations} if annotations else {})}}
    # system:auth-delegator lets the workspace check the Operator's calls (pulumi-kubernetes-operator docs/migration.md,
    # "Service Account"); cluster-admin because the program installs CRDs, webhooks and cluster roles.
    bindings = [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                 "metadata": {"name": f"{SERVICE_ACCOUNT}:{role}"},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                 "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}]}
                for role in ("system:auth-delegator", "cluster-admin")]
    return [account, *bindings]


def backend_env_refs(secret: str, backend: str) -> dict[str, Any]:
    """The backend's credential, from the Secret `secret` in the Stack's namespace (the Operator refuses another)."""
    if urlparse(backend).scheme in ("http", "https"):
        return {"PULUMI_ACCESS_TOKEN": {"type": "Secret", "secret": {"name": secret, "key": "accessToken"}}}
    return {"PULUMI_CONFIG_PASSPHRASE": {"type": "Secret", "secret": {"name": secret, "key": "configPassphrase"}}}


def operator_stack(stack: str, repo: str, backend: str = DEFAULT_BACKEND, cloud: str | None = None,
                   project_dir: Path = PROJECT_DIR, org: str = DEFAULT_ORG) -> dict[str, Any]:
    secret = stack_object_name(stack)
    settings = stack_settings(stack, project_dir)
    config = {**settings, "mtls-mesh:kubeContext": "in-cluster"}
    config.pop("mtls-mesh:kubeconfig", None)
    env_refs = backend_env_refs(secret, backend)
    if settings.get("mtls-mesh:pkiMode", "vault") == "vault":
        env_refs["VAULT_TOKEN"] = {"type": "Secret", "secret": {"name": secret, "key": "vaultToken"}}
    spec: dict[str, Any] = {
        "serviceAccountName": SERVICE_ACCOUNT,
        "stack": f"{org}/mtls-mesh/{stack}",
        "backend": backend,
        "projectRepo": repo,
        "branch": f"refs/heads/deploy/{stack}",
        "refresh": True,
        "resyncFrequencySeconds": 120,
        "destroyOnFinalize": False,
        "retryOnUpdateConflict": False,
        "envRefs": env_refs,
        "config": config,
    }
    labels = IDENTITY[cloud][1] if cloud else {}
    if labels:
        spec["workspaceTemplate"] = {"spec": {"podTemplate": {"metadata": {"labels": labels}}}}
    return {
        "apiVersion": "pulumi.com/v1",
        "kind": "Stack",
        "metadata": {"name": f"mtls-mesh-{stack}", "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/part-of": "mtls-mesh", "mtls-mesh.io/environment": stack}},
        "spec": spec,
    }


def render(stack: str, repo: str = DEFAULT_REPO, backend: str = DEFAULT_BACKEND, cloud: str | None = None,
           identity: str | None = None, project_dir: Path = PROJECT_DIR, org: str = DEFAULT_ORG) -> str:
    check_delivery(stack, project_dir)
    check_identity(backend, cloud, identity)
    keys = "accessToken" if urlparse(backend).scheme in ("http", "https") else "configPassphrase"
    header = (f"# Generated by deploy/operator_stacks.py from stacks/Pulumi.{stack}.yaml; do not edit by hand.\n"
              f"# Needs the Secret {NAMESPACE}/mtls-mesh-{stack} ({keys}, and vaultToken for a Vault stack), and\n"
              f"# the branch deploy/{stack}, which only the deploy workflow moves.\n")
    documents = [*service_account(cloud, identity), operator_stack(stack, repo, backend, cloud, project_dir, org)]
    return header + yaml.safe_dump_all(documents, sort_keys=False)


def shard_documents(shard: ShardStack, repo: str = DEFAULT_REPO, backend: str = DEFAULT_BACKEND,
                    cloud: str | None = None, identity: str | None = None,
                    org: str = DEFAULT_ORG) -> list[dict[str, Any]]:
    """A shard's workspace identity and its Stack (deploy/operator_shards.py). Its backend credential comes from a
    Secret of its own, so a team's stack can hold a token that cannot write the platform's state; no Vault token: a
    shard registers Kubernetes objects only."""
    annotations = {IDENTITY[cloud][0]: identity} if cloud else {}
    stack = shard_stack_object(shard, operator_namespace=NAMESPACE, qualified_stack=f"{org}/mtls-mesh/{shard.stack}",
                               backend=backend, repo=repo,
                               env_refs=backend_env_refs(stack_object_name(shard.stack), backend),
                               pod_labels=IDENTITY[cloud][1] if cloud else {})
    return [*workspace_rbac(shard, NAMESPACE, annotations), stack]


def render_shard(shard: ShardStack, repo: str = DEFAULT_REPO, backend: str = DEFAULT_BACKEND,
                 cloud: str | None = None, identity: str | None = None, org: str = DEFAULT_ORG) -> str:
    check_identity(backend, cloud, identity)
    keys = "accessToken" if urlparse(backend).scheme in ("http", "https") else "configPassphrase"
    header = (f"# Generated by deploy/operator_stacks.py from stacks/Pulumi.{shard.stack}.yaml,\n"
              f"# stacks/Pulumi.{shard.platform}.yaml and the service graph; do not edit by hand.\n"
              f"# Needs the Secret {NAMESPACE}/{stack_object_name(shard.stack)} ({keys}).\n"
              f"# Runs the commits of deploy/{shard.platform} after the Stack {stack_object_name(shard.platform)} "
              "succeeded.\n")
    return header + yaml.safe_dump_all(shard_documents(shard, repo, backend, cloud, identity, org), sort_keys=False)


def held_at(ref: str, head_project: Path = PROJECT_DIR,
            repository: Path | None = None) -> dict[str, dict[str, tuple[str, ...]]]:
    """Per operator platform (of the head), per shard stack, the namespaces it held at commit `ref` of the repository
    (`git archive`: the tree as it was, read with this commit's code)."""
    import subprocess
    import tarfile
    import tempfile

    repository = repository or head_project
    archived = subprocess.run(["git", "-C", str(repository), "archive", "--format=tar", ref], capture_output=True)
    if archived.returncode != 0:
        raise GeneratorError(f"--applied {ref}: git archive failed ({archived.stderr.decode().strip()}); fetch the "
                             "history that holds it (actions/checkout fetch-depth: 0)")
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=__import__("io").BytesIO(archived.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        return {platform: held_namespaces(platform, Path(tmp)) for platform in operator_stacks(head_project)}


def held_from_backend(head_project: Path, org: str, backend: str) -> dict[str, dict[str, tuple[str, ...]]]:
    """Per shard stack, what it held at the commit of its own newest successful update (`pulumi stack history`): a
    shard whose update failed keeps the rights of the commit it last applied, whatever was promoted since."""
    from deploy import promote

    held: dict[str, dict[str, tuple[str, ...]]] = {}
    for platform in operator_stacks(head_project):
        for stack in shard_stack_files(platform, head_project):
            commit = last_applied_commit(promote.stack_history(promote.qualified(stack, org, backend)))
            if commit:
                held.setdefault(platform, {})[stack] = held_at(commit, head_project).get(platform, {}).get(stack, ())
    return held


def write(out: Path, repo: str, backend: str, cloud: str | None, identity: str | None,
          project_dir: Path = PROJECT_DIR, org: str = DEFAULT_ORG,
          held: Mapping[str, Mapping[str, tuple[str, ...]]] | None = None) -> list[Path]:
    """deploy/operator/<stack>.yaml for each operator stack and each of its shard stacks; other files there go.
    `held`: per platform, per shard stack, the namespaces it held at the commit it last applied (held_at,
    held_from_backend): its Role there lets it remove what it registered until it has applied a commit without them.
    Without it, a shard that leaves a namespace gets 403s deleting its objects there and stalls."""
    out.mkdir(parents=True, exist_ok=True)
    rendered = {}
    for stack in operator_stacks(project_dir):
        rendered[stack] = render(stack, repo, backend, cloud, identity, project_dir, org)
        for shard in shard_stacks(stack, project_dir, (held or {}).get(stack)):
            rendered[shard.stack] = render_shard(shard, repo, backend, cloud, identity, org)
    wanted = list(rendered)
    written = []
    for stack, text in rendered.items():
        path = out / f"{stack}.yaml"
        path.write_text(text)
        written.append(path)
    for stale in out.glob("*.yaml"):
        if stale.stem not in wanted:
            stale.unlink()
    return written


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=DEFAULT_REPO, help="git URL the operator clones")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, help="state backend URL (Pulumi Cloud, s3://, gs://, azblob://)")
    parser.add_argument("--org", default=DEFAULT_ORG, help="Pulumi Cloud organization of the stacks")
    parser.add_argument("--cloud", choices=sorted(IDENTITY), help="cloud whose workload identity reads a DIY backend")
    parser.add_argument("--identity", help="IAM role ARN (aws), service account e-mail (gcp) or client id (azure)")
    applied = parser.add_mutually_exclusive_group()
    applied.add_argument("--applied", metavar="REF", help="the commit the shards last applied (e.g. the deploy "
                         "branch before this promotion): each keeps removal rights in the namespaces it held there")
    applied.add_argument("--applied-from-backend", action="store_true",
                         help="read each shard stack's last successful commit from `pulumi stack history`")
    args = parser.parse_args(argv)
    held = (held_at(args.applied) if args.applied else
            held_from_backend(PROJECT_DIR, args.org, args.backend) if args.applied_from_backend else None)
    for path in write(OUT, args.repo, args.backend, args.cloud, args.identity, org=args.org, held=held):
        print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
