"""The local stack (stacks/Pulumi.local.yaml) with overrides, run under mocks, and the names
of its nodes."""

from __future__ import annotations

from typing import Any

from tests.harness import Run, load_stack_config, run_program

STACK = "local"
CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
LOCAL_COMMAND = "command:local:Command"


def local_config(**overrides: Any) -> dict[str, Any]:
    config, _ = load_stack_config(STACK)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def local_run(secrets: dict[str, str] | None = None, **overrides: Any) -> Run:
    return run_program(local_config(**overrides), secrets or {}, stack=STACK)


def names(role: str, count: int) -> list[str]:
    return [f"{STACK}-{role}-{i}" for i in range(count)]
