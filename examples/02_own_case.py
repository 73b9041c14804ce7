"""
Writing your own case: a circle and a sphere
============================================

A case file is TOML; every key is listed, with its meaning and default, in :doc:`../case_files`.
A mistake is one line naming the file and the key. Here two small cases are written to files and
run: two bumps on the circle under one softmax head, and a bump plus a nearly uniform one on
S^2 on the two coarsest nested meshes. (To start from a shipped case instead, copy one of
``cases/*.toml``.)
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from vlasov_tf.plots import density_figure
from vlasov_tf.runs.cases import load_case
from vlasov_tf.runs.runner import run_case
from vlasov_tf.runs.storage import RunFile

work = Path(tempfile.mkdtemp())
(work / "two_bumps.toml").write_text("""
[case]
name = "two_bumps"
description = "S^1, SA, beta = 6: two bumps 2 rad apart contract into two clusters"
geometry = "circle"
T = 6.0
outputs = 4

[initial]
family = "vmf_mixture"
angles = [1.0, 3.0]
kappas = [8.0, 8.0]

[model]
beta = 6.0

[particles]
tokens = 400
layers = 60

[grid]
resolutions = [256]
""")

# %%
# A mistake is refused before anything runs, in one line:
try:
    load_case(work / "two_bumps.toml", overrides={"initial.kappas": [8.0, -1.0]})
except ValueError as err:
    print(err)

# %%
# Run and draw it (``vlasov-tf run two_bumps.toml && vlasov-tf plot out/two_bumps.h5``). Each bump
# contracts into a cluster and the two stay apart up to T: the kernel's width, beta^(-1/2) = 0.4
# rad, is much smaller than their distance of 2 rad.
case = load_case(work / "two_bumps.toml")
path = run_case(case, work / "two_bumps.h5")
with RunFile.open(path, mode="r") as run:
    plt.figure(density_figure(case, run))

# %%
# On the sphere
# -------------
# The geometry "sphere" with a grid takes nested mesh levels (0: 1080 cells, 1: 4320, ...; the
# coarse levels ship with the package). The initial measure here is a mixture of a von Mises-Fisher
# bump at the north pole and a nearly uniform one (kappa small): the tokens and the density
# gather into the bump.
(work / "cap.toml").write_text("""
[case]
name = "cap"
geometry = "sphere"
T = 1.0
outputs = 3

[initial]
family = "vmf_mixture"
means = [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
kappas = [6.0, 0.5]
proportions = [0.5, 0.5]

[model]
beta = 2.0

[particles]
tokens = 500
layers = 20

[grid]
resolutions = [0, 1]
""")
case = load_case(work / "cap.toml")
path = run_case(case, work / "cap.h5")
with RunFile.open(path, mode="r") as run:
    for job, rows in run.diagnostics("sw1_grid").items():
        print(f"sliced W1 to the finest grid at T, {job}: {rows[-1, 1]:.3e}")
    plt.figure(density_figure(case, run))
