"""Names the program derives from the stack's settings alone, which both the settings' validation and the builders
need: the certificate subjects that carry the trust domain.

Here, not in the builders' modules, so that validating the settings imports nothing that builds objects (the
builders import the settings' types; the reverse import made an import circle, issue 23).
"""

from __future__ import annotations


def identity_name(trust_domain: str) -> str:
    """The Linkerd identity issuer's common name and DNS name, as Linkerd requires it."""
    return f"identity.linkerd.{trust_domain}"


def anchor_common_name(trust_domain: str) -> str:
    """The subject Linkerd's own docs give a trust anchor."""
    return f"root.linkerd.{trust_domain}"


def workload_root_common_name(trust_domain: str) -> str:
    return f"workload-root.mtls-mesh.{trust_domain}"
