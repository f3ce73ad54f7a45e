"""Measurement: what the Linkerd identity issuer's Vault login gets signed, on a real OpenBao with a stack applied.

    venv/bin/python -m benchmarks.identity_login            # staging and prod

The program's Vault declarations are applied to `bao server -dev` (tests/openbao.py), then, with the login cert-manager
gets for `linkerd/mtls-mesh-identity-<anchor>`, each request of tests/test_vault_least_privilege.identity_attempts is
POSTed to its root/sign-intermediate path. One line per request: the server's status and, when it signed, the CA's
subject, SANs, validity in days and path length. Then the intermediate those CAs chain through, before and after
`vaultIntermediateRenewals: [2031-05]` is applied to the same OpenBao (the next `pulumi up`), and the MeshVaultIntermediateExpiring
tiers written from it. Not a timing: the figures of issue 21, before and after its fix.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "tests")]


def main(stacks: list[str]) -> None:
    from cryptography import x509

    import test_vault_least_privilege as t

    for stack in stacks:
        deployed, (server, reviews) = t.deploy(stack)
        try:
            issuer = deployed.issuer("linkerd", "mtls-mesh-identity-")
            token = deployed.vault_token(issuer)
            spec = deployed.identity_request()
            attempts = {"cert-manager's request": t.cert_manager_sign_parameters(
                t.csr(t.new_key(), spec["commonName"], spec["dnsNames"]), deployed.duration(issuer)),
                **t.identity_attempts(deployed)}
            print(f"== {stack}: {issuer['spec']['vault']['path']}")
            for case, body in attempts.items():
                status, answer = deployed.post(issuer, body, token)
                line = f"{case:32} {status}"
                if status == 200:
                    cert = t.pem(answer["data"]["certificate"])
                    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 86400
                    path_length = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
                    line += (f"  {cert.subject.rfc4514_string()}  SANs={[str(n.value) for n in sans]}  "
                             f"{days:.0f} days  pathlen={path_length}")
                else:
                    line += f"  {(answer or {}).get('errors')}"
                print(line)
            before = t.intermediate_of(t.Chain(deployed, issuer))
            after = t.update(deployed, vaultIntermediateRenewals=["2031-05"])
            renewed = t.intermediate_of(t.Chain(after, after.issuer("linkerd", "mtls-mesh-identity-")))
            tiers = [r["labels"]["threshold"] for g in after.run.object("PrometheusRule", "mtls-mesh", "linkerd")["spec"]["groups"]
                     for r in g["rules"] if r["alert"] == "MeshVaultIntermediateExpiring"]
            print(f"intermediate before: serial {before.serial_number:x} notAfter {before.not_valid_after_utc:%Y-%m-%d %H:%M:%S}")
            print(f"after renewal:       serial {renewed.serial_number:x} notAfter {renewed.not_valid_after_utc:%Y-%m-%d %H:%M:%S}"
                  f"  same key: {renewed.public_key() == before.public_key()}  alert tiers: {tiers}"
                  f"  requests: {[name for _, name, _ in after.mocks.applied]}")
        finally:
            server.__exit__(None, None, None)
            reviews.__exit__(None, None, None)


if __name__ == "__main__":
    main(sys.argv[1:] or ["staging", "prod"])
