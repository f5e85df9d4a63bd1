"""Small real cases shipped for the quick start and examples (see README.md here for credits)."""
