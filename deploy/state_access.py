"""Who may read and who may write one environment's Pulumi state, as the documents each backend takes: the deployer
(the environment `<env>`, deploy.yml) reads and writes, the preview (`preview-<env>`, pull-request.yml) only reads.
Each identity is trusted only for GitHub OIDC tokens of its own environment of this repository.

    python -m deploy.state_access --env prod --repo acme/mtls-mesh --backend s3://acme-mesh-prod-state \\
        [--org acme] [--aws-account 111122223333] [--gcp-pool projects/<number>/locations/global/workloadIdentityPools/github]

prints one JSON document: per identity, what to create in the backend's cloud (or in Pulumi Cloud).

- DIY backends (s3://, gs://, azblob://): one bucket or container per environment (its PULUMI_BACKEND_URL is the
  environment's variable), so the documents name that bucket only and no environment's role reaches another's state.
  What the CLI touches there (pulumi pkg/backend/diy, read at 1b5949891b3c): `.pulumi/meta.yaml`,
  `.pulumi/stacks/<project>/<stack>.json` (and `.bak`), `.pulumi/history/...`, `.pulumi/backups/...`, and, for an
  update only, a lock `.pulumi/locks/organization/<project>/<stack>/<id>.json`. A preview takes no lock and writes no
  history (backend.go `Preview`; `apply` persists only when not a dry run), so reading is all it needs.
- Pulumi Cloud: a team per identity (Enterprise and Business Critical editions; teams and team tokens exist in no
  other edition), with the stack permission `edit` (deployer) or `read` (preview: "Stack Read ... allows for running
  previews", docs/administration/concepts/rbac/permission-sets) on the environment's stacks only, and an OIDC
  authorization policy per team whose `sub` is the environment's subject, never `repo:<owner>/<repo>:*`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

PROJECT_DIR = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(PROJECT_DIR))

from deploy.operator_shards import GeneratorError, shard_stack_files  # noqa: E402

PROJECT = "mtls-mesh"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_ISSUER_HOST = "token.actions.githubusercontent.com"
# The preview reads; the deployer also writes. Per backend, the actions a read needs and those a write adds.
S3_READ = ["s3:GetObject"]
S3_LIST = ["s3:ListBucket"]
S3_WRITE = ["s3:PutObject", "s3:DeleteObject"]
GCS_READ = ["storage.objects.get", "storage.objects.list"]
GCS_WRITE = ["storage.objects.create", "storage.objects.delete"]
AZURE_ACTIONS = ["Microsoft.Storage/storageAccounts/blobServices/containers/read"]
AZURE_READ = ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"]
AZURE_WRITE = ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
               "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
               "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"]
# pulumiservice TeamStackPermissionScope: read(101), edit(102), admin(103).
PULUMI_CLOUD_PERMISSION = {"deployer": "edit", "preview": "read"}


def environment_stacks(env: str, project_dir: Path = PROJECT_DIR) -> list[str]:
    """The environment's platform stack and its shard stacks: a shard previews and deploys in its platform's
    environment (and reads its platform's state through a StackReference)."""
    if not (project_dir / "stacks" / f"Pulumi.{env}.yaml").exists():
        raise GeneratorError(f"--env {env}: no stacks/Pulumi.{env}.yaml")
    return [env, *sorted(shard_stack_files(env, project_dir))]


def github_subject(repo: str, environment: str) -> str:
    """The `sub` of a GitHub OIDC token of a job running in `environment` (GitHub: "Filtering for a specific
    environment"). Only a job of that environment gets it, and running in it is what its protection rules gate."""
    return f"repo:{repo}:environment:{environment}"


def identities(env: str) -> dict[str, str]:
    """identity -> the GitHub environment whose jobs it serves."""
    return {"deployer": env, "preview": f"preview-{env}"}


def aws(bucket: str, env: str, repo: str, account: str) -> dict[str, Any]:
    out = {}
    for identity, environment in identities(env).items():
        actions = S3_READ + (S3_WRITE if identity == "deployer" else [])
        out[identity] = {
            "roleName": f"{PROJECT}-{env}-{identity}",
            "trustPolicy": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
                "Principal": {"Federated": f"arn:aws:iam::{account}:oidc-provider/{GITHUB_ISSUER_HOST}"},
                "Condition": {"StringEquals": {f"{GITHUB_ISSUER_HOST}:aud": "sts.amazonaws.com",
                                               f"{GITHUB_ISSUER_HOST}:sub": github_subject(repo, environment)}}}]},
            "permissionsPolicy": {"Version": "2012-10-17", "Statement": [
                {"Sid": "ListTheStateBucket", "Effect": "Allow", "Action": S3_LIST,
                 "Resource": f"arn:aws:s3:::{bucket}",
                 "Condition": {"StringLike": {"s3:prefix": [".pulumi/*"]}}},
                {"Sid": "ReadWrite" if identity == "deployer" else "Read", "Effect": "Allow", "Action": actions,
                 "Resource": f"arn:aws:s3:::{bucket}/.pulumi/*"}]},
        }
    return out


def gcp(bucket: str, env: str, repo: str, pool: str) -> dict[str, Any]:
    out = {}
    for identity, environment in identities(env).items():
        permissions = GCS_READ + (GCS_WRITE if identity == "deployer" else [])
        role_id = f"mtlsMesh{env.capitalize()}{identity.capitalize()}State"
        out[identity] = {
            "serviceAccount": f"{PROJECT}-{env}-{identity}",
            "customRole": {"roleId": role_id, "title": f"mtls-mesh {env} state ({identity})",
                           "includedPermissions": permissions, "stage": "GA"},
            # On the bucket: the custom role, for the service account.
            "bucketBinding": {"bucket": bucket, "role": f"projects/<project>/roles/{role_id}",
                              "members": [f"serviceAccount:{PROJECT}-{env}-{identity}@<project>.iam.gserviceaccount.com"]},
            # On the service account: who may impersonate it (the pool maps google.subject = assertion.sub).
            "workloadIdentityUser": {"role": "roles/iam.workloadIdentityUser",
                                     "members": [f"principal://iam.googleapis.com/{pool}/subject/"
                                                 f"{github_subject(repo, environment)}"]},
        }
    return out


def azure(account: str, container: str, env: str, repo: str) -> dict[str, Any]:
    out = {}
    for identity, environment in identities(env).items():
        data_actions = AZURE_READ + (AZURE_WRITE if identity == "deployer" else [])
        out[identity] = {
            "roleDefinition": {"Name": f"mtls-mesh {env} state ({identity})", "IsCustom": True,
                               "Actions": list(AZURE_ACTIONS), "NotActions": [], "DataActions": data_actions,
                               "NotDataActions": [],
                               "AssignableScopes": [f"/subscriptions/<subscription>/resourceGroups/<group>/providers/"
                                                    f"Microsoft.Storage/storageAccounts/{account}/blobServices/default/"
                                                    f"containers/{container}"]},
            "federatedCredential": {"name": f"github-{environment}", "issuer": GITHUB_ISSUER,
                                    "subject": github_subject(repo, environment),
                                    "audiences": ["api://AzureADTokenExchange"]},
        }
    return out


def pulumi_cloud(org: str, env: str, repo: str, stacks: list[str]) -> dict[str, Any]:
    out = {}
    for identity, environment in identities(env).items():
        team = f"{PROJECT}-{env}" + ("-preview" if identity == "preview" else "")
        out[identity] = {
            "team": team,
            "stackPermissions": [{"project": PROJECT, "stack": stack, "permission": PULUMI_CLOUD_PERMISSION[identity]}
                                 for stack in stacks],
            # One policy of the GitHub issuer's authorization policies (pulumiservice OidcIssuer `policies`; a team
            # policy names the team and no authorizedPermissions: pulumi-pulumiservice examples/ts-oidc-issuer).
            "oidcPolicy": {"decision": "allow", "tokenType": "team", "teamName": team,
                           "rules": {"aud": f"urn:pulumi:org:{org}", "sub": github_subject(repo, environment)}},
        }
    return out


def documents(backend: str, env: str, repo: str, *, org: str = "", aws_account: str = "<account>",
              gcp_pool: str = "projects/<number>/locations/global/workloadIdentityPools/<pool>",
              project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    if repo.count("/") != 1 or "*" in repo:
        raise GeneratorError(f"--repo {repo}: give <owner>/<repo>, no wildcard")
    stacks = environment_stacks(env, project_dir)
    url = urlparse(backend)
    if url.scheme in ("", "http", "https"):
        if not org:
            raise GeneratorError("Pulumi Cloud: pass --org, the organization whose teams these are")
        return {"backend": "pulumi-cloud", "stacks": stacks, **pulumi_cloud(org, env, repo, stacks)}
    if url.scheme == "s3":
        return {"backend": "s3", "stacks": stacks, **aws(url.netloc, env, repo, aws_account)}
    if url.scheme == "gs":
        return {"backend": "gs", "stacks": stacks, **gcp(url.netloc, env, repo, gcp_pool)}
    if url.scheme == "azblob":
        query = dict(part.split("=", 1) for part in url.query.split("&") if "=" in part)
        account = query.get("storage_account")
        if not account:
            raise GeneratorError(f"--backend {backend}: name the account, azblob://<container>?storage_account=<name>")
        return {"backend": "azblob", "stacks": stacks, **azure(account, url.netloc, env, repo)}
    raise GeneratorError(f"--backend {backend}: not Pulumi Cloud (https://), s3://, gs:// or azblob://")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="the environment (its platform stack): staging, prod")
    parser.add_argument("--repo", required=True, help="<owner>/<repo> whose workflows get the credentials")
    parser.add_argument("--backend", required=True, help="the environment's PULUMI_BACKEND_URL")
    parser.add_argument("--org", default="", help="Pulumi Cloud organization")
    parser.add_argument("--aws-account", default="<account>")
    parser.add_argument("--gcp-pool", default="projects/<number>/locations/global/workloadIdentityPools/<pool>")
    args = parser.parse_args(argv)
    print(json.dumps(documents(args.backend, args.env, args.repo, org=args.org, aws_account=args.aws_account,
                               gcp_pool=args.gcp_pool), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
