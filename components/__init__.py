"""mtls-mesh components: one ComponentResource per capability, each fed by the validated settings."""
