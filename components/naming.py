"""How a component names its children so that many instances fit in one program.

A child's name is the component's prefix + the name every release before 0.3.0 gave it
(`<node>-install`, `rancher-release`). A library user's component has its own name and a dash
as the prefix (two clusters with alike node names, two Rancher deployments, no URN collision),
and each renamed child carries an alias to its old name: a stack made by an earlier release
keeps its resources (the engine finds the old URN through the alias: nothing is replaced or
created again). The stack program's components have the empty prefix: their URNs are exactly
those of earlier releases, with no alias, so its stacks see no change at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi


@dataclass(frozen=True)
class ChildNames:
    prefix: str = ""

    @classmethod
    def of(cls, component: str, prefix: str | None) -> ChildNames:
        """`prefix` as given; None: the component's name and a dash."""
        return cls(f"{component}-" if prefix is None else prefix)

    def child(self, base: str, opts: pulumi.ResourceOptions) -> tuple[str, pulumi.ResourceOptions]:
        """The name of the child called `base` before 0.3.0, and `opts` with its alias."""
        if not self.prefix:
            return base, opts
        alias = pulumi.ResourceOptions(aliases=[pulumi.Alias(name=base)])
        return f"{self.prefix}{base}", pulumi.ResourceOptions.merge(opts, alias)
