"""Names the program derives from the graph must not collide: two objects of one kind with one name in one namespace
would be one object in the cluster, and one of the two intents would silently vanish.

The check runs on the objects the compile step really produces (plan.plan_problems, not a hand-kept list of reserved
names that could drift from them) and maps each clash back to the services whose names made it, so the user learns
which graph entry to change.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Iterable

from read.errors import Problem


def _suspects(graph: Any, namespace: str, name: str) -> list[str]:
    """Services of the namespace whose workload name starts the object name (objects are named <workload>,
    <workload>-<port>, <workload>-<egress>[-<port>], mtls-mesh-<workload>, <workload>-mesh-tls)."""
    bare = name.removeprefix("mtls-mesh-")
    return sorted(f"services.{s.key}" for s in graph.services_in(namespace)
                  if name == s.name or name.startswith(f"{s.name}-") or bare == s.name or bare.startswith(f"{s.name}-"))


def object_name_clashes(graph: Any, objects: Iterable[dict[str, Any]]) -> list[Problem]:
    """One problem per (kind, namespace, name) that two or more of `objects` share; `graph` names the suspects."""
    by_identity: dict[tuple[str, str, str, str], int] = defaultdict(int)
    for obj in objects:
        group = obj["apiVersion"].rpartition("/")[0]
        meta = obj["metadata"]
        by_identity[(group, obj["kind"], meta.get("namespace", ""), meta["name"])] += 1
    problems = []
    for (_, kind, namespace, name), count in sorted(by_identity.items()):
        if count < 2:
            continue
        suspects = _suspects(graph, namespace, name)
        where = graph.locate(suspects)  # each suspect after the file that declares it
        other = ("each other's" if len(suspects) > 1 else "one of the program's own objects'")
        problems.append(Problem(where, f"the {kind} '{name}' in namespace '{namespace}' it produces has "
                                       f"{other} name ({count} objects, one name)",
                                "Rename the service, port or egress entry so that the derived names stay unique"))
    return problems


# etcd refuses a request over --max-request-bytes, default 1.5 MiB (etcd server/embed/config.go,
# DefaultMaxRequestBytes = 1.5 * 1024 * 1024), which makes it the largest object the API server can store. An object
# the graph makes (a NetworkPolicy listing a thousand callers with long selectors) must be refused here instead.
MAX_OBJECT_BYTES = 1536 * 1024


def oversized_objects(graph: Any, objects: Iterable[dict[str, Any]], limit: int = MAX_OBJECT_BYTES,
                      sizes: Iterable[int] | None = None) -> list[Problem]:
    """One problem per object larger than etcd stores; `graph` names the services whose entries made it. `sizes`:
    each object's compact JSON length, when the caller has written it already (objects.document)."""
    problems = []
    objects = list(objects)
    # The API server stores an object as JSON (or smaller protobuf).
    measured = sizes if sizes is not None else (len(json.dumps(obj, separators=(",", ":"))) for obj in objects)
    for obj, size in zip(objects, measured, strict=True):
        if size > limit:
            meta = obj["metadata"]
            namespace = meta.get("namespace", "")
            suspects = _suspects(graph, namespace, meta["name"])
            where = graph.locate(suspects)  # each suspect after the file that declares it
            problems.append(Problem(where, f"the {obj['kind']} '{meta['name']}' in namespace '{namespace}' it produces "
                                           f"is {size:,} bytes, more than etcd's limit of {limit:,}",
                                    "List fewer callers, selector labels or destinations in one service (docs/service-graph.md, "
                                    "'Limits')"))
    return problems
