"""Search strategies; each is an Optuna sampler (see ``searchkit.registry.STRATEGIES``)."""
