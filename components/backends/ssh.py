"""K3s on hosts reached over SSH: the `ssh` topology's backend and K3sCluster.

Each node's first step, `<node>-scripts`, puts this release's scripts bundle on the host
(components/bundle.py); every other command there is an entry point into it. The install is
a pulumi-command remote.Command running components/sh/install_node.sh (delete = uninstall),
preceded where needed by the airgap files' staging and the registration drop-in (labels
and taints K3s applies at a node's first registration only).
Secrets (token, datastore endpoint) travel on stdin, never in command text. The graph around
the installs is components/cluster.py's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import pulumi
import pulumi_command.remote as remote

from .. import bundle, inputs, registry_auth, scripts
from ..agent_pool import AgentPoolArgs
from ..cluster import GraphCluster, Installed, render_text
from ..cluster_record import ClusterRecord, ComponentRecord, check_quorum, check_roles, read_previous, retired_before
from ..naming import ChildNames
from ..settings import NAMESPACE, K3sSettings, Node, SshSettings, SshSite
from ..validation import args as validate_args
from ..validation import by_topology

CLUSTER_TYPE = "k3s-rancher:index:K3sCluster"
SERVER_TYPE = "k3s-rancher:index:K3sServer"
AGENT_TYPE = "k3s-rancher:index:K3sAgent"
# The step 0.3.0 retires (its delete moved into the -scripts step's): see install.
CLEANUP = "-cleanup"


@dataclass(frozen=True)
class K3sClusterArgs:
    """What K3sCluster needs: the nodes, the K3s settings, how to reach the hosts, and the
    secrets (given as Outputs, kept secret)."""

    servers: Sequence[Node]
    agents: Sequence[Node]
    k3s: K3sSettings
    ssh: SshSettings
    token: pulumi.Input[str]
    # The SSH private key and its passphrase; without a key, the local SSH agent is used.
    private_key: pulumi.Input[str] | None = None
    private_key_password: pulumi.Input[str] | None = None
    # The external datastore's endpoint (k3s.datastore external), a secret.
    datastore_endpoint: pulumi.Input[str] | None = None
    # The etcd S3 access and secret keys (k3s.etcdSnapshots.s3), secrets; servers only.
    etcd_s3_access_key: pulumi.Input[str] | None = None
    etcd_s3_secret_key: pulumi.Input[str] | None = None
    # user:password of k3s.proxy's URLs (the proxyCredentials secret).
    proxy_credentials: pulumi.Input[str] | None = None
    # A token to rotate the cluster to (the newToken secret): `k3s token rotate` on the init
    # server from `token` to it, before the init server's install; then every node uses it.
    new_token: pulumi.Input[str] | None = None
    # Registry credentials (the registryAuth secret, JSON: components/registry_auth.py): the
    # installs then get the whole registries.yaml on stdin.
    registry_auth: pulumi.Input[str] | None = None
    # Names the kubeconfig's context (k3s-rancher-<name>) and the provider's cluster
    # identifier; the component's name when unset.
    cluster_name: str | None = None
    # k3s.driftCheck's marker per node (components/drift.py): not 0 re-runs the node's scripts
    # step, airgap staging and install when it changes.
    repairs: Mapping[str, int] = field(default_factory=dict)
    # What the children made per node are named after: `<prefix><node>-install`... None: the
    # component's name and a dash, with an alias to each child's unprefixed name (as releases
    # before 0.3.0 named it), so that clusters with alike node names fit in one program. The
    # stack program gives "" (its resources keep their names, no alias).
    name_prefix: str | None = None
    # Where the cluster keeps what its next run compares with (components/cluster_record.py);
    # None: its own stack output, `k3s-rancher:<name>`.
    record: ClusterRecord | None = None
    # Agent pools (components/agent_pool.py): their agents join after `agents`, each pool with
    # its own labels, taints, agent flags, registries and upgrade batch size.
    pools: Sequence[AgentPoolArgs] = ()
    # Its reimage marker per node: not 0 deletes the node's Node and node-password Secret (its
    # forget step) before the install, and applies its labels and taints again.
    reimaged: Mapping[str, int] = field(default_factory=dict)
    # True: parse_settings built and checked these (the stack program). False: the component
    # runs the ssh topology's validators on them (components/validation/args.py).
    checked: bool = False


def identity(node: Node) -> list[pulumi.Input[str]]:
    """What a node IS: a change replaces it (delete before create). How it is reached (ssh
    host, port, user, bastion) is not part of it: a new endpoint updates the connection in
    place, and the node's later deletes run through the new endpoint."""
    return [node.name, node.address, node.role]


def server_chain(servers: Sequence[Node], init_server: str) -> list[Node]:
    """Servers in join order: the init server, then the others by name (not list order, so
    reordering `servers` changes nothing). With one server, it is the init server."""
    if not init_server and len(servers) == 1:
        return list(servers)
    init = [n for n in servers if n.name == init_server]
    if not init:
        raise ValueError(f"k3s.init_server {init_server!r} is not one of the servers")
    return [*init, *sorted((n for n in servers if n.name != init_server), key=lambda n: n.name)]


def connection(
    node: Node, ssh: SshSettings, private_key: pulumi.Input[str] | None, password: pulumi.Input[str] | None
) -> remote.ConnectionArgs:
    proxy = None
    if ssh.bastion:
        proxy = remote.ProxyConnectionArgs(
            host=ssh.bastion.host,
            port=ssh.bastion.port,
            user=ssh.bastion.user,
            host_key=ssh.bastion.host_key,
            private_key=private_key,
            private_key_password=password,
            dial_error_limit=ssh.dial_error_limit,
            per_dial_timeout=ssh.per_dial_timeout,
        )
    return remote.ConnectionArgs(
        host=node.ssh.host,
        port=node.ssh.port,
        user=node.ssh.user,
        host_key=node.ssh.host_key,
        private_key=private_key,
        private_key_password=password,
        agent_socket_path=None,
        dial_error_limit=ssh.dial_error_limit,
        per_dial_timeout=ssh.per_dial_timeout,
        proxy=proxy,
    )


class SshBackend:
    """components/cluster.py's Backend for hosts reached over SSH."""

    cluster_type = CLUSTER_TYPE
    server_type = SERVER_TYPE
    agent_type = AGENT_TYPE
    # The init role can move (k3s.initServer): every server has a forget step, so that moving
    # it deletes no resource.
    forget_init = True
    # Agents take in-place changes in batches (k3s.upgrade), cordoned and drained first.
    rolls_agents = True
    # A removed etcd server's membership waits until it has left K3s's /db/info (curl there).
    checks_etcd_members = True

    def __init__(
        self,
        args: K3sClusterArgs,
        names: ChildNames,
        check: Callable[[inputs.Plain], None] = lambda _: None,
        cleanup_retired: bool = False,
    ) -> None:
        self.args = args
        self.names = names
        self.pools = list(args.pools)
        pool_agents = [n for pool in self.pools for n in pool.members()]
        self.k3s = inputs.completed(args.k3s, args.servers, [*args.agents, *pool_agents], args.k3s.init_server)
        self.servers = server_chain(args.servers, args.k3s.init_server)
        self.agents = sorted(args.agents, key=lambda n: n.name)
        # The K3s settings each pool's agent is installed with (the cluster's for the others).
        self._node_k3s = {n.name: pool.k3s(self.k3s) for pool in self.pools for n in pool.nodes}
        # Addresses given as Outputs (hosts made in the same program): the texts that name an
        # address render once they are known (components/inputs.py); None with plain ones.
        self._plain = inputs.resolved(args.servers, args.agents, self.pools, self.k3s, check)
        self.api_server: pulumi.Input[str] = (
            self.k3s.server_url if self._plain is None else self._plain.apply(lambda p: p.k3s.server_url)
        )
        endpoint = pulumi.Output.from_input(args.datastore_endpoint or "")
        # Readiness checks get the installs' stdin (the wait ignores it): a new token or
        # endpoint restarts K3s, and so re-runs them.
        s3 = [pulumi.Output.from_input(key or "") for key in (args.etcd_s3_access_key, args.etcd_s3_secret_key)]
        proxy = pulumi.Output.from_input(args.proxy_credentials or "")
        # With newToken: every node joins with it, and stdin's ROTATED_FROM is the token rotated from.
        token, rotated_from = self._tokens(args)
        # With registryAuth: REGISTRIES_WITH_AUTH, the whole registries.yaml (every node pulls images).
        registries = self._registries(self.k3s.registries)
        self.check_stdin: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(token, endpoint, *s3, proxy, rotated_from, registries).apply(
                lambda v: scripts.install_stdin(
                    str(v[0]),
                    str(v[1]) or None,
                    str(v[2]),
                    str(v[3]),
                    str(v[4]) or None,
                    str(v[5]) or None,
                    str(v[6]) or None,
                )
            )
        )

        # Agents get the token, the endpoint, the proxy's credentials and the registries: the
        # S3 keys stay on the servers.
        def agent_stdin(registries: pulumi.Output[str]) -> pulumi.Output[str]:
            return pulumi.Output.secret(
                pulumi.Output.all(token, endpoint, proxy, rotated_from, registries).apply(
                    lambda v: scripts.install_stdin(
                        str(v[0]),
                        str(v[1]) or None,
                        proxy_credentials=str(v[2]) or None,
                        rotated_from=str(v[3]) or None,
                        registries=str(v[4]) or None,
                    )
                )
            )

        self._agent_stdin = agent_stdin(registries)
        # A pool with its own registries: its agents get that registries.yaml with the credentials.
        self._pool_stdin = {
            n.name: agent_stdin(self._registries(pool.registries))
            for pool in self.pools
            if pool.registries is not None
            for n in pool.nodes
        }
        # The rotation's stdin (the current token, then newToken); None without newToken.
        self.token_rotation: pulumi.Output[str] | None = None
        if args.new_token is not None:
            self.token_rotation = pulumi.Output.secret(
                pulumi.Output.all(args.token, args.new_token).apply(
                    lambda v: scripts.token_rotation_stdin(str(v[0]), str(v[1]))
                )
            )
        self._connections = {
            n.name: connection(n, args.ssh, args.private_key, args.private_key_password)
            for n in (*self.servers, *self.agents, *pool_agents)
        }
        # Each node's `<node>-scripts` step (prepare): every command on that host waits for it.
        self._scripts: dict[str, remote.Command] = {}
        # Whether the previous run retired the `-cleanup` steps (install); those this run
        # still registers, retained (retired_steps).
        self.cleanup_retired = cleanup_retired
        self._cleanups: list[remote.Command] = []
        self._bundle = bundle.current_bundle()

    def prepare(self, parent: pulumi.Resource, node: Node, after: Sequence[pulumi.Resource]) -> None:
        """The node's first step: put this release's scripts bundle on the host (root-owned,
        checked against the digest computed here). It runs when the bundle or the connection
        changes, and nothing else on the host runs before it; its delete, after every other
        step on the host, uninstalls what a failed first install left (that install is not in
        the state; after a normal removal's uninstall it finds nothing) and removes the bundle."""
        scripts_bundle = self._bundle
        # Delete before replace: a replaced step's delete would remove what its replacement
        # had just delivered.
        name, opts = self.names.child(
            f"{node.name}-scripts",
            pulumi.ResourceOptions(parent=parent, depends_on=list(after), delete_before_replace=True),
        )
        self._scripts[node.name] = remote.Command(
            name,
            connection=self._connections[node.name],
            create=scripts.deliver_scripts_script(
                node.ssh.user, scripts_bundle, self.args.repairs.get(node.name, 0)
            ).command,
            delete=self._text(node, lambda n, k: scripts.remove_scripts_script(n, k).command),
            stdin=scripts_bundle.text,
            add_previous_output_in_env=False,
            opts=opts,
        )

    def retired_steps(self) -> pulumi.Output[list[str]]:
        """What the record keeps as retired once this run completes: `-cleanup`, once every
        cleanup step this run registers (retained) is registered."""
        return pulumi.Output.all(*(c.urn for c in self._cleanups)).apply(lambda _: [CLEANUP])

    def _text(self, node: Node, render: Callable[[Node, K3sSettings], str]) -> pulumi.Input[str]:
        """A command text naming the node's or the API's address: rendered now when every
        address is plain, else once they are known (the same text then)."""
        return inputs.rendered(self._plain, node, self.k3s_of(node), render)

    def _after_scripts(self, on: Node, opts: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
        """`opts` plus a dependency on `on`'s scripts step (a command there runs its code)."""
        step = self._scripts.get(on.name)
        if step is None:
            return opts
        return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[step]))

    def _registries(self, registries: Mapping[str, object] | None) -> pulumi.Output[str]:
        """The whole registries.yaml with the registryAuth secret's credentials ("" without it)."""
        return pulumi.Output.from_input(self.args.registry_auth or "").apply(
            lambda auth: registry_auth.registries_file(registries, auth) if auth else ""
        )

    def k3s_of(self, node: Node) -> K3sSettings:
        """The K3s settings `node` is installed with: its pool's, else the cluster's."""
        return self._node_k3s.get(node.name, self.k3s)

    @staticmethod
    def _tokens(args: K3sClusterArgs) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """The token nodes join with, and the one a rotation goes from ("" without newToken)."""
        if args.new_token is None:
            return pulumi.Output.from_input(args.token), pulumi.Output.from_input("")
        return pulumi.Output.from_input(args.new_token), pulumi.Output.from_input(args.token)

    def identity(self, node: Node) -> list[pulumi.Input[str]]:
        return identity(node)

    def wait_hint(self, names: Sequence[str]) -> str | None:
        return None

    def reimaged(self, node: Node) -> int:
        return self.args.reimaged.get(node.name, 0)

    def command(
        self,
        name: str,
        on: Node,
        *,
        opts: pulumi.ResourceOptions,
        create: pulumi.Input[str] | None = None,
        update: pulumi.Input[str] | None = None,
        delete: pulumi.Input[str] | None = None,
        stdin: pulumi.Input[str] | None = None,
        triggers: Sequence[pulumi.Input[str]] | None = None,
    ) -> remote.Command:
        # add_previous_output_in_env=False: else each update/delete sends the previous output by
        # SSH setenv: a warning per run where sshd refuses it, the output shipped where it accepts.
        return remote.Command(
            name,
            connection=self._connections[on.name],
            create=create,
            update=update if update is not None else create,
            delete=delete,
            stdin=stdin,
            triggers=list(triggers) if triggers is not None else None,
            add_previous_output_in_env=False,
            opts=self._after_scripts(on, opts),
        )

    def upgrade_command(
        self, name: str, on: Node, *, update: pulumi.Input[str], opts: pulumi.ResourceOptions
    ) -> remote.Command:
        # No create: pulumi-command runs nothing when `create` is unset (commandController.go:
        # Create) and `update` on an update (Update).
        return remote.Command(
            name,
            connection=self._connections[on.name],
            update=update,
            add_previous_output_in_env=False,
            opts=self._after_scripts(on, opts),
        )

    def install(
        self,
        parent: pulumi.Resource,
        node: Node,
        *,
        first_server: bool,
        after: Sequence[pulumi.Resource],
        forget: pulumi.Resource | None,
        rolled: bool = False,
    ) -> Installed:
        assert isinstance(forget, remote.Command)  # forget_init: every node has one
        repair = self.args.repairs.get(node.name, 0)
        k3s = self.k3s_of(node)
        script = self._text(
            node, lambda n, k: scripts.install_script(n, k, first_server=first_server, repair=repair).command
        )
        # Retired in 0.3.0 (its work is the -scripts step's delete now): a stack made before
        # keeps each node's `-cleanup` step, unchanged, with retain_on_delete, until a run
        # that registered it so has completed (the record's retiredSteps); from then on it
        # is left out, and its leaving runs nothing (pulumi pkg/resource/deploy/step.go,
        # DeleteStep.Apply skips the provider's Delete of a retained resource). Leaving it out
        # before that would run its delete, the uninstall, on every running node. A new stack
        # never gets one (cluster_record.retired_before).
        cleanup: remote.Command | None = None
        if not self.cleanup_retired:
            cleanup_name, cleanup_opts = self.names.child(
                f"{node.name}-cleanup",
                pulumi.ResourceOptions(
                    parent=parent, depends_on=[forget], delete_before_replace=True, retain_on_delete=True
                ),
            )
            cleanup = self.command(
                cleanup_name,
                node,
                delete=self._text(node, lambda n, k: scripts.cleanup_script(n, k).command),
                triggers=identity(node),
                opts=cleanup_opts,
            )
            self._cleanups.append(cleanup)
        first: remote.Command = cleanup or forget
        # Whatever is put on the host before the install depends on `forget`: on a
        # replacement it is created only once the old generation is uninstalled.
        staged = self._stage_airgap(parent, node, first) if k3s.airgap else []
        # K3s applies labels and taints only at a node's first registration: the drop-in must
        # be there before the install first starts K3s. Later changes go through membership.
        if node.labels or node.taints:
            # Delete before replace: a replaced node's uninstall (which removes /etc/rancher/node)
            # runs before this writes again.
            registration_name, registration_opts = self.names.child(
                f"{node.name}-registration",
                pulumi.ResourceOptions(parent=parent, depends_on=[first], delete_before_replace=True),
            )
            staged.append(
                self.command(
                    registration_name,
                    node,
                    create=self._text(
                        node, lambda n, k: scripts.registration_script(n, k, self.reimaged(node)).command
                    ),
                    triggers=identity(node),
                    opts=registration_opts,
                )
            )
        stdin = self.check_stdin if node.role == "server" else self._pool_stdin.get(node.name, self._agent_stdin)
        # Rolled: an in-place change runs in the agent's k3s.upgrade batch (the graph puts the
        # batch before it in `after`) and restarts K3s, if it must, cordoned and drained.
        rolled_update = self._text(
            node,
            lambda n, k: scripts.install_script(n, k, first_server=first_server, roll=True, repair=repair).command,
        )
        install_name, install_opts = self.names.child(
            f"{node.name}-install",
            pulumi.ResourceOptions(
                parent=parent, depends_on=[*after, *staged, forget, first], delete_before_replace=True
            ),
        )
        install = self.command(
            install_name,
            node,
            create=script,
            update=rolled_update if rolled else None,
            delete=self._text(node, lambda n, k: scripts.uninstall_script(n, k).command),
            stdin=stdin,
            # The forget's id: a replaced forget replaces the install (see components/cluster.py).
            triggers=[*identity(node), forget.id],
            opts=install_opts,
        )
        return Installed(resources=[install], generation=script, replaced_with=[install.id])

    def _stage_airgap(self, parent: pulumi.Resource, node: Node, first: pulumi.Resource) -> list[pulumi.Resource]:
        """Stage this generation's airgap files in a 0700 directory under the SSH user's home:
        CopyToRemote runs as that user over SFTP, without sudo, and creates no directories for
        a file, so a command (as the same user) makes the directory first. A relative
        remote_path resolves in the home directory, where sshd starts the SFTP server. The
        install copies the files to a root-owned place, checks their sha256 there before
        running anything and removes the staged copies; the staging step's delete removes
        what was staged and never installed, the uninstall every root-owned generation."""
        k3s = self.k3s_of(node)
        # The files alone: they do not depend on the address (the stage's name does: _staged_as).
        layout = scripts.airgap_layout(replace(node, address=""), k3s)
        assert layout is not None
        stage_name, stage_opts = self.names.child(
            f"{node.name}-airgap-stage", pulumi.ResourceOptions(parent=parent, depends_on=[first])
        )
        prepare = self.command(
            stage_name,
            node,
            create=self._text(node, lambda n, k: scripts.stage_airgap_script(n, k, self.reimaged(node)).command),
            # Whatever was staged and never installed goes with the step.
            delete=self._text(node, lambda n, k: scripts.unstage_airgap_script(n, k).command),
            opts=stage_opts,
        )
        copies: list[pulumi.Resource] = []
        for target, (path, _) in layout.files.items():
            copy_name, copy_opts = self.names.child(
                f"{node.name}-airgap-{target.replace('.', '-')}",
                pulumi.ResourceOptions(parent=parent, depends_on=[prepare]),
            )
            copies.append(
                remote.CopyToRemote(
                    copy_name,
                    connection=self._connections[node.name],
                    source=pulumi.FileAsset(path),
                    remote_path=self._text(node, _staged_as(target)),
                    # A reimaged host (k3s.driftCheck) gets its files copied again; any other
                    # repair reuses the root-owned generation the install keeps (sh/airgap.sh),
                    # so starting a stopped K3s copies no binary or images.
                    triggers=[*identity(node), *_reimaged_trigger(self.reimaged(node))],
                    opts=copy_opts,
                )
            )
        return [prepare, *copies]

    def read_kubeconfig(
        self, name: str, waits_for: pulumi.Input[str], opts: pulumi.ResourceOptions
    ) -> pulumi.Output[str]:
        """The admin kubeconfig; secret in state and never logged. No update: a new text
        replaces the read."""
        init = self.servers[0]
        read = remote.Command(
            name,
            connection=self._connections[init.name],
            create=render_text(waits_for, lambda after: scripts.kubeconfig_script(init.ssh.user, after).command),
            add_previous_output_in_env=False,
            logging=remote.Logging.NONE,
            opts=self._after_scripts(
                init,
                pulumi.ResourceOptions.merge(
                    opts, pulumi.ResourceOptions(additional_secret_outputs=["stdout", "stderr"])
                ),
            ),
        )
        return read.stdout


def _staged_as(target: str) -> Callable[[Node, K3sSettings], str]:
    """Where a staged airgap file goes: in the node's stage, which names its address."""

    def path(node: Node, k3s: K3sSettings) -> str:
        layout = scripts.airgap_layout(node, k3s)
        assert layout is not None
        return f"{layout.stage}/{target}"

    return path


def _reimaged_trigger(reimaged: int) -> list[str]:
    return [f"drift-reimaged {reimaged}"] if reimaged else []


class K3sCluster(GraphCluster):
    """A K3s cluster on SSH hosts, handed on as a Ready kubernetes Provider (`provider`), its
    admin kubeconfig (`kubeconfig`, secret) and `ready`, the check every node passed."""

    def __init__(self, name: str, args: K3sClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        record = args.record or ComponentRecord(name)
        check = _checker(args)
        # Before anything of the cluster is registered: a refusal leaves nothing behind.
        given = inputs.Plain(tuple(args.servers), tuple(args.agents), args.k3s, tuple(args.pools))
        if not args.checked:
            check(given)
        check_quorum(record, [n.name for n in args.servers], args.k3s.datastore, f"{NAMESPACE}:servers")
        check_roles(record, given.all_nodes())

        def once_known(plain: inputs.Plain) -> None:
            # Addresses given as Outputs, now known: the checks that skipped them, and the
            # role-change guard by address too (a renamed host moved to the other list).
            if not args.checked:
                check(plain)
            check_roles(record, plain.all_nodes())

        super().__init__(CLUSTER_TYPE, name, None, opts)
        names = ChildNames.of(name, args.name_prefix)
        previous = read_previous(record)
        backend = SshBackend(args, names, once_known, retired_before(previous, CLEANUP))
        self._build(name, backend, backend.k3s, args.cluster_name or name, record, previous)


def _checker(args: K3sClusterArgs) -> Callable[[inputs.Plain], None]:
    """The ssh topology's validators over the args' settings (addresses plain or not: what
    is an Output is skipped, and checked by the same call once known)."""
    optional = {
        "sshPrivateKey": args.private_key,
        "sshPrivateKeyPassword": args.private_key_password,
        "datastoreEndpoint": args.datastore_endpoint,
        "etcdS3AccessKey": args.etcd_s3_access_key,
        "etcdS3SecretKey": args.etcd_s3_secret_key,
        "proxyCredentials": args.proxy_credentials,
        "newToken": args.new_token,
        "registryAuth": args.registry_auth,
    }
    secrets = ["token", *(key for key, value in optional.items() if value is not None)]

    def check(plain: inputs.Plain) -> None:
        site = SshSite(
            ssh=args.ssh, servers=tuple(plain.servers), agents=tuple(plain.agents), agent_pools=tuple(plain.pools)
        )
        settings = validate_args.settings_of(site, k3s=plain.k3s, secrets=secrets)
        validate_args.check(settings, by_topology.SSH, ["ssh.bastion.user"] if args.ssh.bastion else [])

    return check
