"""Every key of a case file, once: its table, whether it is required, what it means.

The readers (:mod:`vlasov_tf.runs.cases`, :mod:`vlasov_tf.runs.case_tables`,
:mod:`vlasov_tf.runs.model_tables`) take the allowed and the required keys of each table from
:data:`TABLES` (:func:`allowed`, :func:`required`), so a key is accepted exactly when it is
described here; the documentation's case-file reference is generated from it (the descriptions
are reStructuredText; defaults from the spec dataclasses, choices from the constants the readers
check against). Conditions that join
keys (a family's keys, "needs Q, K and V") are checked by the readers and stated in the
descriptions. A full annotated example: the module docstring of :mod:`vlasov_tf.runs.cases`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["LEARNING_TABLES", "TABLES", "Key", "Table", "allowed", "required"]


@dataclass(frozen=True)
class Key:
    """One key of a table: ``required`` when a case must give it, ``text`` what it means."""

    text: str
    required: bool = False


@dataclass(frozen=True)
class Table:
    """A table of a case file (``[name]``, ``[[name]]`` for an array of tables) and its keys."""

    text: str
    keys: dict[str, Key]


def _k(text: str) -> Key:
    return Key(text, required=True)


_MODEL_BLOCK = {
    "attention": Key('"SA" (softmax, the default) or "USA" (unnormalised: no denominator).'),
    "beta": Key(
        "Inverse temperature > 0. Without Q, K, V: one head with Q = K = V = I; with them it "
        "scales the scores (default 1)."
    ),
    "Q": Key(
        "Per-head d x d query matrices: a list of H matrices, or one matrix for H = 1; scores "
        "beta <Q_h x, K_h y>. Q, K and V go together."
    ),
    "K": Key("Per-head d x d key matrices (as Q)."),
    "V": Key("Per-head d x d value matrices (as Q)."),
    "W": Key("Per-head d x d output matrices W_h (needs Q, K, V; default the identity)."),
    "perceptron": Key("A table ``{ W, U, b }``: the perceptron W (U x + b)_+ (see [model.perceptron])."),
}

#: The tables of a case file, in the order a file usually has them.
TABLES: dict[str, Table] = {
    "": Table(
        "The top level: the tables of a case.",
        {
            "case": _k("Geometry, final time and output times."),
            "initial": _k("The initial measure mu_0."),
            "model": _k("The velocity field: attention (with [[schedule]]) or an interaction kernel."),
            "schedule": Key("Blocks of attention parameters, in time order."),
            "particles": _k("The Lagrangian runs: token numbers N and depths L."),
            "grid": Key("The Eulerian runs (circle and sphere S^2 only)."),
            "clusters": Key("How clusters are found."),
            "sweep": Key("An ensemble over beta, run by ``vlasov-tf sweep`` (tokens only)."),
            "transition": Key("Stationary states against the noise, run by ``vlasov-tf transition``."),
            "kinetic": Key(
                "Second-order (momentum) tokens on the circle and the phase-space grid, run by "
                "``vlasov-tf kinetic`` (and ``vlasov-tf study``)."
            ),
        },
    ),
    "case": Table(
        "What is solved: the geometry, the final time, the output times.",
        {
            "name": _k("Letters, digits, '_', '-', '.': names the output files."),
            "description": Key("One line: what the case shows."),
            "geometry": _k('"circle" (S^1, d = 2), "sphere" (S^{d-1}) or "euclidean" (R^d, tokens only).'),
            "d": Key(
                'The dimension: required for "euclidean" (>= 2); "sphere": d >= 3 (default 3; grids '
                'only for S^2); "circle": 2.'
            ),
            "T": _k("Final time, > 0."),
            "outputs": _k(
                "A count n >= 2 of equally spaced times in [0, T], or a strictly increasing list from 0 "
                "to T (at most :data:`~vlasov_tf.runs.case_tables.MAX_OUTPUTS`)."
            ),
        },
    ),
    "initial": Table(
        "The initial measure: a ``family`` and that family's parameters.",
        {
            "family": _k(
                '"vmf_mixture", "uniform", "uniform_perturbed", "file" (weighted points) or '
                '"gaussian" (euclidean only).'
            ),
            "means": Key("vmf_mixture: unit vectors (to 1e-6), one per mode."),
            "angles": Key("vmf_mixture on the circle: the modes as angles, instead of means."),
            "kappas": Key("vmf_mixture: one concentration > 0 per mode (required for the family)."),
            "proportions": Key("vmf_mixture: weights >= 0 with a positive sum (default equal)."),
            "amplitude": Key(
                "uniform_perturbed: a in the density ``(1 + a f(x)) / |S^{d-1}|``, kept > 0 (required)."
            ),
            "k": Key("uniform_perturbed on the circle: f = cos(k (t - phase)), k >= 1 (required)."),
            "phase": Key("uniform_perturbed on the circle: the phase (default 0)."),
            "l": Key("uniform_perturbed on S^2: f = P_l(<x, axis>), 1 <= l <= 40 (required)."),
            "axis": Key("uniform_perturbed on S^2: the unit axis (default [0, 0, 1])."),
            "path": Key(
                "file: a .npy of (n, d) points or a .npz with ``points`` and optional ``weights``, "
                "relative to the case file; particles only (required)."
            ),
            "mean": Key("gaussian: the mean in R^d (required)."),
            "covariance": Key("gaussian: a symmetric positive definite d x d matrix (required)."),
        },
    ),
    "model": Table(
        'The parameters of every block unless a block overrides them (``type = "attention"``), or '
        'an interaction model (``type = "interaction"``: X = P_x(int phi(<x, y>) y dmu(y) / Z(x)) + '
        "Omega x, no [[schedule]]).",
        {
            "type": Key('"attention" (the default) or "interaction".'),
            **_MODEL_BLOCK,
            "mask": Key(
                'attention: "none" (default) or "causal": a token attends to the tokens at or before '
                "its position s in [0, 1]."
            ),
            "slices": Key(
                "causal mask: s in that many slices of [0, 1] (default 8); token i of N in slice "
                "floor(i slices / N), N a multiple of slices with a grid."
            ),
            "kernel": Key(
                'interaction (required): phi as ``{ name = "...", parameters }``; names and '
                "parameters in the kernel table below."
            ),
            "normalised": Key(
                "interaction: divide by Z(x) = int psi(<x, y>) dmu(y) (default: whether a "
                "normaliser is given)."
            ),
            "normaliser": Key("interaction: psi as a kernel table, positive on [-1, 1] (default phi)."),
            "omega": Key("interaction on S^2: the drift's skew-symmetric d x d matrix Omega."),
            "frequency": Key("interaction on the circle: the drift's angular velocity."),
            "noise": Key(
                "sigma >= 0 (default 0): the generator sigma Laplace added to the flow (McKean-Vlasov; "
                "tokens dx = X dt + sqrt(2 sigma) dW). With noise > 0 the particles need "
                "``reference_steps`` (the reference is the noisy Transformer of that depth), every "
                "depth divides it, and the outputs lie on the coarsest depth's steps."
            ),
        },
    ),
    "model.perceptron": Table(
        "The perceptron W (U x + b)_+ of the attention field (in [model] or a block).",
        {
            "W": _k("(d, m) output matrix."),
            "U": _k("(m, d) input matrix."),
            "b": Key("(m,) bias (default zeros)."),
        },
    ),
    "schedule": Table(
        "``[[schedule]]``: one table per block of layers, in time order (none: one block of "
        "length T). A block's parameters are [model]'s with its own keys put in their place.",
        {"duration": _k("> 0; the durations sum to T."), **_MODEL_BLOCK},
    ),
    "particles": Table(
        "The Lagrangian runs.",
        {
            "tokens": _k("Numbers of tokens N: an integer or a strictly increasing list."),
            "layers": _k("Depths L of the deep Transformer: an integer or a strictly increasing list."),
            "reference_steps": Key(
                "RK4 steps of the continuous-time reference; 0: adaptive DOP853. A noisy model: the "
                "depth of its reference, the noisy Transformer (required)."
            ),
            "seed": Key("Tokens for N come from default_rng((seed, N)) (sample s > 0: (seed, N, s))."),
            "sampling": Key(
                '"random" (i.i.d.), "quantiles" (circle: the (i + 1/2)/N quantiles) or "atoms" '
                '(family "file": its points and weights as they are).'
            ),
            "field_method": Key(
                'How the attention sums are evaluated: "auto" (the cheapest within 1e-10 per row), '
                '"dense", "taylor" (small beta) or "spectral" (S^1, S^2).'
            ),
            "samples": Key("Independent token sets per N under the continuous flow (random sampling)."),
            "norm": Key(
                'Layer normalisation after the residual update ("post": the sphere), before the '
                'sublayer ("pre") or around it ("peri"); "pre" and "peri" have no [grid].'
            ),
        },
    ),
    "grid": Table(
        "The Eulerian runs (circle and S^2 only).",
        {
            "resolutions": _k("Circle: numbers of cells M >= 3; sphere: nested mesh levels 0..5."),
            "cfl": Key("CFL number in (0, 1]."),
            "reconstruction": Key(
                '"quadratic" (third order), "quadratic-lowdiss" (third order, half the upwind '
                'dissipation: for flows that draw filaments near the grid scale) or "linear" (second order).'
            ),
            "limiter": Key(
                'quadratic(-lowdiss): "positivity" or "none"; linear: "barth-jespersen" or "none" (default '
                'the first; "barth-jespersen" alone selects "linear").'
            ),
            "max_dt": Key("A cap on the time step (default none)."),
            "rtol": Key(
                "Time-step error control relative to what a step changes, in (0, 1); false: fixed steps "
                "at the CFL bound (and max_dt)."
            ),
            "atol": Key("The same relative to the total mass, in (0, 1)."),
            "field_method": Key('As for particles, plus "fft" (uniform circle grids).'),
            "field_measure": Key(
                'The measure whose field moves the grid: "cells" (masses at the cell centres, second '
                'order; the default) or "quadrature" (the quadratic reconstruction summed at 2 points '
                'a cell on the circle, 3 on S^2: third order, 2-3x the keys of the kernel sums).'
            ),
            "field_accuracy": Key(
                'What the field\'s kernel sums must meet: "rows" (every flux point within 1e-10 of its '
                'own normaliser; the default) or "flux" (one error budget over the flux points, '
                "spent where little mass can flow, the others within 1e-10: the fluxes' error bound "
                "at most doubles; far cheaper for concentrated mass at large beta)."
            ),
            "diffusion": Key(
                'How a noisy model\'s sigma Laplace is stepped: "explicit" (in the fluxes; the step is '
                'bounded by ~h^2/sigma too, the default) or "implicit" (TR-BDF2 Strang-split around the '
                "transport's step: cheaper on fine meshes with strong noise; not with model.mask = "
                '"causal").'
            ),
        },
    ),
    "clusters": Table(
        "How a run's clusters are found.",
        {
            "scale": Key("Linking distance in kernel widths (largest beta)^(-1/2)."),
            "trim": Key("Mass fraction of the lowest local densities left out, in [0, 1)."),
            "min_mass": Key("Smallest cluster mass, in [1e-4, 1]; at most 1/min_mass clusters."),
        },
    ),
    "sweep": Table(
        "An ensemble over beta (``vlasov-tf sweep``): one block with one head of its own (no Q, K, V, "
        "W, perceptron, [[schedule]], mask or norm).",
        {
            "betas": _k(
                "Increasing betas > 0, or ``{ from, to, count }``: count log-spaced betas from..to."
            ),
            "members": Key("Flows per beta (member m: the tokens of sample m)."),
            "parameters": Key('Q, K, V: "identity" or drawn from a random ensemble.'),
            "redraw": Key("Draw the parameters again every redraw time units (0: never)."),
            "steps": Key("RK4 steps over [0, T]."),
            "close": Key("Pairs closer than this (radians) count as close."),
            "seed": Key("The parameters' random streams."),
        },
    ),
    "transition": Table(
        "Stationary states against the noise (``vlasov-tf transition``): for each sigma the grid "
        "relaxes for T from the previous sigma's state, up the list and back down (hysteresis), "
        "and ensembles of tokens from the initial measure cross-check it.",
        {
            "noise": _k(
                "Increasing sigmas >= 0, or ``{ from, to, count }``: count equally spaced sigmas from..to."
            ),
            "resolution": Key("The grid's resolution (default: the finest of grid.resolutions)."),
            "tokens": Key("Tokens per member (default: the largest of particles.tokens; 0: no tokens)."),
            "members": Key("Independent token sets per sigma (sample m of the initial measure)."),
            "layers": Key("Noisy layers over [0, T] (default: the largest of particles.layers)."),
            "kick": Key(
                "The fraction of the initial measure mixed into each relaxation's start, in [0, 1) "
                "(default 0.05): the grid then leaves an unstable state, which no noise perturbs."
            ),
        },
    ),
    "kinetic": Table(
        "The kinetic Vlasov equation on S^1 x [-V, V] (``vlasov-tf kinetic``; "
        ":mod:`vlasov_tf.runs.kinetic_case`): f_0 is the spatial measure of [initial] times the "
        "velocity law; the force is the model's field of the spatial marginal, its noise the "
        "velocity noise; [particles] gives the second-order tokens' N and L.",
        {
            "friction": Key("gamma >= 0 in dv = (F - gamma v) dt (default 0: Hamiltonian)."),
            "velocity_box": _k("V > 0: the grid's velocities [-V, V]; it must hold all but 1e-6 of the law."),
            "velocity_cells": _k("Nv of each phase-space grid: an integer or an increasing list."),
            "theta_cells": Key("Ntheta of each grid, as many as velocity_cells (default grid.resolutions)."),
            "dt": Key("The Strang step of the first grid, scaled by Ntheta_0 / Ntheta (default 0.1)."),
            "streaming": Key(
                '"remap" (positive, third order in theta; the default) or "spectral" (the exact '
                "phase shift of each row; serial only)."
            ),
            "velocity": Key(
                "The initial velocity law, a sum of Maxwellians ``{ temperatures, means, weights }`` "
                "(default one of temperature 1)."
            ),
        },
    ),
    "kinetic.velocity": Table(
        "``velocity = { temperatures, means, weights }``: sum_s w_s N(u_s, T_s), weights normalised.",
        {
            "temperatures": _k("T_s > 0, one per Maxwellian."),
            "means": Key("u_s (default 0 each)."),
            "weights": Key("w_s > 0 (default equal)."),
        },
    ),
    "transition.noise": Table(
        "``noise = { from, to, count }``: equally spaced sigmas.",
        {"from": _k("Smallest sigma, >= 0."), "to": _k("Largest sigma."), "count": _k("How many.")},
    ),
    "sweep.betas": Table(
        "``betas = { from, to, count }``: log-spaced betas.",
        {"from": _k("Smallest beta, > 0."), "to": _k("Largest beta."), "count": _k("How many.")},
    ),
}


#: The tables of a learning case (``vlasov-tf learn``, :mod:`vlasov_tf.learning.cases`) that are its
#: own: its top level and [case], [learning], [learning.family], [evaluation]; its [model] and
#: [[schedule]] (the target) are those of :data:`TABLES`. Defaults are in the descriptions.
LEARNING_TABLES: dict[str, Table] = {
    "": Table(
        "The top level of a learning case.",
        {
            "case": _k("Name, geometry and the final time T of the map mu_0 -> mu_T."),
            "model": _k("The target: the velocity field whose solution map is learned (as in a run case)."),
            "schedule": Key("The target's blocks of attention parameters (as in a run case)."),
            "learning": _k("The network, the data and the training."),
            "evaluation": Key("The learned map judged on fresh tokens and on the grid."),
        },
    ),
    "case": Table(
        "What is learned: the map mu_0 -> mu_T of the target on a sphere.",
        {
            "name": _k("Letters, digits, '_', '-', '.': names the run file and the figure."),
            "description": Key("One line: what the case shows."),
            "geometry": _k('"circle" (S^1, d = 2) or "sphere" (S^{d-1}): the tokens live on a sphere.'),
            "d": Key('"sphere": d >= 3 (default 3; the grid evaluation needs 3); "circle": 2.'),
            "T": _k("The final time T > 0 of the map (a [[schedule]]'s end time wins)."),
        },
    ),
    "learning": Table(
        "The learned Transformer (L layers, H heads Q, K, V, W, a perceptron of width m), its data and "
        "its training.",
        {
            "layers": _k("Depth L >= 1 of the learned Transformer (step h = T / L)."),
            "blocks": Key("Blocks of layers sharing their parameters; divides layers (default 1)."),
            "heads": Key("Heads H >= 0 (default 1; heads + hidden > 0)."),
            "hidden": Key("Perceptron width m >= 0 (default 0: none)."),
            "beta": Key("The network's fixed inverse temperature > 0; Q, K learn the scale (default 1)."),
            "attention": Key('"SA" (softmax, the default) or "USA" (unnormalised).'),
            "init_scale": Key("The initial parameters' noise, > 0 (default 0.1)."),
            "labels": Key(
                '"flow" (the default): the target\'s flow, DOP853 at rtol 1e-10; "layers": the target\'s '
                "own Transformer of label_layers layers (an exact fit exists)."
            ),
            "label_layers": Key('The depth of "layers" labels (default: layers).'),
            "tokens": Key("Tokens per training measure, >= 2 (default 64)."),
            "train": Key("Training measures (default 64)."),
            "validation": Key("Validation measures (default 16)."),
            "test": Key("Test measures (default 16)."),
            "seed": Key("Seeds the measures, the batches and the initialisation (default 0)."),
            "steps": Key("Optimiser (Adam) steps (default 1000)."),
            "learning_rate": Key("Adam's learning rate, > 0 (default 0.01)."),
            "batch": Key("Measures per batch, <= train (default 16, at most train)."),
            "checkpoint_every": Key("Steps between checkpoints in the run file (default 100)."),
            "family": Key("The initial measures: random vMF mixtures (see [learning.family])."),
            "loss": Key(
                '"tokens" (the default: each token\'s image is its label) or "sinkhorn" (between '
                "measures: ott-jax's Sinkhorn divergence)."
            ),
            "sinkhorn_epsilon": Key('The regularisation of loss = "sinkhorn", > 0 (default 0.01).'),
        },
    ),
    "learning.family": Table(
        "The initial measures: random von Mises-Fisher mixtures, drawn by seed.",
        {
            "bumps": Key("Number of bumps, [min, max], uniform (default [1, 3])."),
            "kappa": Key("Concentrations, [min, max] > 0, log-uniform (default [2.0, 20.0])."),
            "alpha": Key("Dirichlet parameter of the proportions, > 0 (default 1.0)."),
        },
    ),
    "evaluation": Table(
        "The learned map on the first test measures: fresh samples against the target's flow, W1 to "
        "the target's grid solution, and its infinite-depth limit on the grid.",
        {
            "tokens": Key("Token counts of the test measures' samples, >= 2 (default [1000, 10000])."),
            "measures": Key("How many test measures are evaluated, <= test (default min(4, test))."),
            "cells": Key('"circle": the grid\'s cells, >= 8 (default 256).'),
            "level": Key('"sphere": the mesh level, 0-2 (default 1).'),
        },
    ),
}


def allowed(table: str, *only: str, tables: Mapping[str, Table] = TABLES) -> tuple[str, ...]:
    """The keys of ``table`` (only those named in ``only``, when given: a table whose keys depend on
    another key's value), in their documented order; ``tables``: :data:`TABLES` or
    :data:`LEARNING_TABLES`."""
    keys = tables[table].keys
    missing = [k for k in only if k not in keys]
    if missing:
        raise KeyError(f"{table}: {missing} are not described in case_keys.TABLES")
    return tuple(k for k in keys if not only or k in only)


def required(table: str, *, tables: Mapping[str, Table] = TABLES) -> tuple[str, ...]:
    """The keys a case must give in ``table`` (of ``tables``, as for :func:`allowed`)."""
    return tuple(k for k, key in tables[table].keys.items() if key.required)
