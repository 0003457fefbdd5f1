# Makefile
# On a fresh Debian 12 machine (as root):
# make sandbox    set up the host, build the default image and the egress proxy with the Debian backend, then put a
#                 strict sandbox to work (the project's main job here): with a terminal, the agent (or a shell when
#                 no API key is set); without one, a demonstration of the egress proxy and its log
# make test       set up the host, build the default image, run every test (unit, nix, conformance)
# make setup      install and configure what the two above need (idempotent)
# make images     build every image under images/ with Nix (needs nixpkgs reachable; see docs/nix.md)
# make wheel      build the agent-sandbox wheel into dist/ (from a clean setuptools scratch directory)
# make compile    regenerate images/compiled/policies.json from images/policies/
# make check-nix  the Nix checks that run without nixpkgs (parse, stand-in contract tests)
# make flake-check  `nix flake check` against the real nixpkgs (CI, where it is reachable)

# agent-sandbox and its test dependencies live in a venv: Debian's own python3 refuses `pip install` (PEP 668).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
AGENT_SANDBOX := $(VENV)/bin/agent-sandbox
# devcontainer images (Nix builds them); the egress proxy image (role = "egress-proxy") comes from the Debian backend
IMAGES := $(sort $(patsubst images/%/image.toml,%,$(shell grep -L '^role *= *"egress-proxy"' images/*/image.toml)))
PROXY_IMAGE := localhost/agent-sandbox-proxy:latest

DEFAULT_IMAGE := localhost/agent-sandbox-devcontainer:latest
INTERNET_IMAGE := localhost/agent-sandbox-test-internet:latest

.PHONY: wheel venv setup image test-images docker-image sandbox images compile test check-nix flake-check $(addprefix image-,$(IMAGES))

# The venv with agent-sandbox and its test dependencies (python3 >= 3.11 with venv support).
venv:
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]'

setup:
	bash scripts/setup-host.sh --with-docker
	bash scripts/setup-nix.sh
	$(MAKE) venv
	command -v devcontainer >/dev/null || npm install -g --no-fund --no-audit @devcontainers/cli

# The agent image (from its lock, images/agent-sandbox-devcontainer/lock.toml; its SPDX SBOM in sbom/) and the egress
# proxy image (each a cache hit when nothing changed).
image: setup
	$(AGENT_SANDBOX) build --backend debian --sbom sbom/agent-sandbox-devcontainer.spdx.json
	$(AGENT_SANDBOX) build agent-sandbox-proxy --backend debian

# The conformance suite's stand-in for the internet (tests/images/internet).
test-images: image
	$(AGENT_SANDBOX) build tests/images/internet --backend debian

# The same images in docker's store (the conformance suite runs on both engines); loaded only when changed.
docker-image: test-images
	@for ref in $(DEFAULT_IMAGE) $(PROXY_IMAGE) $(INTERNET_IMAGE); do \
	  want=$$(podman image inspect --format '{{.Id}}' $$ref); \
	  have=$$(docker image inspect --format '{{.Id}}' $$ref 2>/dev/null | sed 's/^sha256://'); \
	  if [ "$$want" != "$$have" ]; then echo "loading $$ref into docker"; \
	    podman save --format docker-archive $$ref | docker load; fi; \
	done

# The host's CA bundle goes in for HTTPS: on machines whose HTTPS is intercepted (ours) it holds that CA too.
sandbox: image
	$(AGENT_SANDBOX) demo --ca-bundle /etc/ssl/certs/ca-certificates.crt

images: venv $(addprefix image-,$(IMAGES))

$(addprefix image-,$(IMAGES)): image-%:
	$(AGENT_SANDBOX) build --backend nix $*

# setuptools keeps .setuptools-build/ between builds and would ship files deleted since: start it empty.
wheel: venv
	rm -rf .setuptools-build
	$(PYTHON) -m pip wheel -q --no-deps -w dist .

compile: venv
	$(AGENT_SANDBOX) policy compile-all

# pytest exits 5 when it collects no test: not a failure of the build.
# Everything on podman (testpaths: tests/ and the suite shipped in the package), then the container conformance
# tests again on docker.
test: image docker-image
	AGENT_SANDBOX_IMAGE=$(DEFAULT_IMAGE) AGENT_SANDBOX_ENGINE=podman $(PYTHON) -m pytest -q || [ $$? -eq 5 ]
	AGENT_SANDBOX_IMAGE=$(DEFAULT_IMAGE) AGENT_SANDBOX_ENGINE=docker $(PYTHON) -m pytest -q -m container \
	  tests/conformance build/agent_sandbox/conformance/suite

check-nix: venv
	bash scripts/setup-nix.sh
	$(PYTHON) -m pytest -q -m nix tests/nix

flake-check:
	nix flake check --print-build-logs
