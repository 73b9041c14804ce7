"""The two solvers of the mean-field equation and what they share: the particle solver, a deep
Transformer (:mod:`.particles`); the finite-volume grid (:mod:`.finite_volumes`, its third-order
reconstruction :mod:`.reconstruction`, causal attention :mod:`.causal_grid`, their step
controller :mod:`.step_control`); the time loop all use (:mod:`.time_loop`); FiPy's first-order
upwind for comparison (:mod:`.fipy_baseline`)."""
