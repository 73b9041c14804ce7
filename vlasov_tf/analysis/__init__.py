"""What is measured on a solution: Wasserstein distances between measures (:mod:`.wasserstein`),
clusters and their merges (:mod:`.clusters`), the linear theory of the uniform state
(:mod:`.linear_theory`)."""
