# nixlib/default.nix
# The project's Nix library for one system: what flake.nix exposes per system.
#
#   import ./nixlib { inherit pkgs system; src = ./.; revision = self.rev or "dirty"; }
#
# Everything is read from the repository's data files, never restated here:
#   images/catalog.toml           package sets, tools and agent CLIs (nixlib/catalog.nix)
#   images/<image>/image.toml     one image each (nixlib/mk-agent-image.nix)
#   images/compiled/policies.json every tier, compiled by `agent-sandbox policy compile-all`
#   images/sources.toml           pinned upstream downloads (Leash)
{ pkgs, system, src, revision ? "dirty" }:
let
  util = import ./util.nix;

  #############################################
  # Data files
  #############################################

  catalogData = util.readToml (src + "/images/catalog.toml");
  sources = util.readToml (src + "/images/sources.toml");
  version = (util.readToml (src + "/pyproject.toml")).project.version;

  compiledPath = src + "/images/compiled/policies.json";
  compiledPolicies =
    if builtins.pathExists compiledPath then builtins.fromJSON (builtins.readFile compiledPath)
    else throw "images/compiled/policies.json is missing: run `make compile` (agent-sandbox policy compile-all)";

  # Devcontainer images only: the egress proxy (role = "egress-proxy") is built by the Debian backend.
  isDevcontainer = dir:
    let path = src + "/images/${dir}/image.toml";
    in builtins.pathExists path && ((util.readToml path).role or "devcontainer") == "devcontainer";
  imageNames = builtins.filter isDevcontainer (builtins.attrNames (builtins.readDir (src + "/images")));

  #############################################
  # Packages nixlib provides itself
  #############################################

  updateCaCertificates = import ./update-ca-certificates.nix { inherit pkgs; };
  leash = import ./leash.nix { inherit pkgs sources system; };
  agentSandbox = import ./agent-sandbox.nix { inherit pkgs src version; };

  catalog = import ./catalog.nix {
    inherit pkgs;
    catalog = catalogData;
    nixlibTools = { update-ca-certificates = updateCaCertificates; };
  };

  #############################################
  # Builder functions
  #############################################

  mkDevContainer = import ./mk-dev-container.nix {
    inherit pkgs compiledPolicies updateCaCertificates revision version;
  };
  mkAgentImage = import ./mk-agent-image.nix { inherit src catalog mkDevContainer; };
in
{
  inherit (catalog) packageSets;
  inherit mkDevContainer mkAgentImage updateCaCertificates leash agentSandbox imageNames;

  # One image per images/<name>/image.toml, attribute name == image name (kebab-case).
  images = util.genAttrs imageNames (image: mkAgentImage { inherit image; });

  # Unfree agent CLIs by nixpkgs attribute name (flake.nix allows exactly these).
  unfreeAgentAttrs = util.unfreeAgentAttrs catalogData;
}
