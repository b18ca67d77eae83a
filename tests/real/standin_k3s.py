"""The STAND-IN k3s binary and install script (tests/real/standin/): not K3s, see there."""

from __future__ import annotations

from pathlib import Path

STANDIN = Path(__file__).resolve().parent / "standin"
INSTALL_SCRIPT = STANDIN / "install.sh"


def standin_binary(directory: Path, version: str) -> Path:
    """A stand-in k3s binary that reports `version`."""
    path = directory / f"k3s-{version}"
    path.write_text((STANDIN / "k3s").read_text().replace("@VERSION@", version))
    path.chmod(0o755)
    return path
