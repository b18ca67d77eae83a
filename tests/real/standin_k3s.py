"""The STAND-IN k3s binary and install script (tests/real/standin/): not K3s, see there and
tests/real/README.md ("K3s stand-in") (what the k3s stand-in imitates, and what it does not)."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

STANDIN = Path(__file__).resolve().parent / "standin"
#: The installer the real tiers stage: the STAND-IN, or with K3SR_INSTALL_SCRIPT=path (e.g. a
#: downloaded https://get.k3s.io) the real one, on machines with internet.
INSTALL_SCRIPT = Path(os.environ.get("K3SR_INSTALL_SCRIPT") or STANDIN / "install.sh").resolve()


def _throwaway_certificate(directory: Path) -> tuple[str, str]:
    """A self-signed certificate and key (base64 PEM) for the stand-in's kubeconfig: the
    kubernetes provider parses them, so they must be real PEM, though nothing trusts them.
    365 days, as K3s's client certificates (K3s docs, "k3s certificate"): the stack's
    kubeconfigExpiry is far away, so a second up stays a no-op (no renewal read). The stand-in
    also serves TLS with it (self-signed: its own CA, written as server/tls/server-ca.crt), so
    it names 127.0.0.1 and localhost."""
    key, cert = directory / "standin-key.pem", directory / "standin-cert.pem"
    if not cert.exists():
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "365", "-subj", "/CN=k3s-rancher-standin", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
    return base64.b64encode(cert.read_bytes()).decode(), base64.b64encode(key.read_bytes()).decode()


def standin_binary(directory: Path, version: str) -> Path:
    """A stand-in k3s binary that reports `version`."""
    cert, key = _throwaway_certificate(directory)
    path = directory / f"k3s-{version}"
    text = (STANDIN / "k3s").read_text().replace("@VERSION@", version)
    path.write_text(text.replace("@CA_DATA@", cert).replace("@KEY_DATA@", key))
    path.chmod(0o755)
    return path
