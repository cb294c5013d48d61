"""Finding, reading and writing checkpoint files."""
