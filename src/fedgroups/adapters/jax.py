"""JAX arrays from the NumPy path: cohorts as ``jax.Array`` (needs the ``jax`` extra)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from fedgroups.adapters.numpy import Cohort, cohorts
from fedgroups.reader.dataset import Group


def _jnp() -> Any:
    try:
        import jax.numpy as jnp
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("fedgroups.adapters.jax needs jax: pip install 'fedgroups[jax]'"
                          ) from e
    return jnp


def to_jax(cohort: Cohort) -> Cohort:
    """The same cohort with its arrays, mask and sizes as ``jax.Array``."""
    jnp = _jnp()
    return Cohort(cohort.keys, {c: jnp.asarray(a) for c, a in cohort.arrays.items()},
                  jnp.asarray(cohort.mask), jnp.asarray(cohort.num_examples))


def jax_cohorts(groups: Iterable[Group], k: int, max_examples: int, *,
                columns: Sequence[str], **kwargs: Any) -> Iterator[Cohort]:
    """:func:`fedgroups.adapters.numpy.cohorts`, converted to ``jax.Array``."""
    _jnp()
    for c in cohorts(groups, k, max_examples, columns=columns, **kwargs):
        yield to_jax(c)
