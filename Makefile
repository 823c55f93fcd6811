# edgenas: `make demo` and `make test` each set up everything they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages: Fashion-MNIST (IDX files) and the aarch64 cross compiler.
APT_PACKAGES := dataset-fashion-mnist gcc-aarch64-linux-gnu
APT_STAMP := $(VENV)/.apt-installed
# The suite runs in one pytest-xdist worker per core (at most 4); --dist loadgroup keeps the tests of one
# xdist_group (those that share an expensive fixture or TVM's start-up) on one worker.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

.PHONY: setup demo test test-fast lint format clean

$(STAMP): pyproject.toml requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, alone: the CPU wheel on disk; anything looser pulls CUDA builds
	$(PY) -m pip install --disable-pip-version-check -q torch==2.13.0
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $(STAMP)

$(APT_STAMP): $(STAMP)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null \
	    || echo "warning: could not install$$missing; tests that need them are skipped"; \
	fi
	touch $(APT_STAMP)

setup: $(STAMP) $(APT_STAMP)

demo: setup
	$(PY) -m nas.demo

test: setup
	$(PYTEST) --durations=20

test-fast: setup
	$(PYTEST) -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
