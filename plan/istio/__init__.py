"""Istio's specifics, built from the same Settings and service graph as plan/linkerd/ (issue 32)."""
