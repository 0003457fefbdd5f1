#!/usr/bin/env bash
# scripts/setup-host.sh
# Host setup for image builds and container tests on Debian 12 (CI calls this; safe to run again).
#
# - installs podman, runc, buildah, skopeo, mmdebstrap (and uidmap, netavark, aardvark-dns), make and
#   the shellcheck linter when missing, and python3-venv / nodejs+npm where python3 cannot make a venv / npm is absent;
# - writes /etc/containers/containers.conf and storage.conf (runc + cgroupfs, no default ulimits: crun
#   fails on this kind of host's cgroup v1/v2 hybrid, and raising rlimits needs CAP_SYS_RESOURCE);
# - lets podman's networks carry traffic between their own members where the FORWARD policy is DROP (dockerd
#   sets it): bridged frames pass iptables' FORWARD chain (br_netfilter), and netavark adds no rule for
#   internal networks, so an agent could not reach its own egress proxy (see docs/egress.md);
# - with --with-docker: installs docker.io and starts dockerd in the background (no systemd here), log in
#   /var/log/dockerd.log, and waits until it answers.
#
# Quick when everything is already there: apt-get runs only when a package is missing.
set -euo pipefail

WITH_DOCKER=0
DOCKER_LOG="${DOCKER_LOG:-/var/log/dockerd.log}"
DOCKER_WAIT="${DOCKER_WAIT:-60}"
CONF_DIR="${CONTAINERS_CONF_DIR:-/etc/containers}"

usage() {
  cat <<'EOF'
usage: scripts/setup-host.sh [--with-docker]
  --with-docker   also install docker.io and start dockerd in the background
EOF
}

for arg in "$@"; do
  case "${arg}" in
  --with-docker) WITH_DOCKER=1 ;;
  -h | --help)
    usage
    exit 0
    ;;
  *)
    usage >&2
    exit 2
    ;;
  esac
done

log() { printf 'setup-host: %s\n' "$*" >&2; }

if [[ "$(id -u)" -ne 0 ]]; then
  log "run as root (installs packages and writes ${CONF_DIR})"
  exit 1
fi

# missing PKG...: print the packages that are not installed
missing() {
  local pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q 'install ok installed'; then
      printf '%s\n' "${pkg}"
    fi
  done
}

apt_install() {
  local -a want
  mapfile -t want < <(missing "$@")
  if ((${#want[@]} == 0)); then
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    log "apt-get is not available; install by hand: ${want[*]}"
    exit 1
  fi
  log "installing ${want[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
}

# write_file PATH: stdin becomes PATH when the content differs (atomic replace, mode 0644)
write_file() {
  local path="$1" tmp
  tmp="$(mktemp "${path}.XXXXXX")"
  cat >"${tmp}"
  if [[ -f "${path}" ]] && cmp -s "${tmp}" "${path}"; then
    rm -f "${tmp}"
    return 0
  fi
  chmod 0644 "${tmp}"
  mv -f "${tmp}" "${path}"
  log "wrote ${path}"
}

apt_install podman runc buildah skopeo mmdebstrap uidmap netavark aardvark-dns ca-certificates make shellcheck iptables
# Compose v1 for docker (the Compose-based devcontainer of proxied tiers); podman-compose comes with the venv
apt_install docker-compose
# Python venvs (the Makefile installs agent-sandbox into .venv) and npm (the Dev Containers CLI), where missing
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_install python3-venv
command -v npm >/dev/null 2>&1 || apt_install nodejs npm

mkdir -p "${CONF_DIR}"
write_file "${CONF_DIR}/containers.conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "netavark"
EOF
write_file "${CONF_DIR}/storage.conf" <<'EOF'
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
[storage.options.overlay]
mountopt = "nodev"
EOF

docker_ready() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if ((WITH_DOCKER)); then
  apt_install docker.io
  if ! docker_ready; then
    if pgrep -x dockerd >/dev/null 2>&1; then
      log "dockerd is running but not answering yet"
    else
      log "starting dockerd (log: ${DOCKER_LOG})"
      mkdir -p "$(dirname "${DOCKER_LOG}")"
      nohup dockerd >>"${DOCKER_LOG}" 2>&1 </dev/null &
      disown || true
    fi
    for _ in $(seq "${DOCKER_WAIT}"); do
      if docker_ready; then break; fi
      sleep 1
    done
    if ! docker_ready; then
      log "dockerd did not answer within ${DOCKER_WAIT} s; last log lines:"
      tail -n 20 "${DOCKER_LOG}" >&2 || true
      exit 1
    fi
  fi
  log "docker $(docker version --format '{{.Server.Version}}') ready"
fi

# Traffic inside one podman network (bridged, never routed between networks) is forwarded; the same rule
# agent-sandbox's runtime checks for (runtime.BRIDGE_RULE). Re-applied after dockerd, which sets FORWARD to DROP.
BRIDGE_RULE=(FORWARD -i podman+ -o podman+ -m physdev --physdev-is-bridged
  -m comment --comment "agent-sandbox: podman networks carry their own traffic" -j ACCEPT)
if ! iptables -C "${BRIDGE_RULE[@]}" 2>/dev/null; then
  iptables -I "${BRIDGE_RULE[@]}"
  log "iptables: podman networks carry their own traffic (FORWARD)"
fi

log "podman $(podman version --format '{{.Client.Version}}') ready ($(podman info --format '{{.Host.OCIRuntime.Name}}'))"
