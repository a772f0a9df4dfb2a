# pallet — set-up, demo, tests and benchmarks.
# `make demo` and `make test` install everything they need themselves.

# The venv's interpreter: the system's own python3 where it can make a venv
# (on Debian an optimized build, which is what the system runs its daemons on;
# it starts and runs 10-15% faster than a default source build such as
# pyenv's), else the first python3 on PATH.
PYTHON   ?= $(shell /usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 && \
                    echo /usr/bin/python3 || echo python3)
VENV     ?= .venv
PY       := $(VENV)/bin/python
BUILD    := build
IMAGE    := $(BUILD)/busybox.tar
DATA_ROOT ?= /var/lib/pallet
EXEC_ROOT ?= /run/pallet
SOCK     := $(EXEC_ROOT)/pallet.sock
PALLET   := $(VENV)/bin/pallet -H unix://$(SOCK)
APT_PKGS := busybox-static iptables docker.io containerd runc tini skopeo \
            docker-registry bats tmux iproute2 procps systemd openssl \
            containernetworking-plugins python3-venv
# PYTHONDONTWRITEBYTECODE is set on the developers' machines; users have .pyc
# caches, so the demo and the benchmarks run without it.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup apt venv dev image demo demo-stop test lint unit proto bench clean

setup: apt venv image

apt:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

SOURCES  := pyproject.toml $(shell find core client linux plugins proto ttrpc containerd containerd_services distribution imagestore engine shim commands cni streaming oci units -name '*.py' -not -path '*/__pycache__/*')

# A regular (not editable) install, as users have it: an editable install of a
# package-dir layout adds an import hook that costs ~20 ms at every start of
# every command.  `make dev` gives developers the editable one.
$(VENV)/.installed: $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q '.[test]'
	touch $@

venv: $(VENV)/.installed

dev:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'

$(IMAGE): $(VENV)/.installed distribution/busybox_image.py
	mkdir -p $(BUILD)
	$(PY) -m pallet.distribution.busybox_image $(IMAGE)

image: $(IMAGE)

demo: setup
	@if ! $(PALLET) version >/dev/null 2>&1; then \
		echo "starting palletd (data root $(DATA_ROOT), exec root $(EXEC_ROOT))"; \
		mkdir -p $(EXEC_ROOT); \
		setsid $(VENV)/bin/palletd --data-root $(DATA_ROOT) --exec-root $(EXEC_ROOT) \
			--pidfile $(EXEC_ROOT)/palletd.pid >$(EXEC_ROOT)/palletd.log 2>&1 < /dev/null & \
		for i in $$(seq 100); do $(PALLET) version >/dev/null 2>&1 && break; sleep 0.1; done; \
	fi
	$(PALLET) load -i $(IMAGE)
	$(PALLET) run --rm busybox echo "hello from a pallet container"
	$(PALLET) run --name demo-$$$$ busybox sh -c 'echo "I am PID $$$$ in $$(hostname)"'
	$(PALLET) ps -a
	$(PALLET) images
	@echo
	@echo "palletd keeps running: DOCKER_HOST=unix://$(SOCK) docker ps -a"
	@echo "stop it with: make demo-stop"

demo-stop:
	@if [ -f $(EXEC_ROOT)/palletd.pid ]; then kill $$(cat $(EXEC_ROOT)/palletd.pid); fi

test: setup lint
	$(PY) -m pytest -q tests

# the layers of docs/ARCHITECTURE.md (import-linter contracts in pyproject.toml)
lint: venv
	cd $(CURDIR) && $(VENV)/bin/lint-imports --no-cache

unit: venv
	$(PY) -m pytest -q -m "not root" tests

proto: venv
	$(PY) proto/generate.py

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(BUILD)
