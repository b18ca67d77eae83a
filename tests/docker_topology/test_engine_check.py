"""The Docker engine check: a ping over the configured socket or TCP address before `up`,
a warning only for previews."""

from __future__ import annotations

import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.backends import docker_engine
from components.settings import ConfigError
from tests.docker_topology.local import STACK, local_config
from tests.harness import Run, run_program


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # AF_UNIX paths are short: a fresh directory under /tmp, not pytest's deep tmp_path.
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:
        yield Path(directory)


def _serve_once(path: Path, response: bytes) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        connection, _ = server.accept()
        connection.recv(1024)
        connection.sendall(response)
        connection.close()
        server.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


def test_engine_check_pings_a_unix_socket(socket_dir: Path) -> None:
    path = socket_dir / "docker.sock"
    thread = _serve_once(path, b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK")
    assert docker_engine.engine_problem(f"unix://{path}") is None
    thread.join(5)


def test_engine_check_explains_a_missing_or_dead_engine(socket_dir: Path) -> None:
    missing = docker_engine.engine_problem(f"unix://{socket_dir}/none.sock")
    assert missing and "does not exist" in missing and "docker.host" in missing
    dead = socket_dir / "dead.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(dead))
    listener.close()  # the file stays, nothing listens
    refused = docker_engine.engine_problem(f"unix://{dead}")
    assert refused and "does not answer" in refused
    unhappy = socket_dir / "503.sock"
    thread = _serve_once(unhappy, b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    assert "HTTP 503" in (docker_engine.engine_problem(f"unix://{unhappy}") or "")
    thread.join(5)


def test_engine_check_over_tcp_and_unchecked_schemes() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    problem = docker_engine.engine_problem(f"tcp://127.0.0.1:{free_port}", timeout=2)
    assert problem and "cannot reach" in problem
    assert docker_engine.engine_problem("ssh://me@build-host") is None


def test_an_unreachable_engine_stops_up_before_anything_is_registered() -> None:
    problem = "no Docker engine at unix:///var/run/docker.sock"
    with pytest.raises(ConfigError) as caught:
        run_program(local_config(), {}, stack=STACK, docker_engine_problem=problem)
    assert caught.value.keys == ["k3s-rancher:docker.host"]
    assert problem in str(caught.value)
    # A preview only warns: it creates nothing, and CI may preview without Docker.
    run = run_program(local_config(), {}, stack=STACK, preview=True, docker_engine_problem=problem)
    assert run.by_name(f"{STACK}-server-0-container")


def test_the_docker_provider_skips_its_own_daemon_check_for_previews(local: Run) -> None:
    assert local.by_name(f"{STACK}-docker").plain()["disableDockerDaemonCheck"] in (True, "true")
