"""Rancher (when enabled): its host name, release against K3s, TLS settings and their PEM
files, chart sources and values, and what it needs from K3s (an ingress class that runs).
Its docker mode on an ssh stack is an ssh topology rule (ssh.py); its host ports on the
docker topology are docker.py's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import checks, compat
from ..settings import NAMESPACE, RancherSettings, Settings, clears_cacerts, server_flag_values
from .facts import Facts
from .k3s import supported_minor

KEY = f"{NAMESPACE}:rancher"
# Values that have their own setting: set there, so that outputs (rancherUrl) stay true and
# the password stays a secret instead of plain text in the stack file.
_OWNED_VALUES = {"hostname": "rancher.hostname", "bootstrapPassword": "the rancherBootstrapPassword secret"}


def problems(settings: Settings, facts: Facts) -> list[tuple[str, str]]:
    r = settings.rancher
    if not r.enabled:
        return []
    problems: list[tuple[str, str]] = []
    if error := _hostname_error(settings, facts):
        problems.append((f"{KEY}.hostname", error))
    minor = supported_minor(settings.k3s.version)
    if r.mode == "helm" and minor and (error := compat.rancher_k3s_error(r.version, minor)):
        problems.append((f"{KEY}.version", error))
    problems += _tls_problems(r, settings.secrets_set, facts)
    if r.mode == "helm":
        problems += _chart_problems(r)
    problems += [(f"{KEY}.{where}", facts.file_errors[f"rancher.{where}"]) for where in _local_files(facts)]
    problems += _value_problems(r)
    problems += _ingress_problems(settings)
    return problems


def _local_files(facts: Facts) -> list[str]:
    return [
        where
        for where in ("tlsCert", "privateCa", "chartRepo", "certManager.chartRepo")
        if f"rancher.{where}" in facts.file_errors
    ]


def _hostname_error(settings: Settings, facts: Facts) -> str | None:
    """A given host name must be a DNS name; without one, an IP API address gives an sslip.io
    name and a DNS one cannot (an invalid API address has its own problem)."""
    hostname, api_address = settings.rancher.hostname, settings.k3s.api_address
    if "rancher.hostname" in facts.given:
        return checks.dns_name_error(hostname)
    if not hostname and isinstance(api_address, str) and api_address and not checks.host_error(api_address):
        return f"required when k3s.apiAddress is a DNS name ({api_address!r}): set it to Rancher's DNS name"
    return None


def _tls_problems(r: RancherSettings, secrets: frozenset[str], facts: Facts) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if r.tls == "letsEncrypt":
        email = r.lets_encrypt_email or ""
        if "@" not in email or any(c.isspace() for c in email):
            problems.append((f"{KEY}.letsEncryptEmail", "required with tls letsEncrypt: a valid e-mail address"))
    if r.tls == "secret":
        # An unreadable file has its own problem at the same key.
        if not r.tls_cert and "rancher.tlsCert" not in facts.file_errors:
            problems.append((f"{KEY}.tlsCert", "required with tls secret: a PEM certificate or a path to one"))
        if "rancherTlsKey" not in secrets:
            problems.append(
                (
                    f"{NAMESPACE}:rancherTlsKey",
                    "required with tls secret: pulumi config set --secret rancherTlsKey < key.pem",
                )
            )
    if (r.private_ca or "rancher.privateCa" in facts.file_errors) and r.tls != "secret":
        problems.append((f"{KEY}.privateCa", "only with tls secret (the CA that signed tlsCert)"))
    return problems


def _chart_problems(r: RancherSettings) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for value, instead in _OWNED_VALUES.items():
        if value in r.values:
            problems.append((f"{KEY}.values.{value}", f"set by k3s-rancher: use {instead} instead"))
    if r.values.get("agentTLSMode") == "strict" and clears_cacerts(r):
        problems.append(
            (
                f"{KEY}.values.agentTLSMode",
                f"strict with tls {r.tls}{'' if r.tls == 'letsEncrypt' else ' without privateCa'}: Rancher's chart "
                "then runs Rancher without a CA (--no-cacerts), and strict agents trust only that CA, so no "
                "downstream cluster could connect; leave it unset (k3s-rancher sets system-store)",
            )
        )
    cm = r.cert_manager
    if tuple(int(n) for n in cm.version[1:].split(".")[:2]) < (1, 15):
        problems.append((f"{KEY}.certManager.version", f"{cm.version} predates crds.enabled: use v1.15.0 or newer"))
    problems += _cert_manager_value_problems(cm.values)
    return problems


def _cert_manager_value_problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """cert-manager's CRDs come with its chart here (crds.enabled): without them Rancher's
    Issuer and Certificate cannot be created, and Helm would only say so after the cluster
    was built. installCRDs is the chart's older switch for the same thing: one switch."""
    crds = values.get("crds")
    problems: list[tuple[str, str]] = []
    if crds is not None and not isinstance(crds, dict):
        problems.append((f"{KEY}.certManager.values.crds", "must be a mapping (enabled, keep)"))
    elif isinstance(crds, dict) and crds.get("enabled", True) is not True:
        problems.append(
            (
                f"{KEY}.certManager.values.crds.enabled",
                "k3s-rancher installs cert-manager's CRDs with its chart: Rancher's Issuer and Certificate "
                "need them; leave it unset (to keep the CRDs when the release is removed, crds.keep is "
                "already true)",
            )
        )
    if "installCRDs" in values:
        problems.append(
            (
                f"{KEY}.certManager.values.installCRDs",
                "cert-manager's deprecated switch for what k3s-rancher already sets (crds.enabled: true): remove it",
            )
        )
    return problems


def _value_problems(r: RancherSettings) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    registry = r.system_default_registry
    if registry is not None and checks.host_port_error(registry):
        problems.append(
            (f"{KEY}.systemDefaultRegistry", f"{registry!r} is a registry host (host or host:port), without https://")
        )
    if error := checks.dns_subdomain_error(r.ingress_class_name):
        problems.append((f"{KEY}.ingressClassName", error.replace("node name", "ingress class name")))
    for where, source in (("chartRepo", r.chart_repo), ("certManager.chartRepo", r.cert_manager.chart_repo)):
        # A source without a scheme is a local chart, read with the other local files.
        if "://" in source and (error := checks.url_error(source, ("https://", "http://", "oci://"))):
            problems.append((f"{KEY}.{where}", error))
    return problems


def _ingress_problems(settings: Settings) -> list[tuple[str, str]]:
    """Rancher's ingress on the bundled Traefik while Traefik is disabled: Helm would wait for
    an ingress nothing serves."""
    r = settings.rancher
    if not (r.mode == "helm" and r.ingress_class_name == "traefik"):
        return []
    return [
        (
            where,
            "disables K3s's bundled Traefik, but Rancher's ingress uses the class traefik "
            "(rancher.ingressClassName): bring another ingress controller and set rancher.ingressClassName "
            "to its class, or keep traefik",
        )
        for where, value in server_flag_values(settings.k3s, "disable")
        if value == "traefik"
    ]
