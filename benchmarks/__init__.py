"""Benchmarks: speed (and, as they land, accuracy) of every shipped model and engine, side by side."""
