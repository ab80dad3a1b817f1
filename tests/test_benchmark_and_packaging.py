"""Each benchmark's quick mode runs (a smoke test, no timing asserted), and the package
installs as a student would get it: loose dependencies, no book or grading tools, its data files."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from course_lib.run_settings import TRAINED_DIR

REPO = Path(__file__).resolve().parents[1]


QUICK_RUNS = {
    "train_speed.py": ("seed_s_per_epoch", "torch_optim_s_per_epoch", "template_adam_s_per_epoch", "floor_s_per_epoch",
                       "floor_data_s_per_epoch", "floor_data_torch_adam_s_per_epoch",
                       "floor_data_template_adam_s_per_epoch", "manual_step_s_per_epoch"),
    "notebook_speed.py": ("notebook_s", "retrain_s"),
    "grading_speed.py": ("per_submission_s", "jobs1_per_min", "jobs2_per_min"),
    "self_check_speed.py": ("max_s_per_exercise", "median_s_per_exercise"),
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(QUICK_RUNS))
def test_benchmark_quick_mode_ends_with_its_json_line(script):
    """`benchmarks/SCRIPT --quick` runs and its last line is one JSON object holding every required key."""
    out = subprocess.run([sys.executable, f"benchmarks/{script}", "--quick"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    for key in QUICK_RUNS[script]:
        assert result[key] > 0, key
    assert result["quick"] is True


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from the repository, as `pip install git+URL` would build it."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
                   check=True, capture_output=True)
    return next(out.glob("course_lib-*.whl"))


@pytest.mark.slow
def test_wheel_dependencies_are_loose_and_tools_are_extras(wheel):
    """Students get torch>=2.2 (Colab keeps its own torch); jupyter-book/nbgrader/nbval only as extras."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith("METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    plain = [r for r in requires if "extra ==" not in r]
    assert "torch>=2.2" in plain
    assert not any("==" in r for r in plain), plain
    for tool in ("jupyter-book", "nbgrader", "nbval"):
        assert not any(r.startswith(tool) for r in plain), tool
        assert any(r.startswith(tool) and "extra ==" in r for r in requires), tool


@pytest.mark.slow
def test_wheel_holds_the_library_and_its_shipped_files(wheel):
    """Every course_lib module is in the wheel, and so is every shipped trained-solution file."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for module in (REPO / "course_lib").rglob("*.py"):  # the property engine (course_lib/checks) included
        assert module.relative_to(REPO).as_posix() in names
    for shipped in TRAINED_DIR.glob("*"):
        if shipped.suffix in (".json", ".pt"):
            assert f"course_lib/trained/{shipped.name}" in names
    assert not any(n.startswith(("tests/", "grading/", "solutions/")) for n in names)
