"""A real `calcinosis-cds serve` process for the tests that need one: a free port, the command, waiting
until it answers, and stopping it (SIGTERM, then kill)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import requests


def free_port() -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command() -> list[str]:
    """The installed `calcinosis-cds` beside this Python, else the module."""
    script = shutil.which("calcinosis-cds", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "service.cli"]


def wait_until_answering(process: subprocess.Popen, url: str, *, seconds: float = 60,
                         output: Callable[[], str] | None = None) -> None:
    """Poll `url` until it answers 200; fail the test if the process exits first or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            pytest.fail(f"server exited early (code {process.returncode})" + (f":\n{output()}" if output else ""))
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # still booting
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"server did not answer within {seconds:g} s")
        time.sleep(0.2)


def stop(process: subprocess.Popen, *, seconds: float = 20) -> None:
    """SIGTERM, and kill if it has not stopped within `seconds`."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
