"""The name of every resource the program registers (its URN: stack, parent types, type, name) is part of each stack's
state. A URN that changes makes `pulumi up` delete the old resource and create a new one: on a real cluster a
replaced Namespace, Issuer or Vault root. tests/golden/urns.json holds each stack file's URNs; a change to them must
be deliberate. After one, regenerate it (`python tests/test_urns.py`) and say in the commit why the resources whose
URNs changed may be replaced (or give them `aliases`)."""

from __future__ import annotations

import json

import pytest

from harness import PROJECT_DIR, SHARD_STACKS, STACKS, run_program

GOLDEN = PROJECT_DIR / "tests" / "golden" / "urns.json"


def urns(run) -> list[str]:
    return sorted(r.urn for r in run.registrations)


def _compare(stack: str, found: list[str]) -> None:
    expected = json.loads(GOLDEN.read_text())[stack]
    removed, added = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    assert not removed and not added, (f"{stack}: URNs changed (a changed URN replaces the resource on `pulumi up`)\n"
                                       f"  gone: {removed[:10]}\n  new: {added[:10]}\n{__doc__}")
    assert len(found) == len(set(found))


def test_every_stack_registers_the_urns_its_state_holds(each_stack):
    _compare(each_stack.stack, urns(each_stack))


@pytest.mark.parametrize("stack", SHARD_STACKS)
def test_every_shard_stack_registers_the_urns_its_state_holds(stack):
    _compare(stack, urns(run_program(stack)))


@pytest.mark.parametrize("stack", STACKS)
def test_a_first_preview_shows_the_same_urns(stack):
    _compare(stack, urns(run_program(stack, preview=True)))


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps({stack: urns(run_program(stack)) for stack in (*STACKS, *SHARD_STACKS)}, indent=1)
                      + "\n")
    print(f"wrote {GOLDEN}")
