"""Training: config adapter, trainer loop, teacher cache (import-light; see submodules)."""
