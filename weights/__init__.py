"""Model bundles shipped with imis-lite (one folder per model, each with a sha256 manifest)."""
