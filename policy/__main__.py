"""Entry point the Pulumi CLI runs for `pulumi preview --policy-pack policy`.

The CLI runs this file as a top-level script with this directory first on sys.path, under
whatever name the directory has: `pulumi policy publish` packs it as `package`. The rules are
a package with relative imports (the tests import it as `policy`), so it is loaded here from
this directory under one fixed name with importlib: nothing depends on the directory's name,
its parent, or an edit of sys.path.
"""

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from pulumi_policy import EnforcementLevel, PolicyPack

PACKAGE = "k3s_rancher_policy"


def load_rules() -> ModuleType:
    """This directory as the package PACKAGE; its `pack` module."""
    here = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location(PACKAGE, here / "__init__.py", submodule_search_locations=[str(here)])
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{PACKAGE}.pack")


rules = load_rules()

PolicyPack(
    name=rules.PACK_NAME,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=rules.POLICIES,
    description="Guardrails for k3s-rancher stacks: pinned K3s, secrets off the command line, TLS for Rancher.",
)
