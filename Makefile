# `make run` and `make test` set everything up from the project files on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
MVCLIP := $(VENV)/bin/mvclip
CONFIG ?= params/default.yaml
STAMP := $(VENV)/.installed
# Every package of the working environment at the exact version it was tested with
# (Linux x86_64, Python 3.11); pyproject.toml keeps the loose ranges. `make lock` refreshes it.
LOCK := requirements.lock
PIP_INSTALL := -m pip install --disable-pip-version-check
IMPORT_CHECK := import mvclip_utils, bpy, torch, papermill, open_clip, peft

.PHONY: run ablations distill-ablations seeds select test test-fast lint install kernel lab clean-venv benchmark lock

# Re-install when the project's dependencies or their pins change.
$(STAMP): pyproject.toml $(LOCK) mvclip_utils/lab.py mvclip_utils/cli.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) $(PIP_INSTALL) -r $(LOCK) -e '.[test]' > $(VENV)/pip-install.log 2>&1 \
		|| (grep -v "^WARNING: Location" $(VENV)/pip-install.log | tail -40; exit 1)
	$(PY) -c "$(IMPORT_CHECK)"
	$(PY) -m ipykernel install --sys-prefix --name mvclip --display-name "Python 3 (mvclip)" > /dev/null
	$(MVCLIP) lab --configure-only > /dev/null
	@touch $(STAMP)

install: $(STAMP)

kernel: $(STAMP)

# JupyterLab from the venv: double-click a notebooks/NN_*.py to open it as a notebook on "Python 3 (mvclip)".
lab: $(STAMP)
	$(MVCLIP) lab

run: $(STAMP)
	$(MVCLIP) run --config $(CONFIG)

# Notebook 08 again with the OVT paper's ablations (params/ovt_ablations.yaml: the default run's
# dataset and backbone, so `make run` first); about 10 minutes on 2 cores.
ablations: $(STAMP)
	$(MVCLIP) run --config params/ovt_ablations.yaml --only 08

# Notebook 12 again with one centroid-distillation variant without each term (params/distill_ablations.yaml).
distill-ablations: $(STAMP)
	$(MVCLIP) run --config params/distill_ablations.yaml --only 12

# Two sources of variance (`make run` first): the methods that train (05-08, 12) trained again with each of
# SEEDS as their training seed on the default run's dataset and backbone (the default run is training seed
# 0), and whole runs with each of DATA_SEEDS as the dataset/split seed (other objects, splits and category
# groups; each renders and pretrains its own; the default run is dataset seed 0). Then the default run's
# summary (13) with the mean and standard error over each. 51 min on 2 cores (2 x 7 + 2 x 12 min, 13s).
SEEDS ?= 1,2
DATA_SEEDS ?= 1,2
RUN_DIR ?= outputs/default
SEEDS_DIR ?= $(RUN_DIR)-seeds
DATA_SEEDS_DIR ?= $(RUN_DIR)-data-seeds
comma := ,
seeds: $(STAMP)
	$(MVCLIP) sweep --config $(CONFIG) --set heads.seed,ovt.seed,distill.seed=$(SEEDS) \
		--from-run $(RUN_DIR) --root $(SEEDS_DIR) --only 05-08,12
	$(MVCLIP) collect $(RUN_DIR) $(foreach s,$(subst $(comma), ,$(SEEDS)),$(SEEDS_DIR)/seed-$(s)) \
		--into $(RUN_DIR)
	$(MVCLIP) sweep --config $(CONFIG) --set seed=$(DATA_SEEDS) --root $(DATA_SEEDS_DIR) --only 01-09,12-13
	$(MVCLIP) collect $(RUN_DIR) $(foreach s,$(subst $(comma), ,$(DATA_SEEDS)),$(DATA_SEEDS_DIR)/seed-$(s)) \
		--over seed --into $(RUN_DIR) --dataset-seeds
	$(MVCLIP) run --config $(CONFIG) --run-dir $(RUN_DIR) --only 13

# Choose 08's and 12's settings on the val objects (`mvclip select`: a grid of variants sharing the run's
# dataset, backbone and embeddings; the variant of best val transfer accuracy within the clean budget),
# then evaluate each chosen setting on test once, then the summary (`make run` first).
SELECT_OVT ?= --set ovt.lr=0.0005,0.002 --set ovt.clean_per_batch=64,128 --set ovt.text=category,per_view
SELECT_DISTILL ?= --set distill.lr=0.0005,0.002 --set distill.distill_weight=0.5,1.0
select: $(STAMP)
	$(MVCLIP) select --config $(CONFIG) --from-run $(RUN_DIR) --method omniview_tuning --only 08 $(SELECT_OVT)
	$(MVCLIP) select --config $(CONFIG) --from-run $(RUN_DIR) --method centroid_distillation --only 12 \
		$(SELECT_DISTILL)
	$(MVCLIP) run --config $(RUN_DIR)/selection/omniview_tuning.yaml --run-dir $(RUN_DIR) --only 08
	$(MVCLIP) run --config $(RUN_DIR)/selection/centroid_distillation.yaml --run-dir $(RUN_DIR) --only 12
	$(MVCLIP) run --config $(CONFIG) --run-dir $(RUN_DIR) --only 13

# The full suite (what CI runs): the lint first, then every test, bpy renders and notebook runs included.
test: lint
	$(PY) -m pytest -q

# The contributor's loop: no bpy renders, no notebook runs (the `slow` marker), under a minute.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# ruff (style, sorted imports) and import-linter (imports only go down the layers of mvclip_utils).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

benchmark: $(STAMP)
	$(PY) benchmarks/render.py

# Re-resolve pyproject.toml's ranges in a throw-away venv (today's newest releases that fit)
# and pin everything it installed (setuptools too: torch needs it at run time; not pip);
# review the diff, run `make test`, commit the lock.
lock:
	@set -e; tmp=$$(mktemp -d /tmp/mvclip-lock.XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	echo "resolving pyproject.toml in a fresh venv ($$tmp)"; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" $(PIP_INSTALL) -e '.[test]' > "$$tmp/pip-install.log" 2>&1 \
		|| { grep -v "^WARNING: Location" "$$tmp/pip-install.log" | tail -40; exit 1; }; \
	"$$tmp/venv/bin/python" -c "$(IMPORT_CHECK)"; \
	{ echo "# Generated by \`make lock\` on $$(date -u +%Y-%m-%d) from pyproject.toml's ranges:"; \
	  echo "# $$("$$tmp/venv/bin/python" -c 'import platform; print("Python", platform.python_version(), "on", platform.system(), platform.machine())').";\
	  echo "# Install: pip install -r $(LOCK) -e '.[test]' (what \`make install\` does)."; \
	  "$$tmp/venv/bin/python" -m pip freeze --all --exclude pip --exclude-editable \
	    | grep -v -i '^mvclip[= @]'; } > "$$tmp/lock"; \
	mv "$$tmp/lock" $(LOCK); \
	echo "wrote $(LOCK): $$(grep -vc '^#' $(LOCK)) pins"

clean-venv:
	rm -rf $(VENV)
