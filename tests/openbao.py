"""A real Vault API (OpenBao's dev server) for the program's Vault declarations, and the callers around it.

- `OpenBaoServer`: `bao server -dev` on 127.0.0.1, a urllib client, stopped at exit.
- `OpenBaoMocks`: Pulumi mocks that *apply* every `vault:*` resource the program registers with the requests the
  Terraform Vault provider (which pulumi-vault wraps) sends for a create, and hand the program the real outputs.
- `TokenReviewServer`: the one stand-in, the Kubernetes API server's TokenReview endpoint over HTTPS, with a table
  of service-account tokens it issued.
- `cert_manager_login` / `cert_manager_sign`: the two requests cert-manager v1.21.1 makes to a Vault issuer.

Upstream sources followed, named where used: hashicorp/terraform-provider-vault at 31447510c5c6 (vault/resource_*.go),
cert-manager/cert-manager v1.21.1 = 24e33194fb39 (internal/vault/vault.go), hashicorp/vault-plugin-auth-kubernetes at
4b6181768f9a (path_login.go, token_review.go, path_config.go).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from harness import RecordingMocks, plain


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class IgnoredParameters(AssertionError):
    """OpenBao answered that it ignored parameters of a request: the request is not what the provider or cert-manager
    sends (a misspelt field), and the test would check a server that never saw it."""


# OpenBao's warning for request fields an endpoint's schema does not have (openbao sdk/framework/backend.go
# HandleRequest at df6ce2cebaa8: "Endpoint ignored these unrecognized parameters: %v"; added only when the endpoint
# answers with a body, so a write that returns 204 cannot say so).
IGNORED_PARAMETERS_WARNING = "ignored these unrecognized parameters"


class VaultError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: Any):
        self.status, self.body = status, body
        errors = body.get("errors") if isinstance(body, dict) else body
        super().__init__(f"{method} /v1/{path} -> {status}: {errors}")


# Where Vault in a pod finds its own account (vault-plugin-auth-kubernetes path_config.go localCACertPath/localJWTPath).
POD_SERVICE_ACCOUNT_DIR = "/run/secrets/kubernetes.io/serviceaccount"


class OpenBaoServer:
    """`bao server -dev` bound to 127.0.0.1 on a free port, without TLS (the dev listener has none)."""

    def __init__(self, bao: str, *, pod_service_account: tuple[str, str] | None = None):
        """`pod_service_account=(ca_pem, token)` runs the server as if in a pod: in a private mount namespace
        (`unshare -m`, needs root) where /run/secrets/kubernetes.io/serviceaccount/{ca.crt,token} hold these."""
        self.bao, self.pod_service_account = bao, pod_service_account
        self.port = free_port()
        self.address = f"http://127.0.0.1:{self.port}"
        self.root_token = "root-" + secrets.token_hex(12)
        self.process: subprocess.Popen | None = None
        self.workdir: Path | None = None

    def __enter__(self) -> "OpenBaoServer":
        self.workdir = Path(tempfile.mkdtemp(prefix="mtls-mesh-openbao-"))
        self.log = open(self.workdir / "server.log", "wb")
        env = {**os.environ, "HOME": str(self.workdir)}
        env.pop("VAULT_ADDR", None), env.pop("BAO_ADDR", None)
        command = [self.bao, "server", "-dev", f"-dev-listen-address=127.0.0.1:{self.port}",
                   f"-dev-root-token-id={self.root_token}"]
        if self.pod_service_account is not None:
            ca_pem, token = self.pod_service_account
            (self.workdir / "ca.crt").write_text(ca_pem)
            (self.workdir / "token").write_text(token)
            # A tmpfs over /run only in the server's own mount namespace: the host's /run is untouched. unshare and
            # sh exec, so the process we kill is the server itself.
            script = ('mount -t tmpfs tmpfs /run && mkdir -p "$D" && cp "$W/ca.crt" "$W/token" "$D/" && exec "$@"')
            env.update(W=str(self.workdir), D=POD_SERVICE_ACCOUNT_DIR)
            command = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *command]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self, limit: float = 30.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bao server exited ({self.process.returncode}):\n{self.server_log()}")
            try:
                status, body = self.request("GET", "sys/health", token=None)
                if status == 200 and body.get("initialized") and not body.get("sealed"):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"bao server not ready after {limit}s:\n{self.server_log()}")

    def server_log(self) -> str:
        return (self.workdir / "server.log").read_text(errors="replace")[-4000:] if self.workdir else ""

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        if getattr(self, "log", None):
            self.log.close()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = "root",
                namespace: str | None = None) -> tuple[int, Any]:
        """One API call; `token="root"` means the dev root token. Returns (status, parsed JSON or None)."""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["X-Vault-Token"] = self.root_token if token == "root" else token
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.address}/v1/{path.lstrip('/')}", data=data, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        answer = json.loads(raw) if raw.strip() else None
        warnings = (answer.get("warnings") if isinstance(answer, dict) else None) or []
        ignored = [w for w in warnings if IGNORED_PARAMETERS_WARNING in str(w).lower()]
        if ignored:
            raise IgnoredParameters(f"{method} /v1/{path.lstrip('/')} -> {status}: {ignored}")
        return status, answer

    def write(self, path: str, body: Any = None, *, method: str = "POST", token: str | None = "root",
              namespace: str | None = None) -> Any:
        """A call that must succeed; otherwise VaultError with the server's own error text."""
        status, result = self.request(method, path, body, token=token, namespace=namespace)
        if status >= 400:
            raise VaultError(method, path, status, result)
        return result


# --- Applying the program's vault:* resources --------------------------------------------------------------------

def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# Pulumi names that are not the provider schema's: the Terraform bridge gives a list field a plural name (pulumi-vault
# SecretBackendRole `key_usages`, whose docstring is the provider's `key_usage`), and the provider sends its own
# schema name (terraform-provider-vault 31447510c5c6 vault/resource_pki_secret_backend_role.go ...Create:
# data[consts.FieldKeyUsage], internal/consts/consts.go FieldKeyUsage = "key_usage"; FieldExtKeyUsage likewise).
PROVIDER_NAMES = {"key_usages": "key_usage", "ext_key_usages": "ext_key_usage"}


def api_fields(inputs: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """Pulumi wire names (camelCase) to the provider schema's field names, which are the API's (snake_case)."""
    fields = {snake(k): v for k, v in plain(inputs).items() if not k.startswith("__")}
    return {PROVIDER_NAMES.get(k, k): v for k, v in fields.items() if k not in drop}


def joined(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The provider sends these list fields as one comma-separated string, and only when non-empty."""
    for key in keys:
        if key in data:
            values = data.pop(key)
            if values:
                data[key] = ",".join(values)
    return data


@dataclass
class SentRequest:
    path: str
    body: dict[str, Any]


# Each mapping: wire inputs -> (API path, request body); a function of the response -> extra outputs (wire names).
# Comments name the provider file whose Create function the mapping follows (hashicorp/terraform-provider-vault).

def _mount(i: dict) -> tuple[str, dict]:
    # vault/resource_mount.go createMount: MountInput via client.Sys().Mount -> POST sys/mounts/<path>.
    return f"sys/mounts/{i['path']}", {
        "type": i["type"], "description": i.get("description", ""),
        "config": {"default_lease_ttl": f"{i.get('default_lease_ttl_seconds', 0)}s",
                   "max_lease_ttl": f"{i.get('max_lease_ttl_seconds', 0)}s",
                   "force_no_cache": bool(i.get("force_no_cache", False))},
        "local": bool(i.get("local", False)), "options": i.get("options") or {},
        "seal_wrap": bool(i.get("seal_wrap", False)),
        "external_entropy_access": bool(i.get("external_entropy_access", False))}


def _auth_backend(i: dict) -> tuple[str, dict]:
    # vault/resource_auth_backend.go authBackendWrite: EnableAuthWithOptions -> POST sys/auth/<path (or type)>.
    return f"sys/auth/{i.get('path') or i['type']}", {
        "type": i["type"], "description": i.get("description", ""), "local": bool(i.get("local", False)),
        "config": {}}


def _policy(i: dict) -> tuple[str, dict]:
    # vault/resource_policy.go policyWrite: client.Sys().PutPolicy -> PUT sys/policies/acl/<name>.
    return f"sys/policies/acl/{i['name']}", {"policy": i["policy"]}


_SANS = ("alt_names", "ip_sans", "uri_sans", "other_sans", "permitted_dns_domains")


def _root_cert(i: dict) -> tuple[str, dict]:
    # vault/resource_pki_secret_backend_root_cert.go pkiSecretBackendRootCertCreate (multi-issuer API, Vault >= 1.11):
    # <backend>/issuers/generate/root/<type>; configured fields, exclude_cn_from_sans always, SAN lists comma-joined.
    data = joined(api_fields(i, drop=("backend", "type")), *_SANS)
    data.setdefault("exclude_cn_from_sans", False)
    return f"{i['backend'].strip('/')}/issuers/generate/root/{i['type']}", data


def _intermediate_request(i: dict) -> tuple[str, dict]:
    # vault/resource_pki_secret_backend_intermediate_cert_request.go ...Create: <backend>/issuers/generate/
    # intermediate/<type>; booleans exclude_cn_from_sans and add_basic_constraints always sent.
    data = joined(api_fields(i, drop=("backend", "type")), *_SANS, "key_usage")
    data.setdefault("exclude_cn_from_sans", False)
    data.setdefault("add_basic_constraints", False)
    return f"{i['backend'].strip('/')}/issuers/generate/intermediate/{i['type']}", data


def _root_sign_intermediate(i: dict) -> tuple[str, dict]:
    # vault/resource_pki_secret_backend_root_sign_intermediate.go ...Create and ...CreatePath: <backend>/root/
    # sign-intermediate (issuer/<ref>/sign-intermediate with issuer_ref); exclude_cn_from_sans, use_csr_values,
    # use_pss always sent.
    data = joined(api_fields(i, drop=("backend", "issuer_ref")), *_SANS)
    for flag in ("exclude_cn_from_sans", "use_csr_values", "use_pss"):
        data.setdefault(flag, False)
    ref = i.get("issuer_ref")
    path = f"issuer/{ref}/sign-intermediate" if ref else "root/sign-intermediate"
    return f"{i['backend'].strip('/')}/{path}", data


def _set_signed(i: dict) -> tuple[str, dict]:
    # vault/resource_pki_secret_backend_intermediate_set_signed.go ...Create: only the certificate.
    return f"{i['backend'].strip('/')}/intermediate/set-signed", {"certificate": i["certificate"]}


def _config_issuers(i: dict) -> tuple[str, dict]:
    # vault/resource_pki_secret_backend_config_issuers.go ...CreateUpdate: both fields always, with d.Get (so "" and
    # false when unset).
    return f"{i['backend'].strip('/')}/config/issuers", {
        "default": i.get("default") or "", "default_follows_latest_issuer": bool(i.get("default_follows_latest_issuer", False))}


def _config_urls(i: dict) -> tuple[str, dict]:
    # vault/resource_pki_secret_backend_config_urls.go: the three lists always, enable_templating (Vault >= 1.13).
    return f"{i['backend'].strip('/')}/config/urls", {
        "issuing_certificates": i.get("issuing_certificates") or [],
        "crl_distribution_points": i.get("crl_distribution_points") or [],
        "ocsp_servers": i.get("ocsp_servers") or [], "enable_templating": bool(i.get("enable_templating", False))}


def _crl_config(i: dict) -> tuple[str, dict]:
    # vault/resource_pki_secret_backend_crl_config.go: the configured CRL fields (GetAPIRequestDataWithSliceOkExists).
    return f"{i['backend'].strip('/')}/config/crl", api_fields(i, drop=("backend",))


# vault/resource_pki_secret_backend_role.go pkiSecretBooleanFields, each sent with d.Get (so the schema default when
# the program leaves it out); allowed_uri_sans_template is Computed with no default, so false in a new resource.
PKI_ROLE_BOOLEAN_DEFAULTS = {
    "allow_any_name": False, "allow_bare_domains": False, "allow_glob_domains": False, "allow_ip_sans": True,
    "allow_localhost": True, "allow_subdomains": False, "allow_wildcard_certificates": True,
    "allowed_uri_sans_template": False, "basic_constraints_valid_for_non_ca": False, "client_flag": True,
    "code_signing_flag": False, "email_protection_flag": False, "enforce_hostnames": True, "generate_lease": False,
    "no_store": False, "require_cn": True, "server_flag": True, "use_csr_common_name": True, "use_csr_sans": True,
}


def _pki_role(i: dict) -> tuple[str, dict]:
    # vault/resource_pki_secret_backend_role.go ...Create: <backend>/roles/<name>; lists stay JSON lists, every
    # boolean is sent (the provider's default where unset), other fields only when set.
    return f"{i['backend'].strip('/')}/roles/{i['name']}", {**PKI_ROLE_BOOLEAN_DEFAULTS,
                                                             **api_fields(i, drop=("backend", "name"))}


def _kubernetes_config(i: dict) -> tuple[str, dict]:
    # vault/resource_kubernetes_auth_backend_config.go ...Create: auth/<backend>/config; kubernetes_host always,
    # the CA, reviewer JWT and disable_local_ca_jwt only when set.
    data = api_fields(i, drop=("backend",))
    joined(data, "pem_keys")
    if not data.get("disable_local_ca_jwt"):
        data.pop("disable_local_ca_jwt", None)
    return f"auth/{i['backend'].strip('/')}/config", data


def _kubernetes_role(i: dict) -> tuple[str, dict]:
    # vault/resource_kubernetes_auth_backend_role.go kubernetesAuthBackendRolePath/UpdateFields: auth/<backend>/
    # role/<role_name>; token_* fields (updateTokenFields), bound names and namespaces, audience.
    data = api_fields(i, drop=("backend", "role_name"))
    data.setdefault("bound_service_account_namespace_selector", "")
    return f"auth/{i['backend'].strip('/')}/role/{i['role_name']}", data


def _cert_outputs(resp: dict) -> dict:
    d = resp.get("data") or {}
    out = {"certificate": d.get("certificate"), "issuingCa": d.get("issuing_ca"),
           "serialNumber": d.get("serial_number")}
    if "ca_chain" in d:
        out["caChains"] = d["ca_chain"]
    if "issuer_id" in d:
        out["issuerId"], out["keyId"] = d["issuer_id"], d.get("key_id")
    return out


APPLY: dict[str, tuple[Callable[[dict], tuple[str, dict]], Callable[[dict], dict]]] = {
    "vault:index/mount:Mount": (_mount, lambda r: {}),
    "vault:index/authBackend:AuthBackend": (_auth_backend, lambda r: {}),
    "vault:index/policy:Policy": (_policy, lambda r: {}),
    "vault:pkiSecret/secretBackendRootCert:SecretBackendRootCert": (_root_cert, _cert_outputs),
    "vault:pkiSecret/secretBackendIntermediateCertRequest:SecretBackendIntermediateCertRequest":
        (_intermediate_request, lambda r: {"csr": r["data"]["csr"], "keyId": r["data"].get("key_id")}),
    "vault:pkiSecret/secretBackendRootSignIntermediate:SecretBackendRootSignIntermediate":
        (_root_sign_intermediate, _cert_outputs),
    "vault:pkiSecret/secretBackendIntermediateSetSigned:SecretBackendIntermediateSetSigned":
        (_set_signed, lambda r: {"importedIssuers": (r.get("data") or {}).get("imported_issuers") or [],
                                 "importedKeys": (r.get("data") or {}).get("imported_keys") or []}),
    "vault:pkiSecret/secretBackendConfigUrls:SecretBackendConfigUrls": (_config_urls, lambda r: {}),
    "vault:pkiSecret/secretBackendConfigIssuers:SecretBackendConfigIssuers": (_config_issuers, lambda r: {}),
    "vault:pkiSecret/secretBackendCrlConfig:SecretBackendCrlConfig": (_crl_config, lambda r: {}),
    "vault:pkiSecret/secretBackendRole:SecretBackendRole": (_pki_role, lambda r: {}),
    "vault:kubernetes/authBackendConfig:AuthBackendConfig": (_kubernetes_config, lambda r: {}),
    "vault:kubernetes/authBackendRole:AuthBackendRole": (_kubernetes_role, lambda r: {}),
}
# Types whose provider Update sends exactly the Create request (terraform-provider-vault
# resource_pki_secret_backend_config_issuers.go: UpdateContext is ...CreateUpdate): a changed one is applied again.
UPDATED_AS_CREATED = {"vault:pkiSecret/secretBackendConfigIssuers:SecretBackendConfigIssuers"}
VAULT_PROVIDER = "pulumi:providers:vault"
DEFAULT_MAX_HTTP_RETRIES = 2
SA_TOKEN_SECRET = "kubernetes.io/service-account-token"


class UnappliedVaultResource(AssertionError):
    pass


class OpenBaoMocks(RecordingMocks):
    """RecordingMocks that apply each vault:* resource to `server` (in its provider's namespace) and return the real
    outputs; a service-account token Secret gets a token the TokenReview stand-in issued, when one is given."""

    def __init__(self, server: OpenBaoServer, previous_outputs: dict[str, Any] | None = None, *,
                 tokens: "TokenReviewServer | None" = None, state: "OpenBaoMocks | None" = None):
        """`state`: the mocks of an earlier run on the same server, standing for the stack's state. A resource it
        applied with the same inputs is unchanged (the engine sends nothing, the outputs are the recorded ones); one
        with other inputs would be an update or a replacement, which these mocks do not model (they fail)."""
        super().__init__(previous_outputs)
        self.server, self.tokens = server, tokens
        self.namespaces: dict[str, str] = {}  # provider id -> Vault namespace
        self.applied: list[tuple[str, str, SentRequest]] = []  # (type, name, what was sent)
        self.retried: list[tuple[str, str]] = []  # (path, the server's error) of each retried request
        self.state: dict[tuple[str, str], tuple[dict[str, Any], str, dict[str, Any]]] = dict(state.state) if state else {}
        self.unchanged: list[tuple[str, str]] = []

    def _namespace(self, provider: str | None) -> str | None:
        # A provider reference is "<urn>::<id>"; the ids are the ones this class handed out.
        if not provider:
            return None
        return self.namespaces.get(provider.rsplit("::", 1)[-1])

    def new_resource(self, args):
        if args.typ == VAULT_PROVIDER:
            ident, outputs = super().new_resource(args)
            self.namespaces[ident] = plain(args.inputs).get("namespace") or ""
            return ident, outputs
        if (args.typ == "kubernetes:core/v1:Secret" and self.tokens is not None
                and plain(args.inputs).get("type") == SA_TOKEN_SECRET):
            if (args.typ, args.name) in self.state:  # the same Secret, with the token it already holds
                return self.state[(args.typ, args.name)][1:]
            meta = plain(args.inputs)["metadata"]
            account = meta["annotations"]["kubernetes.io/service-account.name"]
            token = self.tokens.issue(meta["namespace"], account, reviewer=True)
            outputs = {**args.inputs, "data": {"token": base64.b64encode(token.encode()).decode()}}
            self.state[(args.typ, args.name)] = ({}, f"{args.name}-id", outputs)
            return f"{args.name}-id", outputs
        if not args.typ.startswith("vault:"):
            return super().new_resource(args)
        if args.typ not in APPLY:
            raise UnappliedVaultResource(
                f"{args.typ} ({args.name}) has no mapping in tests/openbao.py APPLY: add the request the provider makes")
        request, outputs_of = APPLY[args.typ]
        inputs = api_fields(args.inputs)
        if (args.typ, args.name) in self.state and args.typ not in UPDATED_AS_CREATED:
            recorded, ident, outputs = self.state[(args.typ, args.name)]
            if recorded != inputs:
                raise UnappliedVaultResource(f"{args.typ} ({args.name}) changed inputs since the earlier run: an update "
                                             "or replacement, which OpenBaoMocks does not apply")
            self.unchanged.append((args.typ, args.name))
            return ident, outputs
        path, body = request(inputs)
        namespace = self._namespace(args.provider)
        method = "PUT" if path.startswith("sys/policies/") else "POST"
        # The provider's client retries a 5xx twice (terraform-provider-vault internal/provider/meta.go
        # DefaultMaxHTTPRetries = 2, applied by the Vault API client's retryablehttp policy). OpenBao answers 500
        # "transaction commit failed" when two writes to one PKI mount race, which the engine's parallel creates do.
        for attempt in range(DEFAULT_MAX_HTTP_RETRIES + 1):
            try:
                response = self.server.write(path, body, method=method, namespace=namespace)
                break
            except VaultError as err:
                if err.status < 500 or err.status == 501 or attempt == DEFAULT_MAX_HTTP_RETRIES:
                    raise
                self.retried.append((path, str(err)))
                time.sleep(1.0)
        self.applied.append((args.typ, args.name, SentRequest(path, body)))
        outputs = dict(args.inputs)
        outputs.update(outputs_of(response or {}))
        self.state[(args.typ, args.name)] = (inputs, f"{args.name}-id", outputs)
        return f"{args.name}-id", outputs


# --- The Kubernetes API server's TokenReview, the one stand-in -----------------------------------------------------

ISSUER = "https://kubernetes.default.svc.cluster.local"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class IssuedToken:
    namespace: str
    name: str
    uid: str
    audiences: list[str]


@dataclass
class Review:
    bearer: str
    body: dict[str, Any]
    status: int
    response: dict[str, Any]


class TokenReviewServer:
    """`POST /apis/authentication.k8s.io/v1/tokenreviews` over HTTPS on 127.0.0.1, answering as the API server does
    for the tokens it issued (ES256 JWTs with the claims the kube-apiserver puts in bound service-account tokens).

    Why JWTs and not opaque strings: Vault parses the login JWT before any review (path_login.go
    parseAndValidateJWT: go-jose ParseSigned with an allowed algorithm, `aud` against the role's audience, then
    service-account name/namespace from the `kubernetes.io` claims). With no pem_keys configured it does NOT verify
    the signature (DontVerifySignature) and relies on the review. The review (token_review.go Review) sends
    spec.token and spec.audiences = [role audience] (or the token's own `aud`), with Bearer token_reviewer_jwt when
    set, else the login JWT itself; it requires status.authenticated, an audience intersection, and a username
    system:serviceaccount:<ns>:<name> whose name, namespace and uid match the JWT's claims (path_login.go lookup).

    The caller must present (as Bearer) a token of an account allowed to review tokens; otherwise 401 for an unknown
    token and 403 for an account without system:auth-delegator, as the API server's authn/RBAC would. Every review is
    recorded with the bearer it came with."""

    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric import ec
        self.signing_key = ec.generate_private_key(ec.SECP256R1())
        self.tokens: dict[str, IssuedToken] = {}
        self.reviewers: set[str] = set()
        self.reviews: list[Review] = []
        self.port = free_port()
        self.host = f"https://127.0.0.1:{self.port}"

    def issue(self, namespace: str, name: str, audiences: list[str] | None = None, *, reviewer: bool = False) -> str:
        """A token for system:serviceaccount:<namespace>:<name>. With `reviewer`, the account may review tokens."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, utils
        now = int(time.time())
        uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{name}"))
        audiences = list(audiences or [ISSUER])
        claims = {"aud": audiences, "exp": now + 600, "iat": now, "nbf": now, "iss": ISSUER,
                  "sub": f"system:serviceaccount:{namespace}:{name}", "jti": str(uuid.uuid4()),
                  "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}}}
        header = {"alg": "ES256", "kid": "mtls-mesh-test", "typ": "JWT"}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = utils.decode_dss_signature(self.signing_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        token = f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
        self.tokens[token] = IssuedToken(namespace, name, uid, audiences)
        if reviewer:
            self.reviewers.add(token)
        return token

    def review(self, bearer: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if bearer not in self.tokens:
            return 401, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Unauthorized",
                         "message": "Unauthorized", "code": 401}
        if bearer not in self.reviewers:
            who = self.tokens[bearer]
            return 403, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                         "message": f'tokenreviews.authentication.k8s.io is forbidden: User "system:serviceaccount:'
                                    f'{who.namespace}:{who.name}" cannot create resource "tokenreviews"'}
        spec = body.get("spec") or {}
        wanted = spec.get("audiences") or []
        issued = self.tokens.get(spec.get("token", ""))
        status: dict[str, Any] = {"authenticated": False}
        if issued is None:
            status["error"] = "[invalid bearer token, square/go-jose: error in cryptographic primitive]"
        else:
            # The API server authenticates a token for the requested audiences only if they intersect the token's;
            # without spec.audiences it checks against its own (the issuer here).
            target = wanted or [ISSUER]
            common = [a for a in issued.audiences if a in target]
            if not common:
                status["error"] = "[invalid bearer token, token audiences is invalid for the target audiences]"
            else:
                status = {"authenticated": True, "audiences": common,
                          "user": {"username": f"system:serviceaccount:{issued.namespace}:{issued.name}",
                                   "uid": issued.uid,
                                   "groups": ["system:serviceaccounts", f"system:serviceaccounts:{issued.namespace}",
                                              "system:authenticated"]}}
        return 201, {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                     "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}

    def __enter__(self) -> "TokenReviewServer":
        self.workdir = Path(tempfile.mkdtemp(prefix="mtls-mesh-tokenreview-"))
        self.ca_pem, cert_pem, key_pem = _self_signed_chain()
        self.ca_file = self.workdir / "ca.pem"
        self.ca_file.write_text(self.ca_pem)
        (self.workdir / "tls.crt").write_text(cert_pem)
        (self.workdir / "tls.key").write_text(key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.workdir / "tls.crt", self.workdir / "tls.key")
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                auth = self.headers.get("Authorization", "")
                bearer = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
                if self.path.split("?")[0] != "/apis/authentication.k8s.io/v1/tokenreviews":
                    status, answer = 404, {"kind": "Status", "code": 404, "message": "not found"}
                else:
                    try:
                        body = json.loads(raw or b"{}")
                    except ValueError:
                        body = {}
                    status, answer = stand_in.review(bearer, body)
                    stand_in.reviews.append(Review(bearer, body, status, answer))
                out = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _self_signed_chain() -> tuple[str, str, str]:
    """A CA and a server certificate for 127.0.0.1 signed by it (PEM: ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test kubernetes CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (ca.public_bytes(pem).decode(), cert.public_bytes(pem).decode(),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode())


# --- What cert-manager v1.21.1 sends (internal/vault/vault.go) ------------------------------------------------------

def cert_manager_token_audiences(issuer: dict[str, Any]) -> list[str]:
    """requestTokenWithKubernetesAuth (vault.go lines 576-588): the issuer's serviceAccountRef.audiences, then
    vault://<namespace>/<name> (an Issuer) or vault://<name> (a ClusterIssuer), then spec.vault.server."""
    vault = issuer["spec"]["vault"]
    namespace = issuer["metadata"].get("namespace") if issuer["kind"] == "Issuer" else None
    default = "vault://" + (f"{namespace}/" if namespace else "") + issuer["metadata"]["name"]
    return [*vault["auth"]["kubernetes"]["serviceAccountRef"].get("audiences", []), default, vault["server"]]


def cert_manager_login(server: OpenBaoServer, mount_path: str, role: str, jwt: str, *,
                       namespace: str | None = None) -> tuple[int, Any]:
    """vault.go lines 618-630: POST path.Join(mountPath, "login") with {"role", "jwt"}; mountPath already starts
    with /v1 (default /v1/auth/kubernetes). The namespaced client is used (line 142-143: X-Vault-Namespace)."""
    assert mount_path.startswith("/v1/"), f"cert-manager's mountPath includes /v1: {mount_path}"
    return server.request("POST", mount_path[len("/v1/"):].rstrip("/") + "/login", {"role": role, "jwt": jwt},
                          token=None, namespace=namespace)


def cert_manager_sign_parameters(csr_pem: str, duration: datetime.timedelta) -> dict[str, str]:
    """vault.go Sign, lines 160-175: the body cert-manager POSTs, every key always present: the CSR's own CN and SANs
    (empty strings when it has none), Go's duration string for ttl, and exclude_cn_from_sans "true" (all strings)."""
    from cryptography import x509
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    cns = csr.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    return {
        "common_name": cns[0].value if cns else "",
        "alt_names": ",".join(sans.get_values_for_type(x509.DNSName)),
        "ip_sans": ",".join(str(ip) for ip in sans.get_values_for_type(x509.IPAddress)),
        "uri_sans": ",".join(sans.get_values_for_type(x509.UniformResourceIdentifier)),
        "ttl": go_duration(duration),
        "csr": csr_pem,
        "exclude_cn_from_sans": "true",
    }


def cert_manager_sign(server: OpenBaoServer, token: str, path: str, csr_pem: str, duration: datetime.timedelta, *,
                      namespace: str | None = None) -> tuple[int, Any]:
    """vault.go Sign: POST /v1/<spec.vault.path> with cert_manager_sign_parameters."""
    return server.request("POST", path.strip("/"), cert_manager_sign_parameters(csr_pem, duration), token=token,
                          namespace=namespace)


def go_duration(duration: datetime.timedelta) -> str:
    """time.Duration.String() for whole seconds, e.g. 48h0m0s."""
    seconds = int(duration.total_seconds())
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m}m{s}s" if h else (f"{m}m{s}s" if m else f"{s}s")
