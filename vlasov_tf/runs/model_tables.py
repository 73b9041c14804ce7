"""The ``[model]`` and ``[[schedule]]`` tables of a case file, read into a model.

``model.type`` names the model: ``"attention"`` (the default: a :class:`~vlasov_tf.models.attention.Schedule`
of attention blocks from ``[model]`` and the ``[[schedule]]`` tables) or ``"interaction"`` (an
:class:`~vlasov_tf.models.interaction.Interaction`: a zonal kernel, normalised or not, with a
rotation drift). :func:`read_model` reads either; every failure is one ``ValueError('<file>:
<dotted key> <problem>')`` through :class:`~vlasov_tf.runs.toml_reader.TomlReader`. The layout
of a case file, every key, is in :mod:`vlasov_tf.runs.cases`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vlasov_tf.kernels.zonal import KERNEL_NAMES, ZonalKernel, kernel_from_spec
from vlasov_tf.models.attention import MAX_MATRIX_NORM, Attention, Params, Perceptron, Schedule
from vlasov_tf.models.base import MeanField, with_noise
from vlasov_tf.models.interaction import Interaction, circle_rotation
from vlasov_tf.runs.case_keys import allowed, required
from vlasov_tf.runs.case_tables import T_RTOL
from vlasov_tf.runs.toml_reader import TomlReader, show_value

__all__ = ["MASKS", "MODEL_TYPES", "read_model", "read_noise", "read_schedule"]

#: ``model.type``: the models a case file can state.
MODEL_TYPES = ("attention", "interaction")
#: ``model.mask``: "none", or "causal" (token i attends to the tokens at or before its position s).
MASKS = ("none", "causal")
# A block's keys: those of [[schedule]] but its duration (each described in case_keys.TABLES).
_MODEL_KEYS = allowed("schedule")[1:]
_INTERACTION_KEYS = allowed(
    "model", "type", "kernel", "normalised", "normaliser", "omega", "frequency", "noise"
)


def read_model(
    r: TomlReader, data: dict[str, Any], T: float, d: int, geometry: str
) -> tuple[MeanField, tuple[float, ...]]:
    """The case's model and, for attention, each block's beta (:func:`read_schedule`)."""
    model = data["model"]
    if not isinstance(model, dict):
        r.fail("model", f"must be a table, got {show_value(model)}")
    kind = r.string(model.get("type", "attention"), "model.type", MODEL_TYPES)
    flow: MeanField
    if kind == "attention":
        flow, betas = read_schedule(r, data, T, d)
    else:
        flow, betas = read_interaction(r, data, d, geometry), ()
    return with_noise(flow, read_noise(r, model)), betas


def read_noise(r: TomlReader, model: dict[str, Any]) -> float:
    """``model.noise``: sigma >= 0 of the generator ``sigma Laplace`` (0, the default: no noise)."""
    if "noise" not in model:
        return 0.0
    sigma = r.real(model["noise"], "model.noise")
    if not sigma >= 0:
        r.fail("model.noise", f"must be >= 0 (sigma of the generator sigma Laplace); got {sigma!r}")
    return sigma


def _kernel(r: TomlReader, v: Any, key: str) -> ZonalKernel:
    """A named zonal kernel from an inline table ``{ name = "...", <its parameters> }``."""
    names = ", ".join(repr(n) for n in KERNEL_NAMES)
    if not isinstance(v, dict):
        r.fail(key, f"must be a table {{ name = ..., parameters }}, name one of {names}; got {show_value(v)}")
    if "name" not in v:
        r.missing(f"{key}.name", f"one of {names}")
    name = r.string(v["name"], f"{key}.name", tuple(KERNEL_NAMES))
    params = {k: val for k, val in v.items() if k != "name"}
    takes = KERNEL_NAMES[name]
    for k in params:
        if k not in takes:
            r.fail(f"{key}.{k}", f"is not a parameter of the {name} kernel (it takes {', '.join(takes)})")
    for k in takes:
        if k not in params:
            r.missing(f"{key}.{k}", f"a parameter of the {name} kernel (it takes {', '.join(takes)})")
    for k, val in params.items():
        if isinstance(val, list):
            params[k] = r.reals(val, f"{key}.{k}").tolist()
        elif isinstance(val, bool) or not isinstance(val, int | float):
            r.fail(f"{key}.{k}", f"must be a number, got {show_value(val)}")
        _bounded(r, params[k], f"{key}.{k}")
    try:
        return kernel_from_spec(name, params)
    except ValueError as err:
        r.fail(key, str(err))


def _bounded(r: TomlReader, value: Any, key: str) -> None:
    """A model parameter of magnitude beyond :data:`MAX_MATRIX_NORM` (1e12) is refused, naming the key:
    ``alpha = 1e300`` asked the sums for a degree beyond any array, ``a = 1e300`` for steps below
    1e-300 (both then failed deep in the solvers)."""
    big = float(np.max(np.abs(value))) if np.size(value) else 0.0
    if big > MAX_MATRIX_NORM:
        r.fail(key, f"= {big:g}: model parameters beyond {MAX_MATRIX_NORM:.0e} are refused (rates and "
               "weights this large underflow or overflow the kernel sums and the time steps)")  # fmt: skip


def read_interaction(r: TomlReader, data: dict[str, Any], d: int, geometry: str) -> Interaction:
    """An :class:`~vlasov_tf.models.interaction.Interaction` from ``[model]`` (``type = "interaction"``)."""
    what = "[model] of type 'interaction'"
    t = r.table(data["model"], "model", _INTERACTION_KEYS, ("type", "kernel"), what)
    if geometry == "euclidean":
        r.fail("model.type", "'interaction' models live on spheres: geometry 'circle' or 'sphere'")
    if "schedule" in data:
        r.fail("schedule", "blocks hold attention parameters; an interaction model has none: remove them")
    kernel = _kernel(r, t["kernel"], "model.kernel")
    normalised = t.get("normalised", "normaliser" in t)
    if not isinstance(normalised, bool):
        r.fail("model.normalised", f"must be true or false, got {show_value(normalised)}")
    if "normaliser" in t and not normalised:
        r.fail("model.normaliser", "is the normalised model's psi: it needs model.normalised = true")
    normaliser = None
    if normalised:
        normaliser = _kernel(r, t["normaliser"], "model.normaliser") if "normaliser" in t else kernel
        low = normaliser.minimum()
        if not low > 0:
            which = "model.normaliser" if "normaliser" in t else "model.kernel"
            r.fail(which, f"must be positive on [-1, 1] to normalise (Z(x) divides X); minimum {low:.3g}")
    omega = None
    if "frequency" in t:
        if d != 2:
            r.fail("model.frequency", "is the circle's angular velocity; on S^2 give the matrix model.omega")
        omega = circle_rotation(r.real(t["frequency"], "model.frequency"))
    if "omega" in t:
        if omega is not None:
            r.fail("model.omega", "excludes model.frequency: give the rotation one way")
        omega = r.matrix(t["omega"], "model.omega", d, d)
        _bounded(r, omega, "model.omega")
        if np.abs(omega + omega.T).max() > 1e-12 * max(1.0, np.abs(omega).max()):
            r.fail("model.omega", "must be skew-symmetric (omega^T = -omega: the generator of a rotation)")
    return Interaction(d, kernel, normaliser, omega)


def _matrices(r: TomlReader, v: Any, key: str, d: int) -> np.ndarray:
    """(H, d, d) from a list of H d x d matrices, or (1, d, d) from one d x d matrix."""
    raw = r.array(v, key, what=f" of {d} x {d} matrices")
    if isinstance(raw[0], list) and raw[0] and isinstance(raw[0][0], list):
        return np.array([r.matrix(m, f"{key}[{h}]", d, d) for h, m in enumerate(raw)])
    return r.matrix(raw, key, d, d)[None]


def _perceptron(r: TomlReader, v: Any, key: str, d: int) -> Perceptron:
    t = r.table(v, key, allowed("model.perceptron"), required("model.perceptron"))
    rows = r.array(t["W"], f"{key}.W", d, f" ({d} rows: W is d x m)")
    m = len(r.array(rows[0], f"{key}.W[0]"))
    W = r.matrix(t["W"], f"{key}.W", d, m)
    U = r.matrix(t["U"], f"{key}.U", m, d)
    b = r.reals(t["b"], f"{key}.b", m, f" (m = {m}, the columns of {key}.W)") if "b" in t else np.zeros(m)
    return Perceptron(W=W, U=U, b=b)


def _block_params(r: TomlReader, entries: dict[str, tuple[Any, str]], d: int) -> tuple[Params, float]:
    """Params (and beta) of one block from its merged entries ``name -> (value, dotted key)``."""

    def key(name: str) -> str:
        return entries[name][1]

    attention: Attention = "SA"
    if "attention" in entries and r.string(entries["attention"][0], key("attention"), ("SA", "USA")) == "USA":
        attention = "USA"
    given = [name for name in "QKV" if name in entries]
    if given and len(given) < 3:
        where = key(given[0]).rsplit(".", 1)[0]
        missing = next(name for name in "QKV" if name not in entries)
        r.missing(f"{where}.{missing}", f"Q, K and V go together; given: {', '.join(key(g) for g in given)}")
    if "beta" in entries:
        beta = r.positive(entries["beta"][0], key("beta"))
    elif given:
        beta = 1.0
    else:
        r.missing("model.beta", "Q = K = V = I needs the inverse temperature beta; or give Q, K, V")
    perc = _perceptron(r, *entries["perceptron"], d) if "perceptron" in entries else None
    # A value the sums cannot hold (beta = 1e300: its scores overflow) is the case's mistake: named
    # here, not found deep in the sums.
    blame = key("beta") if "beta" in entries else key("Q")
    if not given:
        if "W" in entries:
            r.fail(key("W"), "needs Q, K and V: W holds the per-head output matrices W_h")
        try:
            return Params(heads=Params.identity(d, beta).heads, perceptron=perc, attention=attention), beta
        except ValueError as err:
            r.fail(blame, f"= {beta:g}: {err}")
    mats = {name: _matrices(r, *entries[name], d) for name in ("Q", "K", "V", "W") if name in entries}
    heads = len(mats["Q"])
    for name, arr in mats.items():
        if len(arr) != heads:
            r.fail(key(name), f"has {len(arr)} heads but {key('Q')} has {heads}")
    try:
        return Params.qkv(
            mats["Q"], mats["K"], mats["V"], beta, mats.get("W"), perceptron=perc, attention=attention
        ), beta
    except ValueError as err:
        named = next((key(n) for n in ("V", "W") if f"matrix {n} " in str(err) and n in entries), blame)
        r.fail(named, str(err))


def read_schedule(
    r: TomlReader, data: dict[str, Any], T: float, d: int
) -> tuple[Schedule, tuple[float, ...]]:
    model = r.table(data["model"], "model", allowed("model", "type", *_MODEL_KEYS, "mask", "slices", "noise"))
    others = ("type", "mask", "slices", "noise")
    base = {name: (v, f"model.{name}") for name, v in model.items() if name not in others}
    if "schedule" not in data:
        blocks = [(T, base)]
    else:
        raw = data["schedule"]
        if not isinstance(raw, list) or not raw or not all(isinstance(b, dict) for b in raw):
            r.fail("schedule", f"must be one or more [[schedule]] tables, got {show_value(raw)}")
        blocks = []
        for i, b in enumerate(raw):
            t = r.table(
                b, f"schedule[{i}]", allowed("schedule"), required("schedule"), f"[[schedule]] block {i}"
            )
            tau = r.positive(t["duration"], f"schedule[{i}].duration")
            blocks.append(
                (
                    tau,
                    base
                    | {name: (v, f"schedule[{i}].{name}") for name, v in t.items() if name != "duration"},
                )
            )
        total = math.fsum(tau for tau, _ in blocks)
        if abs(total - T) > T_RTOL * T:
            r.fail("schedule", f"durations sum to {total!r}, but case.T = {T!r}")
        # Rounding only: make the switch times end exactly at T.
        blocks[-1] = (T - math.fsum(tau for tau, _ in blocks[:-1]), blocks[-1][1])
    built = [(tau, *_block_params(r, entries, d)) for tau, entries in blocks]
    return Schedule(tuple((tau, p) for tau, p, _ in built)), tuple(beta for _, _, beta in built)
