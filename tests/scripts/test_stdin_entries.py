"""The secrets' stdin as named entries (issue 27 item 6): what components/host_facts.py
stdin_entries writes, consts.sh's readers (read_node_secrets, read_rotation_tokens) read back
verbatim, in dash (Debian's and Ubuntu's sh) and in bash (RHEL's sh), whatever the values hold;
a line the reader does not know stops the script without showing it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from components import host_facts, scripts

# Values a secret may hold that a careless reader would mangle: '=' (a base64 token's end),
# spaces, quotes, a glob, a command substitution, a backslash, a leading dash.
AWKWARD = {
    "TOKEN": "K10abc::server:tok=en==",
    "DATASTORE_ENDPOINT": "postgres://u:p@db:5432/k3s?sslmode=require&x='1'",
    "S3_ACCESS_KEY": "-a key with  two spaces",
    "S3_SECRET_KEY": 'se"cr*et$(touch /tmp/pwned)\\n',
    "PROXY_CREDENTIALS": "user:p@ss:w0rd",
    "ROTATED_FROM": "old token",
    "REGISTRIES_WITH_AUTH": '{"configs": {"r.example.com": {"auth": {"password": "x y"}}}}',
}
SHELLS = [sh for sh in ("dash", "bash") if shutil.which(sh)]


def read_back(
    shell: str, tmp_path: Path, reader: str, names: list[str], stdin: str
) -> subprocess.CompletedProcess[str]:
    """Run `reader` of consts.sh on `stdin` in `shell`; print each variable as NAME=value."""
    consts = tmp_path / "consts.sh"
    consts.write_text(host_facts.consts_sh())
    show = "".join(f"printf '%s=%s\\n' {name} \"${name}\"\n" for name in names)
    program = f"set -eu\ndie() {{ printf 'error: %s\\n' \"$*\" >&2; exit 1; }}\n. {consts}\n{reader}\n{show}"
    return subprocess.run([shell, "-c", program], input=stdin, capture_output=True, text=True, timeout=30)


def names_of(entries: tuple[tuple[str, str], ...]) -> list[str]:
    return [name for name, _ in entries]


@pytest.mark.parametrize("shell", SHELLS)
def test_every_install_secret_comes_back_verbatim(shell: str, tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    values = {**AWKWARD, "S3_SECRET_KEY": AWKWARD["S3_SECRET_KEY"].replace("/tmp/pwned", str(pwned))}
    stdin = scripts.install_stdin(
        values["TOKEN"],
        values["DATASTORE_ENDPOINT"],
        values["S3_ACCESS_KEY"],
        values["S3_SECRET_KEY"],
        values["PROXY_CREDENTIALS"],
        values["ROTATED_FROM"],
        values["REGISTRIES_WITH_AUTH"],
    )
    result = read_back(shell, tmp_path, "read_node_secrets", names_of(host_facts.INSTALL_STDIN), stdin)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "".join(f"{name}={value}\n" for name, value in values.items())
    assert not pwned.exists()  # read as data, never run


@pytest.mark.parametrize("shell", SHELLS)
def test_entries_in_any_order_and_left_out_ones_empty(shell: str, tmp_path: Path) -> None:
    """Order is free, an entry left out reads as empty (not as what the environment had), and
    a last line without its newline still counts."""
    stdin = "PROXY_CREDENTIALS=u:p\nTOKEN=tok"
    names = names_of(host_facts.INSTALL_STDIN)
    result = read_back(shell, tmp_path, "ROTATED_FROM=stale; read_node_secrets", names, stdin)
    assert result.returncode == 0, result.stderr
    read = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert read == {name: {"TOKEN": "tok", "PROXY_CREDENTIALS": "u:p"}.get(name, "") for name in names}


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    "stdin",
    [
        "a-positional-secret-token\n\n",  # an older release's stdin: one value a line
        "TOKEN=tok\nPASSWORD=a-positional-secret-token\n",  # a name this reader does not know
        "token=a-positional-secret-token\n",  # names are exact
    ],
)
def test_a_line_the_reader_does_not_know_stops_it_without_showing_it(shell: str, tmp_path: Path, stdin: str) -> None:
    result = read_back(shell, tmp_path, "read_node_secrets", ["TOKEN"], stdin)
    assert result.returncode == 1
    assert "a-positional-secret-token" not in result.stdout + result.stderr
    assert "TOKEN=, DATASTORE_ENDPOINT=" in result.stderr and "not shown" in result.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_the_rotation_reads_its_two_tokens(shell: str, tmp_path: Path) -> None:
    stdin = scripts.token_rotation_stdin("old=tok", "new tok")
    assert stdin == "OLD_TOKEN=old=tok\nNEW_TOKEN=new tok\n"
    result = read_back(shell, tmp_path, "read_rotation_tokens", names_of(host_facts.TOKEN_ROTATION_STDIN), stdin)
    assert (result.returncode, result.stdout) == (0, "OLD_TOKEN=old=tok\nNEW_TOKEN=new tok\n"), result.stderr
    # The install's entries are not the rotation's.
    refused = read_back(shell, tmp_path, "read_rotation_tokens", [], scripts.install_stdin("tok", None))
    assert refused.returncode == 1 and "OLD_TOKEN=, NEW_TOKEN=" in refused.stderr


def test_the_writer_sends_only_what_is_set_one_line_each() -> None:
    assert scripts.install_stdin("tok", None, "", None) == "TOKEN=tok\n"
    for bad in ("two\nlines", "carriage\rreturn"):
        with pytest.raises(ValueError, match="single lines"):
            scripts.install_stdin("tok", bad)
        with pytest.raises(ValueError, match="single lines"):
            scripts.token_rotation_stdin("tok", bad)
    with pytest.raises(AssertionError, match="no stdin entry"):
        host_facts.stdin_entries(host_facts.TOKEN_ROTATION_STDIN, {"TOKEN": "tok"})
