"""Training the network on the token-wise loss: optax's Adam, one jitted step, checkpoints, a NaN stop.

The loss (``"tokens"``, the default) of parameters ``p`` on measures ``X`` (M, n, d) with labels
``Y`` (M, n, d) is the mean over measures and tokens of ``|f_p(x_i) - y_i|^2``
(:func:`token_loss`): the solution map is a push-forward by an in-context map, so each token's
image is its label. ``"sinkhorn"`` compares the output and label measures instead (ott-jax's
Sinkhorn divergence, :func:`sinkhorn_loss`). A step
(:func:`make_step`) draws its minibatch from ``default_rng([seed, step])`` (the same batches on
resume), takes the gradient (``jax.value_and_grad``) and updates with optax; all of it jitted
once, on JAX's default device (CPU or GPU: a device choice, not another code path).

:func:`train` runs steps ``start .. steps`` and calls ``checkpoint(state)`` every
``checkpoint_every`` steps and at the end: the caller stores it (:mod:`.store`), and a killed
training resumes from the last one with the same batches and the same optimiser state, so it
ends where the uninterrupted one ends. A loss or gradient that is not finite stops the training
with :class:`Diverged` before anything of that step is kept.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vlasov_tf.learning.network import Architecture, NetParams, forward

__all__ = [
    "LOSSES",
    "Diverged",
    "TrainState",
    "make_optimizer",
    "make_step",
    "predict",
    "token_loss",
    "train",
]


#: The training losses: token-wise (each token's image is its label) or Sinkhorn between measures.
LOSSES = ("tokens", "sinkhorn")


class Diverged(RuntimeError):
    """The loss became NaN or infinite: the training stopped (the last checkpoint is kept)."""


@dataclass
class TrainState:
    """Where a training is: the step reached, the parameters, the optimiser's state (its leaves),
    and the loss history (one row per step: train loss; validation loss at checkpoints, else NaN)."""

    step: int
    params: NetParams
    opt_leaves: list[np.ndarray]
    history: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # step, train, validation


def make_optimizer(learning_rate: float, clip: float = 1.0) -> optax.GradientTransformation:
    """Adam with the gradient's global norm clipped at ``clip`` (a first step far from the data
    cannot throw the parameters out of the range where the flow is tame)."""
    return optax.chain(optax.clip_by_global_norm(clip), optax.adam(learning_rate))


def predict(arch: Architecture, params: Mapping[str, Any], X: Any) -> Any:
    """(M, n, d) outputs of the network for (M, n, d) inputs, each measure with weights 1/n."""
    return jax.vmap(lambda x: forward(arch, params, x))(X)


def token_loss(arch: Architecture, params: Mapping[str, Any], X: Any, Y: Any) -> Any:
    """Mean over measures and tokens of the squared distance of the network's output to its label."""
    return jnp.mean(jnp.sum((predict(arch, params, X) - Y) ** 2, axis=-1))


def sinkhorn_loss(arch: Architecture, params: Mapping[str, Any], X: Any, Y: Any, epsilon: float) -> Any:
    """Mean over measures of the Sinkhorn divergence (ott-jax, squared Euclidean cost, entropic
    regularisation ``epsilon``) between the network's output measure and the label measure, each of
    weights 1/n: a loss of measures, blind to which token went where."""
    from ott.geometry import pointcloud
    from ott.tools import sinkhorn_divergence

    def one(p: Any, y: Any) -> Any:
        return sinkhorn_divergence.sinkhorn_divergence(pointcloud.PointCloud, p, y, epsilon=epsilon)[0]

    return jnp.mean(jax.vmap(one)(predict(arch, params, X), Y))


def loss_function(arch: Architecture, loss: str = "tokens", epsilon: float = 0.01) -> Callable[..., Any]:
    """``(params, X, Y) -> loss``: :func:`token_loss` (``"tokens"``) or :func:`sinkhorn_loss`."""
    if loss == "tokens":
        return lambda p, X, Y: token_loss(arch, p, X, Y)
    if loss == "sinkhorn":
        return lambda p, X, Y: sinkhorn_loss(arch, p, X, Y, epsilon)
    raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")


def make_step(
    arch: Architecture, optimizer: optax.GradientTransformation, loss: str = "tokens", epsilon: float = 0.01
) -> Callable[[Any, Any, Any, Any], tuple[Any, Any, Any, Any]]:
    """The jitted ``(params, opt_state, X, Y) -> (params, opt_state, loss, grad_norm)``."""
    objective = loss_function(arch, loss, epsilon)

    def step(params: Any, opt_state: Any, X: Any, Y: Any) -> tuple[Any, Any, Any, Any]:
        loss, grads = jax.value_and_grad(lambda p: objective(p, X, Y))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(grads)))
        return optax.apply_updates(params, updates), opt_state, loss, norm

    return jax.jit(step)


@functools.lru_cache(maxsize=16)
def _compiled(
    arch: Architecture, learning_rate: float, loss: str, epsilon: float
) -> tuple[optax.GradientTransformation, Any, Any]:
    """The optimiser, the jitted step and the jitted loss of an architecture: compiled once per
    process (a resumed or repeated training in the same process reuses them)."""
    optimizer = make_optimizer(learning_rate)
    return optimizer, make_step(arch, optimizer, loss, epsilon), jax.jit(loss_function(arch, loss, epsilon))


def _batch(seed: int, step: int, count: int, size: int) -> np.ndarray:
    """The minibatch of ``step``: ``size`` distinct measures of ``count`` (all when size >= count)."""
    if size >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng([seed, step]).choice(count, size, replace=False))


def train(
    arch: Architecture,
    state: TrainState,
    train_set: tuple[np.ndarray, np.ndarray],
    *,
    steps: int,
    learning_rate: float,
    batch: int,
    seed: int,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    checkpoint_every: int = 100,
    checkpoint: Callable[[TrainState], None] | None = None,
    log: Callable[[str], object] | None = None,
    loss: str = "tokens",
    epsilon: float = 0.01,
) -> TrainState:
    """Train from ``state`` up to ``steps`` steps (module docstring); returns the final state.

    ``checkpoint`` gets the state every ``checkpoint_every`` steps and at the end (with the
    validation loss then, when ``validation`` is given). ``loss``: :data:`LOSSES` (``epsilon``:
    the Sinkhorn regularisation). Raises :class:`Diverged` at the first
    non-finite loss or gradient; what was checkpointed before stays the caller's.
    """
    optimizer, step_fn, val_fn = _compiled(arch, learning_rate, loss, epsilon)
    params = {k: jnp.asarray(v) for k, v in state.params.items()}
    template = optimizer.init(params)
    treedef = jax.tree_util.tree_structure(template)
    leaves = [jnp.asarray(a) for a in state.opt_leaves]
    opt_state = jax.tree_util.tree_unflatten(treedef, leaves) if leaves else template
    X, Y = (jnp.asarray(a) for a in train_set)
    history = [tuple(r) for r in state.history]
    k = state.step
    while k < steps:
        idx = _batch(seed, k, len(train_set[0]), batch)
        new_params, new_opt, value, gnorm = step_fn(params, opt_state, X[idx], Y[idx])
        value, gnorm = float(value), float(gnorm)
        if not (np.isfinite(value) and np.isfinite(gnorm)):
            raise Diverged(
                f"training diverged at step {k + 1}: loss {value}, gradient norm {gnorm} "
                f"(try a smaller learning_rate); the checkpoint of step {state.step} is kept"
            )
        params, opt_state, k = new_params, new_opt, k + 1
        val = np.nan
        at_checkpoint = k % checkpoint_every == 0 or k == steps
        if at_checkpoint and validation is not None:
            val = float(val_fn(params, jnp.asarray(validation[0]), jnp.asarray(validation[1])))
        history.append((k, value, val))
        if at_checkpoint:
            state = TrainState(
                step=k,
                params={n: np.asarray(v) for n, v in params.items()},
                opt_leaves=[np.asarray(a) for a in jax.tree_util.tree_leaves(opt_state)],
                history=np.array(history, dtype=float).reshape(-1, 3),
            )
            if log is not None:
                log(f"  step {k:6d}  train loss {value:.3e}  validation loss {val:.3e}")
            if checkpoint is not None:
                checkpoint(state)
    return state
