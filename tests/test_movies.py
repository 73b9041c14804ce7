"""`vlasov-tf plot RUN --movie`: an animation, one frame per stored output time, on one colour scale;
bad input (one snapshot, a missing job, a sweep, MP4 without ffmpeg) is one line and writes nothing."""

import shutil

import numpy as np
import pytest
from helpers import killed_at_call
from matplotlib.colors import LogNorm
from PIL import Image

from vlasov_tf.cli import main
from vlasov_tf.plots.canvas import DYNAMIC_RANGE, density_norm
from vlasov_tf.plots.movies import movie_figure, movie_frames, movie_norm
from vlasov_tf.runs import storage as io
from vlasov_tf.runs.cases import parse_case
from vlasov_tf.runs.runner import run_case
from vlasov_tf.runs.sweeps import run_sweep

CIRCLE = """
[case]
name = "tiny_circle"
geometry = "circle"
T = 1.0
outputs = 5
[initial]
family = "vmf_mixture"
angles = [0.0, 2.5]
kappas = [3.0, 5.0]
[model]
beta = 4.0
[particles]
tokens = [64]
layers = [4]
[grid]
resolutions = [32]
"""

SPHERE = """
[case]
name = "tiny_sphere"
geometry = "sphere"
T = 0.4
outputs = 3
[initial]
family = "vmf_mixture"
means = [[0.0, 0.0, 1.0], [0.8, 0.0, -0.6]]
kappas = [6.0, 8.0]
[model]
beta = 4.0
[particles]
tokens = [60]
layers = [2]
[grid]
resolutions = [0]
cfl = 0.9
"""

SWEEP = """
[case]
name = "sweep"
geometry = "sphere"
T = 1.0
outputs = 3
[initial]
family = "uniform"
[model]
beta = 1.0
[particles]
tokens = [8]
layers = [1]
[sweep]
betas = [1.0, 4.0]
members = 2
steps = 10
"""


def frames_of(path):
    with Image.open(path) as im:
        out = []
        for k in range(im.n_frames):
            im.seek(k)
            out.append(np.asarray(im.convert("RGB")))
        return out


@pytest.mark.parametrize(("text", "n"), [(CIRCLE, 5), (SPHERE, 3)], ids=["circle", "sphere"])
def test_movie_has_a_frame_per_output_time(text, n, tmp_path, capsys):
    case = parse_case(text)
    path = run_case(case, tmp_path / f"{case.name}.h5")
    assert main(["plot", str(path), "--movie", "--fps", "5"]) == 0
    gif = tmp_path / f"{case.name}.gif"
    assert capsys.readouterr().out.splitlines()[-1] == f"movie: {gif}"
    frames = frames_of(gif)
    assert len(frames) == n and len({f.shape for f in frames}) == 1
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).sum() > 0  # it moves
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".*"))
    with io.RunFile.open(path, mode="r") as run:
        fr = movie_frames(run)
        fig, update = movie_figure(case, fr)
    assert len(fr.times) == n and fr.densities is not None and fr.positions is not None
    if case.geometry == "sphere":
        # One logarithmic colour scale for every frame (issue 27: "log colour fixed over time"),
        # also here, where the figures' rule would choose a power scale (smooth bumps): it spans
        # the densities of all frames, from half the initial density's minimum (the start is seen
        # in colour, not as the floor's colour) up.
        assert not isinstance(density_norm(list(fr.densities)), LogNorm)
        (cells,) = [c for ax in fig.axes for c in ax.collections if c.get_array() is not None][:1]
        for i in range(n):
            update(i)
            assert isinstance(cells.norm, LogNorm)
            assert cells.norm.vmax == pytest.approx(fr.densities.max())
            assert cells.norm.vmin == pytest.approx(0.5 * fr.densities[0].min())
            assert cells.get_array().min() >= cells.norm.vmin


def test_movie_norm_floor():
    """The floor of the sphere movie's log scale: half the initial minimum, but at most max / 1e4
    (the figures' range) unless the start needs more, and never below max / 1e6."""
    uniform = np.full(10, 1 / (4 * np.pi))
    clusters = np.r_[np.full(9, 1e-9), 1e3]  # a thousand times denser than the start, empty elsewhere
    norm = movie_norm(np.stack([uniform, clusters]))
    assert isinstance(norm, LogNorm)
    assert (norm.vmin, norm.vmax) == (pytest.approx(0.5 / (4 * np.pi)), 1e3)  # the start in colour
    tail = np.r_[np.full(9, 1e-30), 1.0]  # a concentrated start: six decades at most
    assert movie_norm(np.stack([tail, tail])).vmin == pytest.approx(1e-6)
    smooth = np.r_[np.full(9, 0.5), 1.0]  # a smooth start: the figures' range when it fits
    assert movie_norm(np.stack([smooth, 10 * smooth])).vmin == pytest.approx(10 / DYNAMIC_RANGE)


def test_bad_movie_input_is_one_line(tmp_path, monkeypatch, capsys):
    case = parse_case(CIRCLE)
    path = tmp_path / "cut.h5"
    with killed_at_call(monkeypatch, io.RunFile, "append", 7):  # grid/M32 done, particles/N64_ref at t = 0
        run_case(case, path)
    good = run_case(case, tmp_path / "good.h5")
    sweep = run_sweep(parse_case(SWEEP), tmp_path / "sweep.h5")
    ffmpeg = shutil.which("ffmpeg") is not None
    cases = [
        (
            [str(path), "--movie", "--job", "particles/N64_ref"],
            "job particles/N64_ref has 1 stored snapshot: a movie needs at least 2",
        ),
        ([str(good), "--movie", "--job", "grid/M999"], "no job 'grid/M999' (its jobs: grid/M32, particles/"),
        ([str(good), "--job", "grid/M32"], "--job chooses the job of a --movie: pass --movie too"),
        ([str(sweep), "--movie"], "is a sweep (an ensemble over beta): it has no movie; plot it"),
    ]
    if not ffmpeg:
        cases.append(([str(good), "--movie", "mp4"], "MP4 needs ffmpeg, which is not installed here"))
    for args, message in cases:
        assert exit_status(["plot", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("vlasov-tf: error: "), err
        assert message in err, err
    assert not [
        p for p in tmp_path.iterdir() if p.suffix in (".gif", ".mp4", ".png") or p.name.startswith(".")
    ]
    # A job named alone is animated alone, complete or not (here: the tokens of the good run).
    assert main(["plot", str(good), "--movie", "--job", "particles/N64_L4"]) == 0
    assert len(frames_of(tmp_path / "good.gif")) == 5


def exit_status(argv):
    """``main``'s status, whether it returns it or exits with it (a refused argument)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code
