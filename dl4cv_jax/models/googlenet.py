"""googlenet (stub: filled in with the model)."""

BUILDERS: dict = {}
