"""README.md, docs/, Pulumi.yaml and the stack files say what the code does.

- every stack file loads and validates (with test values for the secrets it needs);
- every key a stack file uses is in the schema and in the config table (docs/configuration.md);
- the config and secrets tables are the ones rendered from the schema/Pulumi.yaml;
- every top-level key and secret is declared in Pulumi.yaml with a description, and the
  description of each object setting lists exactly the keys the schema has for it;
- the README starts with the two set-up commands, bin/up-local and bin/test;
- docs/configuration.md names every output the program exports;
- every section of docs/ is linked from the README, and every link between them resolves.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config import parse_settings
from components.schema import load_schema
from components.settings import NAMESPACE, SECRET_KEYS, ConfigError
from tools import docs_table

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIG_DOC = DOCS / "configuration.md"  # the generated tables and the outputs
CI_DOC = DOCS / "ci.md"  # previews, the stacks, CI and the policy pack
STACK_FILES = sorted((ROOT / "stacks").glob("Pulumi.*.yaml"))


def readme() -> str:
    return README.read_text()


def doc(path: Path) -> str:
    return path.read_text()


def stack_name(path: Path) -> str:
    return path.name[len("Pulumi.") : -len(".yaml")]


def stack_config(path: Path) -> tuple[dict[str, Any], set[str]]:
    """The stack file's non-secret objects (keys without the namespace) and its secret keys."""
    data = yaml.safe_load(path.read_text()) or {}
    raw: dict[str, Any] = {}
    secrets: set[str] = set()
    for key, value in (data.get("config") or {}).items():
        namespace, _, name = key.partition(":")
        assert namespace == NAMESPACE, f"{path.name}: {key} is not in the {NAMESPACE} namespace"
        if isinstance(value, dict) and set(value) == {"secure"}:
            secrets.add(name)
        else:
            raw[name] = value
    return raw, secrets


def setup_commands() -> list[str]:
    """The commands of the README's first code block, which sits in its first section."""
    text = readme()
    first_section = text.split("\n## ", 2)[1]
    assert first_section.lower().startswith("set"), "the README starts with set-up"
    block = re.search(r"^```(?:sh|bash|console|shell)?\n(.*?)^```", first_section, re.M | re.S)
    assert block, "the set-up section has a code block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


# --- stack files -------------------------------------------------------------------------


@pytest.mark.parametrize("path", STACK_FILES, ids=stack_name)
def test_every_stack_file_validates(path: Path) -> None:
    raw, secrets = stack_config(path)
    assert not secrets - set(SECRET_KEYS), f"{path.name}: unknown secret keys"
    try:
        settings = parse_settings(raw, secrets, stack_name(path))
    except ConfigError as error:
        # What may be missing is a secret the user sets with `pulumi config set --secret`,
        # never a setting: retry with test values for exactly those secrets.
        missing = {key.partition(":")[2] for key in error.keys}
        assert missing <= set(SECRET_KEYS), str(error)
        text = path.read_text()
        for key in missing:
            assert f"--secret {key}" in text, f"{path.name} needs {key}: show how to set it in a comment"
        settings = parse_settings(raw, secrets | missing, stack_name(path))
    assert settings.stack == stack_name(path)


def schema_keys(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], prefix: str) -> Iterator[str]:
    """Key paths (`k3s.timeouts.nodeReady`, `servers[].name`) a config value uses, in the
    README table's notation; free-form objects (serverConfig, values, labels, ...) stop."""
    schema, _ = docs_table._resolve(schema, root)
    if isinstance(value, dict) and schema.get("properties"):
        for name, sub_value in value.items():
            key = f"{prefix}{name}"
            yield key
            sub = schema["properties"].get(name)
            if sub is not None:
                yield from schema_keys(sub_value, sub, root, f"{key}.")
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            yield from schema_keys(item, schema["items"], root, prefix[:-1] + "[].")


@pytest.mark.parametrize("path", STACK_FILES, ids=stack_name)
def test_every_key_a_stack_uses_is_in_the_schema_and_the_config_table(path: Path) -> None:
    raw, secrets = stack_config(path)
    documented = {row.key for row in docs_table.config_rows(load_schema())}
    used = set(schema_keys(raw, load_schema(), load_schema(), ""))
    assert used, f"{path.name} sets no keys"
    assert not used - documented, f"{path.name}: keys not in the schema/docs: {sorted(used - documented)}"
    table = docs_table.between(doc(CONFIG_DOC), docs_table.CONFIG_MARKERS)
    for key in used:
        assert f"| `{key}` |" in table
    secrets_table = docs_table.between(doc(CONFIG_DOC), docs_table.SECRETS_MARKERS)
    for key in secrets:
        assert f"| `{key}` |" in secrets_table


# --- the generated tables ----------------------------------------------------------------


def test_config_table_is_the_one_rendered_from_the_schema() -> None:
    wanted = docs_table.render_config_table(load_schema())
    assert docs_table.between(doc(CONFIG_DOC), docs_table.CONFIG_MARKERS) == wanted, (
        "docs/configuration.md's config table is stale: run `.venv/bin/python -m tools.docs_table`"
    )


def test_secrets_table_is_the_one_rendered_from_pulumi_yaml() -> None:
    wanted = docs_table.render_secrets_table(yaml.safe_load((ROOT / "Pulumi.yaml").read_text()), SECRET_KEYS)
    assert docs_table.between(doc(CONFIG_DOC), docs_table.SECRETS_MARKERS) == wanted, (
        "docs/configuration.md's secrets table is stale: run `.venv/bin/python -m tools.docs_table`"
    )


def test_the_tables_are_generated_where_the_docs_map_says() -> None:
    """tools/docs_table.py writes the file the README links as the config reference, and that
    file is the only one holding the generated tables."""
    assert docs_table.CONFIG_DOC == CONFIG_DOC
    assert "docs/configuration.md#config-reference" in readme()
    holding = [
        path.name
        for path in [README, *sorted(DOCS.glob("*.md"))]
        if any(marker in path.read_text() for marker in (*docs_table.CONFIG_MARKERS, *docs_table.SECRETS_MARKERS))
    ]
    assert holding == ["configuration.md"]


def test_the_table_has_every_key_of_the_schema_with_a_description() -> None:
    rows = docs_table.config_rows(load_schema())
    keys = [row.key for row in rows]
    assert len(keys) == len(set(keys))
    # Spot checks of the walk itself: top-level, nested, list items, $ref'd node fields.
    assert {"topology", "k3s.timeouts.nodeReady", "servers[].ssh.hostKey", "agents[].taints"} <= set(keys)
    assert {"rancher.certManager.version", "ssh.bastion.host", "docker.httpPorts"} <= set(keys)
    undocumented = [row.key for row in rows if not row.description.strip()]
    assert not undocumented, f"schema keys without a description: {undocumented}"


def test_rendering_is_pure_and_escapes_table_syntax() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"description": "x | y\nz", "enum": ["p", "q"], "default": "p"},
            "b": {
                "type": "object",
                "required": ["c"],
                "properties": {"c": {"type": "integer", "minimum": 1, "maximum": 9, "description": "c"}},
            },
            "l": {"type": "array", "items": {"$ref": "#/$defs/n"}, "default": [], "description": "l"},
        },
        "$defs": {"n": {"type": "object", "properties": {"m": {"type": "string", "description": "m"}}}},
    }
    table = docs_table.render_config_table(schema)
    assert table == docs_table.render_config_table(schema)
    assert "| `a` | one of `p`, `q` | `p` | x \\| y z |" in table
    assert "| `b.c` | integer 1..9 | required | c |" in table
    assert "| `l` | list of n | `[]` | l |" in table
    assert "| `l[].m` | string | — | m |" in table


# --- Pulumi.yaml -------------------------------------------------------------------------


def test_every_top_level_key_and_secret_is_declared_in_pulumi_yaml() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    declared = project["config"]
    wanted = [*load_schema()["properties"], *SECRET_KEYS]
    for key in wanted:
        entry = declared.get(f"{NAMESPACE}:{key}")
        assert isinstance(entry, dict), f"Pulumi.yaml does not declare {NAMESPACE}:{key}"
        assert str(entry.get("description", "")).strip(), f"{NAMESPACE}:{key} has no description"
    for key in wanted:
        # A declared key without a default is required by the CLI; empty means "not set".
        assert "default" in declared[f"{NAMESPACE}:{key}"], f"{key} has no default: the CLI would require it"
    for key in SECRET_KEYS:
        # `secret: true` with an empty default is refused by the CLI; the program itself
        # refuses a secret stored as plain text (tests/test_secrets.py).
        assert declared[f"{NAMESPACE}:{key}"]["default"] == ""
    extra = {k.partition(":")[2] for k in declared} - set(wanted)
    assert not extra, f"Pulumi.yaml declares keys the program does not read: {sorted(extra)}"
    assert project.get("stackConfigDir") == "stacks"


def schema_key_paths(schema: Mapping[str, Any], root: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Every key under an object of the schema, nested keys as `a.b`; a list's items and a
    $ref are looked through (servers: name, ssh.host, ...); maps (additionalProperties) end."""
    schema, _ = docs_table._resolve(schema, root)
    if schema.get("type") == "array":
        return schema_key_paths(schema.get("items", {}), root, prefix)
    paths: set[str] = set()
    for name, sub in schema.get("properties", {}).items():
        paths.add(prefix + name)
        paths |= schema_key_paths(sub, root, f"{prefix}{name}.")
    return paths


def described_key_paths(description: str) -> set[str]:
    """The keys a Pulumi.yaml description lists after `Keys:` (or `Keys of each:`), written
    `a, b {c, d}, e` up to the sentence's end, as paths (`b.c`)."""
    found = re.search(r"\bKeys(?: of each)?: (.*?)\.(?:\s|$)", description)
    assert found, f"no 'Keys: ...' list in {description!r}"
    paths: set[str] = set()
    stack: list[str] = []
    last = ""
    for token in re.findall(r"[A-Za-z][A-Za-z0-9]*|[{}]", found.group(1)):
        if token == "{":
            stack.append(last)
        elif token == "}":
            stack.pop()
        else:
            last = token
            paths.add(".".join([*stack, token]))
    assert not stack, f"unbalanced braces in {description!r}"
    return paths


@pytest.mark.parametrize(
    "key", [k for k, v in load_schema()["properties"].items() if v.get("type") in ("object", "array")]
)
def test_pulumi_yaml_describes_every_key_of_each_object_setting(key: str) -> None:
    """`pulumi config` users see these descriptions, not the schema: they list every key the
    schema has under the setting (and no other)."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    description = project["config"][f"{NAMESPACE}:{key}"]["description"]
    schema = load_schema()
    wanted = schema_key_paths(schema["properties"][key], schema)
    listed = described_key_paths(description)
    assert listed == wanted, f"{key}: missing {sorted(wanted - listed)}, not in the schema {sorted(listed - wanted)}"


def test_the_described_keys_are_read_with_their_nesting() -> None:
    assert described_key_paths("X. Keys: a, b {c, d {e}}, f. Structure: y.") == {"a", "b", "b.c", "b.d", "b.d.e", "f"}


# --- set-up commands, outputs ------------------------------------------------------------


def test_readme_starts_with_the_two_setup_commands() -> None:
    assert setup_commands() == ["bin/up-local", "bin/test"]
    for command in setup_commands():
        path = ROOT / command
        assert path.is_file() and os.access(path, os.X_OK), f"{command} is not an executable file"
    # Nothing but the title and its one-paragraph summary comes before the set-up section.
    assert readme().index("\n## ") == readme().find("\n## Set")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert lines[-1] == f"exec {setup_commands()[1]}"


def exported_outputs() -> list[str]:
    names: list[str] = []
    for path in (ROOT / "components" / "program.py", ROOT / "__main__.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "export"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "pulumi"
            ):
                first = node.args[0]
                assert isinstance(first, ast.Constant) and isinstance(first.value, str), "export names are literals"
                names.append(first.value)
    return names


def test_the_config_doc_mentions_every_output() -> None:
    outputs = exported_outputs()
    assert {"apiServer", "kubeconfig", "nodes", "k3sVersion"} <= set(outputs)
    text = doc(CONFIG_DOC)
    missing = [name for name in outputs if f"`{name}`" not in text]
    assert not missing, f"docs/configuration.md does not mention the outputs {missing}"


def test_the_ci_doc_names_every_stack_file() -> None:
    text = doc(CI_DOC)
    for path in STACK_FILES:
        assert f"stacks/{path.name}" in text, f"docs/ci.md does not mention stacks/{path.name}"


def policy_names() -> list[str]:
    """The names of the policies policy/pack.py defines (first argument or name=)."""
    names: list[str] = []
    for node in ast.walk(ast.parse((ROOT / "policy" / "pack.py").read_text())):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        if node.func.id == "_resource_policy" and node.args and isinstance(node.args[0], ast.Constant):
            names.append(str(node.args[0].value))
        elif node.func.id.endswith("ValidationPolicy"):
            names += [
                str(k.value.value) for k in node.keywords if k.arg == "name" and isinstance(k.value, ast.Constant)
            ]
    return names


def test_the_ci_doc_names_every_policy() -> None:
    names = policy_names()
    assert len(names) >= 5
    missing = [name for name in names if f"`{name}`" not in doc(CI_DOC)]
    assert not missing, f"docs/ci.md does not describe the policies {missing}"


def test_the_readmes_example_stack_validates() -> None:
    blocks = re.findall(r"^```yaml\n(.*?)^```", readme(), re.M | re.S)
    examples = [yaml.safe_load(block)["config"] for block in blocks if f"{NAMESPACE}:servers" in block]
    assert examples, "the walk-through has an example stack"
    for example in examples:
        raw = {key.partition(":")[2]: value for key, value in example.items()}
        settings = parse_settings(raw, {"sshPrivateKey"}, "lab")
        assert settings.servers


# --- a newcomer's first hour (issue 15) ----------------------------------------------------


def section(title: str, path: Path = README) -> str:
    """The `## title` section of README.md (or of `path`), up to the next `## `."""
    text = path.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_setup_section_gives_time_and_disk_of_both_commands_and_the_fast_tier_switch() -> None:
    text = section("Set up: two commands")
    up_local = text[text.index("**`bin/up-local`**") : text.index("**`bin/test`**")]
    test = text[text.index("**`bin/test`**") :]
    for part in (up_local, test):
        assert re.search(r"~?\d+(?:-\d+)? min", part), "how long the first run takes"
        assert re.search(r"\d+(?:\.\d+)? [GM]B", part), "how much disk it needs"
    assert "`K3SR_SKIP_REAL=1 bin/test`" in test
    assert "empty passphrase" in up_local and "encryptionsalt" in up_local
    # The builder command given is the one that reuses the tests' engine (same cache entry).
    assert "K3SR_ENGINE_COMMAND_STANDIN=1 tests/real/engine/build.sh" in up_local
    for path in [README, *DOCS.glob("*.md")]:
        assert "$(tests/real/engine/build.sh" not in path.read_text(), path


def test_preview_section_gives_the_commands_a_real_run_and_says_no_secret_appears() -> None:
    text = section("Preview a stack without hosts", CI_DOC)
    assert re.search(r"^bin/preview dev\b", text, re.M)
    assert 'PATH="$(K3SR_ENGINE_COMMAND_STANDIN=1 tests/real/engine/build.sh | tail -1):$PATH" bin/preview dev' in text
    run = re.search(r"^```text\n(.*?)^```", text, re.M | re.S)
    assert run, "a pasted run"
    assert run.group(1).startswith("bin/preview: pulumi preview --diff of stack 'dev'")
    assert re.search(r"\+ \d+ to create", run.group(1))
    assert "[secret]" in run.group(1) and "not-a-secret" not in run.group(1)
    assert "No secret appears" in text
    assert "commit" in text and "encryptionsalt" in text
    path = ROOT / "bin" / "preview"
    assert path.is_file() and os.access(path, os.X_OK)


# --- the README and docs/ as one set of pages ------------------------------------------------

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)  # no headings in code
    return {anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def test_anchor_is_githubs() -> None:
    assert anchor("Set up: two commands") == "set-up-two-commands"
    assert anchor("Proxies (k3s.proxy)") == "proxies-k3sproxy"
    assert anchor("What `bin/up-local` does") == "what-binup-local-does"
    assert anchor("On GitHub's runners") == "on-githubs-runners"
    assert anchor("1. Prerequisites") == "1-prerequisites"


def test_every_link_between_the_readme_and_docs_resolves() -> None:
    pages = [README, *sorted(DOCS.glob("*.md"))]
    checked = 0
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # https://, mailto:
            file, _, fragment = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            assert path.exists(), f"{page.name}: link to a missing file: {target}"
            if fragment and path.suffix == ".md":
                assert fragment in anchors(path), f"{page.name}: no heading for {target}"
            checked += 1
    assert checked > 40


def test_every_section_of_docs_is_linked_from_the_readme() -> None:
    """Nothing moved out of the README is lost: every page of docs/ and each of its sections
    is one link away from the README."""
    text = readme()
    pages = sorted(DOCS.glob("*.md"))
    assert {page.name for page in pages} >= {
        "ARCHITECTURE.md",
        "ci.md",
        "configuration.md",
        "operations.md",
        "security.md",
        "testing.md",
        "troubleshooting.md",
    }
    for page in pages:
        assert f"](docs/{page.name})" in text, f"the README does not link docs/{page.name}"
        body = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
        for heading in re.findall(r"^#{2,3} (.+)$", body, re.M):
            assert f"](docs/{page.name}#{anchor(heading)})" in text, (
                f"the README does not link {page.name}'s section {heading!r}"
            )


def test_the_readme_is_short() -> None:
    """A newcomer reads it in minutes: set-up, what it is, the first hour, the library, a map."""
    assert len(readme().splitlines()) <= 250
    titles = re.findall(r"^## (.+)$", readme(), re.M)
    assert titles[0] == "Set up: two commands"
    assert titles[1].startswith("What it is")


def test_no_page_holds_a_section_twice() -> None:
    """A section pasted twice (as a bad merge left operations.md once) is two anchors for one
    heading, and one of them is stale."""
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        body = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
        headings = re.findall(r"^#{1,4} (.+)$", body, re.M)
        twice = sorted({h for h in headings if headings.count(h) > 1})
        assert not twice, f"{page.name}: sections held twice: {twice}"
