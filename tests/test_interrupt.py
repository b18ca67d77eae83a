"""A program the engine interrupts (SIGINT to the language host's process group when it shuts
plugins down after a failed step) exits without a KeyboardInterrupt traceback, which would
otherwise be printed before the error the user needs."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from tests.harness import ROOT

PROGRAM = textwrap.dedent(
    """
    import os, signal, sys, time
    # What Python installs at start unless SIGINT is already ignored, as it is in a
    # background job of a shell without job control (bash: asynchronous commands ignore
    # SIGINT); the tests are about the program, not about how the suite was started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    {setup}
    print("waiting", flush=True)
    time.sleep(30)
    """
)


def interrupted(setup: str) -> subprocess.CompletedProcess[str]:
    code = PROGRAM.format(setup=setup)
    # From the repository's root: `python -c` puts the working directory first on sys.path.
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "waiting\n"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_an_interrupted_program_exits_without_a_traceback() -> None:
    result = interrupted("from components.program import exit_quietly_on_interrupt; exit_quietly_on_interrupt()")
    assert result.returncode == 128 + signal.SIGINT
    assert result.stderr == ""


def test_without_it_python_prints_the_traceback_the_user_saw() -> None:
    result = interrupted("")
    assert "KeyboardInterrupt" in result.stderr and "Traceback" in result.stderr
