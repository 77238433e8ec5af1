"""JupyterLab from the venv: `.py` notebooks are served as notebooks, open as notebooks by default, and
survive a save unchanged."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import REPO

from mvclip_utils.lab import DOCMANAGER, JUPYTEXT_VIEWER, configure_lab, overrides_path

TOKEN = "mvclip-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port: int, path: str, method: str = "GET", body: dict | None = None) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def lab_server(tmp_path):
    """`jupyter lab` from the venv on a free loopback port, serving a copy of the notebooks (saves go to
    the copy, never to the repository)."""
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns("*.ipynb"))
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={tmp_path}", "--ServerApp.open_browser=False",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                _request(port, "/api/status")
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"jupyter lab did not start: {server.stderr.read()[-2000:]}")
                time.sleep(0.5)
        yield port, tmp_path
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_configure_lab_keeps_other_overrides(tmp_path):
    path = overrides_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}))
    configure_lab(tmp_path)
    settings = json.loads(path.read_text())
    assert settings[DOCMANAGER]["defaultViewers"]["python"] == JUPYTEXT_VIEWER
    assert settings["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}


@pytest.mark.slow
def test_jupyter_lab_serves_py_notebooks_as_notebooks_and_saving_leaves_them_unchanged(lab_server):
    port, root = lab_server
    model = _request(port, "/api/contents/notebooks/04_baseline.py?type=notebook&content=1")
    assert model["type"] == "notebook"
    assert model["content"]["metadata"]["kernelspec"]["name"] == "mvclip"
    assert any("Baseline" in "".join(cell["source"]) for cell in model["content"]["cells"])

    # the venv's lab settings (written by `make install`) open Python files in the Jupytext Notebook
    settings = _request(port, f"/lab/api/settings/{DOCMANAGER}")
    assert settings["schema"]["properties"]["defaultViewers"]["default"]["python"] == JUPYTEXT_VIEWER

    # open and save: every notebook's .py stays byte for byte what it was
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.py")):
        before = path.read_bytes()
        opened = _request(port, f"/api/contents/notebooks/{path.name}?type=notebook&content=1")
        _request(port, f"/api/contents/notebooks/{path.name}", "PUT",
                 {"type": "notebook", "format": "json", "content": opened["content"]})
        assert path.read_bytes() == before, f"saving {path.name} from JupyterLab changed it"
