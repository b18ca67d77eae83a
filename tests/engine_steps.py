"""STAND-IN for the order in which the Pulumi engine deletes and creates when resources are
replaced or removed, computed from two mock runs (before and after a config change).

Pulumi decides from inputs: the same inputs mean nothing runs; a changed `triggers` replaces a
command (pulumi-command marks only `triggers` replaceOnChanges); any other change updates it.
`engine_steps` imitates pulumi/pulumi pkg/resource/deploy/step_generator.go (generateSteps: the
deleteBeforeReplace branch, and calculateDependentReplacements) and ScheduleDeletes (deletes
of removed resources run dependents first). Used by test_identity.py and test_topologies.py.
"""

from __future__ import annotations

from tests.harness import Registration, Run

REMOTE = "command:remote:Command"
COPY = "command:remote:CopyToRemote"

Step = tuple[str, str]  # ("delete" | "create", resource name)


def _replaced(old: Registration, new: Registration) -> bool:
    """pulumi-command replaces on a `triggers` change only (its one replaceOnChanges input)."""
    return old.type in (REMOTE, COPY) and old.plain().get("triggers") != new.plain().get("triggers")


def engine_steps(before: Run, after: Run) -> list[Step]:
    """STAND-IN for the engine's delete/create order for replaced and removed resources.

    Imitates pulumi/pulumi pkg/resource/deploy/step_generator.go: when a resource with
    delete_before_replace must be replaced, the engine first deletes, dependents first, the
    not-yet-registered resources of the OLD graph that depend on it through a property that
    would force their own replacement (calculateDependentReplacements: it sets those inputs to
    unknown and asks the provider's Diff; for pulumi-command that is `triggers`); a plain
    depends_on edge does not count. Resources already deleted that way are only created when
    they register. Resources no longer in the program are deleted at the end, dependents
    first (ScheduleDeletes)."""
    old = {r.name: r for r in before.registrations}
    old_by_urn = {r.urn: r for r in before.registrations}
    steps: list[Step] = []
    deleted: set[str] = set()
    registered: set[str] = set()
    replaced_later: list[str] = []  # create-before-delete: the old one goes at the end
    for new in after.registrations:  # the SDK registers a resource after its dependencies
        previous = old.get(new.name)
        if previous is not None and new.name in deleted:
            steps.append(("create", new.name))
        elif previous is not None and _replaced(previous, new) and not new.options["deleteBeforeReplace"]:
            # Only CopyToRemote here: it has no delete (pulumi-command copyController.go), so
            # its old self going last runs nothing on the host.
            assert new.type == COPY, f"{new.name} would be created before its old self is deleted"
            steps.append(("create", new.name))
            replaced_later.append(new.name)
        elif previous is not None and _replaced(previous, new):
            replace_set = {previous.urn}
            chain: list[str] = []
            for candidate in before.registrations:  # old graph, dependency order
                if candidate.name in registered or candidate.name == new.name:
                    continue
                sources = set(candidate.property_dependencies.get("triggers", []))
                if sources & replace_set:
                    replace_set.add(candidate.urn)
                    chain.append(candidate.name)
            for name in [*reversed(chain), new.name]:
                if name not in deleted:
                    steps.append(("delete", name))
                    deleted.add(name)
            steps.append(("create", new.name))
        elif previous is None:
            steps.append(("create", new.name))
        registered.add(new.name)
    removed = [r for r in before.registrations if r.name not in registered]
    # Dependents first: a removed resource is deleted before anything it depended on.
    order: list[str] = []
    pending = {r.urn for r in removed}
    while pending:
        ready = [
            urn
            for urn in pending
            if not any(urn in old_by_urn[o].dependencies for o in pending if o != urn)
            and not any(old_by_urn[o].parent == urn for o in pending)
        ]
        assert ready, "a dependency cycle among removed resources"
        for urn in sorted(ready, key=lambda u: [r.urn for r in before.registrations].index(u)):
            order.append(old_by_urn[urn].name)
            pending.discard(urn)
    steps += [("delete", name) for name in replaced_later + order]
    return steps


def node_steps(steps: list[Step], node: str, kinds: tuple[str, ...]) -> list[Step]:
    names = {f"{node}-{kind}" for kind in kinds}
    return [step for step in steps if step[1] in names or step[1].startswith(f"{node}-airgap-")]
