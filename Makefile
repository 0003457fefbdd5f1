# Makefile
# make images     build every image under images/ with Nix (needs nixpkgs reachable; see docs/nix.md)
# make compile    regenerate images/compiled/policies.json from images/policies/
# make test       the whole test suite
# make check-nix  the Nix checks that run without nixpkgs (parse, stand-in contract tests)
# make flake-check  `nix flake check` against the real nixpkgs (CI, where it is reachable)

PYTHON ?= python3
AGENT_SANDBOX ?= agent-sandbox
IMAGES := $(sort $(patsubst images/%/image.toml,%,$(wildcard images/*/image.toml)))

.PHONY: images compile test check-nix flake-check $(addprefix image-,$(IMAGES))

images: $(addprefix image-,$(IMAGES))

$(addprefix image-,$(IMAGES)): image-%:
	$(AGENT_SANDBOX) build --backend nix $*

compile:
	$(AGENT_SANDBOX) policy compile-all

test:
	$(PYTHON) -m pytest -q

check-nix:
	bash scripts/setup-nix.sh
	$(PYTHON) -m pytest -q -m nix tests/nix

flake-check:
	nix flake check --print-build-logs
