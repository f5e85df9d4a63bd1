"""``imis-lite serve``: nnInteractive's remote protocol over imis-lite's models (needs the ``server`` extra)."""
