# Entry points for newcomers and CI: `make demo`, `make test`. Each sets itself up first.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# Commands the tests use, as command:Debian-package. clang builds a tiny XDP program that
# integration tests attach the way another tool would.
TEST_TOOLS := ip:iproute2 ethtool:ethtool unshare:util-linux clang:clang
# iproute2 and ethtool live in /usr/sbin, which a non-login shell may lack.
export PATH := $(PATH):/usr/sbin:/sbin
# apt-get runs unattended (CI has no standard input); sudo only when not already root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: setup system-packages test demo bench lint ebpf clean

setup: system-packages $(STAMP)

# Idempotent and quick when everything is there: installs only what is missing.
system-packages:
	@missing=""; \
	for entry in $(TEST_TOOLS); do \
		command -v $${entry%%:*} >/dev/null || missing="$$missing $${entry#*:}"; \
	done; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(APT_GET) update && $(APT_GET) install -y --no-install-recommends $$missing; \
	fi

# Reinstalled whenever the package metadata changes.
$(STAMP): setup.cfg pyproject.toml
	[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k veth -x"`.
PYTEST_ARGS ?=

test: setup
	$(VENV)/bin/pytest -ra tests $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/python cmd/demo.py

bench: setup
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(VENV)/bin/python cmd/bench.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

ebpf: system-packages
	$(MAKE) -C ebpf

clean:
	rm -rf $(VENV) build dist *.egg-info .tox .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
