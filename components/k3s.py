"""K3s over SSH: K3sServer, K3sAgent and K3sCluster, wired from the pure script renderers.

The graph: init server install -> ready -> next server install -> ready -> ... -> last
server ready -> every agent install (in parallel) -> cluster ready (one command on the init
server) -> kubeconfig -> kubernetes.Provider. The init server is the one k3s.initServer
names; the others follow in name order, agents are sorted by name: nothing depends on the
order of the config's lists, and names derive from node names, never list positions.

Per node, a removal or a replacement runs: drain (membership delete) -> uninstall (install
delete) -> delete the Node object (forget delete) -> [stage and install the new]. Removal
gets that order from the dependencies (Pulumi deletes dependents first). A replacement
(delete_before_replace) gets it because each step's `triggers` carries the id of the step
before it: when `forget` is replaced, the engine treats install and membership as replaced
too (their triggers become unknown) and deletes them first, dependents before dependencies
(pulumi/pulumi pkg/resource/deploy/step_generator.go, calculateDependentReplacements). A
plain depends_on edge would not do that: the engine only follows property dependencies.
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
    """What a node IS: a change replaces it (delete before create). How it is reached (ssh
    host, port, user, bastion) is not part of it: a new endpoint updates the connection in
    place, and the node's later deletes run through the new endpoint."""
    return [node.name, node.address, node.role]


def server_chain(settings: Settings) -> list[Node]:
    """Servers in join order: the init server, then the others by name (not list order, so
    reordering `servers` changes nothing)."""
    init = settings.init_node
    return [init, *sorted((n for n in settings.servers if n.name != init.name), key=lambda n: n.name)]


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


@dataclass(frozen=True)
class ClusterAccess:
    """Where cluster-wide commands run (labels, drain, forget, cluster ready, kubeconfig):
    the init server, which holds the admin kubeconfig and is never removed while others are."""

    conn: remote.ConnectionArgs
    user: str
    node: Node


class K3sNode(pulumi.ComponentResource):
    """One K3s node: its install (delete = uninstall) and, through the init server, its
    Node object: membership (labels/taints; delete = drain) and forget (delete = delete the
    Node once the host is uninstalled)."""

    install: remote.Command
    forget: remote.Command

    def __init__(
        self,
        type_: str,
        node: Node,
        settings: Settings,
        *,
        conn: remote.ConnectionArgs,
        cluster: ClusterAccess,
        stdin: pulumi.Input[str],
        after: Sequence[pulumi.Resource],
        forget_after: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_, node.name, None, opts)
        self.node = node
        self.is_init = node.name == cluster.node.name
        k3s = settings.k3s
        self.install_script = scripts.install_script(node, k3s, first_server=self.is_init)
        # First in the node's chain (see the module docstring): its delete runs last. The init
        # server's has no delete (destroy uninstalls it last; nothing would be left to ask),
        # but exists all the same, so that moving k3s.initServer deletes no resource. It
        # waits only for the init server's install (`forget_after`; it runs there, so it must
        # be deleted before that uninstall): its create does nothing and it stays off the
        # critical path, beside the previous server's ready check.
        forget_delete = None if self.is_init else scripts.forget_script(node.name, cluster.user).command
        self.forget = remote.Command(
            f"{node.name}-forget",
            connection=cluster.conn,
            delete=forget_delete,
            triggers=identity(node),
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(forget_after), delete_before_replace=True),
        )
        # Whatever is put on the host before the install depends on `forget`: on a
        # replacement it is created only once the old generation is uninstalled.
        staged = self._stage_airgap(conn, settings) if k3s.airgap else []
        # K3s applies labels and taints only at a node's first registration: the drop-in must
        # be there before the install first starts K3s. Later changes go through node_meta.
        if node.labels or node.taints:
            staged.append(
                _command(
                    f"{node.name}-registration",
                    conn,
                    scripts.registration_script(node, k3s),
                    # After `forget` (see above) and delete before replace: a replaced node's
                    # uninstall (which removes /etc/rancher/node) runs before this writes again.
                    pulumi.ResourceOptions(parent=self, depends_on=[self.forget], delete_before_replace=True),
                    triggers=identity(node),
                )
            )
        self.install = _command(
            f"{node.name}-install",
            conn,
            self.install_script,
            pulumi.ResourceOptions(parent=self, depends_on=[*after, *staged, self.forget], delete_before_replace=True),
            delete=scripts.uninstall_script(node, k3s).command,
            stdin=stdin,
            triggers=[*identity(node), self.forget.id],
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
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.forget]),
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
        cluster: ClusterAccess,
        settings: Settings,
        after: Sequence[pulumi.Resource],
    ) -> remote.Command:
        """Labels and taints through the API, from the init server; on delete (any node but the
        init server), drain and delete the Node so that K3s accepts the name again (else
        "node password rejected")."""
        extra: dict[str, Any] = {"triggers": [*identity(self.node), self.install.id]}
        if not self.is_init:
            extra["delete"] = scripts.drain_script(self.node.name, settings.k3s.timeouts.drain, cluster.user).command
        self.membership = _command(
            f"{self.node.name}-membership",
            cluster.conn,
            scripts.node_meta_script(self.node, cluster.user),
            pulumi.ResourceOptions(parent=self, depends_on=[self.install, *after], delete_before_replace=True),
            **extra,
        )
        return self.membership


class K3sServer(K3sNode):
    """A K3s server; `ready` completes when this server is Ready at the expected version.
    Its command text carries a fingerprint of the install, so an update re-runs it; it gets
    the install's stdin (which the wait ignores), so a new token or datastore endpoint, which
    restarts K3s, re-runs it too."""

    def __init__(
        self,
        node: Node,
        settings: Settings,
        *,
        conn: remote.ConnectionArgs,
        cluster: ClusterAccess,
        stdin: pulumi.Input[str],
        after: Sequence[pulumi.Resource],
        forget_after: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            SERVER_TYPE,
            node,
            settings,
            conn=conn,
            cluster=cluster,
            stdin=stdin,
            after=after,
            forget_after=forget_after,
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
            f"{node.name}-ready",
            conn,
            wait,
            pulumi.ResourceOptions(parent=self, depends_on=[self.install]),
            stdin=stdin,
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
        cluster: ClusterAccess,
        stdin: pulumi.Input[str],
        after: Sequence[pulumi.Resource],
        forget_after: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            AGENT_TYPE,
            node,
            settings,
            conn=conn,
            cluster=cluster,
            stdin=stdin,
            after=after,
            forget_after=forget_after,
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
    # No delete_unreachable: with it, a refresh during a short API outage would drop
    # cert-manager and Rancher from state (and the next up fail on "cannot re-use a name").
    # A cluster that is really gone is handled by hand (README, "The cluster is gone").
    return k8s.Provider(name, kubeconfig=kubeconfig, cluster_identifier=f"k3s-rancher-{stack}", opts=opts)


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
        init = settings.init_node
        cluster = ClusterAccess(conn=connection(init, settings.ssh, auth), user=init.ssh.user, node=init)
        child = pulumi.ResourceOptions(parent=self)

        self.servers: list[K3sServer] = []
        previous: list[pulumi.Resource] = []
        for node in server_chain(settings):
            server = K3sServer(
                node,
                settings,
                conn=connection(node, settings.ssh, auth),
                cluster=cluster,
                stdin=stdin,
                after=previous,
                forget_after=[self.servers[0].install] if self.servers else [],
                opts=child,
            )
            self.servers.append(server)
            previous = [server.ready]
        self.agents = [
            K3sAgent(
                node,
                settings,
                conn=connection(node, settings.ssh, auth),
                cluster=cluster,
                stdin=stdin,
                after=previous,
                forget_after=[self.servers[0].install],
                opts=child,
            )
            for node in sorted(settings.agents, key=lambda n: n.name)
        ]
        nodes: list[K3sNode] = [*self.servers, *self.agents]

        wait = scripts.wait_script(
            [n.node.name for n in nodes],
            k3s,
            timeout=k3s.timeouts.cluster_ready,
            user=cluster.user,
            waits_for=scripts.fingerprint(*(n.install_script.command for n in nodes)),
        )
        # The same stdin as the installs: a new token or endpoint restarts K3s on every node,
        # so the cluster check must run again (the wait script does not read it).
        self.ready = _command(
            f"{name}-cluster-ready",
            cluster.conn,
            wait,
            pulumi.ResourceOptions(parent=self, depends_on=[*previous, *(n.install for n in nodes)]),
            stdin=stdin,
        )
        memberships = [n.add_membership(cluster, settings, [self.ready]) for n in nodes]

        self.api_server = k3s.server_url
        self.kubeconfig = read_kubeconfig(
            f"{name}-kubeconfig",
            cluster.conn,
            cluster.user,
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
        self.nodes = tuple(n.node for n in nodes)
        self.node_names = [n.node.name for n in nodes]
        self.register_outputs({"apiServer": self.api_server, "kubeconfig": self.kubeconfig, "nodes": self.node_names})
