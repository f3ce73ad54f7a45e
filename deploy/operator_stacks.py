"""Pulumi Kubernetes Operator v2 objects for the stacks it delivers (`deliveredBy: operator`), from the stack files.

    venv/bin/python deploy/operator_stacks.py --repo https://github.com/<org>/mtls-mesh.git \\
        --backend s3://<bucket>?region=eu-west-1 --cloud aws --identity arn:aws:iam::<account>:role/<role> \\
        [--git-auth ssh|github-app|token]

writes deploy/operator/<env>/<stack>.yaml for each such stack (and removes the file of a stack that no longer is one):
the deployer ServiceAccount with the cloud's workload identity, its bindings, and the `Stack` (pulumi.com/v1). A
platform stack with policyShards also gets deploy/operator/<env>/<platform>-<shard>.yaml for each of its shard stacks:
the shard's Stack, run after the platform's, and a workspace identity that may write only its own namespaces' policy
(deploy/operator_shards.py). `<env>` is the platform stack: one directory per environment, which that environment's
GitOps tool (Argo CD, Flux) syncs from the branch deploy/<env> (docs/delivery-security.md), never from main.

- Settings follow promotion: a Stack carries no stack settings. The Operator's workspace checks out the commit of its
  branch, and `pulumi up --stack <stack>` reads stacks/Pulumi.<stack>.yaml there (Pulumi.yaml's stackConfigDir): the
  settings of the promoted commit, nothing a manifest could change beside it. pulumi/pulumi#10305 (the Automation API
  ignoring stackConfigDir) concerns LocalWorkspace.StackSettings, which the Operator's agent never calls; its
  SetAllConfig runs `pulumi config set-all --stack` (sdk/go/auto/local_workspace.go SetAllConfigWithOptions), a CLI
  command that honours stackConfigDir (agent/pkg/server/server.go at v2.9.0, b713fae5a350). The one value a Stack
  sets is how this workspace reaches its cluster, `kubeContext: in-cluster` (and kubeconfig emptied where the stack
  file names one): the Operator in each cluster deploys that cluster. No secret is written here: the passphrase (or
  the Pulumi Cloud token), the Vault token and the git credential are `envRefs`/`gitAuth` refs to Kubernetes Secrets.
- Promotion: the Stack tracks `refs/heads/deploy/<stack>` (`GitSource.Branch`, polled every
  `resyncFrequencySeconds`), a branch only the deploy workflow moves, after the previous environment's update of the
  same commit succeeded (deploy/promote.py). `spec.prerequisites` cannot do this: it names other Stacks in the same
  namespace and asks only that they succeeded lately, not at which commit (pulumi-kubernetes-operator
  `operator/api/pulumi/shared/stack_types.go`, `PrerequisiteRef`), and each environment is another cluster.
- A private repository: `--git-auth` adds `gitAuth` (stack_types.go `GitAuthConfig`): a read-only deploy key (ssh),
  a GitHub App with contents: read (github-app: the Operator exchanges it for short-lived installation tokens), or a
  token, each from the Secret `mtls-mesh-git` in the Operator's namespace.
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
# The Secret a private repository's credential lives in, and per kind of credential its keys (stack_types.go
# GitAuthConfig: SSHAuth.sshPrivateKey, GitHubAppAuth appID/installationID/privateKey, accessToken).
GIT_SECRET = "mtls-mesh-git"
GIT_AUTH_KEYS = {"ssh": ("sshAuth", {"sshPrivateKey": "sshPrivateKey"}),
                 "github-app": ("githubApp", {"appID": "appID", "installationID": "installationID",
                                              "privateKey": "privateKey"}),
                 "token": ("accessToken", None)}
KUBE_CONTEXT = "mtls-mesh:kubeContext"
KUBECONFIG = "mtls-mesh:kubeconfig"


def stacks(project_dir: Path = PROJECT_DIR) -> list[str]:
    return sorted(p.name.split(".")[1] for p in (project_dir / "stacks").glob("Pulumi.*.yaml"))


def stack_settings(stack: str, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """The settings the stack file itself holds (no defaults), each decoded as the Pulumi CLI decodes it
    (read/stack_files.py). A Stack object inlines none of them (connection_config); a `secure:` value is the
    Operator workspace's CLI's to decrypt, with the stack's secrets provider."""
    return stack_file_entries(project_dir / "stacks" / f"Pulumi.{stack}.yaml")


def git_auth(kind: str | None) -> dict[str, Any] | None:
    """`gitAuth` for a private repository, from the Secret GIT_SECRET (None: a public repository)."""
    if kind is None:
        return None
    field, keys = GIT_AUTH_KEYS[kind]
    ref = lambda key: {"type": "Secret", "secret": {"name": GIT_SECRET, "key": key}}  # noqa: E731
    return {field: ref("accessToken") if keys is None else {name: ref(key) for name, key in keys.items()}}


def connection_config(settings: dict[str, Any]) -> dict[str, Any]:
    """The only values a Stack sets: how its workspace reaches the cluster it runs in. Every other setting is the
    stack file's at the promoted commit."""
    config = {KUBE_CONTEXT: "in-cluster"}
    if settings.get(KUBECONFIG):
        config[KUBECONFIG] = ""  # the program refuses a kubeconfig beside in-cluster
    return config


def environment_dir(out: Path, platform: str) -> Path:
    """Where an environment's manifests live: the directory its GitOps tool syncs from the branch deploy/<platform>."""
    return out / platform


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
        raise GeneratorError(f"--backend {backend}: not a backend docs/delivery.md offers (https:// Pulumi Cloud, s3://, "
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
                   project_dir: Path = PROJECT_DIR, org: str = DEFAULT_ORG,
                   git: str | None = None) -> dict[str, Any]:
    secret = stack_object_name(stack)
    settings = stack_settings(stack, project_dir)
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
        "config": connection_config(settings),
    }
    if git_auth(git) is not None:
        spec["gitAuth"] = git_auth(git)
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
           identity: str | None = None, project_dir: Path = PROJECT_DIR, org: str = DEFAULT_ORG,
           git: str | None = None) -> str:
    check_delivery(stack, project_dir)
    check_identity(backend, cloud, identity)
    keys = "accessToken" if urlparse(backend).scheme in ("http", "https") else "configPassphrase"
    header = (f"# Generated by deploy/operator_stacks.py from stacks/Pulumi.{stack}.yaml; do not edit by hand.\n"
              f"# Needs the Secret {NAMESPACE}/mtls-mesh-{stack} ({keys}, and vaultToken for a Vault stack)"
              f"{f' and {NAMESPACE}/{GIT_SECRET}' if git else ''}.\n"
              f"# Synced from the branch deploy/{stack} (path deploy/operator/{stack}/), which only the deploy\n"
              f"# workflow moves; the Stack runs that branch with the settings of stacks/Pulumi.{stack}.yaml there.\n")
    documents = [*service_account(cloud, identity), operator_stack(stack, repo, backend, cloud, project_dir, org, git)]
    return header + yaml.safe_dump_all(documents, sort_keys=False)


def shard_documents(shard: ShardStack, repo: str = DEFAULT_REPO, backend: str = DEFAULT_BACKEND,
                    cloud: str | None = None, identity: str | None = None,
                    org: str = DEFAULT_ORG, git: str | None = None) -> list[dict[str, Any]]:
    """A shard's workspace identity and its Stack (deploy/operator_shards.py). Its backend credential comes from a
    Secret of its own, so a team's stack can hold a token that cannot write the platform's state; no Vault token: a
    shard registers Kubernetes objects only."""
    annotations = {IDENTITY[cloud][0]: identity} if cloud else {}
    stack = shard_stack_object(shard, operator_namespace=NAMESPACE, qualified_stack=f"{org}/mtls-mesh/{shard.stack}",
                               backend=backend, repo=repo,
                               env_refs=backend_env_refs(stack_object_name(shard.stack), backend),
                               pod_labels=IDENTITY[cloud][1] if cloud else {}, git_auth=git_auth(git))
    return [*workspace_rbac(shard, NAMESPACE, annotations), stack]


def render_shard(shard: ShardStack, repo: str = DEFAULT_REPO, backend: str = DEFAULT_BACKEND,
                 cloud: str | None = None, identity: str | None = None, org: str = DEFAULT_ORG,
                 git: str | None = None) -> str:
    check_identity(backend, cloud, identity)
    keys = "accessToken" if urlparse(backend).scheme in ("http", "https") else "configPassphrase"
    header = (f"# Generated by deploy/operator_stacks.py from stacks/Pulumi.{shard.stack}.yaml,\n"
              f"# stacks/Pulumi.{shard.platform}.yaml and the service graph; do not edit by hand.\n"
              f"# Needs the Secret {NAMESPACE}/{stack_object_name(shard.stack)} ({keys}).\n"
              f"# Runs the commits of deploy/{shard.platform} after the Stack {stack_object_name(shard.platform)} "
              "succeeded;\n"
              f"# synced from that branch (path deploy/operator/{shard.platform}/).\n")
    return header + yaml.safe_dump_all(shard_documents(shard, repo, backend, cloud, identity, org, git),
                                       sort_keys=False)


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
          project_dir: Path = PROJECT_DIR, org: str = DEFAULT_ORG, git: str | None = None,
          held: Mapping[str, Mapping[str, tuple[str, ...]]] | None = None) -> list[Path]:
    """deploy/operator/<env>/<stack>.yaml for each operator stack and each of its shard stacks; other manifests there
    go (an environment no longer delivered by the Operator loses its directory's manifests). `held`: per platform,
    per shard stack, the namespaces it held at the commit it last applied (held_at, held_from_backend): its Role there
    lets it remove what it registered until it has applied a commit without them. Without it, a shard that leaves a
    namespace gets 403s deleting its objects there and stalls."""
    out.mkdir(parents=True, exist_ok=True)
    rendered: dict[Path, str] = {}
    for stack in operator_stacks(project_dir):
        directory = environment_dir(out, stack)
        rendered[directory / f"{stack}.yaml"] = render(stack, repo, backend, cloud, identity, project_dir, org, git)
        for shard in shard_stacks(stack, project_dir, (held or {}).get(stack)):
            rendered[directory / f"{shard.stack}.yaml"] = render_shard(shard, repo, backend, cloud, identity, org, git)
    for path, text in rendered.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for stale in [*out.glob("*.yaml"), *out.glob("*/*.yaml")]:
        if stale not in rendered:
            stale.unlink()
    for directory in out.iterdir():
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    return list(rendered)


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
    parser.add_argument("--git-auth", choices=sorted(GIT_AUTH_KEYS),
                        help=f"a private repository: the credential in the Secret {NAMESPACE}/{GIT_SECRET}")
    args = parser.parse_args(argv)
    held = (held_at(args.applied) if args.applied else
            held_from_backend(PROJECT_DIR, args.org, args.backend) if args.applied_from_backend else None)
    for path in write(OUT, args.repo, args.backend, args.cloud, args.identity, org=args.org, git=args.git_auth,
                      held=held):
        print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
