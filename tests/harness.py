"""Runs the real program (`__main__.py`) under Pulumi's mocks with a stack file's config and records what it registers.

By default as `pulumi up` (`preview=False`): every output is known and apply callbacks run. With `preview=True` as
`pulumi preview` against a given earlier state (see `run_program`): what the state does not hold yet gets an unknown id
and unknown computed outputs, as the engine gives them, and apply callbacks over them do not run. The mock monitor
keeps each registration's inputs and options (provider, parent, protect, dependencies), so tests can check wiring as
well as content.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import dataclasses
import datetime
import functools
import gc
import inspect
import json
import math
import runpy
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pulumi
import yaml
from pulumi.runtime import mocks, rpc
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

PROJECT_DIR = Path(__file__).resolve().parents[1]
UNKNOWN = rpc.UNKNOWN
SHARED_DIR = PROJECT_DIR.parent / "shared"
PROJECT = "mtls-mesh"
SECRET_SIG = rpc._special_sig_key
SECRET_VALUE_SIG = rpc._special_secret_sig
# libyaml's parser when PyYAML has it: the same documents as yaml.safe_load_all, several times faster on the megabytes
# of CRDs the tests read.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))

from read import stack_files  # noqa: E402
from read.stack_files import SECRET_PLACEHOLDER  # noqa: E402,F401
from read.errors import SettingsError  # noqa: E402
from plan.ownership import HOLDERS_OUTPUT, next_holders, owners  # noqa: E402

# The environments' stacks (single and platform); the shard stacks, whose settings are their platform's, apart.
STACKS = stack_files.stack_names()
SHARD_STACKS = tuple(s for s in stack_files.stack_names(shards=True) if s not in STACKS)


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    provider: str
    parent: str
    protect: bool
    dependencies: tuple[str, ...]
    custom: bool
    additional_secret_outputs: tuple[str, ...] = ()
    # For an object inside a yaml/v2 ConfigGroup: the group's registration (the provider creates the object).
    group: "Registration | None" = None
    # Per input, the resources its value was computed from (what the engine, and a remote component, wait for).
    property_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # In a preview: "create", "update" or "same" (see PreviewState); None in an `up`.
    step: str | None = None

    @property
    def is_kubernetes(self) -> bool:
        return self.type.startswith("kubernetes:") and self.custom

    def object(self) -> dict[str, Any]:
        """The Kubernetes object as it reaches the provider: secrets unwrapped, wire floats back to ints."""
        return plain(self.inputs)


def plain(value: Any) -> Any:
    """Undo the mock wire format: unwrap secret envelopes and turn integral floats back into ints."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE_SIG:
            return plain(value.get("value"))
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def is_secret_envelope(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE_SIG


class RecordingMocks(pulumi.runtime.Mocks):
    """Echoes inputs as outputs, plus the few computed outputs the program reads back. A StackReference (the program
    reads its own stack's last outputs) answers `previous_outputs`: none, as on a first deployment, unless given."""

    def __init__(self, previous_outputs: dict[str, Any] | None = None):
        super().__init__()
        self.previous_outputs = previous_outputs or {}
        # Other stacks' outputs, by stack name (a shard's platform); a reference to the running stack itself reads
        # previous_outputs.
        self.references: dict[str, dict[str, Any]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        if args.typ == "pulumi:pulumi:StackReference":
            target = args.name.rsplit("/", 1)[-1]
            outputs = self.references.get(target, {}) if target != pulumi.get_stack() else self.previous_outputs
            # As the engine answers (pkg/resource/deploy/builtins.go readStackReference): every output holding a
            # secret is named in secretOutputNames, and keeps its secret envelope.
            return f"{args.name}-id", {"name": args.name, "outputs": outputs,
                                       "secretOutputNames": sorted(k for k, v in outputs.items() if holds_secret(v))}
        if args.resource_id is not None and args.resource_id == UNKNOWN:
            # A read whose id a preview cannot know: the engine skips it and gives no outputs (pulumi
            # pkg/resource/deploy/step.go ReadStep.Apply).
            return "", {}
        if args.resource_id and args.typ in READS:
            return args.resource_id, READS[args.typ](args.resource_id)
        outputs = dict(args.inputs)
        outputs.update(computed_outputs(args.typ, args.name, args.inputs))
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "pulumi:pulumi:readStackOutputs":
            # The builtin invoke a waiting shard reads its platform's outputs with, answered as a StackReference is.
            target = str(args.args.get("name", "")).rsplit("/", 1)[-1]
            outputs = self.references.get(target, {}) if target != pulumi.get_stack() else self.previous_outputs
            return {"name": args.args.get("name"), "outputs": outputs, "secretOutputNames": []}
        return {}


def holds_secret(value: Any) -> bool:
    if is_secret_envelope(value):
        return True
    if isinstance(value, dict):
        return any(holds_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(holds_secret(v) for v in value)
    return False


def secret(value: Any) -> dict[str, Any]:
    """A value as a stack output holds it when it was exported secret (for a StackReference fixture)."""
    return {SECRET_SIG: SECRET_VALUE_SIG, "value": value}


def _read_secret(resource_id: str) -> dict[str, Any]:
    """What the token controller writes into a `kubernetes.io/service-account-token` Secret: a JWT-shaped stand-in
    and a stand-in CA, never real material."""
    name = resource_id.rpartition("/")[2]
    return {"type": "kubernetes.io/service-account-token",
            "data": {"token": base64.b64encode(f"MOCK-JWT-{name}".encode()).decode(),
                     "ca.crt": base64.b64encode(mock_certificate_pem("apiserver-ca").encode()).decode()}}


def _read_service(resource_id: str) -> dict[str, Any]:
    """A LoadBalancer Service once its load balancer is provisioned (a TEST-NET-1 address, RFC 5737)."""
    return {"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}}


# Objects the program reads back from the cluster (`<Kind>.get`), by type.
READS = {"kubernetes:core/v1:Secret": _read_secret, "kubernetes:core/v1:Service": _read_service}


MOCK_NOT_BEFORE = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)


@functools.lru_cache(maxsize=None)
def mock_certificate_pem(name: str, valid_seconds: int = 365 * 86400) -> str:
    """A real, parseable certificate standing in for one a provider would create: CN MOCK-<name>, valid from
    2026-11-01 for `valid_seconds` (what the resource asked for). Its key is thrown away."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"MOCK-{name}"[:64])])
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                   .serial_number(1).not_valid_before(MOCK_NOT_BEFORE)
                   .not_valid_after(MOCK_NOT_BEFORE + datetime.timedelta(seconds=valid_seconds))
                   .sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def computed_outputs(type_: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Stand-ins for outputs a provider computes: real certificates (for what parses them), never real key material."""
    if type_ == "tls:index/privateKey:PrivateKey":
        # Shaped like PEM (a base64 body), so what checks a key's shape sees one; it decodes to MOCK-<name>.
        body = base64.b64encode(f"MOCK-{name}".encode()).decode()
        return {"privateKeyPem": f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n",
                "publicKeyPem": f"-----BEGIN PUBLIC KEY-----\nMOCK-{name}\n-----END PUBLIC KEY-----\n"}
    if type_ == "tls:index/certRequest:CertRequest":
        body = base64.b64encode(f"MOCK-{name}".encode()).decode()
        return {"certRequestPem": f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n"}
    if type_ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
        return {"certPem": mock_certificate_pem(name, int(inputs.get("validityPeriodHours", 8760)) * 3600)}
    if type_ == "kubernetes:core/v1:Secret" and inputs.get("type") == "kubernetes.io/service-account-token":
        # What the token controller writes into the Secret: a JWT-shaped stand-in, never a real token.
        return {"data": {"token": base64.b64encode(f"MOCK-JWT-{name}".encode()).decode()}}
    if type_ == "vault:pkiSecret/secretBackendRootCert:SecretBackendRootCert":
        root = mock_certificate_pem(name, int(inputs.get("ttl", 365 * 86400)))
        return {"certificate": root, "issuingCa": root}
    if type_ == "vault:pkiSecret/secretBackendIntermediateCertRequest:SecretBackendIntermediateCertRequest":
        return {"csr": f"-----BEGIN CERTIFICATE REQUEST-----\nMOCK-{name}\n-----END CERTIFICATE REQUEST-----\n"}
    if type_ == "vault:pkiSecret/secretBackendRootSignIntermediate:SecretBackendRootSignIntermediate":
        signed = mock_certificate_pem(name, int(inputs.get("ttl", 365 * 86400)))
        return {"certificate": signed, "issuingCa": signed, "caChains": [signed]}
    if type_ == "vault:pkiSecret/secretBackendIntermediateSetSigned:SecretBackendIntermediateSetSigned":
        return {"importedIssuers": [f"MOCK-issuer-{name}"]}
    return {}


class PreviewState:
    """The stack's state a preview runs against: the URNs it holds, and (from an earlier run) each one's inputs.

    The engine's answer to a registration in a preview (pulumi `pkg/resource/deploy/step.go` `CreateStep.Apply`: the
    provider's Create with `preview` set may return no id), as the mocks give it (pulumi SDK `runtime/resource.py`: an empty id is unknown;
    `runtime/rpc.py` `resolve_properties`: in a dry run an output the response leaves out is unknown):
      - not in the state ("create"): empty id, the inputs echoed, every computed output left out;
      - in the state with other inputs ("update"): the id known, the inputs echoed, computed outputs left out;
      - in the state with the same inputs ("same"): the id and outputs the state holds (here: what `up` gives).
    A change the provider would make a replacement also leaves the id unknown in a real preview; here every change is
    an in-place update (nothing in the program reads an id to build content).
    A bare set of URNs treats each one as unchanged. Nothing is read from a cluster: the provider's own preview of a
    child whose namespace or CRD does not exist yet returns the inputs as they are (pulumi-kubernetes
    `provider/pkg/provider/provider.go` `Create`: skipped when the GVK is unknown; `await.go` `Creation`:
    namespaceError, a PreviewError), so every object is still listed.
    """

    def __init__(self, earlier: "Run | Iterable[str]" = ()):
        if isinstance(earlier, Run):
            self.inputs: dict[str, Any] = {r.urn: r.inputs for r in earlier.registrations}
        else:
            self.inputs = {urn: None for urn in earlier}

    def step(self, urn: str, inputs: dict[str, Any]) -> str:
        if urn not in self.inputs:
            return "create"
        before = self.inputs[urn]
        return "same" if before is None or before == inputs else "update"


class RecordingMonitor(mocks.MockMonitor):
    def __init__(self, mock: pulumi.runtime.Mocks, preview: PreviewState | None = None):
        super().__init__(mock)
        self.registrations: list[Registration] = []
        self.preview = preview

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        inputs = json.loads(json.dumps(_wire_inputs(request), default=str))
        step = None
        if self.preview is not None:
            step = self.preview.step(response.urn, inputs)
            if step != "same":
                response = resource_pb2.RegisterResourceResponse(
                    urn=response.urn, id=response.id if step == "update" else "", object=request.object)
        registration = Registration(
            type=request.type, name=request.name, urn=response.urn, inputs=inputs,
            provider=request.provider, parent=request.parent, protect=request.protect,
            dependencies=tuple(request.dependencies), custom=request.custom,
            additional_secret_outputs=tuple(request.additionalSecretOutputs),
            property_dependencies={key: tuple(deps.urns) for key, deps in request.propertyDependencies.items()},
            step=step,
        )
        self.registrations.append(registration)
        if request.type == CONFIG_GROUP:
            children = config_group_children(registration)
            if self.preview is not None:
                for child in children:
                    child.step = self.preview.step(child.urn, child.inputs)
            self.registrations.extend(children)
        return response


CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"


def config_group_children(group: Registration) -> list[Registration]:
    """What pulumi-kubernetes registers for a yaml/v2 ConfigGroup, which the mocks cannot show (remote components
    have no children under mocks): one resource per object of its manifest, parsed as YAML the way the provider
    reads it, typed `kubernetes:<group>/<version>:<Kind>`, named `<resourcePrefix or group name>:<namespace>/<name>`
    and parented to the group (provider/pkg/provider/yaml/v2/yaml.go `register`, pulumi-kubernetes).

    Only as the provider does in a preview: it parses the manifest inside an apply over its inputs
    (provider/pkg/provider/yaml/v2/configgroup.go `Construct`), so while the manifest is unknown it registers no child
    at all and only warns "Preview is incomplete"."""
    manifest = plain(group.inputs.get("yaml"))
    if manifest == UNKNOWN:
        return []
    assert isinstance(manifest, str), f"ConfigGroup {group.name}: the manifest must be a string"
    prefix = plain(group.inputs.get("resourcePrefix")) or group.name
    project_stack, _, rest = group.urn.rpartition("::")[0].rpartition("::")
    qualified_type = group.urn.split("::")[2]
    children = []
    for obj in yaml.load_all(manifest, Loader=YAML_LOADER):
        if not obj:
            continue
        api_group, _, version = obj["apiVersion"].rpartition("/")
        type_ = f"kubernetes:{api_group or 'core'}/{version}:{obj['kind']}"
        meta = obj["metadata"]
        name = f"{prefix}:{meta['namespace']}/{meta['name']}" if meta.get("namespace") else f"{prefix}:{meta['name']}"
        urn = f"{group.urn.split('::')[0]}::{group.urn.split('::')[1]}::{qualified_type}${type_}::{name}"
        children.append(Registration(type=type_, name=name, urn=urn, inputs=obj, provider=group.provider,
                                     parent=group.urn, protect=group.protect, dependencies=(), custom=True,
                                     group=group))
    return children


def _wire_inputs(request) -> dict[str, Any]:
    """Inputs as they cross the wire, keeping secret envelopes (so tests can see what is secret)."""
    from google.protobuf import json_format
    return json_format.MessageToDict(request.object)


@dataclass
class Run:
    stack: str
    config: dict[str, str]
    registrations: list[Registration]
    exports: dict[str, Any] = field(default_factory=dict)
    secret_exports: frozenset[str] = frozenset()
    preview: bool = False
    # The exported values as the program handed them (Outputs kept), to see what inside a value is secret.
    raw_exports: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def named(self, name: str) -> Registration:
        found = [r for r in self.registrations if r.name == name]
        assert len(found) == 1, f"expected one resource named {name!r}, found {len(found)}: {[r.type for r in found]}"
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)

    def kubernetes(self) -> list[Registration]:
        return [r for r in self.registrations if r.is_kubernetes]

    def objects(self, kind: str | None = None) -> list[dict[str, Any]]:
        objs = [r.object() for r in self.kubernetes() if not r.type.startswith("kubernetes:helm.sh")]
        return [o for o in objs if kind is None or o.get("kind") == kind]

    def object(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        found = [o for o in self.objects(kind) if o["metadata"].get("name") == name
                 and (namespace is None or o["metadata"].get("namespace") == namespace)]
        assert len(found) == 1, f"expected one {kind} {namespace or ''}/{name}, found {len(found)}"
        return found[0]


def _cancel_leftover_tasks() -> None:
    """A program that failed inside an apply leaves tasks pending on the loop the test session shares; they would
    report their errors to the next run's RPC manager (the SDK's globals). A real `pulumi up` is one process per run."""
    loop = asyncio.get_event_loop()
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    # The SDK keeps the failed program's output tasks in its ambient settings, which set_mocks does not reset.
    runtime_settings.SETTINGS.outputs.clear()


def stack_file(stack: str) -> Path:
    """The stack file as the program would read it now (a test may point stacks/ at a changed copy)."""
    return stack_files.stack_file(stack, stack_files.STACKS_DIR)


def stack_config(stack: str) -> tuple[dict[str, str], set[str]]:
    """A stack file's config the way the CLI hands it to the program (read/stack_files.py `read_stack_file`): values
    as the CLI prints them, every Pulumi.yaml default filled in, secure values secret."""
    config, secret_keys = stack_files.read_stack_file(stack_file(stack))
    return config, set(secret_keys)


wire_value = stack_files.wire_value


def _full_key(key: str) -> str:
    return key if ":" in key else f"{PROJECT}:{key}"


def _shard_own(key: str) -> bool:
    """Whether a key belongs in a shard's own stack file rather than its platform's."""
    from read.settings_format import SHARD_STACK_SETTINGS

    namespace, _, name = _full_key(key).partition(":")
    return namespace != PROJECT or name in SHARD_STACK_SETTINGS


def _unset(config: dict[str, str], key: str) -> None:
    """Remove a key from the stack file: the CLI then hands the program the key's default, if it has one."""
    full = key if ":" in key else f"{PROJECT}:{key}"
    config.pop(full, None)
    config.update({k: v for k, v in stack_files.with_defaults({}).items() if k == full})


def stack_plan(stack: str, config: dict[str, str] | None = None):
    """The compiled plan of a stack file (or of `config`, defaults filled in as the CLI does), as `__main__.py`
    compiles it (plan/mesh.py)."""
    from plan.mesh import compile_mesh

    base, secret_keys = stack_config(stack) if config is None else (stack_files.with_defaults(config), set())
    return compile_mesh(stack_files.load_stack_settings(base, stack, secret_keys=frozenset(secret_keys)))


FILE_SETTINGS = ("serviceGraph", "vaultCaBundleFile", "vaultKubernetesCaFile")


def _allow_test_files_outside_project(config: dict[str, str], set_by_test: bool) -> None:
    """Tests write graphs and CA files to temporary directories, outside the project, which the program refuses unless
    allowFilesOutsideProject is true: set it for them, unless the test sets it itself (tests of the refusal do). The
    key is always there (the CLI fills in its default, false), so what counts is whether the test gave it."""
    key = f"{PROJECT}:allowFilesOutsideProject"
    if set_by_test or config.get(key, "false") != "false":
        return
    for name in FILE_SETTINGS:
        value = config.get(f"{PROJECT}:{name}")
        if isinstance(value, str) and "\x00" not in value and value.startswith("/") and \
                not Path(value).resolve().is_relative_to(PROJECT_DIR.resolve()):
            config[key] = "true"
            return


@contextlib.contextmanager
def _platform_changed(platform: str, tmp_path: Path | None, **changes: Any) -> Iterator[None]:
    """A copy of stacks/ whose platform stack file carries `changes` (run_program's), where every stack file is read
    while the block runs: the shard reads it, and so does the run of the platform its outputs come from."""
    directory = Path(tempfile.mkdtemp(dir=tmp_path))
    for source in stack_files.STACKS_DIR.glob("Pulumi.*.yaml"):
        shutil.copy(source, directory / source.name)
    # The platform's config as run_program would change it, written back as a stack file.
    config, secret_keys = stack_config(platform)
    for key in changes["unset"]:
        _unset(config, key)
    for key, value in (changes["set_config"] or {}).items():
        config[key if ":" in key else f"{PROJECT}:{key}"] = wire_value(value)
    if changes["graph"] is not None:
        graph_file = directory / "graph.yaml"
        graph_file.write_text(yaml.safe_dump(changes["graph"]))
        config[f"{PROJECT}:serviceGraph"] = str(graph_file)
        config[f"{PROJECT}:allowFilesOutsideProject"] = "true"
    secret_keys = set(secret_keys) | {k if ":" in k else f"{PROJECT}:{k}" for k in changes["secrets"]}
    (directory / f"Pulumi.{platform}.yaml").write_text(stack_file_text(config, secret_keys))
    saved = stack_files.STACKS_DIR
    stack_files.STACKS_DIR = directory
    try:
        yield
    finally:
        stack_files.STACKS_DIR = saved


def stack_file_text(config: dict[str, str], secret_keys: Iterable[str] = ()) -> str:
    """A stack file from which the CLI hands the program exactly `config`: each value written as JSON (which YAML reads
    as written), a string as a quoted string, so the CLI's YAML rules cannot turn it into something else, and an
    array setting's JSON as the list it is (the CLI checks array settings are lists); secret keys as `secure:`."""
    from read.cli_yaml import double_quoted
    from read.settings_format import load_declarations

    declarations = load_declarations(PROJECT_DIR / "Pulumi.yaml")
    lines = ["config:"]
    for key, text in config.items():
        if key in secret_keys:
            value = '{"secure": "v1:test"}'
        else:
            declaration = declarations.get(key.partition(":")[2]) if key.startswith(f"{PROJECT}:") else None
            value = double_quoted(text)
            if declaration is not None and declaration.type == "array":
                try:
                    json.loads(text)
                    value = text
                except ValueError:
                    pass
        lines.append(f"  {double_quoted(key)}: {value}")
    return "\n".join(lines) + "\n"


def steady_outputs(stack: str, config: dict[str, str], secret_keys: Iterable[str]) -> dict[str, Any]:
    """What a platform stack (policyShards on) last exported in the steady state, at the commit it runs: the ledger
    its own `up` would have written (plan/ownership.py `next_holders` of this commit's owners), so a test that is not
    about the ledger's bootstrap runs a platform, and the shards reading its outputs, as they run once the ledger
    exists. A single stack, and settings the program refuses anyway, get none (a first deployment)."""
    if config.get(f"{PROJECT}:policyShards") != "true":
        return {}
    try:
        settings = stack_files.load_stack_settings(config, stack, secret_keys=frozenset(secret_keys))
    except SettingsError:
        return {}  # the program reports the same problems, before it reads any output
    return {HOLDERS_OUTPUT: next_holders(None, owners(settings.graph, True, stack))}


REPOSITORY_STACKS = stack_files.STACKS_DIR
# Whether `run_program(stack)` of an unchanged stack file (and a shard's read of its platform's outputs) may be a copy
# of unchanged_run's instead of a new run: conftest turns it on for each test that patches nothing (uses no
# monkeypatch), since a patched plan or component would change what the program registers.
SHARE_UNCHANGED_RUNS = False
_unchanged_runs: dict[str, "Run"] = {}
# A changed platform's exports, by platform and change (run_program of a shard with changes).
_changed_platform_outputs: dict[tuple[str, str], dict[str, Any]] = {}


def unchanged_run(stack: str) -> "Run":
    """`run_program(stack)` of the stack file as the repository holds it, once per session (the program is
    deterministic under the mocks: the same stack file gives the same run). Callers must not change what it returns."""
    assert stack_files.STACKS_DIR == REPOSITORY_STACKS, "a changed stacks/ is not the repository's"
    if stack not in _unchanged_runs:
        _unchanged_runs[stack] = _run_program(stack)
    return _unchanged_runs[stack]


def _may_share(stack: str) -> bool:
    return SHARE_UNCHANGED_RUNS and stack_files.STACKS_DIR == REPOSITORY_STACKS and stack_file(stack).is_file()


def run_program(stack: str = "dev", **changes: Any) -> "Run":
    """Run `__main__.py` for a stack (see _run_program for the changes it takes). With no changes, in a test that
    patches nothing, a copy of the stack's unchanged run (unchanged_run): a test may change its copy freely."""
    unchanged = all(value == _UNCHANGED.get(name, ...) for name, value in changes.items() if name != "tmp_path")
    if unchanged and _may_share(stack):
        shared = unchanged_run(stack)
        # The raw exports hold live Outputs, which do not copy: shared as they are (a test only reads them).
        return dataclasses.replace(copy.deepcopy(dataclasses.replace(shared, raw_exports={})),
                                   raw_exports=shared.raw_exports)
    return _run_program(stack, **changes)


def _run_program(stack: str = "dev", *, config: dict[str, str] | None = None, set_config: dict[str, Any] | None = None,
                unset: Iterable[str] = (), secrets: Iterable[str] = (), graph: dict[str, Any] | None = None,
                tmp_path: Path | None = None, previous_outputs: dict[str, Any] | None = None,
                mocks_factory: Any = None, preview: bool = False, state: "Run | Iterable[str]" = (),
                platform_outputs: dict[str, Any] | None = None, _secret_keys: Iterable[str] = (),
                references: dict[str, dict[str, Any]] | None = None) -> Run:
    """Run `__main__.py` for a stack. `set_config` overrides keys (short names), `unset` removes them,
    `secrets` marks keys secret, `graph` replaces the service graph (written under `tmp_path`).
    `mocks_factory(previous_outputs)` replaces RecordingMocks (tests/openbao.py applies to a real Vault API).
    `preview=True` runs it as `pulumi preview` against `state` (an earlier run, or a set of URNs; empty: the stack's
    first preview); see PreviewState. A pull request's preview: `state` and `previous_outputs` from the run of the
    base branch (`previous_outputs=base.exports`, as the StackReference to the stack itself reads them).
    A shard stack reads its platform's outputs: `platform_outputs`, or by default those of an `up` of the platform
    stack file as it is (the platform applied this commit). Outputs are what the referenced stack exported, as the
    CLI hands them: with `previous_outputs` None, a platform stack's are its steady state (`steady_outputs`: the
    ledger it exports at this commit); `previous_outputs={}` is a stack that never applied, and outputs without
    `policyHolders` (a run's exports at a commit before the ledger) one that last applied before it existed.
    `references`: other stacks' outputs by stack name (a cluster stack's peers), `secret(...)` marking what they
    exported secret."""
    base, secret_keys = stack_config(stack) if config is None else (stack_files.with_defaults(config),
                                                                      set(_secret_keys))
    platform = base.get(f"{PROJECT}:platformStack")
    if platform and (set_config or graph is not None or unset or secrets):
        # A shard's settings are its platform's: the change goes to the platform's stack file, which the shard reads.
        # What a shard's own file holds (platformStack, shard, how to reach the cluster, any provider's key) stays in
        # the shard's.
        for key in unset:
            if _shard_own(key):
                _unset(base, key)
        for key, value in (set_config or {}).items():
            if _shard_own(key):
                base[_full_key(key)] = wire_value(value)
        secret_keys |= {_full_key(k) for k in secrets if _shard_own(k)}
        platform_changes = {"graph": graph,
                            "set_config": {k: v for k, v in (set_config or {}).items() if not _shard_own(k)},
                            "unset": [k for k in unset if not _shard_own(k)],
                            "secrets": [k for k in secrets if not _shard_own(k)]}
        # The changed platform's run depends on these changes alone (stacks/ being the repository's): a test's
        # preview and up of the same change share it.
        changed_key = (platform, json.dumps(platform_changes, sort_keys=True, default=repr))
        shared = platform_outputs is None and _may_share(platform)
        if shared and changed_key in _changed_platform_outputs:
            platform_outputs = copy.deepcopy(_changed_platform_outputs[changed_key])
        with _platform_changed(platform, tmp_path, **platform_changes):
            if shared and platform_outputs is None and stack_file(platform).is_file():
                platform_outputs = _run_program(platform).exports
                _changed_platform_outputs[changed_key] = copy.deepcopy(platform_outputs)
            return run_program(stack, config=base, _secret_keys=secret_keys, previous_outputs=previous_outputs,
                               mocks_factory=mocks_factory, preview=preview, state=state,
                               platform_outputs=platform_outputs)
    for key in unset:
        _unset(base, key)
    for key, value in (set_config or {}).items():
        base[key if ":" in key else f"{PROJECT}:{key}"] = wire_value(value)
    secret_keys |= {k if ":" in k else f"{PROJECT}:{k}" for k in secrets}
    if graph is not None:
        assert tmp_path is not None, "a replacement graph needs tmp_path"
        graph_file = tmp_path / "graph.yaml"
        graph_file.write_text(yaml.safe_dump(graph))
        base[f"{PROJECT}:serviceGraph"] = str(graph_file)

    allow_key = f"{PROJECT}:allowFilesOutsideProject"
    _allow_test_files_outside_project(base, set_by_test=any(k in (allow_key, "allowFilesOutsideProject")
                                                            for k in (set_config or {}))
                                      or (config is not None and allow_key in config))

    platform = base.get(f"{PROJECT}:platformStack")
    if previous_outputs is None and not platform:
        previous_outputs = steady_outputs(stack, base, secret_keys)
    if platform and platform_outputs is None:
        # The platform as it is applied; no stack file (a bad platformStack): the program says so, with no outputs.
        platform_outputs = run_program(platform).exports if stack_file(platform).is_file() else {}
    mocks = (mocks_factory or RecordingMocks)(previous_outputs)
    if platform:
        mocks.references = {platform: platform_outputs}
    if references:
        mocks.references = {**getattr(mocks, "references", {}), **references}
    monitor = RecordingMonitor(mocks, PreviewState(state) if preview else None)
    pulumi.runtime.set_all_config(base, sorted(secret_keys))
    runtime_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    thresholds = gc.get_threshold()
    try:
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(PROJECT_DIR / "__main__.py"), run_name="__main__")))
    except Exception as err:
        # Tests assert that a rejected stack registered nothing before the error.
        err.registrations = monitor.registrations
        _cancel_leftover_tasks()
        raise
    finally:
        # __main__ tunes the collector for a one-shot process; a test session runs the program many times.
        gc.unfreeze()
        gc.set_threshold(*thresholds)

    return _finished_run(stack, base, monitor, preview)


def run_function(program: Any, stack: str = "dev", *, references: dict[str, dict[str, Any]] | None = None,
                 preview: bool = False, state: "Run | Iterable[str]" = (), config: dict[str, str] | None = None) -> Run:
    """Run `program()` (a part of the program, e.g. one component's registration) as run_program runs `__main__.py`:
    under the same mocks and monitor, with other stacks' outputs (`references`, by stack name) answered as those
    stacks exported them (`secret(...)` marks a value exported secret). `Run.exports` are what it exported."""
    mocks = RecordingMocks({})
    mocks.references = dict(references or {})
    monitor = RecordingMonitor(mocks, PreviewState(state) if preview else None)
    pulumi.runtime.set_all_config(dict(config or {}), [])
    runtime_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    try:
        _sync_await(run_pulumi_func(program))
    except Exception as err:
        err.registrations = monitor.registrations
        _cancel_leftover_tasks()
        raise
    return _finished_run(stack, dict(config or {}), monitor, preview)


def _finished_run(stack: str, config: dict[str, str], monitor: "RecordingMonitor", preview: bool) -> Run:
    """The Run of a program that has finished: its registrations, and its exports resolved (which are secret)."""
    root = runtime_settings.get_root_resource()
    exports, secret_exports = {}, set()
    for name, value in (root.outputs or {}).items():
        output = pulumi.Output.from_input(value)
        exports[name] = _sync_await(output.future())
        if _sync_await(output.is_secret()):
            secret_exports.add(name)
    return Run(stack, config, monitor.registrations, exports, frozenset(secret_exports), preview,
               dict(root.outputs or {}))


# _run_program's changes at their defaults: a call with these (tmp_path aside) runs the stack file as it is.
_UNCHANGED = {name: parameter.default for name, parameter in inspect.signature(_run_program).parameters.items()
              if parameter.kind is inspect.Parameter.KEYWORD_ONLY}
