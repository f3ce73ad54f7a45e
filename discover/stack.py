"""A stack as discover sees it: its validated settings and their compiled plan, read from the stack file exactly as
`pulumi up` reads and compiles them (read/settings.py, plan/mesh.py), so a proposal is judged by the
program's own rules, derived-name collisions included."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from read.errors import SettingsError
from plan.mesh import MeshPlan, compile_mesh
from read.settings import PROJECT_DIR, Settings, load_settings
from read.stack_files import read_stack_file, stack_file, stack_names

from .errors import DiscoverError


@dataclass(frozen=True)
class Stack:
    settings: Settings
    plan: MeshPlan

    @property
    def name(self) -> str:
        return self.settings.stack

    @property
    def graph(self):
        return self.settings.graph


def load_stack(stack: str, project_dir: Path = PROJECT_DIR, graph_file: str | None = None) -> Stack:
    """The stack's validated settings (and service graph) and their plan, read from its stack file as `pulumi up` would."""
    stacks_dir = project_dir / "stacks"
    known = stack_names(stacks_dir)
    path = stack_file(stack, stacks_dir)
    if stack not in known or not path.is_file():
        raise DiscoverError(f"unknown stack {stack!r}: no stacks/Pulumi.{stack}.yaml; the stacks are {', '.join(known)}")
    try:
        config, secret_keys = read_stack_file(path, project_dir=project_dir)
    except SettingsError as err:
        raise DiscoverError(" ".join(str(err).split("\n"))) from None
    if graph_file is not None:
        config["mtls-mesh:serviceGraph"] = graph_file
        # The graph named on the command line is the operator's explicit choice, wherever it lives; a stack that sets
        # allowFilesOutsideProject itself keeps its value (the CLI hands every stack the default, false, otherwise).
        if config.get("mtls-mesh:allowFilesOutsideProject", "false") == "false":
            config["mtls-mesh:allowFilesOutsideProject"] = "true"
    try:
        settings = load_settings(config, stack, secret_keys=secret_keys, project_dir=project_dir)
        return Stack(settings, compile_mesh(settings))
    except SettingsError as err:
        raise DiscoverError(" ".join(str(err).split("\n"))) from None
