"""A non-editable install (a wheel, as on a cluster) finds the shipped cases (by their bare names too)
and meshes."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_wheel_runs_shipped_cases_outside_the_repository(tmp_path):
    """`vlasov-tf study` could not find cases/ and sphere runs the meshes after `pip install .`."""
    wheels, site, work, src = (tmp_path / name for name in ("wheels", "site", "work", "src"))
    work.mkdir()
    # Built from a copy of what the package is made of: setuptools leaves build/ in its source tree.
    shutil.copytree(REPO / "vlasov_tf", src / "vlasov_tf", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "cases", src / "cases")
    (src / "meshes").mkdir()
    for name in ("sphere.geo", "sphere_L0.h5", "sphere_L1.h5", "sphere_L2.h5"):
        shutil.copy(REPO / "meshes" / name, src / "meshes" / name)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(src)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("vlasov_tf-*.whl")
    # Into a directory of its own (the dependencies come from this environment): the package
    # there, not the repository, is what the child imports.
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    env = {k: v for k, v in os.environ.items() if k != "VLASOV_TF_MESHES"} | {"PYTHONPATH": str(site)}
    script = (
        "import sys, vlasov_tf\n"
        "from vlasov_tf.runs.cases import CASES_DIR, load_case, shipped_cases\n"
        "from vlasov_tf.geometry.mesh_files import meshes_dir, sphere_mesh\n"
        "from vlasov_tf.cli import main\n"
        "site = sys.argv[1]\n"
        "assert vlasov_tf.__file__.startswith(site), vlasov_tf.__file__\n"
        "assert str(CASES_DIR).startswith(site) and str(meshes_dir()).startswith(site)\n"
        "assert len(shipped_cases()) >= 7\n"
        "assert sphere_mesh(2).n_cells == 17280 and sphere_mesh(3).n_cells == 69120\n"
        # level 3 was built in memory: nothing is written inside the installed package
        "assert not (meshes_dir() / 'sphere_L3.h5').exists(), list(meshes_dir().iterdir())\n"
        "assert main(['cases']) == 0 and main(['cases', 'sphere_collapse']) == 0\n"
        "assert load_case('phase_diagram.toml').d == 8\n"
        # A shipped case by its bare name (no such file in the working directory); run draws its figures.
        "sys.exit(main(['run', 'circle_instability', '--solver', 'grid', '--out', 'out']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(site)], cwd=work, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (work / "out" / "circle_instability.h5").is_file()
    assert (work / "out" / "circle_instability.png").is_file()
    listing = done.stdout.split("\n\n")[0].splitlines()
    assert len(listing) == 1 + len(list((REPO / "cases").glob("*.toml")))
    assert any(line.split()[:2] == ["phase_diagram", "sweep"] for line in listing)
    assert (REPO / "cases" / "sphere_collapse.toml").read_text() in done.stdout
