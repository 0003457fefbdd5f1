# tests/nix/stand-in/default.nix
# TESTS ONLY. A project-owned stand-in for the nixpkgs attributes our flake and nixlib use, so
# that the flake can be evaluated where nixpkgs cannot be downloaded. It is not nixpkgs and
# builds nothing real; no nixpkgs code is copied here.
#
# - It offers exactly the attributes listed in ../nixpkgs-attrs.toml (the test harness copies
#   that file next to this one): using anything else fails with "attribute ... missing".
# - Packages are fake derivations named "stand-in-<attribute>"; unfree ones (unfree = true in
#   the fixture) are refused unless config.allowUnfreePredicate accepts them, as nixpkgs does.
# - Packages have outputs as mkDerivation gives them (the fixture's `outputs`, first = default; `out`
#   alone without it): the package is its default output, each output is an attribute (`glibc.bin`),
#   and each says which files it holds (`standInFiles`, from the fixture's `files.<output>`: only
#   what the catalog's checks and mkDevContainer's links need). A non-default output's fake store
#   path ends in "stand-in-<attribute>.<output>", the attribute path that reaches it.
# - Functions are minimal implementations in impls.nix that record their arguments
#   (standInCall, standInArgs); dockerTools.buildLayeredImage accepts only the argument names
#   of the real one, records what the store paths it can link to hold (standInStore) and builds
#   a JSON file of both.
# - Every attribute prints "stand-in-access: <attribute>" (builtins.trace) when it is used, so
#   the tests can tell which fixture entries are really needed.
{ system, config ? { }, overlays ? [ ] }:
let
  fixture = builtins.fromTOML (builtins.readFile ./nixpkgs-attrs.toml);
  names = builtins.attrNames fixture.attrs;

  splitDots = s: builtins.filter builtins.isString (builtins.split "\\." s);
  hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
  unique = xs: builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ] xs;
  fakeHash = s: builtins.substring 0 32 (builtins.hashString "sha256" s);

  #############################################
  # Fake packages
  #############################################

  allowUnfree = config.allowUnfree or false;
  unfreePredicate = config.allowUnfreePredicate or (_: false);

  outputsOf = spec: spec.outputs or [ "out" ];

  # The fake store path of one output: the default output keeps the plain name.
  storePath = attr: spec: output:
    if output == builtins.head (outputsOf spec) then "/nix/store/${fakeHash attr}-stand-in-${attr}"
    else "/nix/store/${fakeHash "${attr}.${output}"}-stand-in-${attr}.${output}";

  filesOf = attr: spec: output:
    let files = spec.files or { };
    in
    if builtins.all (o: builtins.elem o (outputsOf spec)) (builtins.attrNames files) then files.${output} or [ ]
    else throw "stand-in: '${attr}' has files for an output it does not have (outputs: ${builtins.concatStringsSep ", " (outputsOf spec)})";

  fakePackage = attr: spec:
    let
      parts = splitDots attr;
      pname = builtins.elemAt parts (builtins.length parts - 1);
      unfree = spec.unfree or false;
      outputs = outputsOf spec;
      outputOf = output: {
        type = "derivation";
        name = "stand-in-${attr}";
        inherit pname outputs;
        version = "0";
        outputName = output;
        outPath = storePath attr spec output;
        meta = { license = if unfree then "unfree" else "free"; };
        standInAttr = attr;
        standInFiles = filesOf attr spec output;
      };
      # mkDerivation's shape: the package is its first output, with every output as an attribute
      pkg = outputOf (builtins.head outputs)
        // builtins.listToAttrs (map (output: { name = output; value = outputOf output; }) outputs);
    in
    if unfree && !(allowUnfree || unfreePredicate pkg) then
      throw "stand-in: package '${attr}' has an unfree license and config does not allow it"
    else pkg;

  # What every fake store path holds ({ "<store path>" = [ files ]; }), computed from the fixture
  # without using (or tracing) any attribute: dockerTools.buildLayeredImage records it for the
  # contract's model of the image's root.
  fakeStore = builtins.listToAttrs (builtins.concatMap
    (attr:
      let spec = fixture.attrs.${attr};
      in map (output: { name = storePath attr spec output; value = filesOf attr spec output; }) (outputsOf spec))
    (builtins.filter (attr: fixture.attrs.${attr}.kind == "package") names));

  impls = import ./impls.nix { inherit system fakeHash fakeStore; };

  valueOf = attr:
    let spec = fixture.attrs.${attr};
    in builtins.trace "stand-in-access: ${attr}" (
      if spec.kind == "package" then fakePackage attr spec
      else impls.${attr} or (throw "stand-in: no implementation of '${attr}' (kind ${spec.kind}) in impls.nix")
    );

  #############################################
  # The attribute tree, built lazily from the dotted names
  #############################################

  node = prefix:
    let
      under = if prefix == "" then names else builtins.filter (hasPrefix "${prefix}.") names;
      rest = n: if prefix == "" then n else builtins.substring (builtins.stringLength prefix + 1) (-1) n;
      childNames = unique (map (n: builtins.head (splitDots (rest n))) under);
      childPath = c: if prefix == "" then c else "${prefix}.${c}";
      children = builtins.listToAttrs (map (c: { name = c; value = node (childPath c); }) childNames);
    in
    if fixture.attrs ? ${prefix} then
      (if childNames == [ ] then valueOf prefix else valueOf prefix // children)
    else children;
in
node ""
