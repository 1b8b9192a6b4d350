# Each target does all the set-up it needs on a fresh machine: venv, install, then act.
VENV   ?= .venv
PYTHON ?= python3
BUDGET ?= 1e12

.PHONY: demo test test-fast install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	$(VENV)/bin/grow seeds > /dev/null  # counts the seeds table once (imports torch: seconds); later calls read it
	touch $@

install: $(VENV)/.installed

# Grow resnet20-thin on the shipped Fashion-MNIST sample (offline, about 3 minutes on one CPU core).
# At so small a budget the size rule (calibrated on CIFAR-10) would keep the seed as it is, so the
# demo asks for a final size; `make demo TARGET_MACS=` leaves the choice to the rule.
TARGET_MACS ?= 4e6
demo: $(VENV)/.installed
	$(VENV)/bin/grow --seed resnet20-thin --budget $(BUDGET) --data sample --seed-value 0 \
		$(if $(TARGET_MACS),--target-macs $(TARGET_MACS))

# Everything CI runs: lint, types, the whole suite. One process per core, each test file on one of
# them (module fixtures run once), one thread each: most tests train in a subprocess of their own.
test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	OMP_NUM_THREADS=1 $(VENV)/bin/python -m pytest -q -n auto --dist loadfile --durations=15

# The quick lane while editing (under a minute): unit tests and doctests, no end-to-end runs.
test-fast: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
