"""Read: the stack's config and the service graph (services.yaml or services.d/) become one typed, validated
Settings object, or one error naming every problem. Imports nothing from plan/ or components/, and no Pulumi."""
