"""Alert pieces every mesh's rules share: the expiry tiers and how a threshold reads, the rule shape with its runbook
link, and the rule groups for certificates no metric knows, whose notAfter is written into the rule at deploy time
(the trust anchors and the Vault intermediates, the same for both meshes: both sign under the same anchors). Each
mesh's own monitors and rules are plan/linkerd/alerts.py and plan/istio/alerts.py; docs/alerts.md holds the runbooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from read.durations import Duration

MONITORING_API = "monitoring.coreos.com/v1"
DAY = 86400

# `linkerd check` warns when an anchor has less than 60 days left; rotation takes three rounds of restarts.
ANCHOR_WARNING = Duration.parse("1440h")
ANCHOR_CRITICAL = (Duration.parse("720h"), Duration.parse("168h"), Duration.parse("24h"))


def human(duration: Duration) -> str:
    """7d, 36h, 90m: how a threshold reads in a label and a message."""
    seconds = duration.seconds
    if seconds % DAY == 0:
        return f"{seconds // DAY}d"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours}h{minutes}m" if hours and minutes else f"{hours}h" if hours else f"{minutes}m"


@dataclass(frozen=True)
class ExpiryTier:
    severity: str
    remaining: Duration


def expiry_tiers(renew_before: Duration) -> list[ExpiryTier]:
    """Warn once less than the renew-before window remains (renewal is overdue), then escalate: half of it, and for
    long-lived certificates 7 days and 1 day, the 30/15/7/1 rhythm operators of long-lived certificates expect."""
    tiers = [ExpiryTier("warning", renew_before), ExpiryTier("critical", Duration(renew_before.seconds // 2))]
    for days in (7, 1):
        if days * DAY < renew_before.seconds // 2:
            tiers.append(ExpiryTier("critical", Duration(days * DAY)))
    return tiers


# Where each rule's `runbook` annotation points, from the repository's root: the page with a section per alert
# (tests/test_readme.py checks each anchor is one of its headings).
RUNBOOK_PAGE = "docs/alerts.md"


def rule(alert: str, expr: str, severity: str, summary: str, description: str, for_: str = "",
         labels: Mapping[str, str] | None = None, runbook: str = "", page: str = RUNBOOK_PAGE) -> dict[str, Any]:
    """One alerting rule; its `runbook` annotation is `<page>#<runbook, or the alert's name in lower case>`."""
    body: dict[str, Any] = {"alert": alert, "expr": expr}
    if for_:
        body["for"] = for_
    body["labels"] = {"severity": severity, **(labels or {})}
    body["annotations"] = {"summary": summary, "description": description,
                           "runbook": f"{page}#{runbook or alert.lower()}"}
    return body


def certificate_expiry_rules(alert: str, selector: str, what: str, renew_before: Duration, *, runbook: str = "",
                             page: str = RUNBOOK_PAGE, waits: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """cert-manager's expiry gauge for the Certificates `selector` matches, one rule per tier of `expiry_tiers`;
    `waits`: how long each severity is pending before it fires (default 15m warning, 5m critical)."""
    waits = waits or {"warning": "15m", "critical": "5m"}
    return [rule(
        # Aggregated to the certificate's own labels: after the scrape each series also carries the cert-manager pod
        # that exported it, which changes on every restart (and doubles with two replicas).
        alert, f"min by (namespace, name, issuer_kind, issuer_name) "
               f"(certmanager_certificate_expiration_timestamp_seconds{{{selector}}} - time()) < {tier.remaining.seconds}",
        tier.severity,
        f"{what} {{{{ $labels.namespace }}}}/{{{{ $labels.name }}}} expires in less than {human(tier.remaining)}",
        f"cert-manager should have renewed it {human(renew_before)} before expiry; it has "
        f"{{{{ $value | humanizeDuration }}}} left. Issuer: {{{{ $labels.issuer_kind }}}} {{{{ $labels.issuer_name }}}}.",
        for_=waits[tier.severity], labels={"threshold": human(tier.remaining)}, runbook=runbook, page=page)
        for tier in expiry_tiers(renew_before)]


def _expiry_written_at_deploy(alert: str, not_after: Mapping[str, int], warning: Duration,
                              critical: Iterable[Duration], validity: Duration, summary: str,
                              description: str) -> list[dict[str, Any]]:
    """One rule per anchor and tier for a certificate no metric knows: its notAfter, read at deploy time, is written
    into the expression. A tier as long as the certificate's whole validity would always fire, so it is left out.
    `summary` and `description` are formatted with `anchor`, `remaining` and `until`."""
    rules = []
    tiers = [("warning", warning), *(("critical", d) for d in critical)]
    for anchor, expiry in sorted(not_after.items()):
        until = f"{datetime.fromtimestamp(expiry, timezone.utc):%Y-%m-%d %H:%M} UTC"
        for severity, remaining in tiers:
            if remaining >= validity:
                continue
            words = {"anchor": anchor, "remaining": human(remaining), "until": until}
            rules.append(rule(alert, f"vector({expiry} - time()) < {remaining.seconds}", severity,
                              summary.format(**words), description.format(**words),
                              labels={"anchor": anchor, "threshold": human(remaining)}))
    return rules


def anchor_rule_group(not_after: Mapping[str, int], validity: Duration) -> dict[str, Any]:
    """Trust anchors are not cert-manager certificates (Vault root or pulumi-tls), so their notAfter, read from the
    certificate at deploy time, is written into the rule. Rotation is manual: the alert says to start it."""
    return {"name": "mtls-mesh.anchors", "rules": _expiry_written_at_deploy(
        "MeshTrustAnchorExpiring", not_after, ANCHOR_WARNING, ANCHOR_CRITICAL, validity,
        "Trust anchor {anchor} expires in less than {remaining}",
        "Every mesh identity chains to anchor {anchor}, valid until {until}. Rotate it now "
        "(docs/operations.md: Rotating the trust anchor); it takes three rounds of restarts.")}


# The Vault intermediate: a quarter year's warning (a renewal is one setting and one `pulumi up`, but may wait for a
# change window), critical a month and a week before.
INTERMEDIATE_WARNING = Duration.parse("2160h")
INTERMEDIATE_CRITICAL = (Duration.parse("720h"), Duration.parse("168h"))


def intermediate_rule_group(not_after: Mapping[str, int], validity: Duration) -> dict[str, Any]:
    """The Vault intermediate of each anchor (pki-...-int-<anchor>) is not a cert-manager Certificate either: its
    notAfter, read at deploy time from the certificate root/sign-intermediate signs with (the renewed one once
    vaultIntermediateRenewals lists any), is written into the rule, as for the anchors. Once it expires, every identity
    issuer cert-manager renews under it fails to verify; Vault still signs them (sign-intermediate permits outliving
    the signer: openbao internal/builtin/logical/pki/path_root.go pathIssuerSignIntermediate)."""
    return {"name": "mtls-mesh.vault-intermediates", "rules": _expiry_written_at_deploy(
        "MeshVaultIntermediateExpiring", not_after, INTERMEDIATE_WARNING, INTERMEDIATE_CRITICAL, validity,
        "The Vault intermediate of anchor {anchor} expires in less than {remaining}",
        "The identity issuer is renewed about daily under this intermediate, valid until {until}; after that no "
        "proxy accepts the certificates it signs. Renew it: append a new id to vaultIntermediateRenewals and run "
        "`pulumi up`.")}


def signed_workload_rule_group(not_after: Mapping[tuple[str, str], int], renew_before: Duration) -> dict[str, Any]:
    """Without Vault the program signs workload certificates itself (pulumi-tls), so no cert-manager metric knows them:
    their notAfter, read at deploy time, is written into the rule, at the same tiers cert-manager's would have.
    The fix is the same as their renewal: the next `pulumi up` inside the renew-before window replaces them."""
    rules = []
    for (namespace, name), expiry in sorted(not_after.items()):
        for tier in expiry_tiers(renew_before):
            rules.append(rule(
                "MeshWorkloadCertificateExpiring", f"vector({expiry} - time()) < {tier.remaining.seconds}", tier.severity,
                f"The workload certificate {namespace}/{name} expires in less than {human(tier.remaining)}",
                f"The program signed it, valid until {datetime.fromtimestamp(expiry, timezone.utc):%Y-%m-%d %H:%M} UTC, "
                f"and replaces it at the first `pulumi up` within {human(renew_before)} of expiry: run `pulumi up`.",
                for_="15m" if tier.severity == "warning" else "5m",
                labels={"namespace": namespace, "name": name, "threshold": human(tier.remaining)},
                runbook="meshidentityissuerexpiring"))
    return {"name": "mtls-mesh.signed-workload-certificates", "rules": rules}


class CertificateUnreadable(ValueError):
    """A trust anchor's certificate, as its provider returned it, is not one X.509 certificate in PEM."""


def certificate_not_after(pem: str, what: str = "certificate") -> int:
    """notAfter (Unix seconds) of a PEM certificate, read with `cryptography`'s X.509 parser."""
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    except (ValueError, TypeError) as err:
        raise CertificateUnreadable(f"{what}: cannot read the certificate as PEM X.509 ({err}); its expiry alert "
                                    "cannot be written. Check what the PKI returned (pulumi stack output trustAnchors)") from None
    return int(certificate.not_valid_after_utc.timestamp())
