"""Entry point the Pulumi CLI runs for `pulumi preview --policy-pack policy`.

The CLI runs this directory with runpy (this directory first on sys.path); the rules live
in the `policy` package beside it, so its parent directory goes on sys.path too.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policy.pack import PACK_NAME, POLICIES

PolicyPack(
    name=PACK_NAME,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
    description="Guardrails for k3s-rancher stacks: pinned K3s, secrets off the command line, TLS for Rancher.",
)
