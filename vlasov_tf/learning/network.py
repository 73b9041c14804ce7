"""The learned Transformer: one definition, a JAX forward pass whose parameters are a :class:`Schedule`.

An :class:`Architecture` fixes the form: dimension ``d``, depth ``L`` (layers), ``blocks`` (the
layers share their parameters within a block of ``L / blocks`` consecutive layers), ``heads`` H,
the perceptron's width ``hidden`` m (0: none), the inverse temperature ``beta``, SA or USA, and
the time ``T`` the network spans. Its parameters (:data:`NetParams`, a dict of arrays, each
with a leading axis of blocks) are

    Q, K, V, W : (blocks, H, d, d)    heads: scores beta <Q_h x, K_h y>, output W_h V_h A_h
    P, U, b    : (blocks, d, m), (blocks, m, d), (blocks, m)    the perceptron P (U x + b)_+

and :func:`to_schedule` makes them the attention :class:`~vlasov_tf.models.attention.Schedule`
of ``blocks`` blocks of duration ``T / blocks`` each. :func:`forward` is the particle solver's
``method="layers"`` with ``steps = L`` on that schedule (``vlasov_tf/solvers/particles.py``),
written in JAX (jit, grad, vmap; CPU or GPU by JAX's device choice)::

    x <- normalise(x + h P_x (sum_h W_h V_h A_h[mu](x) + P (U x + b)_+)),   h = T / L,

with ``mu`` the tokens' current empirical measure (weights fixed). The two are the same map to
round-off (``tests/test_learning.py``: 1e-12 with JAX in float64, which this package switches
on when imported).

Identifiability: only ``B_h = beta K_h^T Q_h`` and ``W_h V_h`` enter the field (``Q -> G Q,
K -> G^{-T} K``; ``V -> A V, W -> W A^{-1}``), summed over heads (their order is free); the
perceptron only through the function ``P (U x + b)_+`` (hidden units permuted, rescaled by
positive factors); and on the sphere only the field's tangent part ``P_x X``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vlasov_tf.models.attention import Params, Perceptron, Schedule

__all__ = [
    "PARAM_NAMES",
    "Architecture",
    "NetParams",
    "forward",
    "from_schedule",
    "init_params",
    "to_schedule",
]

#: The parameter arrays, by name (``P, U, b`` only when the perceptron has a width).
PARAM_NAMES = ("Q", "K", "V", "W", "P", "U", "b")
NetParams = dict[str, Any]


@dataclass(frozen=True)
class Architecture:
    """The form of the learned network (module docstring); checked on construction."""

    d: int
    layers: int
    blocks: int = 1
    heads: int = 1
    hidden: int = 0
    beta: float = 1.0
    attention: str = "SA"
    T: float = 1.0

    def __post_init__(self) -> None:
        for name in ("d", "layers", "blocks", "heads", "hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise ValueError(f"architecture {name} must be an integer; got {v!r}")
        if self.d < 2:
            raise ValueError(f"architecture d must be >= 2; got {self.d}")
        if self.layers < 1 or self.blocks < 1 or self.layers % self.blocks:
            raise ValueError(
                f"layers ({self.layers}) must be a positive multiple of blocks ({self.blocks}): "
                "each block holds the same number of layers"
            )
        if self.heads < 0 or self.hidden < 0 or self.heads + self.hidden == 0:
            raise ValueError(f"need heads >= 1 or hidden >= 1; got heads {self.heads}, hidden {self.hidden}")
        if not (np.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"architecture beta must be finite and > 0; got {self.beta}")
        if not (np.isfinite(self.T) and self.T > 0):
            raise ValueError(f"architecture T must be finite and > 0; got {self.T}")
        if self.attention not in ("SA", "USA"):
            raise ValueError(f"attention must be 'SA' or 'USA'; got {self.attention!r}")

    @property
    def per_block(self) -> int:
        """Layers in each block."""
        return self.layers // self.blocks

    @property
    def h(self) -> float:
        """The step ``T / L`` of a layer."""
        return self.T / self.layers

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of each parameter array."""
        nb, H, d, m = self.blocks, self.heads, self.d, self.hidden
        out: dict[str, tuple[int, ...]] = {}
        if H:
            out |= {name: (nb, H, d, d) for name in ("Q", "K", "V", "W")}
        if m:
            out |= {"P": (nb, d, m), "U": (nb, m, d), "b": (nb, m)}
        return out

    def size(self) -> int:
        """The number of scalar parameters."""
        return int(sum(np.prod(s) for s in self.shapes().values()))


def init_params(arch: Architecture, seed: int, scale: float = 0.1) -> NetParams:
    """Parameters near the identity map: ``Q = K = I + noise``, ``V = W`` small, small perceptron.

    ``scale``: the standard deviation of the Gaussian entries (seeded by ``seed``); V and W start
    at ``sqrt(scale) I`` plus noise, so that the network starts near a slow attention flow.
    """
    rng = np.random.default_rng(seed)
    out: NetParams = {}
    eye = np.eye(arch.d)
    for name, shape in arch.shapes().items():
        noise = scale * rng.standard_normal(shape)
        if name in ("Q", "K"):
            out[name] = eye + noise
        elif name in ("V", "W"):
            out[name] = np.sqrt(scale) * eye + noise
        else:
            out[name] = noise
    return out


def _head_matrices(arch: Architecture, p: Mapping[str, Any], xp: Any) -> tuple[Any, Any]:
    """``B = beta K^T Q`` and the output ``W V`` per block and head: (blocks, H, d, d) each.

    As :meth:`Head.from_qkv <vlasov_tf.models.attention.Head.from_qkv>` and
    :attr:`Head.output <vlasov_tf.models.attention.Head.output>` form them (same order of products).
    """
    B = arch.beta * xp.einsum("...ji,...jk->...ik", p["K"], p["Q"])
    out = xp.einsum("...ij,...jk->...ik", p["W"], p["V"])
    return B, out


def _layer(arch: Architecture, x: Any, logw: Any, block: Mapping[str, Any]) -> Any:
    """One residual layer on (N, d) tokens with log-weights (N,), a block's matrices."""
    v = jnp.zeros_like(x)
    if arch.heads:
        # scores s_hij = <B_h x_i, x_j>
        s = jnp.einsum("hie,je->hij", jnp.einsum("hed,id->hie", block["B"], x), x)
        if arch.attention == "SA":
            a = jax.nn.softmax(s + logw[None, None, :], axis=-1)
        else:
            a = jnp.exp(s + logw[None, None, :])
        avg = jnp.einsum("hij,jd->hid", a, x)
        v = v + jnp.einsum("hid,hed->ie", avg, block["O"])
    if arch.hidden:
        v = v + jax.nn.relu(x @ block["U"].T + block["b"]) @ block["P"].T
    v = v - jnp.sum(v * x, axis=-1, keepdims=True) * x
    y = x + arch.h * v
    return y / jnp.linalg.norm(y, axis=-1, keepdims=True)


def forward(arch: Architecture, params: Mapping[str, Any], x: Any, weights: Any | None = None) -> Any:
    """The network's output tokens (N, d) for input tokens ``x`` (N, d) on S^{d-1}.

    ``weights`` (N,) positive (default 1/N): the measure's weights, fixed through the layers.
    Traceable: jit it with ``arch`` static, vmap it over a batch of measures.
    """
    n = x.shape[0]
    logw = jnp.full((n,), -jnp.log(n)) if weights is None else jnp.log(weights)
    blocks: dict[str, Any] = {}
    if arch.heads:
        blocks["B"], blocks["O"] = _head_matrices(arch, params, jnp)
    if arch.hidden:
        blocks |= {k: params[k] for k in ("P", "U", "b")}

    def block_step(x: Any, block: Mapping[str, Any]) -> tuple[Any, None]:
        def layer_step(x: Any, _: Any) -> tuple[Any, None]:
            return _layer(arch, x, logw, block), None

        x, _ = jax.lax.scan(layer_step, x, None, length=arch.per_block)
        return x, None

    x, _ = jax.lax.scan(block_step, jnp.asarray(x), blocks)
    return x


def to_schedule(arch: Architecture, params: Mapping[str, Any]) -> Schedule:
    """The attention :class:`Schedule` of these parameters: ``blocks`` blocks of ``T / blocks``."""
    p = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    tau = arch.T / arch.blocks
    out = []
    for k in range(arch.blocks):
        perc = Perceptron(W=p["P"][k], U=p["U"][k], b=p["b"][k]) if arch.hidden else None
        if arch.heads:
            block = Params.qkv(
                p["Q"][k], p["K"][k], p["V"][k], arch.beta, p["W"][k],
                perceptron=perc, attention=arch.attention,  # type: ignore[arg-type]  # checked in Architecture
            )  # fmt: skip
        else:
            block = Params(perceptron=perc, attention=arch.attention)  # type: ignore[arg-type]  # checked
        out.append((tau, block))
    return Schedule(tuple(out))


def from_schedule(arch: Architecture, schedule: Schedule) -> NetParams:
    """Parameters of ``arch`` whose :func:`to_schedule` is ``schedule`` up to the symmetries.

    Each block's heads become ``Q = B / beta, K = I, V = I, W = W_h V_h`` (the field is the same);
    the schedule must have ``arch.blocks`` blocks of equal duration, ``arch.heads`` heads each
    and perceptrons of width ``arch.hidden``.
    """
    if len(schedule.blocks) != arch.blocks or schedule.d != arch.d:
        raise ValueError(
            f"the schedule has {len(schedule.blocks)} blocks in d = {schedule.d}; "
            f"the architecture {arch.blocks} in d = {arch.d}"
        )
    taus = np.array([tau for tau, _ in schedule.blocks])
    if not np.allclose(taus, arch.T / arch.blocks, rtol=1e-12, atol=0):
        raise ValueError(
            f"the schedule's blocks last {taus}; the architecture's T / blocks = {arch.T / arch.blocks}"
        )
    eye = np.eye(arch.d)
    out: dict[str, list[np.ndarray]] = {name: [] for name in arch.shapes()}
    for _, block in schedule.blocks:
        if len(block.heads) != arch.heads or block.attention != arch.attention:
            raise ValueError(
                f"a block has {len(block.heads)} {block.attention} heads; the architecture "
                f"{arch.heads} {arch.attention}"
            )
        perc = block.perceptron
        if (perc.W.shape[1] if perc is not None else 0) != arch.hidden:
            raise ValueError(f"a block's perceptron width differs from the architecture's {arch.hidden}")
        if arch.heads:
            out["Q"].append(np.stack([hd.B / arch.beta for hd in block.heads]))
            out["K"].append(np.stack([eye] * arch.heads))
            out["V"].append(np.stack([eye] * arch.heads))
            out["W"].append(np.stack([hd.output for hd in block.heads]))
        if perc is not None:
            out["P"].append(perc.W)
            out["U"].append(perc.U)
            out["b"].append(perc.b)
    return {k: np.stack(v) for k, v in out.items()}
