"""Peers installed from PyPI into the benchmarks' own virtual environments.

A peer (aviary's Roost, CrabNet, PyEBSDIndex) is never a dependency of deepmat: each gets a
virtual environment under ``benchmarks/.peers/<name>`` (ignored by git), with the CPU build
of torch deepmat pins for those that need torch, and runs there as a subprocess. What
fails to install is a result too: :func:`install_finding` returns pip's error for the
record.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

PEERS = Path(__file__).parent / ".peers"
#: the torch build every peer environment gets (a CPU wheel, as deepmat's own)
TORCH = "torch==2.13.0"
#: without network pip fails at once instead of retrying for minutes
OFFLINE_FAST = ["--retries", "0", "--timeout", "10"]


class PeerUnavailable(RuntimeError):
    """A peer whose environment could not be made; the message is pip's error."""


def peer_python(
    name: str, requirements: list[str], install: bool = True, torch: bool = True
) -> Path:
    """The Python of the peer environment ``name`` with ``requirements`` (and :data:`TORCH`
    unless ``torch`` is False) installed, made on first use unless ``install`` is False, when
    a missing one raises PeerUnavailable."""
    root = PEERS / name
    python = root / "bin" / "python"
    stamp = root / "requirements.txt"
    requirements = [TORCH, *requirements] if torch else list(requirements)
    wanted = "\n".join(requirements)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if not install:
        raise PeerUnavailable(
            f"the {name} environment is not installed ({root}); "
            "a run without --quick installs it from PyPI"
        )
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *requirements],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise PeerUnavailable(_pip_error(done))
    stamp.write_text(wanted)
    return python


def install_finding(requirement: str) -> dict:
    """Whether ``requirement`` installs into this Python (a dry run: nothing changes):
    ``{"requirement", "python", "installs", "error"}``, error being pip's message."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--no-deps",
            *OFFLINE_FAST,
            requirement,
        ],
        capture_output=True,
        text=True,
    )
    return {
        "requirement": requirement,
        "python": sys.version.split()[0],
        "installs": done.returncode == 0,
        "error": _pip_error(done) if done.returncode else None,
    }


def _pip_error(done: subprocess.CompletedProcess) -> str:
    """pip's ERROR lines (its notices about ignored index locations left out)."""
    lines = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    return "\n".join(lines) or done.stderr.strip()[-2000:]
