# Each target does all the set-up it needs on a fresh machine: venv, install, then act.
VENV   ?= .venv
PYTHON ?= python3
BUDGET ?= 1e12

.PHONY: demo test install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Grow resnet20-thin on the shipped Fashion-MNIST sample (offline, a few minutes on 2 CPU cores).
demo: $(VENV)/.installed
	$(VENV)/bin/grow --seed resnet20-thin --budget $(BUDGET) --data sample --seed-value 0

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
