"""The mtls-mesh policy pack: `pulumi preview --policy-pack policy --policy-pack-config policy/<stack>.json`.

Mandatory by default; each stack's config file sets what is advisory there (everything in dev).
"""

from pulumi_policy import PolicyPack

from mesh_policies import DEFAULT_ENFORCEMENT, POLICIES

PolicyPack(name="mtls-mesh-guards", enforcement_level=DEFAULT_ENFORCEMENT, policies=POLICIES)
