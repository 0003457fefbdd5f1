#!/usr/bin/env bash
# scripts/setup-nix.sh
# Host setup for the Nix checks in tests/nix/ (CI calls this; safe to run again).
#
# - installs the `nix` command (Debian's nix-bin) when it is missing and apt-get is available;
# - enables flakes and the nix command in /etc/nix/nix.conf;
# - points the global flake registry at an empty file and empties the substituters, so that
#   evaluating our flake against the test stand-in never waits on a network that is not there;
# - builds as the invoking user when there are no build users: Debian's nix-bin creates no `nixbld`
#   group, and Nix's default `build-users-group = nixbld` stops every build on a fresh machine with
#   "the group 'nixbld' specified in 'build-users-group' does not exist";
# - gives the build sandbox a /bin/sh (a static busybox), as NixOS does: without nixpkgs there is no shell in
#   the store, and the test stand-in's derivations (and any `builder = "/bin/sh"`) fail with
#   "executing '/bin/sh': No such file or directory" in a sandbox that has none.
#
# It does not make nixpkgs or a binary cache reachable: real image builds need a machine that
# can reach GitHub and cache.nixos.org (see docs/nix.md).
set -euo pipefail

NIX_CONF_DIR="${NIX_CONF_DIR:-/etc/nix}"
NIX_CONF="${NIX_CONF_DIR}/nix.conf"
REGISTRY="${NIX_CONF_DIR}/registry-empty.json"

log() { printf 'setup-nix: %s\n' "$*" >&2; }

if ! command -v nix >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    log "installing nix-bin"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nix-bin >/dev/null
  else
    log "nix is not installed and apt-get is not available; install Nix >= 2.8 first"
    exit 1
  fi
fi

# a static shell for the build sandbox (Debian: busybox-static installs /bin/busybox)
if [[ ! -x /bin/busybox ]] && command -v apt-get >/dev/null 2>&1; then
  log "installing busybox-static (the build sandbox's /bin/sh)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static >/dev/null
fi

mkdir -p "${NIX_CONF_DIR}"
touch "${NIX_CONF}"

# set_option KEY VALUE: replace an existing `KEY = ...` line, or append one.
set_option() {
  local key="$1" value="$2" tmp
  tmp="$(mktemp "${NIX_CONF}.XXXXXX")"
  awk -v key="${key}" -v line="${key} = ${value}" '
    BEGIN { done = 0 }
    $0 ~ "^[[:space:]]*" key "[[:space:]]*=" { if (!done) { print line; done = 1 }; next }
    { print }
    END { if (!done) print line }
  ' "${NIX_CONF}" >"${tmp}"
  chmod 0644 "${tmp}"
  mv -f "${tmp}" "${NIX_CONF}"
}

if [[ ! -s "${REGISTRY}" ]]; then
  printf '{"flakes":[],"version":2}\n' >"${REGISTRY}"
  chmod 0644 "${REGISTRY}"
fi

set_option experimental-features "nix-command flakes"
set_option substituters ""
set_option flake-registry "${REGISTRY}"
if [[ -x /bin/busybox ]]; then
  set_option sandbox-paths "/bin/sh=/bin/busybox"
fi
if ! getent group nixbld >/dev/null 2>&1; then
  set_option build-users-group ""
fi

log "$(nix --version) configured in ${NIX_CONF}"
