"""Every read of a local file the stack config names happens here (charts.py does the
reading of a chart archive or directory, called from here): the airgap files, Rancher's PEM
files (rancher.tlsCert, rancher.privateCa) and local charts. Only files the stack will use
are read: nothing of a disabled Rancher, local charts only in helm mode.

What is wrong with a file is returned by key, never raised, so that the validators list it
with the other problems.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import charts
from .settings import Settings


@dataclass(frozen=True)
class LocalFiles:
    # PEM text by key (rancher.tlsCert, rancher.privateCa), for values given as a file path.
    texts: Mapping[str, str | None]
    # What is wrong with a file, by the key (without the namespace) that names it.
    errors: Mapping[str, str]


def read(settings: Settings) -> LocalFiles:
    """Read what `settings` (as built, PEM values still as given) names on the local disk."""
    texts: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    if airgap := settings.k3s.airgap:
        for name, path in (
            ("installScript", airgap.install_script),
            ("binary", airgap.binary),
            ("images", airgap.images),
        ):
            if path is not None and not Path(path).is_file():
                errors[f"k3s.airgap.{name}"] = f"{path!r} is not a readable file"
    r = settings.rancher
    if r.enabled:
        for name, value in (("tlsCert", r.tls_cert), ("privateCa", r.private_ca)):
            texts[f"rancher.{name}"], error = pem_text(value)
            if error:
                errors[f"rancher.{name}"] = error
        if r.mode == "helm":
            for where, source, chart, version in (
                ("chartRepo", r.chart_repo, "rancher", r.version),
                ("certManager.chartRepo", r.cert_manager.chart_repo, "cert-manager", r.cert_manager.version),
            ):
                if not charts.is_remote(source) and (error := charts.local_chart_error(source, chart, version)):
                    errors[f"rancher.{where}"] = error
    return LocalFiles(texts=texts, errors=errors)


def with_texts(settings: Settings, files: LocalFiles) -> Settings:
    """`settings` with Rancher's PEM values as text (None where unreadable or unused)."""
    rancher = dataclasses.replace(
        settings.rancher,
        tls_cert=files.texts.get("rancher.tlsCert"),
        private_ca=files.texts.get("rancher.privateCa"),
    )
    return dataclasses.replace(settings, rancher=rancher)


def pem_text(value: str | None) -> tuple[str | None, str | None]:
    """PEM text given inline or in a local file, and the problem with it (never an exception)."""
    if value is None or "-----BEGIN" in value:
        return value, None
    try:
        text = Path(value).read_text()
    except (OSError, ValueError) as error:  # ValueError: undecodable text, a NUL in the path
        reason = getattr(error, "strerror", None) or str(error)
        return None, f"{value!r} is neither PEM text nor a readable file ({reason})"
    if "-----BEGIN" not in text:
        return None, f"{value!r} holds no PEM block (-----BEGIN ...)"
    return text, None
