"""The protocols every component implements and the records they pass each other.

Spaces (:mod:`~searchkit.core.space`), cost models (:mod:`~searchkit.core.costs`), the
training budget (:mod:`~searchkit.core.budget`), the driver port executors talk to
(:mod:`~searchkit.core.ports`), typed options (:mod:`~searchkit.core.options`) and the
one-line user errors (:mod:`~searchkit.core.errors`). Nothing here imports a concrete
space, strategy or executor.
"""
