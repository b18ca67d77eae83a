"""Rancher on the cluster (rancher.mode helm): cert-manager and Rancher as Helm releases
through the cluster's kubernetes Provider, and, if asked, Rancher's first login by code.

The graph: cluster ready -> kubernetes Provider -> namespaces -> cert-manager release
(when the TLS source needs it) -> Rancher release -> (rancher.bootstrap) rancher2 Bootstrap.

Why helm.v3.Release and not helm.v4.Chart:
- Release is a real `helm install/upgrade --wait`: Rancher ends up as the Helm release
  `rancher` in cattle-system, which is what Rancher's own upgrade docs, its UI and
  `helm -n cattle-system upgrade rancher` expect. Chart v4 renders the templates and applies
  each object as a Pulumi resource: no Helm release exists, and chart hooks (cert-manager's
  startupapicheck, Rancher's post-delete cleanup) become plain objects.
- Chart v4 renders at preview time and needs the cluster (CRDs, API versions) then; on the
  first preview of a new stack there is no cluster yet. Release needs only the chart at
  preview (a repository URL, or a local archive for airgap) and the cluster at `up`.
- Release's own wait is the readiness gate: `up` finishes when every Deployment is
  Available, so whatever depends on the release (bootstrap, exports) sees a running Rancher.

Readiness and failure: both releases wait (skip_await off) for at most rancher.timeout
seconds (default 900: Helm's 300 s default is too short for Rancher's first image pulls)
and are atomic: a failed first install is uninstalled and a failed upgrade rolled back, so
the next `pulumi up` converges. A failed non-atomic first install would stay behind as a
failed release that the next run cannot install over ("cannot re-use a name that is still
in use") or upgrade ("has no deployed releases") without a manual `helm uninstall`.

Teardown: every resource on the cluster has `deleted_with` the cluster's ready command, so
`pulumi destroy` of the whole stack drops them from state instead of waiting on Helm
uninstall and namespace finalizers of a cluster that is being uninstalled anyway. Turning
Rancher off (rancher.enabled false) on a live cluster still uninstalls it normally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_rancher2 as rancher2
import pulumi_random as random

from .charts import ChartSource, chart_source, deep_merge
from .naming import ChildNames
from .settings import NAMESPACE, K3sSettings, KubeconfigSite, RancherSettings, clears_cacerts
from .validation import args as validate_args
from .validation import rancher as validate_rancher

RANCHER_TYPE = "k3s-rancher:index:RancherDeployment"
RANCHER_RELEASE = "rancher"  # Rancher's chart and docs require this release name.
RANCHER_NAMESPACE = "cattle-system"
CERT_MANAGER_RELEASE = "cert-manager"
CERT_MANAGER_NAMESPACE = "cert-manager"
TLS_SECRET = "tls-rancher-ingress"  # the chart's ingress.tls.secretName default
CA_SECRET = "tls-ca"  # read by the chart when privateCA is true
PASSWORD_LENGTH = 24  # Rancher's password-min-length setting defaults to 12


@dataclass(frozen=True)
class RancherOutputs:
    """What every Rancher mode hands on to the stack outputs."""

    url: str
    version: str
    bootstrap_password: pulumi.Output[str]
    cert_manager_version: str | None = None
    admin_password: pulumi.Output[str] | None = None


def needs_cert_manager(r: RancherSettings) -> bool:
    """cert-manager issues the ingress certificate for tls rancher and letsEncrypt; with
    tls secret the certificate is ours and Rancher's docs skip cert-manager."""
    return r.tls in ("rancher", "letsEncrypt")


def publicly_trusted(r: RancherSettings) -> bool:
    """Whether the ingress certificate chains to a public CA (agents then use the system store)."""
    if r.tls == "letsEncrypt":
        return r.lets_encrypt_environment == "production"
    return r.tls == "secret" and not r.private_ca


def rancher_values(r: RancherSettings, bootstrap_password: pulumi.Input[str]) -> dict[str, Any]:
    """The Rancher chart's values for these settings, rancher.values deep-merged over them."""
    tls: dict[str, Any] = {"source": r.tls}
    values: dict[str, Any] = {
        "hostname": r.hostname,
        "replicas": r.replicas,
        "bootstrapPassword": bootstrap_password,
        "ingress": {"ingressClassName": r.ingress_class_name, "tls": tls},
    }
    if r.tls == "letsEncrypt":
        values["letsEncrypt"] = {
            "email": r.lets_encrypt_email,
            "environment": r.lets_encrypt_environment,
            "ingress": {"class": r.ingress_class_name},
        }
    if r.tls == "secret":
        tls["secretName"] = TLS_SECRET
        if r.private_ca:
            values["privateCA"] = True
    if clears_cacerts(r):
        # Fresh installs of Rancher >= 2.9 default to agent-tls-mode strict, where downstream
        # agents trust only the CA in the `cacerts` setting, which --no-cacerts leaves empty: no
        # agent could connect. system-store makes them use their trust store, which holds the
        # public CAs (Rancher docs, TLS settings, "Agent TLS Enforcement"; rancher/rancher#45909:
        # "--no-cacerts and agent-tls-mode=strict -- as expected, nothing works"). Let's Encrypt
        # staging chains to a root no trust store holds: agents cannot connect either way
        # (RancherDeployment warns), and system-store keeps the switch to production to one key.
        values["agentTLSMode"] = "system-store"
    if r.system_default_registry:
        values["systemDefaultRegistry"] = r.system_default_registry
        values["useBundledSystemChart"] = True  # airgap: system charts from the image
    return deep_merge(values, r.values)


def cert_manager_values(r: RancherSettings) -> dict[str, Any]:
    # crds.enabled (cert-manager >= 1.15) installs the CRDs with the chart; crds.keep
    # (default true) keeps them, and so every Certificate, when the release is removed.
    return deep_merge({"crds": {"enabled": True}}, r.cert_manager.values)


def rancher_bootstrap_password(
    given: pulumi.Input[str] | None, parent: pulumi.Resource | None = None, names: ChildNames | None = None
) -> pulumi.Output[str]:
    """Rancher's bootstrap password: the rancherBootstrapPassword secret, else generated
    (kept secret in state). Letters and digits only, so it survives any shell or form."""
    if given is not None:
        return pulumi.Output.secret(given)
    name, opts = (names or ChildNames()).child("rancher-bootstrap-password", pulumi.ResourceOptions(parent=parent))
    generated = random.RandomPassword(name, length=PASSWORD_LENGTH, special=False, opts=opts)
    return pulumi.Output.secret(generated.result)


@dataclass(frozen=True)
class RancherDeploymentArgs:
    """What RancherDeployment needs: the Rancher settings, the cluster's kubernetes Provider
    (which must wait for the cluster's readiness: every child that uses it then waits for
    the cluster), and the secrets (generated where unset)."""

    settings: RancherSettings
    provider: k8s.Provider
    # The resource whose deletion takes the cluster with it (a cluster's `ready`): on a
    # destroy of everything, the releases are dropped from state instead of uninstalled.
    deleted_with: pulumi.Resource | None = None
    bootstrap_password: pulumi.Input[str] | None = None
    # The private key of rancher.tlsCert (rancher.tls secret).
    tls_key: pulumi.Input[str] | None = None
    # What the children's names start with (`<prefix>rancher-release`...). None: the
    # component's name and a dash, with an alias to each child's unprefixed name (as releases
    # before 0.3.0 named it), so that Rancher deployments on several clusters fit in one
    # program. The stack program gives "" (its resources keep their names, no alias).
    name_prefix: str | None = None
    # True: parse_settings built and checked `settings` (the stack program). False: the
    # component runs the rancher validators on them (components/validation/args.py); what
    # needs the cluster's K3s settings (Rancher against the K3s version, a disabled Traefik)
    # is parse_settings's only.
    checked: bool = False


class RancherDeployment(pulumi.ComponentResource):
    """cert-manager and Rancher (Helm) on a Ready cluster, reached through `args.provider`."""

    def __init__(self, name: str, args: RancherDeploymentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        if not args.checked:
            _check(args)
        super().__init__(RANCHER_TYPE, name, None, opts)
        settings = args.settings
        self._settings = settings
        self._provider = args.provider
        self._deleted_with = args.deleted_with
        self._names = ChildNames.of(name, args.name_prefix)
        tls_key = args.tls_key
        r = settings

        self.bootstrap_password = rancher_bootstrap_password(args.bootstrap_password, self, self._names)
        self.cert_manager: k8s.helm.v3.Release | None = None
        after: list[pulumi.Resource] = []
        if needs_cert_manager(r):
            cm_namespace = self._namespace(f"{CERT_MANAGER_NAMESPACE}-namespace", CERT_MANAGER_NAMESPACE)
            self.cert_manager = self._release(
                f"{CERT_MANAGER_RELEASE}-release",
                release_name=CERT_MANAGER_RELEASE,
                namespace=cm_namespace.metadata.name,
                source=chart_source(r.cert_manager.chart_repo, "cert-manager", r.cert_manager.version),
                values=cert_manager_values(r),
                after=[],
            )
            # The release waits for the webhook Deployment and for the startupapicheck hook
            # Job, which succeeds only once the webhook admits a Certificate: Rancher's
            # Issuer/Certificate objects are then accepted on the first try.
            after.append(self.cert_manager)

        namespace = self._namespace(f"{RANCHER_NAMESPACE}-namespace", RANCHER_NAMESPACE)
        if r.tls == "secret":
            after += self._tls_secrets(namespace, tls_key)

        self.release = self._release(
            f"{RANCHER_RELEASE}-release",
            release_name=RANCHER_RELEASE,
            namespace=namespace.metadata.name,
            source=chart_source(r.chart_repo, "rancher", r.version),
            values=rancher_values(r, self.bootstrap_password),
            after=after,
        )
        if r.tls == "letsEncrypt" and r.lets_encrypt_environment == "staging":
            pulumi.log.warn(
                f"{NAMESPACE}:rancher.letsEncryptEnvironment staging: Let's Encrypt's staging certificates chain to a "
                "root that no trust store holds, and Rancher's chart runs Rancher without a CA (--no-cacerts) for "
                "letsEncrypt: agents of downstream clusters cannot verify Rancher in either agent-tls-mode, so no "
                "cluster can be imported or created. Use staging to try the install (the browser warns), then set "
                "production before adding clusters.",
                resource=self.release,
            )
        if not pulumi.runtime.is_dry_run():
            pulumi.log.info(
                f"Helm waits up to {r.timeout} s for Rancher ({RANCHER_NAMESPACE}/{RANCHER_RELEASE}) to be "
                "available; on a timeout Helm undoes the install (rolls back an upgrade) and the next `pulumi up` "
                "retries. Slow image pulls: raise "
                f"{NAMESPACE}:rancher.timeout; otherwise see `kubectl -n {RANCHER_NAMESPACE} get pods,events`.",
                resource=self.release,
            )

        self.admin_password: pulumi.Output[str] | None = None
        if r.bootstrap:
            self.admin_password = self._bootstrap()

        self.outputs = RancherOutputs(
            url=r.url,
            version=r.version,
            bootstrap_password=self.bootstrap_password,
            cert_manager_version=r.cert_manager.version if self.cert_manager else None,
            admin_password=self.admin_password,
        )
        self.register_outputs(
            {
                "url": r.url,
                "version": r.version,
                "releaseStatus": self.release.status,
                "bootstrapPassword": self.bootstrap_password,
                **({"adminPassword": self.admin_password} if self.admin_password is not None else {}),
            }
        )

    def _on_cluster(
        self, name: str, depends_on: list[pulumi.Resource] | None = None
    ) -> tuple[str, pulumi.ResourceOptions]:
        """The child's name (prefixed, see components/naming.py) and its options on the cluster."""
        return self._names.child(
            name,
            pulumi.ResourceOptions(
                parent=self, provider=self._provider, deleted_with=self._deleted_with, depends_on=depends_on or []
            ),
        )

    def _namespace(self, name: str, namespace: str) -> k8s.core.v1.Namespace:
        name, opts = self._on_cluster(name)
        return k8s.core.v1.Namespace(name, metadata=k8s.meta.v1.ObjectMetaArgs(name=namespace), opts=opts)

    def _release(
        self,
        name: str,
        *,
        release_name: str,
        namespace: pulumi.Input[str],
        source: ChartSource,
        values: dict[str, Any],
        after: list[pulumi.Resource],
    ) -> k8s.helm.v3.Release:
        name, opts = self._on_cluster(name, after)
        return k8s.helm.v3.Release(
            name,
            name=release_name,
            namespace=namespace,
            chart=source.chart,
            version=source.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=source.repo) if source.repo else None,
            values=values,
            # Helm waits for every Deployment/Job; bounded by rancher.timeout, then atomic
            # uninstalls a failed first install (or rolls back an upgrade) so a re-run converges.
            atomic=True,
            cleanup_on_fail=True,
            wait_for_jobs=True,
            timeout=self._settings.timeout,
            opts=opts,
        )

    def _tls_secrets(
        self, namespace: k8s.core.v1.Namespace, tls_key: pulumi.Input[str] | None
    ) -> list[pulumi.Resource]:
        r = self._settings
        if tls_key is None or r.tls_cert is None:
            raise ValueError(f"{NAMESPACE}:rancher.tls secret needs rancher.tlsCert and the rancherTlsKey secret")
        key: pulumi.Output[str] = pulumi.Output.secret(tls_key)
        name, opts = self._on_cluster("rancher-tls-ingress")
        secrets: list[pulumi.Resource] = [
            k8s.core.v1.Secret(
                name,
                metadata=k8s.meta.v1.ObjectMetaArgs(name=TLS_SECRET, namespace=namespace.metadata.name),
                type="kubernetes.io/tls",
                string_data={"tls.crt": r.tls_cert, "tls.key": key},
                opts=opts,
            )
        ]
        if r.private_ca:
            name, opts = self._on_cluster("rancher-tls-ca")
            secrets.append(
                k8s.core.v1.Secret(
                    name,
                    metadata=k8s.meta.v1.ObjectMetaArgs(name=CA_SECRET, namespace=namespace.metadata.name),
                    type="Opaque",
                    string_data={"cacerts.pem": r.private_ca},
                    opts=opts,
                )
            )
        return secrets

    def _bootstrap(self) -> pulumi.Output[str]:
        """Rancher's first login by code: log in with the bootstrap password, set the admin
        password and the server-url setting (= the provider's api_url)."""
        r = self._settings
        names = self._names
        name, opts = names.child("rancher-admin-password", pulumi.ResourceOptions(parent=self))
        admin = random.RandomPassword(name, length=PASSWORD_LENGTH, special=False, opts=opts)
        admin_password: pulumi.Output[str] = pulumi.Output.secret(admin.result)
        # The ingress certificate of tls rancher comes from Rancher's own CA (not known before
        # Rancher runs), and Let's Encrypt staging is untrusted: those two skip verification.
        # A private CA is given as ca_certs; public certificates are verified.
        insecure = r.tls == "rancher" or (r.tls == "letsEncrypt" and not publicly_trusted(r))
        name, opts = names.child(
            "rancher-bootstrap-provider", pulumi.ResourceOptions(parent=self, depends_on=[self.release])
        )
        provider = rancher2.Provider(
            name,
            api_url=r.url,
            bootstrap=True,
            insecure=insecure,
            ca_certs=r.private_ca,
            timeout=f"{r.timeout}s",
            opts=opts,
        )
        name, opts = names.child(
            "rancher-admin",
            pulumi.ResourceOptions(
                parent=self, provider=provider, depends_on=[self.release], deleted_with=self._deleted_with
            ),
        )
        rancher2.Bootstrap(name, initial_password=self.bootstrap_password, password=admin_password, opts=opts)
        return admin_password


def _check(args: RancherDeploymentArgs) -> None:
    """The rancher validators over hand-built args, before anything is registered."""
    optional = {"rancherBootstrapPassword": args.bootstrap_password, "rancherTlsKey": args.tls_key}
    settings = validate_args.settings_of(
        KubeconfigSite(),
        k3s=K3sSettings(version=""),
        rancher=args.settings,
        secrets=[key for key, value in optional.items() if value is not None],
    )
    validate_args.check(settings, [validate_rancher.problems])
