"""The rules of rules.py as pulumi-policy policies (the pack's wiring).

`plain` turns the engine's view of a resource (pulumi-policy's unknown-checking proxies)
into plain data, with rules.UNKNOWN for what preview does not know yet, so that one unknown
value skips one check instead of the whole policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from . import rules

PACK_NAME = "k3s-rancher"
Check = Callable[[str, Mapping[str, Any]], list[str]]


def plain(value: Any) -> Any:
    """A copy of `value` without proxies; unknown values become rules.UNKNOWN."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in value:
            try:
                out[key] = plain(value[key])
            except UnknownValueError:
                out[key] = rules.UNKNOWN
        return out
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items: list[Any] = []
        for i in range(len(value)):
            try:
                items.append(plain(value[i]))
            except UnknownValueError:
                items.append(rules.UNKNOWN)
        return items
    return value


def _resource_policy(
    name: str, description: str, check: Check, level: EnforcementLevel, remediation: str
) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(args.resource_type, plain(args.props)):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=level,
        remediation_steps=remediation,
    )


def _validate_secret_output(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    hidden = list(args.opts.additional_secret_outputs) if args.opts else []
    for message in rules.check_secret_output_hidden(args.resource_type, plain(args.props), hidden):
        report_violation(message, None)


def _validate_stack(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    resources = [(r.resource_type, r.urn, plain(r.props)) for r in args.resources]
    for urn, message in rules.check_one_k3s_version(resources):
        report_violation(message, urn)


MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY

POLICIES: list[Policy] = [
    _resource_policy(
        "k3s-version-pinned",
        "K3s is installed at an exact release (k3s.version such as v1.33.5+k3s1), never a channel or latest.",
        rules.check_k3s_version_pinned,
        MANDATORY,
        "Set k3s-rancher:k3s.version to an exact release that the Rancher version supports.",
    ),
    _resource_policy(
        "k3s-secrets-off-the-command-line",
        "Cluster tokens and datastore endpoints reach hosts on stdin or in 0600 files, never in command "
        "text, arguments, environment or config text.",
        rules.check_secrets_off_the_command_line,
        MANDATORY,
        "Keep secrets in the secret config keys (token, datastoreEndpoint); remove --token/--datastore-endpoint "
        "from serverArgs/agentArgs and serverConfig/agentConfig.",
    ),
    _resource_policy(
        "rancher-serves-tls",
        "Rancher is served over TLS (ingress.tls.source rancher, letsEncrypt or secret) and reached over https://.",
        rules.check_rancher_serves_tls,
        MANDATORY,
        "Use rancher.tls (rancher, letsEncrypt or secret); do not set tls: external or ingress.enabled: false "
        "in rancher.values.",
    ),
    _resource_policy(
        "kubeconfig-not-world-readable",
        "The admin kubeconfig K3s writes stays 0600 (write-kubeconfig-mode never lets other users read it).",
        rules.check_kubeconfig_not_world_readable,
        MANDATORY,
        "Remove write-kubeconfig-mode from serverArgs/serverConfig; use the kubeconfig stack output instead.",
    ),
    _resource_policy(
        "commands-no-previous-output-in-env",
        "Every command sets addPreviousOutputInEnv false (the default sends the previous output to the "
        "command's environment on each update and delete: a setenv warning against a stock sshd, the "
        "output shipped to the host where sshd accepts it).",
        rules.check_no_previous_output_in_env,
        MANDATORY,
        "Pass add_previous_output_in_env=False to every pulumi_command Command.",
    ),
    _resource_policy(
        "sudo-non-interactive",
        "Commands use `sudo -n`: a password prompt would read stdin, where the secrets are.",
        rules.check_sudo_non_interactive,
        MANDATORY,
        "Give the SSH user passwordless sudo and run commands through `sudo -n`.",
    ),
    ResourceValidationPolicy(
        name="secret-command-output-hidden",
        description="A command that prints a secret (the admin kubeconfig) has logging none and its "
        "stdout/stderr in additionalSecretOutputs.",
        validate=_validate_secret_output,
        enforcement_level=MANDATORY,
        remediation_steps="Set logging=Logging.NONE and additional_secret_outputs=['stdout', 'stderr'].",
    ),
    _resource_policy(
        "ssh-host-keys-checked",
        "SSH connections check the host's key (unset: any host answering at that address is trusted).",
        rules.check_ssh_host_keys,
        ADVISORY,
        "Set k3s-rancher:ssh.hostKeys (host -> 'ssh-ed25519 AAAA...', from ssh-keyscan) and ssh.bastion.hostKey.",
    ),
    StackValidationPolicy(
        name="one-k3s-version",
        description="Every node of the stack runs the same K3s release.",
        validate=_validate_stack,
        enforcement_level=MANDATORY,
        remediation_steps="Set one k3s-rancher:k3s.version for the whole stack.",
    ),
]
