# nixlib/util.nix
# Small helpers on builtins only. They run before nixpkgs is imported (flake.nix needs the
# unfree list to import it), so they cannot use nixpkgs' lib.
rec {
  #############################################
  # Files
  #############################################

  readToml = path: builtins.fromTOML (builtins.readFile path);

  #############################################
  # Lists and strings
  #############################################

  # The strings of `xs`, each once, first occurrence first (lib.unique compares values deeply;
  # we only ever dedupe names).
  uniqueStrings = xs:
    builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ] xs;

  hasPrefix = prefix: s:
    builtins.substring 0 (builtins.stringLength prefix) s == prefix;

  sortedStrings = xs: builtins.sort builtins.lessThan xs;

  # { name = value; } for every name of `names`.
  genAttrs = names: f:
    builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);

  #############################################
  # Catalog facts needed before nixpkgs is imported
  #############################################

  # nixpkgs attribute names of the agents marked `unfree = true` in images/catalog.toml.
  unfreeAgentAttrs = catalog:
    map (agent: agent.nix)
      (builtins.filter (agent: agent.unfree or false) (builtins.attrValues (catalog.agents or { })));

  # The name nixpkgs' allowUnfreePredicate is compared against (what lib.getName returns).
  packageName = pkg:
    if pkg ? pname then pkg.pname else (builtins.parseDrvName pkg.name).name;
}
