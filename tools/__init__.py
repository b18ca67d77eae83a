"""Tooling that is not part of the Pulumi program: the generated tables of docs/configuration.md."""
