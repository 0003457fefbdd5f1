# nixlib/mk-agent-image.nix
# mkAgentImage: an image from its description, images/<image>/image.toml (the same file the
# Python backends read), optionally with other agents or another tier (a variant).
#
# Variant tags: "<tag>[-<tier>][-<agent>-<agent>...]", the tier only when it differs from the
# image's, the agents (sorted) only when they differ from the image's; no variant keeps <tag>.
# build/agent_sandbox/backends/nix.py computes the same tag (a test compares them).
{ src, catalog, mkDevContainer }:
{ image ? "agent-sandbox-devcontainer"
, agents ? null
, tier ? null
, tag ? null
}:
let
  util = import ./util.nix;

  descPath = src + "/images/${image}/image.toml";
  desc =
    if builtins.pathExists descPath then util.readToml descPath
    else throw "mkAgentImage: no image '${image}' (images/${image}/image.toml does not exist)";

  imageAgents = desc.agents or [ ];
  chosenAgents = if agents == null then imageAgents else agents;
  chosenTier = if tier == null then desc.tier else tier;

  sameAgents = util.sortedStrings (util.uniqueStrings chosenAgents) == util.sortedStrings (util.uniqueStrings imageAgents);
  baseTag = desc.tag or "latest";
  variantTag = baseTag
    + (if chosenTier == desc.tier then "" else "-${chosenTier}")
    + (if sameAgents then "" else "-" + builtins.concatStringsSep "-" (util.sortedStrings (util.uniqueStrings chosenAgents)));

  toolNames = catalog.toolNamesOf (desc.package_sets or [ ]);
  treePath = src + "/images/${image}/rootfs";
in
mkDevContainer {
  name = "${desc.registry}/${desc.name}";
  tag = if tag == null then variantTag else tag;
  packages = builtins.concatMap catalog.toolPackages toolNames ++ map catalog.agentPackage (util.uniqueStrings chosenAgents);
  user = desc.user or "vscode";
  uid = desc.uid or 1000;
  gid = desc.gid or 1000;
  tier = chosenTier;
  agents = util.uniqueStrings chosenAgents;
  title = desc.name;
  description = desc.description or "";
  source = desc.source or "";
  tree = if builtins.pathExists treePath then treePath else null;
}
