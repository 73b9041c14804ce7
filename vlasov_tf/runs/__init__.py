"""Running cases: case files (:mod:`.cases`), a case's jobs and diagnostics (:mod:`.runner`), the
HDF5 run file (:mod:`.storage`), convergence studies (:mod:`.studies`) and ensembles over beta
(:mod:`.ensembles`, :mod:`.sweeps`)."""
