"""The deployment files describe the service as it is: compose validates, the image serves what it checks."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose is not installed here (.ci/run installs Debian's)")
def test_docker_compose_file_is_valid():
    result = subprocess.run(["docker-compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_image_installs_the_package_and_checks_a_route_the_app_serves(client):
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY\s+(.+?)\s+\S+$", dockerfile, re.M))
    assert {"pyproject.toml README.md", "service"} <= copied  # what `pip install .` needs
    health_path = re.search(r"http://127\.0\.0\.1:8080(/\S+?)'", dockerfile).group(1)
    assert client.get(health_path).status_code == 200
    assert re.search(r'CMD \["calcinosis-cds", "serve", "--host", "0\.0\.0\.0", "--port", "8080"', dockerfile)


def test_compose_publishes_the_port_the_image_serves_and_keeps_feedback_in_a_volume():
    compose = (ROOT / "docker-compose.yml").read_text()
    assert '"127.0.0.1:8080:8080"' in compose
    assert "CALCINOSIS_CDS_FEEDBACK_DB: /data/feedback.sqlite3" in compose
    assert "feedback:/data" in compose
