"""This stack's own outputs from its previous run, read synchronously at program start.

Used for each cluster's record (components/cluster_record.py: the quorum rule and the
kubeconfig renewal marker) and the program's other checks (components/program.py). A
synchronous read, not a StackReference resource: a refusal can come before any resource
exists, and the read can be retried, which a resource read cannot.
"""

from __future__ import annotations

import time
from typing import Any

import pulumi

READ_ATTEMPTS = 5
RETRY_SECONDS = 0.5


def own_previous_outputs() -> dict[str, Any]:
    """This stack's outputs from its previous run (empty on the first), through the engine's
    builtin `pulumi:pulumi:readStackOutputs` (pulumi/pulumi pkg/resource/deploy/builtins.go)."""
    stack = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    # The file backend answers "failed to load checkpoint: EOF" when the read meets the engine
    # writing the checkpoint: gocloud.dev/blob/fileblob renames the data file atomically but
    # rewrites its `.attrs` sidecar in place (attrs.go setAttrs: os.Create, then encode), and
    # the reader decodes that sidecar first. The window is microseconds: a few short retries,
    # then the error stands. (A StackReference to this stack met the same race and failed the up.)
    for attempt in range(READ_ATTEMPTS):
        try:
            result = pulumi.runtime.invoke("pulumi:pulumi:readStackOutputs", {"name": stack})
            break
        except Exception:
            if attempt == READ_ATTEMPTS - 1:
                raise
            time.sleep(RETRY_SECONDS)
    outputs = (result.value or {}).get("outputs")
    return dict(outputs) if isinstance(outputs, dict) else {}
