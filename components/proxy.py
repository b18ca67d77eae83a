"""k3s.proxy: the NO_PROXY list every node gets, and what makes a proxy URL acceptable.

Pure functions over settings. The URLs and the list travel in the install's command text
(plain: they are not secret); the credentials only on stdin (proxyCredentials).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from . import host_facts
from .settings import K3sSettings, known, server_flag_values

DEFAULT_CLUSTER_CIDR = host_facts.K3S_CLUSTER_CIDR
DEFAULT_SERVICE_CIDR = host_facts.K3S_SERVICE_CIDR
# What in-cluster traffic and local health checks use: never through the proxy.
ALWAYS = ("127.0.0.1", "localhost", ".svc", ".cluster.local")


def _cidrs(k3s: K3sSettings, flag: str, default: str) -> list[str]:
    found = [value for _, value in server_flag_values(k3s, flag) if value]
    return found or [default]


def _networks(entries: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue  # a host name or .domain
    return networks


def _covered(address: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in networks)


def no_proxy(k3s: K3sSettings) -> list[str]:
    """NO_PROXY for every node: the fixed local entries, the cluster and service CIDRs
    (serverConfig/serverArgs or K3s's defaults), the API and node addresses, then the user's
    entries. An address inside a CIDR the user lists is left out, so that adding a node in
    that range changes no node's NO_PROXY (and so re-runs no install)."""
    proxy = k3s.proxy
    if proxy is None:
        return []
    user = list(proxy.no_proxy)
    cidrs = _cidrs(k3s, "cluster-cidr", DEFAULT_CLUSTER_CIDR) + _cidrs(k3s, "service-cidr", DEFAULT_SERVICE_CIDR)
    networks = _networks(user)
    addresses = [a for a in map(known, proxy.node_addresses) if not _covered(a, networks)]
    return list(dict.fromkeys([*ALWAYS, *cidrs, *addresses, *user]))


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a proxy URL here, or None. Credentials are refused: the URL is
    plain text in the command and the state."""
    parts = urlsplit(url)
    if "@" in parts.netloc:  # first: the other messages quote the URL
        return (
            "a proxy URL with credentials would be plain text in the command (and `pulumi preview --diff`) "
            "and in the state: remove user:password@ here and set them as a secret: "
            "pulumi config set --secret proxyCredentials 'user:password'"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not a proxy URL: use http://host:port (or https://host:port)"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"{url!r}: a proxy URL has no path, query or fragment (http://host:port)"
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return f"{url!r} has an invalid port"
    return None


def entry_problem(entry: str) -> str | None:
    """Why `entry` cannot be one NO_PROXY entry, or None."""
    if not entry or any(c in entry for c in ", \t\r\n'\"\\"):
        return f"{entry!r} is not one NO_PROXY entry: give one host, .domain, IP or CIDR per list item"
    return None
