# nixlib/agent-sandbox.nix
# The `agent-sandbox` CLI (this repository's Python package; its sources live in build/, see
# pyproject.toml's package-dir). The policies and image descriptions go into the package as
# agent_sandbox/data/images, where paths.project_root() looks first outside a checkout; the conformance
# suite `verify` runs is in the package too (agent_sandbox/conformance/suite).
{ pkgs, src, version }:
let
  util = import ./util.nix;
  root = toString src;

  # Only what the wheel needs: pyproject.toml, README.md, build/ and images/ (no .git, no result).
  wanted = rel:
    rel == "pyproject.toml" || rel == "README.md"
    || rel == "build" || util.hasPrefix "build/" rel
    || rel == "images" || util.hasPrefix "images/" rel;
  cleanSrc = builtins.path {
    path = src;
    name = "agent-sandbox-source";
    filter = path: type:
      let rel = builtins.substring (builtins.stringLength root + 1) (-1) (toString path);
      in wanted rel && baseNameOf path != "__pycache__" && builtins.match ".*\\.pyc" (baseNameOf path) == null;
  };

  python3Packages = pkgs.python3Packages;
in
python3Packages.buildPythonApplication {
  pname = "agent-sandbox";
  inherit version;
  src = cleanSrc;
  pyproject = true;

  build-system = with python3Packages; [
    setuptools   # build backend (pyproject.toml)
    wheel        # listed in pyproject.toml's build requires
  ];

  dependencies = with python3Packages; [
    attrs             # frozen model classes
    click             # the CLI
    rich              # terminal output
    ruamel-yaml       # policy files, with line numbers for errors
    tomlkit           # image.toml and catalog.toml
    plumbum           # running podman, nix, mmdebstrap
    pytest            # `verify` runs the conformance suite shipped in the package (a pytest11 plugin)
    pytest-testinfra  # the suite reads the running sandbox through testinfra's podman:// and docker:// hosts
  ];

  # The wheel carries agent_sandbox/data/images (pyproject.toml's package-data, through the link in build/);
  # should a setuptools not follow the link, the tree is copied here.
  postInstall = ''
    data="$out/${python3Packages.python.sitePackages}/agent_sandbox/data"
    if [ ! -e "$data/images/policies" ]; then
      mkdir -p "$data"
      rm -rf "$data/images"
      cp -r images "$data/images"
    fi
  '';

  pythonImportsCheck = [ "agent_sandbox" ];

  meta = {
    description = "Devcontainer images and sandbox tiers for AI coding agents, compiled into every enforcement layer";
    homepage = "https://github.com/mrdavidlaing/agent-sandbox";
    license = pkgs.lib.licenses.mit;
    mainProgram = "agent-sandbox";
  };
}
