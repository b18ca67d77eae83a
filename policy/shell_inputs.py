"""Read back the inputs of a k3s-rancher command: which script it runs and with what values.

A command is `[sudo -n] sh -c SCRIPT` (or `docker exec NAME sh -c SCRIPT`); SCRIPT holds the
helpers, then `# <script>: inputs`, a group of `NAME='quoted value'` lines and one
`set -- 'arg' ...` line, then the script's body (components/scripts.py renders it). This
module parses that group back without running anything, with a small scanner for the
quoting shlex.quote writes ('...', "...", and backslashes), so that policies can check the
values themselves. Pure: standard library only.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field

_MARKER = re.compile(r"^# ([A-Za-z0-9_]+): inputs$", re.M)
_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
NEWLINE = "\n"


@dataclass(frozen=True)
class ScriptInputs:
    """What a rendered command was given: the script's name, its variables and its args."""

    name: str
    variables: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Word:
    raw: str  # as written (with its quotes)
    value: str  # as the shell sees it


def unwrap(command: str) -> str | None:
    """The script a command runs with `sh -c`, or None when it is not of that form."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for i in range(len(words) - 2):
        if words[i] in ("sh", "/bin/sh") and words[i + 1] == "-c" and i + 3 == len(words):
            return words[i + 2]
    return None


def words(text: str, pos: int = 0) -> Iterator[Word | str]:
    """Shell words from `pos`, with NEWLINE for each unquoted line end; comments skipped."""
    n = len(text)
    while pos < n:
        char = text[pos]
        if char in " \t":
            pos += 1
            continue
        if char == "\n":
            pos += 1
            yield NEWLINE
            continue
        if char == "#":
            end = text.find("\n", pos)
            pos = n if end < 0 else end
            continue
        start, value = pos, []
        while pos < n and text[pos] not in " \t\n":
            char = text[pos]
            if char == "'":
                end = text.find("'", pos + 1)
                if end < 0:
                    raise ValueError("unterminated single quote")
                value.append(text[pos + 1 : end])
                pos = end + 1
            elif char == '"':
                pos += 1
                while pos < n and text[pos] != '"':
                    if text[pos] == "\\" and pos + 1 < n and text[pos + 1] in '$`"\\\n':
                        if text[pos + 1] != "\n":
                            value.append(text[pos + 1])
                        pos += 2
                    else:
                        value.append(text[pos])
                        pos += 1
                if pos >= n:
                    raise ValueError("unterminated double quote")
                pos += 1
            elif char == "\\" and pos + 1 < n:
                if text[pos + 1] != "\n":
                    value.append(text[pos + 1])
                pos += 2
            else:
                value.append(char)
                pos += 1
        yield Word(raw=text[start:pos], value="".join(value))


def _lines(tokens: Iterator[Word | str]) -> Iterator[list[Word]]:
    line: list[Word] = []
    for token in tokens:
        if isinstance(token, str):
            if line:
                yield line
            line = []
        else:
            line.append(token)
    if line:
        yield line


def parse(script: str) -> ScriptInputs | None:
    """The inputs group of a rendered script, or None when `script` has none (or a broken one)."""
    marker = _MARKER.search(script)
    if not marker:
        return None
    variables: dict[str, str] = {}
    grouped = False
    try:
        for line in _lines(words(script, marker.end())):
            first = line[0]
            if first.raw == "{" and not grouped and not variables:
                grouped = True
                if len(line) > 1:
                    return None
                continue
            if first.raw == "}":
                return None  # the group closed without a `set --` line
            if first.raw == "set" and len(line) > 1 and line[1].raw == "--":
                args = tuple(word.value for word in line[2:])
                return ScriptInputs(name=marker.group(1), variables=variables, args=args)
            for word in line:
                name, equals, _ = word.raw.partition("=")
                if not equals or not _NAME.match(name):
                    return None
                variables[name] = word.value[len(name) + 1 :]
    except ValueError:
        return None
    return None


def command_inputs(command: object) -> ScriptInputs | None:
    """parse(unwrap(command)) for any input value (None when it is not command text)."""
    if not isinstance(command, str):
        return None
    script = unwrap(command)
    return parse(script) if script is not None else None
