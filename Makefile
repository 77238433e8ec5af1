# `make run` and `make test` set everything up from the project files on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= params/default.yaml
STAMP := $(VENV)/.installed

.PHONY: run test install kernel clean-venv benchmark

# Re-install when the project's dependencies change.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -e '.[test]' > $(VENV)/pip-install.log 2>&1 \
		|| (grep -v "^WARNING: Location" $(VENV)/pip-install.log | tail -40; exit 1)
	$(PY) -c "import mvclip_utils, bpy, torch, papermill" 
	$(PY) -m ipykernel install --sys-prefix --name mvclip --display-name "Python 3 (mvclip)" > /dev/null
	@touch $(STAMP)

install: $(STAMP)

kernel: $(STAMP)

run: $(STAMP)
	$(PY) -m mvclip_utils.pipeline --config $(CONFIG)

test: $(STAMP)
	$(PY) -m pytest -q

benchmark: $(STAMP)
	$(PY) benchmarks/render.py

clean-venv:
	rm -rf $(VENV)
