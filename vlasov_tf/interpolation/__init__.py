"""The explicit interpolating Transformer of the first seed paper (arXiv 2411.04551, Theorem 1.1):
one piecewise-constant schedule that sends N input measures on S^{d-1} to N target points.

- :mod:`.construction`: the method, :func:`~.construction.build_interpolation`, its result
  :class:`~.construction.Interpolation` (with a :class:`~.construction.MeasureRecord` per input),
  ``STAGES`` and :func:`~.construction.find_missed_point`;
- :mod:`.stages`: the four stages it calls (orthant, disentangle, cluster, match) and the
  builder they act on;
- :mod:`.checks`: a built schedule checked by the solvers (particles, the discrete Transformer
  at each depth, grid densities);
- :mod:`.cases`: the case format (``cases/interpolation.toml``);
- :mod:`.runner`: a case run and reported, what ``vlasov-tf interpolate`` calls (its figure:
  :func:`vlasov_tf.plots.plot_interpolation`).

The paper's model and the slips of its appendix: ``docs/interpolation.md``. Nothing is
re-exported here: importing one module does not load the others (the figure's module imports
the construction only).
"""
