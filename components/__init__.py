"""Register: one ComponentResource per capability, each handed its part of the plan (plan/) and the few values only
a provider makes (roots, signed certificates, tokens). The only package that imports Pulumi."""
