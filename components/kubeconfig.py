"""Turn the kubeconfig K3s writes into one a user (and the kubernetes provider) can use, and
the kubernetes Provider made from it."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, date, datetime
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml


class KubeconfigError(ValueError):
    pass


def rewrite_kubeconfig(text: str, server_url: str, name: str) -> str:
    """Point the kubeconfig at `server_url` and name its cluster, user and context `name`
    (K3s calls them all "default"), so kubeconfigs of two stacks merge without clashing."""
    try:
        config: dict[str, Any] = yaml.safe_load(text)
        cluster = config["clusters"][0]
        user = config["users"][0]
        context = config["contexts"][0]
    except (yaml.YAMLError, KeyError, IndexError, TypeError) as error:
        # Never echo the text: it holds the cluster's admin credentials.
        raise KubeconfigError(f"the server's kubeconfig is not a K3s kubeconfig ({type(error).__name__})") from None
    cluster["name"] = name
    cluster["cluster"]["server"] = server_url
    user["name"] = name
    context["name"] = name
    context["context"]["cluster"] = name
    context["context"]["user"] = name
    config["clusters"], config["users"], config["contexts"] = [cluster], [user], [context]
    config["current-context"] = name
    return yaml.safe_dump(config, sort_keys=False)


def user_kubeconfig(k3s_yaml: pulumi.Output[str], server_url: pulumi.Input[str], context: str) -> pulumi.Output[str]:
    """The kubeconfig K3s wrote, pointed at `server_url` (an Output when the API's address is
    one: a host made in the same program) and named `context`; secret."""
    return pulumi.Output.secret(
        pulumi.Output.all(k3s_yaml, server_url).apply(lambda v: rewrite_kubeconfig(v[0], v[1], context))
    )


def context_name(cluster_name: str) -> str:
    """The kubeconfig's cluster/user/context name: stacks' kubeconfigs merge without clashing."""
    return f"k3s-rancher-{cluster_name}"


def kubernetes_provider(
    name: str, kubeconfig: pulumi.Input[str], cluster_name: str, opts: pulumi.ResourceOptions
) -> k8s.Provider:
    # A stable cluster_identifier: a changed kubeconfig (new certificate, new address)
    # updates the provider instead of replacing every resource on the cluster.
    # No delete_unreachable: with it, a refresh during a short API outage would drop
    # cert-manager and Rancher from state (and the next up fail on "cannot re-use a name").
    # A cluster that is really gone is handled by hand (README, "The cluster is gone").
    return k8s.Provider(name, kubeconfig=kubeconfig, cluster_identifier=context_name(cluster_name), opts=opts)


# --- the admin client certificate's expiry, and when to read the kubeconfig again -----------

# K3s client certificates last 365 days; K3s renews those expired or within 90 days of expiry
# every time it starts (docs.k3s.io/advanced, "Certificate Management"). The stack re-reads
# the kubeconfig once its certificate is within this many days of expiry.
RENEW_WITHIN_DAYS = 30
UNKNOWN_EXPIRY = "unknown"


def _der(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start, end) of the DER element at `pos` (its contents are data[start:end])."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def certificate_not_after(der: bytes) -> datetime:
    """notAfter of an X.509 certificate (RFC 5280 4.1: Certificate > tbsCertificate >
    [version], serialNumber, signature, issuer, validity > notBefore, notAfter)."""
    _, start, _ = _der(der, 0)  # Certificate
    tag, pos, _ = _der(der, start)  # tbsCertificate
    if tag != 0x30:
        raise ValueError("not a certificate")
    if der[pos] == 0xA0:  # explicit version
        pos = _der(der, pos)[2]
    for _ in range(3):  # serialNumber, signature, issuer
        pos = _der(der, pos)[2]
    tag, pos, _ = _der(der, pos)  # validity
    if tag != 0x30:
        raise ValueError("no validity")
    pos = _der(der, pos)[2]  # notBefore
    tag, start, end = _der(der, pos)
    text = der[start:end].decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ: years 50-99 are 19xx (RFC 5280 4.1.2.5.1)
        parsed = datetime.strptime(text, "%y%m%d%H%M%SZ")
        if parsed.year >= 2050:
            parsed = parsed.replace(year=parsed.year - 100)
    elif tag == 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        parsed = datetime.strptime(text, "%Y%m%d%H%M%SZ")
    else:
        raise ValueError("notAfter is not a time")
    return parsed.replace(tzinfo=UTC)


def client_certificate_expiry(kubeconfig: str) -> str:
    """The notAfter of the kubeconfig's (first) client certificate as ISO 8601 UTC, or
    UNKNOWN_EXPIRY when it has none (a token, say) or it cannot be read. Never raises and
    never echoes the text: it holds credentials."""
    try:
        user = yaml.safe_load(kubeconfig)["users"][0]["user"]
        pem = base64.b64decode(user["client-certificate-data"]).decode("ascii")
        body = pem.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
        return certificate_not_after(base64.b64decode(body)).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError, UnicodeDecodeError, binascii.Error):
        return UNKNOWN_EXPIRY


def renewal_marker(previous_expiry: str | None, previous_marker: str | None, today: date) -> str:
    """What the kubeconfig read's text carries so that it runs again: far from expiry the
    previous marker (nothing changes: a no-op up stays one); once the previous run's
    certificate expires within RENEW_WITHIN_DAYS, today's date (a read today; another on a
    later day if K3s has not renewed the certificate yet)."""
    try:
        expiry = datetime.strptime(previous_expiry or "", "%Y-%m-%dT%H:%M:%SZ").date()
    except ValueError:
        return previous_marker or ""
    if (expiry - today).days <= RENEW_WITHIN_DAYS:
        return today.isoformat()
    return previous_marker or ""
