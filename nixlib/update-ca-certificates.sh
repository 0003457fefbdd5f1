#!/bin/sh
# nixlib/update-ca-certificates.sh
# update-ca-certificates for Nix-built images: the Debian layout that Leash's bootstrap expects.
#
# Writes /etc/ssl/certs/ca-certificates.crt = the image's CA bundle (nixpkgs cacert) followed by
# every *.crt under /usr/local/share/ca-certificates/ (sorted, symlinks followed), and keeps
# /etc/ssl/certs/ca-bundle.crt pointing at it. Leash's leash-entry copies its proxy CA there and
# runs this tool as root before the agent starts.
#
# Root only, on purpose: the bundle and both directories are root-owned in the image, so an agent
# running as the image user cannot make TLS trust a CA of its own choosing.
#
# nixlib/update-ca-certificates.nix fills in @path@ and @bundle@ and points the #! line at
# nixpkgs' runtimeShell (images have no /bin/sh of their own).
# UPDATE_CA_CERTIFICATES_SYSROOT (default: empty, i.e. /) is the root the paths are under: the
# image build runs this tool on the image tree, tests run it on a temporary directory.
set -eu

PATH="@path@${PATH:+:$PATH}"
export PATH

sysroot="${UPDATE_CA_CERTIFICATES_SYSROOT:-}"
bundle="@bundle@"
localdir="$sysroot/usr/local/share/ca-certificates"
certsdir="$sysroot/etc/ssl/certs"
target="$certsdir/ca-certificates.crt"

usage() {
  echo "usage: update-ca-certificates [--fresh] [--verbose]"
  echo "Rebuilds $target from the image's CA bundle and $localdir/*.crt (root only)."
}

for arg in "$@"; do
  case "$arg" in
    # Debian's flags: every run rebuilds the bundle from scratch here, so both are no-ops.
    -f | --fresh | -v | --verbose) ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "update-ca-certificates: unknown option '$arg'" >&2
      usage >&2
      exit 2
      ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  echo "update-ca-certificates: must be run as root: $target is root-owned so that the agent cannot change what TLS trusts" >&2
  exit 1
fi

if [ ! -r "$bundle" ]; then
  echo "update-ca-certificates: the image's CA bundle $bundle is missing" >&2
  exit 1
fi

mkdir -p "$certsdir" "$localdir"
# Temporary files next to the target: the image build runs this where $TMPDIR does not exist.
tmp="$(mktemp "$certsdir/.ca-certificates.crt.XXXXXX")"
list="$(mktemp "$certsdir/.ca-certificates.list.XXXXXX")"
trap 'rm -f "$tmp" "$list"' EXIT

cat "$bundle" >"$tmp"
# A bundle without a final newline would glue its last line to the next certificate.
[ -z "$(tail -c 1 "$tmp")" ] || echo >>"$tmp"

find -L "$localdir" -type f -name '*.crt' | LC_ALL=C sort >"$list"
added=0
skipped=0
while IFS= read -r crt; do
  if ! grep -q -- '-----BEGIN CERTIFICATE-----' "$crt"; then
    echo "update-ca-certificates: skipping $crt: not a PEM certificate" >&2
    skipped=$((skipped + 1))
    continue
  fi
  cat "$crt" >>"$tmp"
  [ -z "$(tail -c 1 "$crt")" ] || echo >>"$tmp"
  added=$((added + 1))
done <"$list"

chmod 0644 "$tmp"
mv -f "$tmp" "$target"
# Programs built with Nix look for ca-bundle.crt; make it the same bundle.
if [ ! -L "$certsdir/ca-bundle.crt" ] || [ "$(readlink "$certsdir/ca-bundle.crt")" != "ca-certificates.crt" ]; then
  rm -f "$certsdir/ca-bundle.crt"
  ln -s ca-certificates.crt "$certsdir/ca-bundle.crt"
fi

echo "Updating certificates in $certsdir... $added added, $skipped skipped; done."
