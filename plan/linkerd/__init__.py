"""Linkerd's specifics: the control plane's Helm values, the policy.linkerd.io authorization objects, the alerts on
the proxies' and control plane's metrics, and the in-cluster verification Jobs. A second mesh gets a sibling package
(plan/istio/) that builds the same kinds of plan entries from the same Settings."""
