# nixlib/catalog.nix
# images/catalog.toml resolved against nixpkgs: the package sets and agent CLIs as packages.
#
# The catalog is the one list of what images hold (the Debian backend and the conformance tests
# read it too), so no package list is written out in Nix. Each tool's `nix` value is a nixpkgs
# attribute path ("stdenv.cc.cc.lib" included); a tool with `nix = ""` comes from nixlib itself
# (`nixlibTools`) or the evaluation fails with its name. `nix_outputs` names the outputs an image
# gets when the default one is not enough: dockerTools' `contents` take a package's default output
# only, and glibc's (`out`, the libraries) has no getconf, which is in `bin`.
{ pkgs, catalog, nixlibTools }:
let
  inherit (pkgs) lib;
  util = import ./util.nix;

  #############################################
  # Attribute paths
  #############################################

  fromAttrPath = attrPath: lib.getAttrFromPath (lib.splitString "." attrPath) pkgs;

  toolPackage = name:
    let
      tool = catalog.tools.${name} or (throw "images/catalog.toml: unknown tool '${name}'");
    in
    if tool.nix != "" then fromAttrPath tool.nix
    else nixlibTools.${name} or (throw
      "images/catalog.toml: tool '${name}' has no nixpkgs attribute (nix = \"\") and nixlib does not provide it");

  # The packages of a tool: its package (the default output), or each output `nix_outputs` names.
  toolPackages = name:
    let
      tool = catalog.tools.${name};
      pkg = toolPackage name;
    in
    if tool ? nix_outputs then
      map
        (output: pkg.${output} or (throw "images/catalog.toml: tool '${name}': ${tool.nix} has no output '${output}'"))
        tool.nix_outputs
    else [ pkg ];

  agentPackage = name:
    let
      agent = catalog.agents.${name} or (throw
        "unknown agent '${name}'; known: ${builtins.concatStringsSep ", " (builtins.attrNames catalog.agents)}");
    in
    if agent.nix != "" then fromAttrPath agent.nix
    else throw "images/catalog.toml: agent '${name}' has no nixpkgs attribute";

  setToolNames = builtins.mapAttrs (_: set: set.tools) catalog.sets;
in
{
  inherit toolPackage toolPackages agentPackage setToolNames;

  agentNames = builtins.attrNames catalog.agents;

  # packageSets.<set> = [ packages ]: the owner's sets (base, vscodeCompat, devTools, nixTools,
  # python, node) and the design's agentTools and agentSandbox, straight from the catalog, plus
  # agentCLIs = every agent CLI of the catalog (images pick theirs from [agents]).
  packageSets =
    builtins.mapAttrs (_: names: builtins.concatMap toolPackages names) setToolNames
    // { agentCLIs = map agentPackage (builtins.attrNames catalog.agents); };

  # The tools of some package sets, each once, in set order (like images.image_tools in Python).
  toolNamesOf = sets:
    util.uniqueStrings (builtins.concatMap
      (set: setToolNames.${set} or (throw
        "unknown package set '${set}'; known: ${builtins.concatStringsSep ", " (builtins.attrNames setToolNames)}"))
      sets);
}
