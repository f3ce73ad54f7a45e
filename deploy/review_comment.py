"""The one review comment of a pull request's previews: every previewed stack's access and egress matrices merged.

    python -m deploy.review_comment <artifact dir> --out comment.md [--full full.md] [--run-url <url>]

<artifact dir> holds the review files (deploy/review_matrices.py, one per previewed stack) and, from the job that
chose the stacks, `_selection.json` (deploy/changed_stacks.py --reasons; no stack name starts with `_`, so no review
file `<stack>.json` replaces it when the artifacts are merged into one folder). The comment says per environment (a
platform and its shards, or a single stack) which stack was previewed and why, the preview's outcome (or that the
stack is new: not in the backend yet, so not previewed, its matrices compiled), which stack owns each namespace,
each stack's entries that differ from the base, and the merged matrices. It starts with MARKER, by which the
workflow finds and updates its own comment instead of adding one per push.

GitHub refuses a comment longer than 65,536 characters: a longer one is cut at a line, its open <details> closed,
with a note that the whole comment is the run's artifact (`--full` writes it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable

MARKER = "<!-- mtls-mesh:review-matrices -->"
# GitHub's limit on an issue or pull-request comment body, in characters; kept below it by what the note adds.
COMMENT_LIMIT = 65_536
MATRICES = (("accessMatrix", "Access matrix", "who may call each server port"),
            ("egressMatrix", "Egress matrix", "who may reach each destination outside the mesh"))
# A stack not in the backend yet (review_matrices --new-stack): no `pulumi preview` ran, whatever its outcome says.
NEW_STACK = "**new**: its first deploy creates it; its plan is shown from compiling"
OUTCOME = {"success": "previewed", "failure": "**preview failed**", "cancelled": "cancelled", "skipped": "skipped",
           "": "no result"}


def read_dir(directory: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(review files, the selection) found under the artifact directory."""
    reviews, selection = [], []
    for path in sorted(Path(directory).rglob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(document, list):
            selection += document
        elif isinstance(document, dict) and "stack" in document:
            reviews.append(document)
    return reviews, selection


def _cell(value: Any) -> str:
    """A value in a table cell: compact JSON in code, pipes escaped (GitHub's tables split on them)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(", ", ": "))
    return "`" + text.replace("`", "'").replace("|", "\\|").replace("\n", " ") + "`"


def _entries(count: int) -> str:
    return f"{count:,} entr{'y' if count == 1 else 'ies'}"


def changes(base: dict[str, Any] | None, head: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """(entry, added/removed/changed, base value, head value) for each entry that differs, sorted by entry."""
    if base is None:
        return []
    found = []
    for key in sorted(base.keys() | head.keys()):
        if key not in base:
            found.append((key, "added", None, head[key]))
        elif key not in head:
            found.append((key, "removed", base[key], None))
        elif base[key] != head[key]:
            found.append((key, "changed", base[key], head[key]))
    return found


def _new(review: dict[str, Any]) -> bool:
    return bool(review["preview"].get("new"))


def _base(review: dict[str, Any]) -> dict[str, Any] | None:
    """What the stack's entries are compared with: the base's compile; for a new stack with no stack file at the base,
    nothing (the backend holds nothing of it either), so each of its entries shows as added."""
    if review.get("base") is None and _new(review):
        return {key: {} for key, _, _ in MATRICES}
    return review.get("base")


def _environments(reviews: Iterable[dict[str, Any]], selection: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per platform (the GitHub environment's stack): its review files and its chosen stacks, platform first."""
    grouped: dict[str, dict[str, Any]] = {}
    for entry in selection:
        if entry.get("selected"):
            grouped.setdefault(entry["platform"], {"reviews": {}, "chosen": {}})["chosen"][entry["stack"]] = entry
    for review in reviews:
        grouped.setdefault(review["platform"], {"reviews": {}, "chosen": {}})["reviews"][review["stack"]] = review
    return dict(sorted(grouped.items()))


def render(reviews: list[dict[str, Any]], selection: list[dict[str, Any]], run_url: str = "") -> str:
    lines = [MARKER, "### Access and egress matrices of the stacks this pull request changes", ""]
    moves = [e for e in selection if "transition" in e]
    selection = [e for e in selection if "stack" in e]
    unchanged = sorted(e["stack"] for e in selection if not e.get("selected"))
    environments = _environments(reviews, selection)
    for entry in moves:
        # A change of which stack holds a namespace's policy: its previews warn and its `up`s refuse until the
        # handover (deploy/changed_stacks.py transitions, docs/changing-shards.md).
        lines += [f"#### {entry['transition']}: a change of ownership", "",
                  *(f"- {step}" for step in entry["steps"]), "",
                  f"What the pipeline does: {entry['pipeline']}. By hand: `{entry['command']}` (plan first: "
                  f"`{entry['command'].replace(' apply ', ' plan ')}`), then `pulumi up` of each stack, in any "
                  "order.", ""]
    if not environments:
        lines.append("No stack's plan changes: nothing was previewed.")
    for platform, group in environments.items():
        stacks = sorted(group["chosen"].keys() | group["reviews"].keys(), key=lambda s: (s != platform, s))
        lines += [f"#### {platform}", "",
                  "| stack | preview | why | namespaces whose policy it registers | access entries changed | "
                  "egress entries changed |", "|---|---|---|---|---|---|"]
        for stack in stacks:
            review = group["reviews"].get(stack)
            why = group["chosen"].get(stack, {}).get("reason", "").replace("|", "\\|")
            if review is None:
                lines.append(f"| `{stack}` | not run (tests failed, not approved, or cancelled) | {why} | | | |")
                continue
            outcome = OUTCOME.get(review["preview"]["outcome"], review["preview"]["outcome"])
            if _new(review):
                outcome = NEW_STACK
            if review["preview"].get("url"):
                outcome = f"[{outcome}]({review['preview']['url']})"
            counts = []
            for key, _, _ in MATRICES:
                if review.get("problem"):
                    counts.append("")
                elif _base(review) is None:
                    counts.append("(no base)")
                else:
                    counts.append(str(len(changes(_base(review)[key], review[key]))))
            namespaces = ", ".join(review.get("namespaces", [])) or "(none)"
            lines.append(f"| `{stack}` | {outcome} | {why} | {namespaces} | {counts[0]} | {counts[1]} |")
        lines.append("")
        for stack in stacks:
            review = group["reviews"].get(stack)
            if review is None:
                continue
            if review.get("problem"):
                lines += [f"`{stack}` does not compile at the head: {review['problem']}", ""]
            elif _new(review):
                compared = ", every entry added" if review.get("base") is None else ", compared with the base's"
                lines += [f"`{stack}` is new: it is not in the state backend yet, so it was not previewed; its first "
                          f"deploy creates it. Its matrices below are compiled from this pull request's stack files"
                          f"{compared}.", ""]
            elif review.get("base") is None:
                lines += [f"`{stack}` has no base to compare with ({review.get('baseProblem')}).", ""]
        owners = {}
        for stack in stacks:
            owners.update((group["reviews"].get(stack) or {}).get("owners", {}))
        if owners:
            lines += ["<details><summary>Which stack registers each namespace's policy</summary>", "",
                      "| namespace | stack |", "|---|---|"]
            lines += [f"| `{namespace}` | `{owner}` |" for namespace, owner in owners.items()]
            lines += ["", "</details>", ""]
        for key, title, meaning in MATRICES:
            diff_lines = []
            for stack in stacks:
                review = group["reviews"].get(stack)
                if review is None or review.get("problem") or _base(review) is None:
                    continue
                for entry, how, before, after in changes(_base(review)[key], review[key]):
                    diff_lines.append(f"| `{stack}` | {_cell(entry)} | {how} | "
                                      f"{_cell(before) if before is not None else ''} | "
                                      f"{_cell(after) if after is not None else ''} |")
            if diff_lines:
                lines += [f"**{title}: entries that differ from the base** ({meaning})", "",
                          "| stack | entry | | base | this pull request |", "|---|---|---|---|---|", *diff_lines, ""]
            merged = [(entry, stack, value) for stack in stacks
                      for entry, value in ((group["reviews"].get(stack) or {}).get(key) or {}).items()]
            if merged:
                lines += [f"<details><summary>{title} of the previewed stacks, merged ({_entries(len(merged))})"
                          "</summary>", "", "| entry | stack | value |", "|---|---|---|"]
                lines += [f"| {_cell(entry)} | `{stack}` | {_cell(value)} |" for entry, stack, value in sorted(merged)]
                lines += ["", "</details>", ""]
    if unchanged:
        lines += [f"Not previewed, their part of the plan is unchanged: {', '.join(f'`{s}`' for s in unchanged)}.", ""]
    if run_url:
        lines += [f"Each preview's diff is in its job's summary: {run_url}", ""]
    return "\n".join(lines)


def bounded(text: str, limit: int = COMMENT_LIMIT, full_name: str = "review-comment", run_url: str = "") -> str:
    """The comment as GitHub takes it: whole when it fits, else cut at a line with every open <details> closed and a
    note saying where the whole comment is."""
    if len(text) <= limit:
        return text
    where = f"the artifact `{full_name}` of this run" + (f" ({run_url})" if run_url else "")
    note = f"\n\n**Cut at {{kept:,}} of {len(text):,} characters** (GitHub's comment limit): the whole comment is {where}.\n"
    budget = limit - len(note.format(kept=len(text))) - 64  # the closing tags, at most a few
    cut = text[:budget]
    cut = cut[:cut.rfind("\n") + 1] if "\n" in cut else cut
    unclosed = cut.count("<details>") - cut.count("</details>")
    return cut + "\n</details>\n" * unclosed + note.format(kept=len(cut))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.review_comment", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="the comment, at most 65,536 characters")
    parser.add_argument("--full", type=Path, help="the whole comment, when --out had to be cut")
    parser.add_argument("--run-url", default="")
    parser.add_argument("--limit", type=int, default=COMMENT_LIMIT)
    args = parser.parse_args(argv)
    reviews, selection = read_dir(args.directory)
    text = render(reviews, selection, args.run_url)
    comment = bounded(text, args.limit, "review-comment", args.run_url)
    args.out.write_text(comment, encoding="utf-8")
    if args.full is not None and comment != text:
        args.full.write_text(text, encoding="utf-8")
    print(f"{len(reviews)} stacks, {len(text):,} characters{', cut' if comment != text else ''}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
