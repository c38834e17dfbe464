"""Search spaces, one folder each: the space, its build, its costs, its latency kernels and
its benchmark. The protocol is :class:`searchkit.core.space.Space`."""

from searchkit.core.space import Space

__all__ = ["Space"]
