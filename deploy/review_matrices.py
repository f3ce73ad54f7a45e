"""One previewed stack's access and egress matrices, at the pull request's head and at its base, for the review
comment (deploy/review_comment.py merges every previewed stack's file into one comment).

    python -m deploy.review_matrices --stack <stack> [--head .] [--base ../base] [--outcome <preview outcome>]
        [--url <run url>] [--new-stack true] --out review/<stack>.json

`--new-stack true`: the stack is not in the backend yet (its stack file is new in the pull request, or the backend
has no such stack), so the workflow ran no `pulumi preview` of it (its first deploy creates it): the comment shows it
as new, with the matrices compiled here, instead of as a preview that failed or was skipped.

Why compiled here and not read from the preview: `pulumi preview` stores nothing, and what pulumi/actions hands back
as step outputs after a preview are the stack's outputs of its last update (pulumi/actions src/main.ts: after
`stack.preview(...)` it sets one output per `stack.outputs()`, the `pulumi stack output` of the state), not the
previewed ones. The matrices a stack exports are the plan's access_matrix / egress_matrix split by stack (a
shard's: its namespaces' entries; the platform's: the rest; merged, the single stack's: plan.changes.part_matrices),
so compiling the same stack files gives what the preview would export, and the base's compile what the stack holds
once the base is deployed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[1]
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))

from deploy.changed_stacks import Checkout, Unreadable  # noqa: E402


def review(stack: str, head: Path, base: Path | None, outcome: str = "", url: str = "",
           new: bool = False) -> dict[str, Any]:
    """The review file of one stack: its role, matrices and namespace owners at the head, its matrices at the base
    (None, with the reason, when the base has no such stack or does not compile); `new`: not in the backend yet."""
    cache: dict[str, Any] = {}
    after = Checkout(head, cache)
    result: dict[str, Any] = {"stack": stack, "preview": {"outcome": outcome, "url": url, "new": new}}
    try:
        file = after.stack_file(stack)
        if file is None:
            raise Unreadable(f"stacks/Pulumi.{stack}.yaml does not exist")
        result.update(platform=file.platform, role=file.role, **after.matrices(stack), problem=None)
    except Unreadable as err:
        result.update(platform=stack, role="", accessMatrix={}, egressMatrix={}, owners={}, namespaces=[],
                      problem=str(err))
    result["base"], result["baseProblem"] = None, None
    if base is not None:
        try:
            matrices = Checkout(base, cache).matrices(stack)
            result["base"] = {"accessMatrix": matrices["accessMatrix"], "egressMatrix": matrices["egressMatrix"]}
        except Unreadable as err:
            result["baseProblem"] = str(err)
    else:
        result["baseProblem"] = "no base checkout given"
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.review_matrices", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--head", type=Path, default=PROJECT_DIR)
    parser.add_argument("--base", type=Path)
    parser.add_argument("--outcome", default="", help="the preview step's outcome (success, failure, ...)")
    parser.add_argument("--url", default="", help="where the preview's diff is (the run's page)")
    parser.add_argument("--new-stack", default="false", choices=("true", "false"),
                        help="true: the stack is not in the backend yet, so no preview ran (its first deploy "
                             "creates it)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(review(args.stack, args.head, args.base, args.outcome, args.url,
                                             args.new_stack == "true"), sort_keys=True)
                        + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
