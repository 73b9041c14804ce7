"""Transformers that learn a Vlasov solution map ``mu_0 -> mu_T`` (needs the ``learn`` extra: JAX, optax).

Importing this package switches JAX to float64 (``jax_enable_x64``): the learned network is the
particle solver's ``method="layers"`` to round-off only in double precision.

- :mod:`.network`: the network's one definition (:class:`~.network.Architecture`, the JAX
  :func:`~.network.forward`, its parameters as a :class:`~vlasov_tf.models.attention.Schedule`);
- :mod:`.data`: initial measures from a stated family by seed, their labels by the target's flow;
- :mod:`.training`: the loss and the optax loop, with checkpoints and a stop on a NaN loss;
- :mod:`.cases`, :mod:`.store`, :mod:`.runner`: ``vlasov-tf learn CASE``.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

from vlasov_tf.learning.network import (  # noqa: E402  (after the float64 switch)
    Architecture,
    forward,
    from_schedule,
    init_params,
    to_schedule,
)

__all__ = ["Architecture", "forward", "from_schedule", "init_params", "to_schedule"]
