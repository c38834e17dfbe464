"""Toy objectives shared by the sampler tests (the channel space's shape: int genes 1..10)."""


def keeps(trial, dims, high=10):
    return [trial.suggest_int(f"keep_{j:03d}", 1, high) for j in range(dims)]


def toy(target):
    """Maximise -sum((x_j - t_j)^2) over int genes in 1..10."""
    def objective(trial):
        return -float(sum((x - t) ** 2 for x, t in zip(keeps(trial, len(target)), target)))
    return objective
