# nixlib/mk-dev-container.nix
# mkDevContainer: the owner's builder (same name, same first five arguments, same defaults),
# hardened for AI agents and made a Leash target:
# - a non-root user with uid/gid from image.toml, /workspace owned by it, /tmp 1777;
# - the Debian CA layout: /etc/ssl/certs/ca-certificates.crt (a root-owned file, not a store
#   symlink) and `update-ca-certificates` for /usr/local/share/ca-certificates/;
# - time zones where Debian has them, /usr/share/zoneinfo, and TZDIR pointing there;
# - every compiled tier under /etc/agent-sandbox/<tier>/ (images/compiled/policies.json);
# - the image's own files (images/<image>/rootfs: ssh through the egress proxy, agent defaults), as the
#   Debian backend adds them;
# - labels (names and build-independent values from the compiled policies' `labels`):
#   devcontainer.metadata and the tier, every shipped tier, OCI labels, the agents it holds;
# - no setuid sudo (see "Users" below).
{ pkgs, compiledPolicies, updateCaCertificates, revision, version }:
{ packages
, name ? "devcontainer"
, tag ? "latest"
, user ? "vscode"
, uid ? 1000
, gid ? 1000
  # The tier whose run flags go into the devcontainer.metadata label (null: no label).
, tier ? null
  # The compiled policies document (images/compiled/policies.json by default).
, policies ? compiledPolicies
  # Agent names (catalog [agents]) the packages hold, for the agents label.
, agents ? [ ]
, title ? baseNameOf name
, description ? ""
, source ? ""
, labels ? { }
  # A directory copied to / (root-owned, read-only for the agent): images/<image>/rootfs, or null.
, tree ? null
, extraConfig ? { }
}:
let
  #############################################
  # Checks: refuse an image whose label would not match what it runs as
  #############################################

  tierNames = builtins.attrNames policies.tiers;
  tierDoc =
    if tier == null then null
    else policies.tiers.${tier} or (throw
      "mkDevContainer: unknown tier '${tier}'; compiled tiers: ${builtins.concatStringsSep ", " tierNames}");
  checked =
    if tier != null && (policies.uid != uid || policies.gid != gid) then
      throw ("mkDevContainer: images/compiled/policies.json is compiled for uid/gid "
        + "${toString policies.uid}/${toString policies.gid} but the image user is ${toString uid}/${toString gid}")
    else if tierDoc != null && tierDoc.user != user then
      throw "mkDevContainer: tier '${tier}' runs as '${tierDoc.user}' but the image user is '${user}'"
    else true;

  shell = "${pkgs.bashInteractive}/bin/bash";
  home = "/home/${user}";
  uidStr = toString uid;
  gidStr = toString gid;

  #############################################
  # Policy files: /etc/agent-sandbox/<tier>/<file>, root-owned, read-only for the agent
  #############################################

  policyFiles = builtins.concatMap
    (tierName:
      map
        (file: {
          inherit file;
          tier = tierName;
          storePath = builtins.toFile "agent-sandbox-${tierName}-${file}" policies.tiers.${tierName}.files.${file};
        })
        (builtins.attrNames policies.tiers.${tierName}.files))
    tierNames;

  installPolicies = builtins.concatStringsSep "\n" (map
    (f: "install -D -m 0644 ${f.storePath} ./etc/agent-sandbox/${f.tier}/${f.file}")
    policyFiles);

  #############################################
  # Labels: the names and every build-independent value come from the compiled policies
  # (`labels`, written by build/agent_sandbox/labels.py), so both backends label alike; only
  # what is this image's own is set here. No org.opencontainers.image.created label: the image
  # is reproducible (dockerTools stamps a fixed creation time). No agent versions either: they
  # are the pinned nixpkgs', not something this build observes.
  #############################################

  labelDoc = policies.labels or (throw
    "mkDevContainer: the compiled policies have no `labels` section: run `make compile` (agent-sandbox policy compile-all)");
  names = labelDoc.names;
  join = builtins.concatStringsSep labelDoc.separator;

  allLabels = {
    ${names.title} = title;
    ${names.description} = description;
    ${names.source} = source;
    ${names.revision} = revision;
    ${names.version} = version;
    # Always set, even when empty: "no agents" is a fact the conformance suite reads.
    ${names.agents} = join agents;
    # Nothing skipped: every catalog tool and agent is a nixpkgs (or nixlib) package, and the
    # image holds every package it is given.
    ${names.skippedTools} = "";
    ${names.skippedAgents} = "";
    ${names.backend} = "nix";
  }
  # every tier's files are installed (tiers, policies directory)
  // labelDoc.shared
  # tier and devcontainer.metadata (the Python compiler's JSON, byte for byte)
  // (if tier == null then { } else labelDoc.tiers.${tier});

  defaultLabels = builtins.removeAttrs allLabels
    (builtins.filter (name: (allLabels.${name} or null) == "") labelDoc.omitWhenEmpty);
in
assert checked;
pkgs.dockerTools.buildLayeredImage {
  inherit name tag;
  # update-ca-certificates always (the CA layout below needs it), once
  contents = packages ++ (if builtins.elem updateCaCertificates packages then [ ] else [ updateCaCertificates ]);
  enableFakechroot = true; # fakeRootCommands see the image as / and the Nix store as usual
  fakeRootCommands = ''
    #############################################
    # Directories
    #############################################
    mkdir -p ./etc/nix ./etc/direnv ./root ./tmp ./var/tmp ./usr/bin ./usr/sbin
    mkdir -p .${home}/.config/nix .${home}/.config/direnv ./workspace
    chmod 1777 ./tmp ./var/tmp
    chmod 0700 ./root

    # /usr/bin/env for VS Code server scripts and `#!/usr/bin/env` shebangs
    ln -sf ${pkgs.coreutils}/bin/env ./usr/bin/env

    # Time zones at the Debian path (Python's zoneinfo, Debian-built tools, the catalog's tzdata
    # check): nixpkgs' tzdata installs them to $out/share/zoneinfo, which `contents` puts at
    # /share/zoneinfo; glibc finds them through TZDIR (config.Env)
    mkdir -p ./usr/share
    ln -sfn ${pkgs.tzdata}/share/zoneinfo ./usr/share/zoneinfo

    # VS Code Remote: identify as nixos (skips VS Code's glibc check)
    cat > ./etc/os-release <<'OSRELEASE'
    ID=nixos
    NAME="NixOS"
    OSRELEASE

    #############################################
    # Users: real files, not store symlinks
    #############################################
    # No sudo, and above all no setuid sudo (the owner's image has one): containers run with
    # no-new-privileges, where setuid does nothing, and without it a setuid root binary is a
    # way out of the agent's sandbox. What needs root (Leash's CA install) runs as root from
    # the start: Leash's leash-entry is the container's entrypoint and runs as root.
    rm -f ./etc/passwd ./etc/group ./etc/shadow
    cat > ./etc/passwd <<EOF
    root:x:0:0:root:/root:${shell}
    ${user}:x:${uidStr}:${gidStr}:${user}:${home}:${shell}
    nobody:x:65534:65534:nobody:/nonexistent:/bin/false
    EOF
    cat > ./etc/group <<EOF
    root:x:0:
    ${user}:x:${gidStr}:
    nogroup:x:65534:
    EOF
    cat > ./etc/shadow <<EOF
    root:!:1::::::
    ${user}:!:1::::::
    nobody:!:1::::::
    EOF
    chmod 0644 ./etc/passwd ./etc/group
    chmod 0640 ./etc/shadow

    #############################################
    # CA certificates: the Debian layout Leash's bootstrap expects
    #############################################
    # The bundle is a root-owned file that update-ca-certificates (root only) rewrites; the
    # store symlinks cacert put in /etc/ssl/certs would be read-only and bypass it.
    mkdir -p ./etc/ssl/certs ./usr/local/share/ca-certificates
    rm -f ./etc/ssl/certs/ca-certificates.crt ./etc/ssl/certs/ca-bundle.crt
    UPDATE_CA_CERTIFICATES_SYSROOT=. ${updateCaCertificates}/bin/update-ca-certificates
    if [ -e ./etc/pki/tls/certs/ca-bundle.crt ] || [ -L ./etc/pki/tls/certs/ca-bundle.crt ]; then
      rm -f ./etc/pki/tls/certs/ca-bundle.crt
      ln -s /etc/ssl/certs/ca-certificates.crt ./etc/pki/tls/certs/ca-bundle.crt
    fi
    ln -sf ${updateCaCertificates}/bin/update-ca-certificates ./usr/sbin/update-ca-certificates
    chmod 0755 ./etc/ssl ./etc/ssl/certs ./usr/local/share/ca-certificates

    #############################################
    # Sandbox policies (every tier; the labels say which one the image is for)
    #############################################
    ${installPolicies}
    chmod -R a-w,a+rX ./etc/agent-sandbox

    #############################################
    # The image's own files (images/<image>/rootfs), as the Debian backend adds them
    #############################################
    ${if tree == null then "" else ''
    cp -R --no-preserve=ownership ${tree}/. ./
    chmod -R u+w,go-w,a+rX ./etc ./usr
    ''}
    # Nix's openssh reads /etc/ssh/ssh_config only: the drop-ins (ssh through the egress proxy) need the
    # include Debian's file starts with.
    if [ -d ./etc/ssh/ssh_config.d ] && [ ! -e ./etc/ssh/ssh_config ]; then
      echo 'Include /etc/ssh/ssh_config.d/*.conf' > ./etc/ssh/ssh_config
    fi

    #############################################
    # Nix and direnv (as in the owner's images)
    #############################################
    # Without the owner's accept-flake-config = true: a flake the agent opens must not change
    # nix settings (substituters, hooks) unasked.
    cat > ./etc/nix/nix.conf <<EOF
    experimental-features = nix-command flakes
    EOF
    cat > ./etc/direnv/direnvrc <<EOF
    source ${pkgs.nix-direnv}/share/nix-direnv/direnvrc
    EOF
    cp ./etc/nix/nix.conf .${home}/.config/nix/nix.conf
    cp ./etc/direnv/direnvrc .${home}/.config/direnv/direnvrc
    cat > .${home}/.bashrc <<'BASHRC'
    if command -v direnv >/dev/null; then eval "$(direnv hook bash)"; fi
    if command -v starship >/dev/null; then eval "$(starship init bash)"; fi
    BASHRC

    #############################################
    # Ownership: the user owns its home and /workspace, nothing else
    #############################################
    chown -R ${uidStr}:${gidStr} .${home} ./workspace
    chmod 0755 ./workspace
  '';
  config = {
    # root so that Leash's bootstrap (leash-entry, run as the image's USER) can install its CA; a root login shell
    # continues as `user` without capabilities (etc/profile.d/00-agent-sandbox-user.sh), and agent-sandbox's
    # runs and devcontainers start as `user` (--user, containerUser)
    User = "0:0";
    WorkingDir = "/workspace";
    Env = [
      "HOME=${home}"
      "USER=${user}"
      "PATH=${home}/.nix-profile/bin:/nix/var/nix/profiles/default/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
      "NIX_PATH=nixpkgs=channel:nixpkgs-unstable"
      # The rewritable bundle, not the cacert store path: a CA that Leash installs must count.
      "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"
      "NIX_SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"
      "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt"
      # nixpkgs' glibc looks in its own $out/share/zoneinfo, which has no zones (NixOS sets TZDIR too)
      "TZDIR=/usr/share/zoneinfo"
      # VS Code Remote: libraries for VS Code's node binary without patching it
      "LD_LIBRARY_PATH=${pkgs.glibc}/lib:${pkgs.stdenv.cc.cc.lib}/lib"
    ];
    Cmd = [ shell "-l" ];
    Labels = defaultLabels // labels;
  } // extraConfig;
  maxLayers = 100;
}
