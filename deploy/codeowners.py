"""The repository's `.github/CODEOWNERS`, generated from the service graph, so each team approves its own allow-lists.

    python -m deploy.codeowners --write [--platform-owners @org/platform-team ...]
    python -m deploy.codeowners --check    # exit 1 if the committed file is not the generated one
    python -m deploy.codeowners            # print the generated file

The graphs are those the stacks read: `mtls-mesh:serviceGraph` of every stack file (`stacks/Pulumi.*.yaml`) and
Pulumi.yaml's default. A graph split per team (a directory, read/fragments.py) gives one line per fragment file with
that file's `owners`; a one-file graph is the platform's. The file is, in this order (GitHub: "the last matching
pattern takes the most precedence", docs/research/issue-24-shards.md section 6):
1. `*` and the platform's owners: the default, so a new fragment file (or anything else no later line names) needs
   the platform's approval until its line is generated;
2. `/<graph dir>/<file>.yaml <owners>` per fragment, sorted as the program reads them;
3. the files the platform owns, last so that no line above can take them: the one-file graphs, the stack files, the
   program's code, the schemas, CI and this file's own directory.

The platform's owners are not part of the graph: `--platform-owners` sets them, and without it the owners of the
committed file's `*` line are kept (the committed file is their record; `--check` compares everything else).

GitHub's rules it respects: paths are case sensitive and anchored at the root with `/`; there is no `!` negation,
no `\\#` escaping and no `[ ]` range, so a fragment's path may hold only letters, digits, '-', '_' and '.'
(graph_format.FRAGMENT_FILE for the file names, checked here for the directories); every owner needs write access to
the repository (teams explicitly), which GitHub, not this program, can check: an owner without it makes the line
invalid, and GitHub shows the error when the file is viewed.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from read import graph_format
from read.errors import Problems
from read.fragments import load_service_graph
from read.settings import PROJECT, load_declarations
from read.stack_files import read_stack_file

PROJECT_DIR = Path(__file__).resolve().parents[1]
CODEOWNERS = Path(".github") / "CODEOWNERS"
# What the platform owns outright, whatever an earlier line says (each listed only if it exists): the settings and
# stacks, the program (read -> plan -> components), its checks and delivery, and CODEOWNERS wherever GitHub reads it.
PLATFORM_PATHS = ("/Pulumi.yaml", "/__main__.py", "/requirements.txt", "/requirements-dev.txt", "/pytest.ini",
                  "/stacks/", "/read/", "/plan/", "/components/", "/policy/", "/deploy/", "/discover/", "/schema/",
                  "/tests/", "/.ci/", "/.github/", "/CODEOWNERS", "/docs/CODEOWNERS")
# A path component CODEOWNERS can write as it is (no space, '#', '!', '*', '?', '[', '\\').
_PLAIN_PART = re.compile(r"[A-Za-z0-9._-]+\Z")
_DEFAULT_LINE = re.compile(r"^\*\s+(\S.*)$", re.MULTILINE)


class CodeownersError(Exception):
    pass


@dataclass(frozen=True)
class TeamLine:
    path: str  # "/services.d/payments.yaml"
    owners: tuple[str, ...]


def graph_settings(project_dir: Path) -> list[str]:
    """The serviceGraph values the stacks read (stack files, else Pulumi.yaml's default), sorted, each once."""
    declarations = load_declarations(project_dir / "Pulumi.yaml")
    default = str(declarations["serviceGraph"].default)
    values = {default}
    for path in sorted((project_dir / "stacks").glob("Pulumi.*.yaml")):
        config, _ = read_stack_file(path, project_dir=project_dir, validate=False)
        values.add(config.get(f"{PROJECT}:serviceGraph", default))
    return sorted(values)


def ownership(project_dir: Path) -> tuple[list[TeamLine], list[str]]:
    """Each fragment file's line, and the one-file graphs (root-anchored paths) the platform owns."""
    teams: list[TeamLine] = []
    single: list[str] = []
    problems = Problems()
    for value in graph_settings(project_dir):
        path = project_dir / value
        inside = _inside(path, project_dir)
        if not path.is_dir():
            if inside is not None and path.is_file():
                single.append(f"/{inside}")
            continue
        if inside is None:
            continue  # outside the repository: CODEOWNERS cannot name it
        graph = load_service_graph(path, value, problems, project_dir)
        for fragment in (graph.fragments if graph is not None else ()):
            teams.append(TeamLine(f"/{fragment.project_path}", fragment.owners))
    if problems.items:
        raise CodeownersError("the service graph is not valid, so its owners are not known:\n" +
                              "\n".join(f"  {p}" for p in problems.items))
    for line in teams:
        bad = [part for part in line.path.strip("/").split("/") if not _PLAIN_PART.match(part)]
        if bad:
            raise CodeownersError(f"{line.path}: CODEOWNERS cannot write the path part {bad[0]!r} (it has no escapes): "
                                  "name the graph's directories with letters, digits, '-', '_' and '.' only")
        taken = [p for p in PLATFORM_PATHS if p.endswith("/") and line.path.startswith(p)]
        if taken:
            raise CodeownersError(f"{line.path}: the platform's line {taken[0]} comes after the teams' and would take "
                                  "the file from its owners: keep the graph directory outside it")
    return teams, sorted(set(single))


def _inside(path: Path, project_dir: Path) -> str | None:
    try:
        return path.resolve().relative_to(project_dir.resolve()).as_posix()
    except ValueError:
        return None


def check_owners(owners: list[str]) -> tuple[str, ...]:
    if not owners:
        raise CodeownersError("no platform owners: pass --platform-owners (e.g. @example-org/platform-team), or keep "
                              f"the '*' line of the committed {CODEOWNERS.as_posix()}")
    for owner in owners:
        if len(owner) > graph_format.OWNER_MAX or not graph_format.OWNER.matches(owner):
            raise CodeownersError(f"{owner!r} is not a code owner: a GitHub @user, @org/team or an email address")
    return tuple(dict.fromkeys(owners))


def committed_platform_owners(project_dir: Path) -> list[str]:
    path = project_dir / CODEOWNERS
    if not path.is_file():
        return []
    match = _DEFAULT_LINE.search(path.read_text(encoding="utf-8"))
    return match.group(1).split() if match else []


def render(platform: tuple[str, ...], teams: list[TeamLine], single: list[str], project_dir: Path) -> str:
    owners = " ".join(platform)
    lines = [
        "# Generated by `python -m deploy.codeowners --write` from the service graph (docs/service-graph.md,",
        "# 'Splitting the graph per team'); do not edit: tests/test_codeowners.py fails when it differs from what the",
        "# graph generates.",
        "# GitHub applies the LAST matching line: the platform's default first, then each team's file of the graph,",
        "# then what the platform owns outright, last so that no line above can take it.",
        "",
        "# The platform: the default owner, of new fragment files too until their line is generated.",
        f"* {owners}",
        "",
    ]
    if teams:
        lines.append("# Each file of the service graph, by its `owners:`.")
        lines += [f"{team.path} {' '.join(team.owners)}" for team in teams]
    else:
        lines.append("# No team lines: the service graph is one file, which the platform owns (split it per team, "
                     "docs/service-graph.md,")
        lines.append("# 'Splitting the graph per team', and each file's owners get a line here).")
    lines += ["", "# Owned by the platform, whatever matches above."]
    # Each only if it exists, but for the directory of this file, which exists once it is written.
    mine = f"/{CODEOWNERS.parent.as_posix()}/"
    platform_paths = [*single, *(p for p in PLATFORM_PATHS if p == mine or (project_dir / p.strip("/")).exists())]
    lines += [f"{path} {owners}" for path in dict.fromkeys(platform_paths)]
    return "\n".join(lines) + "\n"


def generate(project_dir: Path = PROJECT_DIR, platform_owners: list[str] | None = None) -> str:
    platform = check_owners(platform_owners or committed_platform_owners(project_dir))
    teams, single = ownership(project_dir)
    return render(platform, teams, single, project_dir)


def main(argv: list[str] | None = None, project_dir: Path = PROJECT_DIR) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.codeowners", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"write {CODEOWNERS.as_posix()}")
    mode.add_argument("--check", action="store_true", help="exit 1 if the committed file is not the generated one")
    parser.add_argument("--platform-owners", nargs="+", metavar="OWNER",
                        help="the platform's owners (default: those of the committed file's '*' line)")
    args = parser.parse_args(argv)
    try:
        text = generate(project_dir, args.platform_owners)
    except CodeownersError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    path = project_dir / CODEOWNERS
    if args.write:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {CODEOWNERS.as_posix()}")
        return 0
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current != text:
            sys.stderr.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                       f"{CODEOWNERS.as_posix()} (committed)", "generated"))
            print(f"{CODEOWNERS.as_posix()} is stale: run python -m deploy.codeowners --write", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
