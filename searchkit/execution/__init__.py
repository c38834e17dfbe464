"""Executors: where candidates are trained (in this process, or Ray Tune workers). Each is
a ``run(port)`` callable in :data:`searchkit.registry.EXECUTORS` that imports only
:mod:`searchkit.core`."""
