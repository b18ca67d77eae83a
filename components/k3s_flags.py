"""K3s's own flag names per Kubernetes minor, kept as data (components/data/k3s-flags.json).

K3s skips a config.yaml key it does not know with only a warning in its journal, and a
server-only key in an agent's config.yaml the same way; an unknown command-line flag stops
the service. Checking the names here turns both into a config error before anything runs.

The lists come from K3s's CLI definitions (k3s-io/k3s pkg/cli/cmds: ServerFlags in
server.go, the agent command's Flags in agent.go, the shared flags of log.go/config.go).
The data file names the files and commits each set was read from. To refresh a minor from
a release tag (needs GitHub):

    git clone --depth 1 --branch v1.33.5+k3s1 https://github.com/k3s-io/k3s /tmp/k3s
    .venv/bin/python -m components.k3s_flags /tmp/k3s v1.33.5+k3s1
    .venv/bin/python -m pytest tests/test_config_validation.py -q

which parses the Go files, stores the set under the tag (with the checkout's commit) and
points that minor at it.
"""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

DATA_PATH = Path(__file__).resolve().parent / "data" / "k3s-flags.json"


@dataclass(frozen=True)
class FlagSet:
    name: str
    server: frozenset[str]  # long names
    agent: frozenset[str]
    aliases: Mapping[str, str]  # short name -> long name

    def names(self, role: str) -> frozenset[str]:
        return self.server if role == "server" else self.agent

    def long_name(self, name: str) -> str:
        return self.aliases.get(name, name)


@cache
def load_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DATA_PATH.read_text())
    return data


def known_minors() -> list[int]:
    return sorted(int(m) for m in load_data()["minors"])


def flag_set(minor: int) -> FlagSet | None:
    data = load_data()
    name = data["minors"].get(str(minor))
    if name is None:
        return None
    entry = data["sets"][name]
    return FlagSet(
        name=name, server=frozenset(entry["server"]), agent=frozenset(entry["agent"]), aliases=entry["aliases"]
    )


def name_error(flags: FlagSet, role: str, name: str, minor: int, written: str) -> str | None:
    """Why `name` (a long or short flag name, written by the user as `written`) is not a flag
    of K3s 1.<minor>'s `role` command, or None."""
    long = flags.long_name(name)
    if long in flags.names(role):
        return None
    if role == "agent" and long in flags.server:
        return (
            f"{written} is a K3s server flag: agents do not know it (K3s skips it in an agent's config.yaml "
            "and refuses it on an agent's command line); put it in serverConfig/serverArgs"
        )
    close = difflib.get_close_matches(long, sorted(flags.names(role)), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{written} is not a flag of `k3s {role}` in K3s 1.{minor} (K3s would skip or refuse it){hint}"


# --- refreshing the data from K3s's Go sources ------------------------------------------------

_NAMED_FLAG = re.compile(r"\b(\w+)\s*=\s*&?cli\.\w+Flag\s*\{")
_NAME = re.compile(r'\bName:\s*"([^"]+)"')
_ALIASES = re.compile(r"\bAliases:\s*\[\]string\s*\{([^}]*)\}")
_LISTS = {
    "server": (re.compile(r"\bServerFlags\s*=\s*\[\]cli\.Flag\s*\{"), "NewServerCommand"),
    "agent": (re.compile(r"\bAgentFlags\s*=\s*\[\]cli\.Flag\s*\{"), "NewAgentCommand"),
}
_INLINE_LIST = re.compile(r"\bFlags:\s*\[\]cli\.Flag\s*\{")


def _without_comments(go: str) -> str:
    """Go source without // and /* */ comments (string literals kept)."""
    return re.sub(r'("(?:\\.|[^"\\])*"|`[^`]*`)|//[^\n]*|/\*.*?\*/', lambda m: m.group(1) or "", go, flags=re.S)


def _braced(text: str, open_at: int) -> str:
    """The text inside the braces that open at text[open_at] ('{')."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    raise ValueError("unbalanced braces in the Go source")


def _elements(body: str) -> list[str]:
    """The top-level, comma-separated elements of a composite literal's body."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(body):
        if char in "{([":
            depth += 1
        elif char in "})]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return [p.strip() for p in parts if p.strip()]


def _flag_names(literal: str) -> list[str]:
    """The long name then the aliases of one flag literal (v1 "name,alias" or v2 Aliases)."""
    match = _NAME.search(literal)
    if not match:
        raise ValueError(f"a flag without a Name: {literal[:60]!r}")
    names = [n.strip() for n in match.group(1).split(",")]
    if aliases := _ALIASES.search(literal):
        names += re.findall(r'"([^"]+)"', aliases.group(1))
    return names


def parse_flags(sources: Mapping[str, str]) -> tuple[list[str], list[str], dict[str, str]]:
    """Server flags, agent flags (long names) and aliases from pkg/cli/cmds/*.go (file name ->
    text). Raises ValueError when a listed flag cannot be resolved, so that a refresh never
    silently drops a flag."""
    texts = {name: _without_comments(text) for name, text in sources.items()}
    named: dict[str, list[str]] = {}
    for text in texts.values():
        for match in _NAMED_FLAG.finditer(text):
            named[match.group(1)] = _flag_names(_braced(text, match.end() - 1))
    aliases: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for role, (var, command) in _LISTS.items():
        text = texts.get(f"{role}.go", "")
        found = var.search(text)
        if not found and command in text:
            found = _INLINE_LIST.search(text, text.index(command))
        if not found:
            raise ValueError(f"{role}.go: no {var.pattern} and no Flags list in {command}")
        names: list[str] = []
        for element in _elements(_braced(text, found.end() - 1)):
            ident = element.lstrip("&").strip()
            if "{" in element:
                flag = _flag_names(element)
            elif ident in named:
                flag = named[ident]
            else:
                raise ValueError(f"{role}.go: cannot resolve the flag {ident!r}")
            names.append(flag[0])
            aliases.update({alias: flag[0] for alias in flag[1:]})
        lists[role] = sorted(set(names))
    return lists["server"], lists["agent"], aliases


def refresh(checkout: Path, tag: str, data: dict[str, Any]) -> dict[str, Any]:
    """The data with a set read from a K3s checkout at `tag`, used for the tag's minor."""
    minor = re.match(r"^v1\.(\d+)\.", tag)
    if not minor:
        raise ValueError(f"{tag!r} is not a K3s release tag such as v1.33.5+k3s1")
    cmds = checkout / "pkg" / "cli" / "cmds"
    sources = {path.name: path.read_text() for path in sorted(cmds.glob("*.go")) if not path.name.endswith("_test.go")}
    server, agent, aliases = parse_flags(sources)
    commit = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    updated = json.loads(json.dumps(data))
    updated["sets"][tag] = {
        "source": {"repository": "k3s-io/k3s", "files": "pkg/cli/cmds/*.go", "tag": tag, "commit": commit or None},
        "server": server,
        "agent": agent,
        "aliases": dict(sorted(aliases.items())),
    }
    updated["minors"][minor.group(1)] = tag
    used = set(updated["minors"].values())
    updated["sets"] = {name: entry for name, entry in updated["sets"].items() if name in used}
    return updated


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m components.k3s_flags K3S_CHECKOUT TAG", file=sys.stderr)
        return 2
    data = refresh(Path(argv[0]), argv[1], load_data())
    DATA_PATH.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{DATA_PATH}: minor {argv[1]} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
