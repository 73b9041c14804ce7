"""Shipped cases by name: `vlasov-tf cases` lists them, `vlasov-tf cases NAME` prints one, and every
command that takes a case file takes a shipped case's bare name (a wheel: tests/test_install.py)."""

import pytest

from vlasov_tf.cli import main
from vlasov_tf.interpolation.cases import load_interpolation_case
from vlasov_tf.learning.cases import load_learning_case
from vlasov_tf.runs.cases import CASES_DIR, find_case, load_case, parse_case, shipped_cases


def test_cases_lists_every_shipped_case_with_its_description(capsys):
    assert main(["cases"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:] if line and not line.startswith("(")}
    assert set(rows) == {p.stem for p in shipped_cases()} and len(rows) >= 11
    for path in shipped_cases():
        if path.stem == "interpolation":
            case, command = load_interpolation_case(path), "interpolate"
        elif path.stem.startswith("learn_"):
            case, command = load_learning_case(path), "learn"
        else:
            case = load_case(path)
            command = "sweep" if case.sweep is not None else "transition" if case.transition else "run"
            command = "kinetic" if case.kinetic is not None and command == "run" else command
        assert case.description and rows[path.stem].split(None, 2)[1:] == [command, case.description]


def test_cases_name_prints_a_case_that_runs_as_printed(capsys, tmp_path):
    assert main(["cases", "circle_kuramoto.toml"]) == 0
    text = capsys.readouterr().out
    assert text == (CASES_DIR / "circle_kuramoto.toml").read_text(encoding="utf-8")
    mine = tmp_path / "mine.toml"
    mine.write_text(text.replace('name = "circle_kuramoto"', 'name = "mine"'), encoding="utf-8")
    assert load_case(mine).name == "mine" and load_case(mine).T == parse_case(text).T


@pytest.mark.parametrize("name", ["circle_kuramoto", "circle_kuramoto.toml"])
def test_a_bare_name_finds_the_shipped_case_unless_a_file_of_that_name_is_here(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_case(name) == CASES_DIR / "circle_kuramoto.toml"
    case = load_case(name, overrides={"case.T": 1.0})
    assert case.name == "circle_kuramoto" and case.T == 1.0
    assert load_interpolation_case("interpolation").name == "interpolation"
    assert load_learning_case("learn_attention").name == "learn_attention"
    # A user's own file of that name wins over the shipped one.
    text = (CASES_DIR / "circle_kuramoto.toml").read_text(encoding="utf-8")
    (tmp_path / "circle_kuramoto.toml").write_text(text.replace('"circle_kuramoto"', '"own"'))
    assert load_case(name).name == "own"


def test_a_bare_name_runs_and_a_wrong_one_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["--solver", "grid", "--set", "grid.resolutions=[12]", "--set", "case.T=0.5", "--no-plot"]
    assert main(["run", "circle_instability", *args]) == 0
    assert (tmp_path / "out" / "circle_instability-grid.resolutions-12-case.T-0.5.h5").is_file()
    capsys.readouterr()
    for argv, message in (
        (["run", "circle_instabilty", *args], "nor is it a shipped case (circle_clustering, "),
        (["run", "cases/circle_instability"], "case file cases/circle_instability does not exist"),
        (["cases", "circle_instabilty"], "no shipped case 'circle_instabilty' (shipped: circle_clustering"),
        (["interpolate", "interpolatio"], "nor is it a shipped case"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and err.startswith("vlasov-tf: error: "), err
        assert message in err, err
