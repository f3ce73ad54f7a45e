"""Which kubeconfig context a process outside the cluster would use when nothing names one: the current context of
the kubeconfig files client-go loads.

client-go's loading rules (k8s.io/client-go/tools/clientcmd/loader.go, `ClientConfigLoadingRules.Load`): the files
of KUBECONFIG (a path list, `os.pathsep`-separated) in order, else ~/.kube/config; when merging, "the first file to
set a particular map key wins", and current-context is taken from the first file that sets it. pulumi-kubernetes
uses exactly these rules when its provider has no kubeconfig setting (provider.go `Configure`:
`clientcmd.NewDefaultClientConfigLoadingRules`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import yaml


def kubeconfig_files(environ: Mapping[str, str], home: Path) -> list[Path]:
    paths = [p for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return [Path(p) for p in paths] if paths else [home / ".kube" / "config"]


def current_context(environ: Mapping[str, str] | None = None, home: Path | None = None) -> str | None:
    """The current-context of the first kubeconfig file that sets one (None: no file does, or none can be read)."""
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    for path in kubeconfig_files(environ, home):
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        context = document.get("current-context") if isinstance(document, dict) else None
        if isinstance(context, str) and context:
            return context
    return None
