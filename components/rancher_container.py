"""Rancher's single-node container (rancher.mode docker), the way Rancher's quick start runs it:
rancher/rancher:v<rancher.version>, privileged, restart unless-stopped, its data in a named
volume, its ports published on 127.0.0.1 only.

It runs beside the docker topology's K3s nodes on the same engine and does not depend on
them: the container carries its own embedded K3s, and Rancher's `local` cluster is that one,
not the cluster this stack builds (import it from Rancher's UI if you want it managed).

The bootstrap password is not in the container's environment or labels, which `docker
inspect` shows: it is uploaded as a 0600 file, and a small entrypoint wrapper exports it to
Rancher's own entrypoint. It does end up in the environment of Rancher's process, which only
`docker exec` (root on the engine anyway) can read, and it serves the first login only, where
Rancher asks for a new admin password.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from . import scripts
from .backends.docker import local_command
from .backends.docker_spec import LABEL, LOOPBACK, STOP_GRACE_SECONDS, exec_command, name_prefix
from .rancher import RancherOutputs, rancher_bootstrap_password
from .settings import RancherSettings

CONTAINER_TYPE = "k3s-rancher:index:RancherContainer"
IMAGE_REPOSITORY = "rancher/rancher"
DATA_DIR = "/var/lib/rancher"
PASSWORD_FILE = "/etc/k3s-rancher/bootstrap-password"
RANCHER_ENTRYPOINT = "/usr/bin/entrypoint.sh"  # the image's ENTRYPOINT (rancher/rancher package/Dockerfile)
CONTAINER_PORTS = (80, 443)  # where entrypoint.sh makes Rancher listen


def rancher_image(version: str) -> str:
    return f"{IMAGE_REPOSITORY}:v{version}"


def rancher_url(https_port: int) -> str:
    return "https://localhost" if https_port == 443 else f"https://localhost:{https_port}"


def entrypoint() -> list[str]:
    """sh -c wrapper: read the password file into CATTLE_BOOTSTRAP_PASSWORD, then exec
    Rancher's entrypoint with the container's arguments."""
    script = (
        f'CATTLE_BOOTSTRAP_PASSWORD=$(cat {PASSWORD_FILE}) || {{ echo "k3s-rancher: {PASSWORD_FILE} is missing" >&2;'
        f' exit 1; }}; export CATTLE_BOOTSTRAP_PASSWORD; exec {RANCHER_ENTRYPOINT} "$@"'
    )
    return ["/bin/sh", "-c", script, "entrypoint.sh"]


@dataclass(frozen=True)
class RancherContainerArgs:
    """What RancherContainer needs: the Rancher settings, the engine (its provider and its
    address, docker.host), the stack name that prefixes and labels the container, and the
    bootstrap password (generated when unset)."""

    settings: RancherSettings
    provider: docker.Provider
    docker_host: str
    stack: str
    bootstrap_password: pulumi.Input[str] | None = None


class RancherContainer(pulumi.ComponentResource):
    """Rancher's single-node container and `ready`, which completes when Rancher answers /ping."""

    def __init__(self, name: str, args: RancherContainerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(CONTAINER_TYPE, name, None, opts)
        r = args.settings
        provider = args.provider
        prefix = name_prefix(args.stack)
        on_engine = pulumi.ResourceOptions(parent=self, provider=provider)
        self.bootstrap_password = rancher_bootstrap_password(args.bootstrap_password, self)
        labels = {f"{LABEL}.stack": args.stack, f"{LABEL}.role": "rancher"}
        image = docker.RemoteImage(f"{name}-image", name=rancher_image(r.version), keep_locally=True, opts=on_engine)
        volume = docker.Volume(
            f"{name}-data",
            name=f"{prefix}-rancher-data",
            labels=[docker.VolumeLabelArgs(label=k, value=v) for k, v in labels.items()],
            opts=on_engine,
        )
        container_name = f"{prefix}-rancher"
        self.container = docker.Container(
            f"{name}-container",
            name=container_name,
            image=image.image_id,
            entrypoints=entrypoint(),
            labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in labels.items()],
            privileged=True,  # Rancher's entrypoint refuses to start without it
            restart="unless-stopped",
            must_run=True,
            destroy_grace_seconds=STOP_GRACE_SECONDS,
            ports=[
                docker.ContainerPortArgs(internal=inside, external=outside, ip=LOOPBACK)
                for inside, outside in zip(CONTAINER_PORTS, r.ports, strict=True)
            ],
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=DATA_DIR)],
            uploads=[
                docker.ContainerUploadArgs(
                    file=PASSWORD_FILE, content=pulumi.Output.secret(self.bootstrap_password), permissions="0600"
                )
            ],
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=provider,
                delete_before_replace=True,  # a fixed name
                additional_secret_outputs=["uploads"],
            ),
        )
        self.ready = local_command(
            f"{name}-ready",
            self.container.id.apply(
                lambda cid: exec_command(
                    container_name,
                    scripts.render_inline(
                        "wait_rancher",
                        {"CONTAINER": container_name, "TIMEOUT": str(r.timeout), "WAIT_FOR": cid[:12]},
                        sudo=False,
                        root=False,
                        helpers=False,
                    ),
                )
            ),
            args.docker_host,
            pulumi.ResourceOptions(parent=self, depends_on=[self.container]),
        )
        self.url = rancher_url(r.ports[1])
        self.outputs = RancherOutputs(url=self.url, version=r.version, bootstrap_password=self.bootstrap_password)
        self.register_outputs({"url": self.url, "bootstrapPassword": self.bootstrap_password})
