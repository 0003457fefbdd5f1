# tests/nix/stand-in/flake.nix
# TESTS ONLY: a stand-in for nixpkgs, used as `--override-input nixpkgs path:<abs>/stand-in`
# (see default.nix). It has no outputs of its own: our flake only does `import nixpkgs { ... }`.
{
  description = "agent-sandbox test stand-in for the few nixpkgs attributes our flake uses (not nixpkgs)";

  outputs = { self }: { };
}
