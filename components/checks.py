"""Pure predicates for values that reach Kubernetes, K3s or a shell.

Each returns an error text (what would be valid) or None, so callers can name the key.
"""

from __future__ import annotations

import ipaddress
import re

# RFC 1123 label / subdomain, as Kubernetes uses them for node names.
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
# Host names may carry upper case; DNS is case-insensitive.
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$")
# Kubernetes qualified name (label key name part, label value).
_QUALIFIED = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_K3S_VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)(-rc\d+)?\+k3s(\d+)$")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def dns_subdomain_error(value: str) -> str | None:
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        return (
            f"{value!r} is not a valid node name: use lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters"
        )
    return None


def dns_name_error(value: str) -> str | None:
    if len(value) > 253 or not _HOSTNAME.match(value) or is_ip(value):
        return f"{value!r} is not a DNS name (letters, digits, '-' and '.' in labels of at most 63 characters)"
    return None


def host_error(value: str) -> str | None:
    """An IP address (v4 or v6) or a DNS host name."""
    if is_ip(value):
        return None
    if len(value) > 253 or not _HOSTNAME.match(value):
        return f"{value!r} is neither an IP address nor a host name"
    return None


def label_key_error(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or dns_subdomain_error(prefix) or len(prefix) > 253):
        return f"label key {key!r} has an invalid prefix: it must be a lower-case DNS subdomain"
    if not name or len(name) > 63 or not _QUALIFIED.match(name):
        return (
            f"label key {key!r} is invalid: the name part must be 1-63 characters of letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )
    return None


def label_value_error(value: str) -> str | None:
    if value == "":
        return None
    if len(value) > 63 or not _QUALIFIED.match(value):
        return (
            f"label value {value!r} is invalid: at most 63 characters of letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit (or empty)"
        )
    return None


def taint_error(taint: str) -> str | None:
    """Taints are written key=value:Effect or key:Effect, as kubectl and K3s take them."""
    body, sep, effect = taint.rpartition(":")
    if not sep or effect not in TAINT_EFFECTS:
        return f"taint {taint!r} must be key=value:Effect or key:Effect with Effect one of {', '.join(TAINT_EFFECTS)}"
    key, _, value = body.partition("=")
    return label_key_error(key) or label_value_error(value)


def parse_k3s_version(version: str) -> tuple[int, int, int] | None:
    match = _K3S_VERSION.match(version)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def k3s_image_tag(version: str) -> str:
    """rancher/k3s image tags spell the build metadata with '-' instead of '+'."""
    return version.replace("+", "-")
