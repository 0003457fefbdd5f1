# nixlib/update-ca-certificates.nix
# The `update-ca-certificates` command of our images (nixpkgs has no Debian-style one): a POSIX sh
# script, see update-ca-certificates.sh for what it does and why it is root only.
{ pkgs }:
pkgs.writeScriptBin "update-ca-certificates" (builtins.replaceStrings
  [ "#!/bin/sh\n" "@path@" "@bundle@" ]
  [
    "#!${pkgs.runtimeShell}\n"
    "${pkgs.coreutils}/bin:${pkgs.findutils}/bin:${pkgs.gnugrep}/bin"
    "${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt"
  ]
  (builtins.readFile ./update-ca-certificates.sh))
