# flake.nix
{
  description = "agent-sandbox: devcontainer images for AI coding agents, confined by sandbox tiers";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixpkgs-unstable";
  };

  outputs = { self, nixpkgs }:
    let
      util = import ./nixlib/util.nix;

      #############################################
      # Systems: the images are Linux images. Written out rather than flake-utils'
      # eachDefaultSystem (which adds darwin, where no image builds): one input fewer to lock.
      #############################################
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: util.genAttrs systems f;

      #############################################
      # nixpkgs: unfree only for the agent CLIs the catalog marks `unfree = true`, by name
      #############################################
      catalog = util.readToml ./images/catalog.toml;
      unfreeAllowed = util.unfreeAgentAttrs catalog;
      pkgsFor = system: import nixpkgs {
        inherit system;
        config = {
          allowUnfree = false;
          allowUnfreePredicate = pkg: builtins.elem (util.packageName pkg) unfreeAllowed;
        };
      };

      sandboxFor = system: import ./nixlib {
        inherit system;
        pkgs = pkgsFor system;
        src = self;
        revision = self.rev or "dirty";
      };
      perSystem = forAllSystems sandboxFor;
    in
    {
      #############################################
      # Package sets, from images/catalog.toml (the owner's names plus agentTools,
      # agentSandbox and agentCLIs)
      #############################################
      packageSets = forAllSystems (system: perSystem.${system}.packageSets);

      #############################################
      # Builder functions (per system, like the owner's lib.<system>.mkDevContainer)
      #############################################
      lib = forAllSystems (system: {
        inherit (perSystem.${system}) mkDevContainer mkAgentImage;
      });

      #############################################
      # Packages: one image per images/<name>/image.toml, Leash, and our CLI
      #############################################
      packages = forAllSystems (system:
        let sandbox = perSystem.${system};
        in sandbox.images // {
          leash = sandbox.leash;
          agent-sandbox = sandbox.agentSandbox;
        });

      devShells = forAllSystems (system:
        let
          pkgs = pkgsFor system;
          sandbox = perSystem.${system};
        in
        {
          default = pkgs.mkShell {
            name = "agent-sandbox-dev";
            packages = [
              pkgs.python3          # Python for the test suite
              sandbox.agentSandbox  # the agent-sandbox CLI
              sandbox.leash         # the Leash host CLI
            ];
            # Inside a checkout, the CLI reads this checkout's policies, not its packaged copy.
            shellHook = ''
              if [ -d "$PWD/images/policies" ]; then export AGENT_SANDBOX_HOME="$PWD"; fi
            '';
          };
        });

      #############################################
      # Checks (nix flake check; CI builds the images themselves with `make images`)
      #############################################
      checks = forAllSystems (system:
        let
          pkgs = pkgsFor system;
          sandbox = perSystem.${system};
          # the Leash release images/sources.toml pins (nixlib/leash.nix fetches its tarball)
          leashPinned = (util.readToml ./images/sources.toml).leash.version;
        in
        {
          agent-sandbox = sandbox.agentSandbox;
          # The binary runs, and is the pinned release: leash prints `version: X.Y.Z` as its first
          # line (cmd/leash/main.go). A version bumped in sources.toml without its URLs and hashes fails here.
          leash-version = pkgs.runCommand "leash-version" { } ''
            ${sandbox.leash}/bin/leash --version > version.txt
            first="$(head -n 1 version.txt)"
            if [ "$first" != "version: ${leashPinned}" ]; then
              echo "leash --version printed '$first', images/sources.toml pins leash ${leashPinned}" >&2
              exit 1
            fi
            cp version.txt $out
          '';
          policies-fresh = pkgs.runCommand "policies-fresh" { } ''
            cp -r ${self} src
            chmod -R u+w src
            AGENT_SANDBOX_HOME="$PWD/src" ${sandbox.agentSandbox}/bin/agent-sandbox policy compile-all --check
            touch $out
          '';
        });
    };
}
