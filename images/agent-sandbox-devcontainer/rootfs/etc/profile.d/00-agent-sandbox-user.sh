# shellcheck shell=sh
# /etc/profile.d/00-agent-sandbox-user.sh (from images/agent-sandbox-devcontainer/rootfs)
# The image's user is root only for what must run as root at start: Leash's bootstrap (leash-entry, the
# entrypoint Leash's runner injects) installs its CA. A login shell started as root — how Leash's runner enters
# every command (`bash -lc 'exec CMD'`), and the image's own default command — goes on as the sandbox user (the
# owner of /workspace), with no capabilities and no_new_privs. agent-sandbox's own runs and devcontainers start as
# that user from the first instruction and never come here as root. AGENT_SANDBOX_AS_ROOT=1 (set by whoever has
# the engine) keeps root.
if [ "$(id -u)" = 0 ] && [ -z "${AGENT_SANDBOX_AS_ROOT:-}" ]; then
  agent_sandbox_owner=$(stat -c %u:%g /workspace 2>/dev/null || true)
  case "$agent_sandbox_owner" in
  "" | 0:*) ;;
  *)
    agent_sandbox_entry=$(getent passwd "${agent_sandbox_owner%%:*}")
    USER=$(printf %s "$agent_sandbox_entry" | cut -d: -f1)
    HOME=$(printf %s "$agent_sandbox_entry" | cut -d: -f6)
    LOGNAME=$USER
    export USER HOME LOGNAME
    set -- setpriv --reuid="${agent_sandbox_owner%%:*}" --regid="${agent_sandbox_owner##*:}" --init-groups \
      --inh-caps=-all --bounding-set=-all --no-new-privs --
    if [ -n "${BASH_EXECUTION_STRING:-}" ]; then
      exec "$@" /bin/bash -lc "$BASH_EXECUTION_STRING"
    fi
    case "$-" in
    *i*) exec "$@" /bin/bash -l ;;
    esac
    echo "agent-sandbox: a root login shell of this image continues only as the sandbox user, through bash" >&2
    exit 126
    ;;
  esac
fi
