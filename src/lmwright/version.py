"""The package version, on the lowest floor: the pipeline hashes it into every stage's code version."""

__version__ = "0.1.0"
