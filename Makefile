# Two commands do all the set-up on a fresh machine:
#   make run    installs into .venv, then runs the whole comparison on the embedded default and the compare table
#   make test   installs into .venv (with pytest), then runs the fast test suite
VENV ?= .venv
PY := $(VENV)/bin/python
# the CPU wheel on this kind of machine; GPU users: `pip install -e .` picks their own torch build
TORCH ?= torch==2.13.0
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_SILENT=true

.PHONY: setup run test test-slow bench soak clean
setup: $(VENV)/.installed

# pip's output goes to $(VENV)/install.log (shown in full if an install fails), so the console keeps the run
$(VENV)/.installed: pyproject.toml
	@echo "installing into $(VENV) (log: $(VENV)/install.log)"
	@test -x $(PY) || python3 -m venv $(VENV)
	@( $(PY) -m pip install --upgrade pip && $(PY) -m pip install "$(TORCH)" && $(PY) -m pip install -e ".[dev]" ) \
		> $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; echo "install failed: see $(VENV)/install.log"; exit 1; }
	@touch $@

run: setup
	$(OFFLINE) $(PY) -m mpo.run --config-dir sweeps --config-name compare_methods  # ends by running mpo.compare

test: setup
	$(OFFLINE) $(PY) -m pytest -q

test-slow: setup
	$(OFFLINE) $(PY) -m pytest -q -m slow

bench: setup
	$(OFFLINE) $(PY) -m mpo.studies.bench

# a joblib sweep with a worker killed mid-stage and an artifact corrupted must end equal to an undisturbed one
soak: setup
	$(OFFLINE) $(PY) -m mpo.studies.soak

clean:
	rm -rf outputs/runs outputs/multirun
