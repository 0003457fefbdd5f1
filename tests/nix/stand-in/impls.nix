# tests/nix/stand-in/impls.nix
# TESTS ONLY. Minimal, project-written implementations of the nixpkgs functions and values our
# flake uses (see default.nix). Each function returns a fake derivation that records how it was
# called; its outPath hashes the JSON of the arguments, so serialising any output forces (and
# checks) everything it was built from.
# fakeStore: what every fake package's store path holds (default.nix, from the fixture's `files`).
{ system, fakeHash, fakeStore }:
let
  regexEscape = builtins.replaceStrings
    [ "\\" "." "*" "+" "?" "(" ")" "[" "]" "{" "}" "|" "^" "$" ]
    [ "\\\\" "\\." "\\*" "\\+" "\\?" "\\(" "\\)" "\\[" "\\]" "\\{" "\\}" "\\|" "\\^" "\\$" ];

  recorded = call: name: args: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/${fakeHash (call + builtins.toJSON args)}-stand-in-${name}";
    standInCall = call;
    standInArgs = args;
  };

  nameOf = args: args.name or "${args.pname}-${args.version or "0"}";

  # The argument names of nixpkgs' dockerTools.buildLayeredImage / streamLayeredImage; a set
  # pattern without `...`, so an unknown argument fails like it does in nixpkgs.
  buildLayeredImage =
    { name
    , tag ? null
    , fromImage ? null
    , contents ? [ ]
    , config ? { }
    , architecture ? null
    , created ? "1970-01-01T00:00:01Z"
    , mtime ? "1970-01-01T00:00:01Z"
    , uid ? 0
    , gid ? 0
    , uname ? "root"
    , gname ? "root"
    , maxLayers ? 100
    , extraCommands ? ""
    , fakeRootCommands ? ""
    , enableFakechroot ? false
    , includeStorePaths ? true
    , includeNixDB ? false
    , passthru ? { }
    , meta ? { }
    , compressor ? "gz"
    , debug ? false
    }@args:
    assert builtins.isString name && builtins.isList contents && builtins.isAttrs config;
    assert maxLayers > 1;
    let
      # What the store paths the image can link to hold: every fake package, and each element of
      # `contents` (the real one links each element's top-level directories at / with symlinkJoin:
      # a package there is its default output only, as any derivation coerced to a path).
      store = fakeStore // builtins.listToAttrs (map
        (p: {
          name = toString p;
          value = p.standInFiles or (throw
            "stand-in dockerTools.buildLayeredImage: contents element '${toString p}' does not say which files it holds (standInFiles)");
        })
        contents);
      # A real (trivial) derivation: `nix build` of an image gives a JSON file of the arguments
      # and of what the store paths hold ({ args, store }).
      drv = derivation {
        name = "stand-in-image-${baseNameOf name}-${if tag == null then "notag" else tag}.json";
        inherit system;
        builder = "/bin/sh";
        args = [ "-c" "printf '%s' \"$imageJson\" > \"$out\"" ];
        imageJson = builtins.toJSON { inherit args store; };
      };
    in
    drv // {
      standInCall = "dockerTools.buildLayeredImage";
      standInArgs = args;
      standInStore = store;
      imageName = name;
      imageTag = tag;
    };
in
{
  "lib.getAttrFromPath" = attrPath: set:
    builtins.foldl'
      (s: n:
        if builtins.isAttrs s && s ? ${n} then s.${n}
        else throw "stand-in lib.getAttrFromPath: cannot find attribute '${builtins.concatStringsSep "." attrPath}'")
      set
      attrPath;
  "lib.splitString" = sep: s: builtins.filter builtins.isString (builtins.split (regexEscape sep) s);
  "lib.licenses.asl20" = { spdxId = "Apache-2.0"; free = true; };
  "lib.licenses.mit" = { spdxId = "MIT"; free = true; };
  "lib.sourceTypes.binaryNativeCode" = { shortName = "binaryNativeCode"; isSource = false; };

  "dockerTools.buildLayeredImage" = buildLayeredImage;
  "fetchurl" = args:
    assert args ? url && (args ? hash || args ? sha256);
    recorded "fetchurl" (baseNameOf args.url) args;
  "stdenvNoCC.mkDerivation" = args: recorded "stdenvNoCC.mkDerivation" (nameOf args) args;
  # the script is $out/bin/<name>
  "writeScriptBin" = name: text: recorded "writeScriptBin" name { inherit name text; } // { standInFiles = [ "bin/${name}" ]; };
  "runCommand" = name: env: script: recorded "runCommand" name { inherit name env script; };
  "mkShell" = args: recorded "mkShell" (args.name or "nix-shell") args;
  "python3Packages.buildPythonApplication" = args:
    recorded "python3Packages.buildPythonApplication" (nameOf args) args;
  "python3Packages.python.sitePackages" = "lib/python3.13/site-packages";
  "runtimeShell" = "/nix/store/${fakeHash "runtimeShell"}-stand-in-bash/bin/bash";
}
