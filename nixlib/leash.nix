# nixlib/leash.nix
# StrongDM Leash, the host-side CLI, from its release tarballs (nixpkgs has no Leash). The URL
# and hash per system come from images/sources.toml; Leash publishes no checksum file, so a
# missing hash stops the evaluation instead of trusting whatever the download returns.
{ pkgs, sources, system }:
let
  leash = sources.leash or (throw "images/sources.toml has no [leash] table");
  pin = leash.${system} or (throw "leash: images/sources.toml has no [leash.${system}] table");
in
if (pin.hash or "") == "" then
  throw ("leash ${leash.version}: images/sources.toml has no hash for ${system}. Where GitHub is reachable, run "
    + "`nix store prefetch-file --json ${pin.url}` and put its \"hash\" in [leash.${system}]")
else
  pkgs.stdenvNoCC.mkDerivation {
    pname = "leash";
    version = leash.version;

    src = pkgs.fetchurl {
      inherit (pin) url hash;
    };

    # The tarball's layout (a top directory or not) is not documented: take the binary wherever it is.
    sourceRoot = ".";
    dontConfigure = true;
    dontBuild = true;
    dontStrip = true; # a static Go binary from upstream: keep it byte for byte

    installPhase = ''
      runHook preInstall
      bin="$(find . -type f -name leash | head -n 1)"
      if [ -z "$bin" ]; then
        echo "leash: no 'leash' binary in $src" >&2
        exit 1
      fi
      install -D -m 0755 "$bin" "$out/bin/leash"
      runHook postInstall
    '';

    meta = {
      description = "StrongDM Leash: runs AI coding agents in containers under Cedar policies";
      homepage = "https://github.com/strongdm/leash";
      license = pkgs.lib.licenses.asl20;
      sourceProvenance = [ pkgs.lib.sourceTypes.binaryNativeCode ];
      platforms = [ "x86_64-linux" "aarch64-linux" ];
      mainProgram = "leash";
    };
  }
