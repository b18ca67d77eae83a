"""K3s over SSH: K3sServer, K3sAgent and K3sCluster, wired from the pure script renderers.

The graph: server[0] install -> ready -> server[1] install -> ready -> ... -> last server
ready -> every agent install (in parallel) -> cluster ready (one command on server[0]) ->
kubeconfig -> kubernetes.Provider. Names derive from node names, never list positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_command.remote as remote
import pulumi_kubernetes as k8s

from components import scripts
from components.config import Node, Settings, SshSettings
from components.kubeconfig import rewrite_kubeconfig

SERVER_TYPE = "k3s-rancher:index:K3sServer"
AGENT_TYPE = "k3s-rancher:index:K3sAgent"
CLUSTER_TYPE = "k3s-rancher:index:K3sCluster"


@dataclass(frozen=True)
class SshAuth:
    """How every connection authenticates (secret key, or the local agent)."""

    private_key: pulumi.Output[str] | None
    private_key_password: pulumi.Output[str] | None


def connection(node: Node, ssh: SshSettings, auth: SshAuth) -> remote.ConnectionArgs:
    proxy = None
    if ssh.bastion:
        proxy = remote.ProxyConnectionArgs(
            host=ssh.bastion.host,
            port=ssh.bastion.port,
            user=ssh.bastion.user,
            host_key=ssh.bastion.host_key,
            private_key=auth.private_key,
            private_key_password=auth.private_key_password,
            dial_error_limit=ssh.dial_error_limit,
            per_dial_timeout=ssh.per_dial_timeout,
        )
    return remote.ConnectionArgs(
        host=node.ssh.host,
        port=node.ssh.port,
        user=node.ssh.user,
        host_key=node.ssh.host_key,
        private_key=auth.private_key,
        private_key_password=auth.private_key_password,
        agent_socket_path=None,
        dial_error_limit=ssh.dial_error_limit,
        per_dial_timeout=ssh.per_dial_timeout,
        proxy=proxy,
    )


def identity(node: Node) -> list[str]:
    """What makes a node the same node: a change replaces it (delete before create)."""
    return [node.name, node.address, node.ssh.host, str(node.ssh.port)]


def _command(
    name: str, conn: remote.ConnectionArgs, script: scripts.Script, opts: pulumi.ResourceOptions, **extra: Any
) -> remote.Command:
    # add_previous_output_in_env=False: else each update/delete sends the previous output by
    # SSH setenv: a warning per run where sshd refuses it, the output shipped where it accepts.
    return remote.Command(
        name,
        connection=conn,
        create=script.command,
        update=script.command,
        add_previous_output_in_env=False,
        opts=opts,
        **extra,
    )


class K3sNode(pulumi.ComponentResource):
    """One K3s node: its install (delete = uninstall) and, through the first server, its
    labels/taints (delete = drain and delete the Node object)."""

    install: remote.Command

    def __init__(
        self,
        type_: str,
        node: Node,
        settings: Settings,
        *,
        conn: remote.ConnectionArgs,
        first_server: bool,
        stdin: pulumi.Input[str],
        after: Sequence[pulumi.Resource],
        forget_from: tuple[remote.ConnectionArgs, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_, node.name, None, opts)
        self.node = node
        k3s = settings.k3s
        self.install_script = scripts.install_script(node, k3s, first_server=first_server)
        staged = self._stage_airgap(conn, settings) if k3s.airgap else []
        # K3s applies labels and taints only at a node's first registration: the drop-in must
        # be there before the install first starts K3s. Later changes go through node_meta.
        if node.labels or node.taints:
            staged.append(
                _command(
                    f"{node.name}-registration",
                    conn,
                    scripts.registration_script(node, k3s),
                    # delete before replace: a replaced node's uninstall (which removes
                    # /etc/rancher/node) runs before this writes the drop-in again.
                    pulumi.ResourceOptions(parent=self, delete_before_replace=True),
                    triggers=identity(node),
                )
            )
        # The install depends on `forget`, so a removal runs: drain (membership), uninstall
        # (install), then delete the Node object (forget) once nothing can register it again.
        self.forget: list[pulumi.Resource] = []
        if forget_from is not None:
            first_conn, first_user = forget_from
            self.forget = [
                remote.Command(
                    f"{node.name}-forget",
                    connection=first_conn,
                    delete=scripts.forget_script(node.name, first_user).command,
                    triggers=identity(node),
                    add_previous_output_in_env=False,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=list(after), delete_before_replace=True),
                )
            ]
        self.install = _command(
            f"{node.name}-install",
            conn,
            self.install_script,
            pulumi.ResourceOptions(parent=self, depends_on=[*after, *staged, *self.forget], delete_before_replace=True),
            delete=scripts.uninstall_script(node, k3s).command,
            stdin=stdin,
            triggers=identity(node),
        )

    def _stage_airgap(self, conn: remote.ConnectionArgs, settings: Settings) -> list[pulumi.Resource]:
        """Stage this generation's airgap files in a 0700 directory under the SSH user's home:
        CopyToRemote runs as that user over SFTP, without sudo, and creates no directories for
        a file, so a command (as the same user) makes the directory first. A relative
        remote_path resolves in the home directory, where sshd starts the SFTP server. The
        install copies the files to a root-owned place and checks their sha256 there before
        running anything; the uninstall removes this generation only."""
        layout = scripts.airgap_layout(self.node, settings.k3s)
        assert layout is not None
        stage_dir = scripts.stage_airgap_script(self.node, settings.k3s)
        prepare = remote.Command(
            f"{self.node.name}-airgap-stage",
            connection=conn,
            create=stage_dir.command,
            update=stage_dir.command,
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        copies: list[pulumi.Resource] = [
            remote.CopyToRemote(
                f"{self.node.name}-airgap-{target.replace('.', '-')}",
                connection=conn,
                source=pulumi.FileAsset(path),
                remote_path=f"{layout.stage}/{target}",
                triggers=identity(self.node),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[prepare]),
            )
            for target, (path, _) in layout.files.items()
        ]
        return [prepare, *copies]

    def add_membership(
        self,
        first_conn: remote.ConnectionArgs,
        first_user: str,
        settings: Settings,
        after: Sequence[pulumi.Resource],
        *,
        drain_on_delete: bool,
    ) -> remote.Command:
        """Labels and taints through the API, from the first server; on delete, drain and delete
        the Node so that K3s accepts the name again (else "node password rejected")."""
        extra: dict[str, Any] = {"triggers": identity(self.node)}
        if drain_on_delete:
            extra["delete"] = scripts.drain_script(self.node.name, settings.k3s.timeouts.drain, first_user).command
        self.membership = _command(
            f"{self.node.name}-membership",
            first_conn,
            scripts.node_meta_script(self.node, first_user),
            pulumi.ResourceOptions(parent=self, depends_on=[self.install, *after], delete_before_replace=True),
            **extra,
        )
        return self.membership


class K3sServer(K3sNode):
    """A K3s server; `ready` completes when this server is Ready at the expected version.
    Its command text carries a fingerprint of the install, so an update re-runs it."""

    def __init__(
        self,
        node: Node,
        settings: Settings,
        *,
        conn: remote.ConnectionArgs,
        first_server: bool,
        stdin: pulumi.Input[str],
        after: Sequence[pulumi.Resource],
        forget_from: tuple[remote.ConnectionArgs, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            SERVER_TYPE,
            node,
            settings,
            conn=conn,
            first_server=first_server,
            stdin=stdin,
            after=after,
            forget_from=forget_from,
            opts=opts,
        )
        wait = scripts.wait_script(
            [node.name],
            settings.k3s,
            timeout=settings.k3s.timeouts.node_ready,
            waits_for=scripts.fingerprint(self.install_script.command),
            user=node.ssh.user,
        )
        self.ready = _command(
            f"{node.name}-ready", conn, wait, pulumi.ResourceOptions(parent=self, depends_on=[self.install])
        )
        self.register_outputs({"ready": self.ready.stdout})


class K3sAgent(K3sNode):
    """A K3s agent. Agents wait for the last server, never for each other."""

    def __init__(
        self,
        node: Node,
        settings: Settings,
        *,
        conn: remote.ConnectionArgs,
        stdin: pulumi.Input[str],
        after: Sequence[pulumi.Resource],
        forget_from: tuple[remote.ConnectionArgs, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            AGENT_TYPE,
            node,
            settings,
            conn=conn,
            first_server=False,
            stdin=stdin,
            after=after,
            forget_from=forget_from,
            opts=opts,
        )
        self.register_outputs({"installed": self.install.stdout})


def read_kubeconfig(
    name: str,
    conn: remote.ConnectionArgs,
    user: str,
    waits_for: str,
    server_url: str,
    context_name: str,
    opts: pulumi.ResourceOptions,
) -> pulumi.Output[str]:
    """Read the admin kubeconfig; its output is secret in state and never logged."""
    read = remote.Command(
        name,
        connection=conn,
        create=scripts.kubeconfig_script(user, waits_for).command,
        add_previous_output_in_env=False,
        logging=remote.Logging.NONE,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["stdout", "stderr"])),
    )
    return user_kubeconfig(read.stdout, server_url, context_name)


def user_kubeconfig(k3s_yaml: pulumi.Output[str], server_url: str, context_name: str) -> pulumi.Output[str]:
    """The kubeconfig K3s wrote, pointed at `server_url` and named `context_name`; secret."""
    return pulumi.Output.secret(k3s_yaml.apply(lambda text: rewrite_kubeconfig(text, server_url, context_name)))


def context_name(stack: str) -> str:
    """The kubeconfig's cluster/user/context name: stacks' kubeconfigs merge without clashing."""
    return f"k3s-rancher-{stack}"


def kubernetes_provider(
    name: str, kubeconfig: pulumi.Output[str], stack: str, opts: pulumi.ResourceOptions
) -> k8s.Provider:
    # A stable cluster_identifier: a changed kubeconfig (new certificate, new address)
    # updates the provider instead of replacing every resource on the cluster.
    return k8s.Provider(
        name, kubeconfig=kubeconfig, cluster_identifier=f"k3s-rancher-{stack}", delete_unreachable=True, opts=opts
    )


class K3sCluster(pulumi.ComponentResource):
    """The whole cluster over SSH, handed on as a Ready kubernetes Provider."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        *,
        token: pulumi.Output[str],
        auth: SshAuth,
        datastore_endpoint: pulumi.Output[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(CLUSTER_TYPE, name, None, opts)
        k3s = settings.k3s
        endpoint = datastore_endpoint if datastore_endpoint is not None else pulumi.Output.from_input("")
        stdin: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(token, endpoint).apply(lambda v: scripts.install_stdin(str(v[0]), str(v[1]) or None))
        )
        first = settings.servers[0]
        first_conn = connection(first, settings.ssh, auth)
        child = pulumi.ResourceOptions(parent=self)

        self.servers: list[K3sServer] = []
        previous: list[pulumi.Resource] = []
        for index, node in enumerate(settings.servers):
            server = K3sServer(
                node,
                settings,
                conn=connection(node, settings.ssh, auth),
                first_server=index == 0,
                stdin=stdin,
                after=previous,
                forget_from=None if index == 0 else (first_conn, first.ssh.user),
                opts=child,
            )
            self.servers.append(server)
            previous = [server.ready]
        self.agents = [
            K3sAgent(
                node,
                settings,
                conn=connection(node, settings.ssh, auth),
                stdin=stdin,
                after=previous,
                forget_from=(first_conn, first.ssh.user),
                opts=child,
            )
            for node in settings.agents
        ]
        nodes: list[K3sNode] = [*self.servers, *self.agents]

        wait = scripts.wait_script(
            [n.node.name for n in nodes],
            k3s,
            timeout=k3s.timeouts.cluster_ready,
            user=first.ssh.user,
            waits_for=scripts.fingerprint(*(n.install_script.command for n in nodes)),
        )
        self.ready = _command(
            f"{name}-cluster-ready",
            first_conn,
            wait,
            pulumi.ResourceOptions(parent=self, depends_on=[*previous, *(n.install for n in nodes)]),
        )
        memberships = [
            n.add_membership(first_conn, first.ssh.user, settings, [self.ready], drain_on_delete=n.node != first)
            for n in nodes
        ]

        self.api_server = k3s.server_url
        self.kubeconfig = read_kubeconfig(
            f"{name}-kubeconfig",
            first_conn,
            first.ssh.user,
            scripts.fingerprint(self.servers[0].install_script.command),
            self.api_server,
            context_name(settings.stack),
            pulumi.ResourceOptions(parent=self, depends_on=[self.ready]),
        )
        self.provider = kubernetes_provider(
            f"{name}-k8s",
            self.kubeconfig,
            settings.stack,
            pulumi.ResourceOptions(parent=self, depends_on=[self.ready, *memberships]),
        )
        self.nodes = settings.nodes
        self.node_names = [n.node.name for n in nodes]
        self.register_outputs({"apiServer": self.api_server, "kubeconfig": self.kubeconfig, "nodes": self.node_names})
