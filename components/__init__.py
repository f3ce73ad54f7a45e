"""mtls-mesh: read (settings, graph), compile (plan.py and the pure builders, no Pulumi), register (register_*.py,
one ComponentResource per capability, each fed by its part of the plan)."""
