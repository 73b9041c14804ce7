"""Mean-field models: the velocity fields the solvers move measures by.

- :mod:`~vlasov_tf.models.base`: the interface every solver takes (:class:`MeanField`), a user's
  model (:class:`Model`, wrapped by :func:`as_model`), a prescribed field (:class:`Prescribed`),
  noise (:func:`with_noise`: the McKean-Vlasov equation);
- :mod:`~vlasov_tf.models.attention`: softmax and unnormalised attention, piecewise constant in
  time (:class:`Schedule` of :class:`Params`);
- :mod:`~vlasov_tf.models.interaction`: interaction kernels, normalised or not, with a drift
  (Kuramoto, Lohe, aggregation, attraction-repulsion);
- :mod:`~vlasov_tf.models.sums`: how a solver has a model's sums computed (:class:`Sums`).

Design notes: docs/design.md §2.
"""

from .attention import Head, Params, Perceptron, Schedule
from .base import MeanField, Model, Noisy, Prescribed, UserModel, as_model, with_noise
from .interaction import Interaction
from .sums import Sums

__all__ = [
    "Head",
    "Interaction",
    "MeanField",
    "Model",
    "Noisy",
    "Params",
    "Perceptron",
    "Prescribed",
    "Schedule",
    "Sums",
    "UserModel",
    "as_model",
    "with_noise",
]
