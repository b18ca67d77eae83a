"""Tooling that is not part of the Pulumi program: README generation."""
