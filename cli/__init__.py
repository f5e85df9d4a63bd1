"""The `imis-lite` command line (installed as imis_lite.cli)."""
