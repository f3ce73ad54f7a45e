"""A service graph split per team: `serviceGraph` naming a directory (`services.d/`) instead of a file.

Each `*.yaml` file directly in the directory (sorted by name; not recursive) is a fragment: `owners` (its code owners,
written into the generated CODEOWNERS by deploy/codeowners.py), an optional `shard` (the default of its namespaces'
`shard`), `namespaces` and `services` (graph_format.FRAGMENT). Other names are not read: `README.md`, `.gitkeep`,
hidden files (editors' backups and lock files); a subdirectory, a `*.yml` file or a symbolic link is an error, since
its author surely meant it to be read (or, for a link, to be owned by the file it points to).

The fragments are merged into one document and validated as one graph (read/graph.py parse_graph: a service of one
file may allow a caller of another), with the team boundaries checked first: a namespace or a service key is
declared by one file only, and a service lives in a namespace its own file declares, so a team cannot add services,
and so grants, to another team's namespace. Every problem names the file and the path inside it
(`services.d/payments.yaml: services.billing.allow[0]`); the graph's limits hold for the files together (their bytes,
their YAML values, and graph_format.MAX_GRAPH_FILES files).
"""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

from read import graph_format
from read.errors import Problems, short
from read.graph import Fragment, ServiceGraph, _kind, _name, _Reader, collector_paused, load_graph, parse_graph
from read.inputs import MAX_GRAPH_BYTES, InputError, load_yaml_counting, read_text_file
from read.meshes import DEFAULT_MESH

_FRAGMENT_KEYS = graph_format.FRAGMENT.keys
SUFFIX = ".yaml"


def load_service_graph(path: Path, display: str, problems: Problems, project_dir: Path | None = None,
                       mesh: str = DEFAULT_MESH) -> ServiceGraph | None:
    """The graph the serviceGraph setting names: one file, or a directory of per-team fragments (merged), checked for
    the stack's mesh (read/meshes.py)."""
    try:
        is_directory = path.is_dir()
    except (OSError, ValueError):
        is_directory = False  # reading it as a file says what is wrong
    if is_directory:
        return load_fragments(path, display, problems, project_dir, mesh)
    return load_graph(path, display, problems, mesh)


def fragment_files(directory: Path) -> tuple[list[Path], list[tuple[str, str, str]]]:
    """The fragment files of a directory, sorted by name (byte order, as CODEOWNERS lists them), and the entries that
    are refused: (name, what is wrong, how to fix it). Names that are not fragments are left alone."""
    files, refused = [], []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        name = entry.name
        if name.startswith("."):
            continue  # hidden: editors' backups and lock files (emacs' .#x.yaml is a dangling link), .gitkeep
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            if name.endswith((SUFFIX, ".yml")):
                refused.append((name, "is a symbolic link", "Make it a regular file: CODEOWNERS gives each fragment "
                                "file its owners, and a link would read another file under this one's owners"))
            continue
        if stat.S_ISDIR(info.st_mode):
            refused.append((name, "is a directory: fragments are read from the directory itself, not from "
                                  "subdirectories", "Move its files up into the graph directory"))
            continue
        if name.endswith(".yml"):
            refused.append((name, "ends in .yml: only *.yaml files are fragments", f"Rename it to {name[:-4]}.yaml"))
            continue
        if not name.endswith(SUFFIX):
            continue  # README.md and other notes
        if not graph_format.FRAGMENT_FILE.matches(name):
            refused.append((name, f"{short(name)} is not a name CODEOWNERS can write as a path",
                            "Name it with at most 100 letters, digits, '-', '_' and '.' before .yaml, starting with a "
                            "letter or digit (CODEOWNERS has no escapes for spaces, '#' or wildcards)"))
            continue
        files.append(Path(entry.path))
    return files, refused


def _file_display(display: str, name: str) -> str:
    return f"{display}{name}" if display.endswith("/") else f"{display}/{name}"


@collector_paused()
def load_fragments(directory: Path, display: str, problems: Problems, project_dir: Path | None = None,
                   mesh: str = DEFAULT_MESH) -> ServiceGraph | None:
    """Read, check and merge every fragment of `directory`; problems go to `problems`, None when any."""
    before = len(problems.items)
    top = _Reader(display, problems)
    try:
        files, refused = fragment_files(directory)
    except OSError as err:
        top.add("", f"cannot be read: {err.strerror}")
        return None
    for name, what, fix in refused:
        problems.add(_file_display(display, name), what, fix)
    if len(files) > graph_format.MAX_GRAPH_FILES:
        top.add("", f"holds {len(files):,} fragment files, more than the limit of {graph_format.MAX_GRAPH_FILES:,}",
                "Merge some teams' files (see docs/service-graph.md, 'Limits')")
        return None
    if not files and not refused:
        top.add("", "holds no *.yaml fragment file",
                "Add a file per team (docs/service-graph.md, 'Splitting the graph per team'), or point "
                "mtls-mesh:serviceGraph at a graph file such as services.yaml")
        return None

    budget, values = MAX_GRAPH_BYTES, 0
    namespaces: dict[str, Any] = {}
    services: dict[str, Any] = {}
    # Every file may declare the clusters its services run in; the graph's are all of them (each `{}`, so two files
    # declaring one cluster agree).
    clusters: dict[str, Any] = {}
    origins: dict[str, str] = {}
    fragments: list[Fragment] = []
    for path in files:
        shown = _file_display(display, path.name)
        reader = _Reader(shown, problems)
        text = ""
        try:
            text = read_text_file(path, budget)
            document, values = load_yaml_counting(text, values)
        except InputError as err:
            if "more than the limit of" in err.what and budget < MAX_GRAPH_BYTES:
                reader.add("", f"{err.what} left of the {MAX_GRAPH_BYTES:,} bytes the graph's fragment files may hold "
                           "together", "Trim the files (see docs/service-graph.md, 'Limits')")
            elif "cannot start any token" in err.what and "@" in text:
                reader.add("", err.what, "Quote each owner, owners: ['@org/team']: YAML reserves a leading '@'")
            else:
                reader.add("", err.what, err.fix)
            if "values (lists, mappings and scalars)" in err.what or "more than the limit of" in err.what:
                # The budget is spent: every later file would say the same, and the graph without them would only
                # report their services as unknown callers.
                return None
            continue
        budget -= len(text.encode("utf-8"))
        project_path = _project_path(path, project_dir)
        fragment = _read_fragment(reader, document)
        if fragment is None:
            continue
        owners, shard, raw_namespaces, raw_services, raw_clusters = fragment
        if isinstance(raw_clusters, dict):
            for name, body in raw_clusters.items():
                clusters.setdefault(name, body)
        elif raw_clusters is not None:
            reader.add("clusters", f"must be a mapping of cluster name to {{}}, not {_kind(raw_clusters)}")
        declared: list[str] = []
        for name, body in raw_namespaces.items():
            key = f"namespaces.{_name(name)}"
            if key in origins:
                reader.add(key, f"is also declared in {origins[key]}",
                           "A namespace belongs to one team's file: remove it from one of them")
                continue
            origins[key] = shown
            declared.append(name)
            if shard is not None and (body is None or (isinstance(body, dict) and body.get("shard") is None)):
                body = {**(body or {}), "shard": shard}
            namespaces[name] = body
        listed: list[str] = []
        for key, body in raw_services.items():
            where = f"services.{_name(key)}"
            if where in origins:
                reader.add(where, f"is also declared in {origins[where]}",
                           "A service key is unique in the whole graph: rename or remove one of them")
                continue
            origins[where] = shown
            listed.append(key)
            services[key] = body
        fragments.append(Fragment(shown, project_path, owners, tuple(declared), tuple(listed)))

    # The team boundary: a service lives in a namespace its own file declares (once every file is read, since the
    # namespace's file may come later). A namespace declared nowhere is the graph's own check, below. The service is
    # still merged, so the rest of the graph is checked with it and every problem shows at once.
    for key, body in services.items():
        namespace = body.get("namespace") if isinstance(body, dict) else None
        owner = origins.get(f"namespaces.{_name(namespace)}") if isinstance(namespace, str) else None
        mine = origins[f"services.{_name(key)}"]
        if owner is not None and owner != mine:
            problems.add(f"{mine}: services.{_name(key)}.namespace",
                         f"namespace '{namespace}' is declared in {owner}, not in this file",
                         f"A team declares services only in its own namespaces: move the service to {owner} (whose "
                         "owners approve it), or ask them to move the namespace to this file")

    merged = {"namespaces": namespaces, "services": services, **({"clusters": clusters} if clusters else {})}
    graph = parse_graph(merged, display, problems, origins, mesh)
    if graph is None or len(problems.items) != before:
        return None
    return replace(graph, fragments=tuple(fragments))


def _project_path(path: Path, project_dir: Path | None) -> str:
    """The file's path from the project directory, '/'-separated (what CODEOWNERS writes), or '' outside it."""
    if project_dir is None:
        return ""
    try:
        return path.resolve().relative_to(project_dir.resolve()).as_posix()
    except ValueError:
        return ""


def _read_fragment(reader: _Reader, document: Any):
    """A fragment's owners, default shard, namespaces and services (raw: the merged graph validates them), or None."""
    if not isinstance(document, dict):
        reader.add("", f"must be a mapping with 'owners', 'namespaces' and 'services', not {_kind(document)}")
        return None
    if not any(key in document for key in _FRAGMENT_KEYS):
        # Not a fragment at all: quoting its keys could print someone's secrets (graph.parse_graph does the same).
        reader.add("", "is not a service graph fragment: it has none of 'owners', 'namespaces' and 'services' at the "
                   "top level", "Move it out of the graph directory, or write the team's part of the graph in it")
        return None
    fields = reader.mapping(document, "", _FRAGMENT_KEYS)
    owners = _owners(reader, fields.get("owners"))
    shard = reader.shard_name(fields.get("shard"), "shard")
    raw_namespaces = fields.get("namespaces")
    if raw_namespaces is None:
        reader.add("namespaces", "is missing", "Declare the namespaces this team owns under 'namespaces:'")
        raw_namespaces = {}
    elif not isinstance(raw_namespaces, dict):
        reader.add("namespaces", f"must be a mapping of namespace name to its settings, not {_kind(raw_namespaces)}")
        raw_namespaces = {}
    elif not raw_namespaces:
        reader.add("namespaces", "is empty", "A team's file owns at least one namespace: declare it here")
    elif not reader.within(raw_namespaces, graph_format.MAX_NAMESPACES, "namespaces", "namespaces"):
        raw_namespaces = {}
    raw_services = fields.get("services")
    if raw_services is None:
        raw_services = {}
    elif not isinstance(raw_services, dict):
        reader.add("services", f"must be a mapping of service name to service, not {_kind(raw_services)}")
        raw_services = {}
    elif not reader.within(raw_services, graph_format.MAX_SERVICES, "services", "services"):
        raw_services = {}
    return owners, shard, raw_namespaces, raw_services, fields.get("clusters")


def _owners(reader: _Reader, raw: Any) -> tuple[str, ...]:
    fix = ("e.g. owners: ['@example-org/payments-team'] (quoted: YAML reserves a leading '@'): a GitHub @user, "
           "@org/team or an email address")
    if raw is None:
        reader.add("owners", "is missing: every file of the graph has owners, who approve its changes (CODEOWNERS)",
                   fix)
        return ()
    if not isinstance(raw, list) or not raw:
        reader.add("owners", f"must be a non-empty list of code owners, not {_kind(raw) if raw != [] else 'empty'}",
                   fix)
        return ()
    if not reader.within(raw, graph_format.MAX_OWNERS, "owners", "owners"):
        return ()
    owners: list[str] = []
    for index, owner in enumerate(raw):
        if not isinstance(owner, str) or len(owner) > graph_format.OWNER_MAX or not graph_format.OWNER.matches(owner):
            hint = f" (did you mean '@{owner}'?)" if isinstance(owner, str) and graph_format.OWNER.matches(f"@{owner}") \
                else ""
            reader.add(f"owners[{index}]", f"{short(owner)} is not a code owner{hint}", fix)
        elif owner in owners:
            reader.add(f"owners[{index}]", f"'{owner}' is listed twice", "List each owner once")
        else:
            owners.append(owner)
    return tuple(owners)
