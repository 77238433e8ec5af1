"""The package's house rules: imports only go down the layers, and no module imports itself round a circle."""

import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from helpers import REPO

LAYERS = ["core", "data", "models", "evaluation", "studies", "reports"]


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("mvclip_utils")


def test_the_layers_contract_in_pyproject_is_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"  # import-linter's command, in the test venv
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_no_import_circles_between_modules(graph):
    circles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain:
                circles.append(" -> ".join((module, *chain)))
    assert not circles, "\n".join(circles)


def test_every_module_lives_in_a_layer_or_is_an_entry_point(graph):
    entry_points = {"mvclip_utils", "mvclip_utils.__main__", "mvclip_utils.cli", "mvclip_utils.sweep",
                    "mvclip_utils.pipeline", "mvclip_utils.lab"}
    homeless = [m for m in graph.modules
                if m not in entry_points and m.split(".")[1] not in LAYERS]
    assert not homeless, f"modules outside the layers {LAYERS}: {homeless}"


def test_a_lower_layer_importing_a_higher_one_is_caught(graph):
    """The checker itself: an upward import added to the graph is reported with its layers."""
    graph.add_import(importer="mvclip_utils.core.runs", imported="mvclip_utils.studies.ovt")
    try:
        illegal = graph.find_illegal_dependencies_for_layers(
            layers=[f"mvclip_utils.{layer}" for layer in reversed(LAYERS)])
    finally:
        graph.remove_import(importer="mvclip_utils.core.runs", imported="mvclip_utils.studies.ovt")
    assert {(d.importer, d.imported) for d in illegal} == {("mvclip_utils.core", "mvclip_utils.studies")}


def test_render_workers_import_neither_torch_nor_the_notebook_stack():
    """A render worker imports `data.render_jobs` (its target); torch there would cost every worker 1.5 s."""
    code = ("import sys, mvclip_utils.data.render_jobs\n"
            "print(sorted(m for m in ('torch', 'pandas', 'open_clip', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
