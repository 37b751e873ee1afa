# Two commands do all the set-up: `make train` and `make test` create .venv when missing and install into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/digits_cnn.py
ARGS ?=
CIFAR_DIR ?= $(HOME)/.cache/dl4cv/cifar10
CIFAR_TAR ?= ../shared/data/cifar10_jpeg.tar.gz

.PHONY: install train test lint format cifar10 clean

# Re-installs only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

train: install
	$(PY) main.py --config=$(CONFIG) $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Two pytest workers (pytest-xdist), one file each at a time: most tests leave a core idle (compilation and
# Python are single-threaded), so two in parallel take ~9 instead of ~14 minutes on 2 cores. TEST_WORKERS=0: serial.
TEST_WORKERS ?= 2
test: lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=10 $(PYTEST_ARGS)

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# CIFAR-10 as JPEG class folders, for the CIFAR configs (data.source=folder).
cifar10: $(CIFAR_DIR)/train
$(CIFAR_DIR)/train:
	mkdir -p $(CIFAR_DIR)
	tar -xzf $(CIFAR_TAR) -C $(CIFAR_DIR)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
