"""A real FHIR R4 server on 127.0.0.1 for tests: the sekmet-fhir package, in a virtual environment of its own.

sekmet-fhir pins its own fhir.resources, so it cannot share the project's environment. The venv
lives at $CALCINOSIS_SEKMET_VENV (default ~/.cache/calcinosis-cds/sekmet-venv) and is created on
first use; CI should create it beforehand (python3 -m venv <dir> && <dir>/bin/pip install sekmet-fhir==0.1.1)
so the test neither skips nor spends its time installing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

SEKMET_PACKAGE = "sekmet-fhir==0.1.1"


def sekmet_venv() -> Path:
    default = Path.home() / ".cache" / "calcinosis-cds" / "sekmet-venv"
    return Path(os.environ.get("CALCINOSIS_SEKMET_VENV", default))


def prepare_command(venv: Path) -> str:
    """The one command that prepares the server's environment in advance (the one `.ci/run` runs)."""
    return f'python3 -m venv {venv} && {venv}/bin/pip install -q "{SEKMET_PACKAGE}"'


def install_notice() -> str | None:
    """What the run is about to do when the server is not installed yet (None when it is)."""
    venv = sekmet_venv()
    if (venv / "bin" / "sekmet").exists():
        return None
    return (f"the real FHIR server test will now install {SEKMET_PACKAGE} into {venv} (once; about 90 s; "
            f"needs the package index). To prepare it beforehand: {prepare_command(venv)}")


def ensure_sekmet() -> Path:
    """The sekmet console script, installing it into its own venv if needed; skips when impossible."""
    venv = sekmet_venv()
    script = venv / "bin" / "sekmet"
    if script.exists():
        return script
    try:
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", SEKMET_PACKAGE], check=True,
                       capture_output=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as error:
        pytest.skip(f"the real FHIR server test needs {SEKMET_PACKAGE} in {venv}, and installing it failed: "
                    f"{type(error).__name__}")
    if not script.exists():
        pytest.skip(f"{SEKMET_PACKAGE} installed in {venv} but has no 'sekmet' console script")
    return script


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_sekmet(work_dir: Path) -> Iterator[str]:
    """Start sekmet on a free 127.0.0.1 port, yield its FHIR base URL, stop it afterwards."""
    script = ensure_sekmet()
    port = _free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    settings = work_dir / "settings.yaml"
    settings.write_text(
        f"base_url: {base}\nhost: 127.0.0.1\nport: {port}\ndata_dir: {work_dir / 'data'}\n"
        "simulator:\n  enabled: false\nvalidation:\n  inbound: \"off\"\nlog_inbound: false\n",
        encoding="utf-8")
    log = (work_dir / "sekmet.log").open("wb")
    process = subprocess.Popen([str(script), "serve", "--config", str(settings), "--host", "127.0.0.1",
                                "--port", str(port)], cwd=work_dir, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.skip(f"sekmet exited at start (code {process.returncode}); see {work_dir / 'sekmet.log'}")
            try:
                if requests.get(f"{base}/metadata", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"sekmet did not answer on {base} within 60 s; see {work_dir / 'sekmet.log'}")
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


def put_resources(base: str, resources: list[dict]) -> None:
    """Store resources with their own ids (PUT), as an EHR's FHIR server would hold them."""
    with requests.Session() as session:
        for resource in resources:
            response = session.put(f"{base}/{resource['resourceType']}/{resource['id']}", json=resource,
                                   headers={"Content-Type": "application/fhir+json"}, timeout=10)
            assert response.status_code in (200, 201), (resource["id"], response.status_code, response.text[:300])
