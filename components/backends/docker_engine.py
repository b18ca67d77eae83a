"""Whether the Docker engine at docker.host answers, asked before anything is created: a
missing or unreachable engine is one clear error naming docker.host, not a provider failure
halfway through `pulumi up`."""

from __future__ import annotations

import http.client
import os
import socket
from urllib.parse import urlsplit

import pulumi

from ..settings import NAMESPACE, ConfigError

ENGINE_CHECK_TIMEOUT = 5.0


def engine_problem(host: str, timeout: float = ENGINE_CHECK_TIMEOUT) -> str | None:
    """Why the Docker engine at `host` cannot be used, or None. unix:// sockets are pinged
    (GET /_ping); tcp:// is only connected to (it may need TLS); ssh:// and npipe:// are left
    to the Docker provider."""
    url = urlsplit(host)
    start = "start Docker (Docker Desktop, or `sudo systemctl start docker`), or set docker.host"
    if url.scheme == "unix":
        path = url.path
        if not os.path.exists(path):
            return f"no Docker engine at {host}: {path} does not exist; {start}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            response = http.client.HTTPResponse(sock)
            response.begin()
            status = response.status
        except PermissionError:
            return (
                f"permission denied on {path}: add your user to the docker group "
                "(sudo usermod -aG docker $USER, then log in again), or set docker.host"
            )
        except (OSError, http.client.HTTPException) as error:
            return f"the Docker engine at {host} does not answer ({error}); {start}"
        finally:
            sock.close()
        if status != 200:
            return f"the Docker engine at {host} answered /_ping with HTTP {status}"
        return None
    if url.scheme == "tcp":
        try:
            socket.create_connection((url.hostname or "localhost", url.port or 2375), timeout=timeout).close()
        except OSError as error:
            return f"cannot reach the Docker engine at {host} ({error}); {start}"
    return None


def check_engine(host: str) -> None:
    """Stop before anything is created when `pulumi up` could not reach the engine at `host`
    (docker.host). In preview (which creates nothing, and CI may run without Docker) it is a
    warning."""
    problem = engine_problem(host)
    if problem is None:
        return
    if pulumi.runtime.is_dry_run():
        pulumi.log.warn(f"{NAMESPACE}:docker.host: {problem}")
        return
    raise ConfigError([(f"{NAMESPACE}:docker.host", problem)])
