# Entry points for newcomers and CI: `make demo`, `make test`. Each sets itself up first.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# `make demo` installs only the package and dpkt, so a newcomer's first command is quick.
DEMO_STAMP := $(VENV)/.demo-installed
# Commands the tests use, as command:Debian-package. The tests need no compiler: the XDP
# program and the test programs (tests/bpf) ship built, others are raw instructions. tcpdump
# judges the filter compiler and reads, with tshark, the pcap files the library writes (wireshark-common's debconf question about
# non-root capture is answered with its default under DEBIAN_FRONTEND=noninteractive).
TEST_TOOLS := ip:iproute2 ethtool:ethtool unshare:util-linux setpriv:util-linux tcpdump:tcpdump tshark:tshark strace:strace
# Rebuilding the shipped XDP program and the test programs (`make ebpf`) needs clang as well.
EBPF_TOOLS := clang:clang
# What `system-packages` installs when missing (`make ebpf` passes EBPF_TOOLS instead).
SYSTEM_TOOLS := $(TEST_TOOLS)
# iproute2 and ethtool live in /usr/sbin, which a non-login shell may lack.
export PATH := $(PATH):/usr/sbin:/sbin
# apt-get runs unattended (CI has no standard input); sudo only when not already root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: setup system-packages test demo bench lint ebpf clean l2fwd-c

setup: system-packages $(STAMP)

# Idempotent and quick when everything is there: installs only what is missing.
system-packages:
	@missing=""; \
	for entry in $(SYSTEM_TOOLS); do \
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

$(DEMO_STAMP): setup.cfg pyproject.toml
	[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[demo]'
	touch $@

# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k veth -x"`.
PYTEST_ARGS ?=

test: setup l2fwd-c
	$(VENV)/bin/pytest -ra tests $(PYTEST_ARGS)

demo: system-packages $(DEMO_STAMP)
	$(VENV)/bin/python cmd/demo.py

# Extra bench arguments, e.g. `make bench BENCH_ARGS=--quick` (about a minute) or "--rounds 5".
BENCH_ARGS ?=

# Then capture against tcpdump (cmd/capture_bench.py, a few minutes; --quick in BENCH_ARGS
# makes it quick too; more arguments in CAPTURE_BENCH_ARGS) and scapy's sniff over both
# sockets (cmd/scapy_bench.py, one short round).
CAPTURE_BENCH_ARGS ?=

# Last, forwarding against a C l2fwd and an AF_PACKET one (cmd/l2fwd_bench.py, a few minutes;
# --quick in BENCH_ARGS makes it quick too; more arguments in L2FWD_BENCH_ARGS).
L2FWD_BENCH_ARGS ?=

bench: setup l2fwd-c
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(VENV)/bin/python cmd/bench.py $(BENCH_ARGS)
	$(VENV)/bin/python cmd/capture_bench.py --output results $(filter --quick,$(BENCH_ARGS)) $(CAPTURE_BENCH_ARGS)
	$(VENV)/bin/python cmd/scapy_bench.py --rounds 1 --seconds 1
	$(VENV)/bin/python cmd/l2fwd_bench.py --output results $(filter --quick,$(BENCH_ARGS)) $(L2FWD_BENCH_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

ebpf:
	$(MAKE) system-packages SYSTEM_TOOLS="$(EBPF_TOOLS)"
	$(MAKE) -C ebpf
	$(MAKE) -C tests/bpf

# The forwarding benchmark's C baseline (cmd/l2fwd_c), built with gcc against Debian's libxdp
# and libbpf; `make test` builds it too (tests/integration/test_l2fwd_bench.py runs it).
L2FWD_C := build/xsk_l2fwd
L2FWD_C_PACKAGES := gcc libc6-dev libxdp-dev libbpf-dev

l2fwd-c: $(L2FWD_C)

$(L2FWD_C): cmd/l2fwd_c/xsk_l2fwd.c
	@missing=""; \
	for package in $(L2FWD_C_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q "ok installed" || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(APT_GET) update && $(APT_GET) install -y --no-install-recommends $$missing; \
	fi
	mkdir -p $(dir $@)
	gcc -O2 -Wall -Wextra -Werror -o $@ $< -lxdp -lbpf

clean:
	rm -rf $(VENV) build dist *.egg-info .tox .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
