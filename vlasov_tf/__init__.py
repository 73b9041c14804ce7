"""vlasov_tf: the mean-field (Vlasov) equation of deep Transformers.

Tokens are points on the unit sphere, a prompt is a measure, and attention
moves it by a nonlocal continuity equation. See README.md.

Design notes: docs/design.md §8 (the package layout).
"""

from importlib.metadata import PackageNotFoundError, version

from vlasov_tf.models import MeanField, Model, Prescribed, as_model
from vlasov_tf.models.attention import (
    Head,
    Params,
    Perceptron,
    Schedule,
    interaction_energy,
    log_potential,
    velocity,
)
from vlasov_tf.models.interaction import Interaction
from vlasov_tf.solvers.particles import ParticleSolution, solve_particles

try:
    __version__ = version("vlasov_tf")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "Head",
    "Interaction",
    "MeanField",
    "Model",
    "Params",
    "ParticleSolution",
    "Perceptron",
    "Prescribed",
    "Schedule",
    "__version__",
    "as_model",
    "interaction_energy",
    "log_potential",
    "solve_particles",
    "velocity",
]
