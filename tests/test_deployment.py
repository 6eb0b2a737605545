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


def test_compose_brings_up_the_service_beside_a_fhir_server_and_a_one_shot_fixture_loader():
    import json

    import yaml

    from service.cli import build_parser

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert set(services) == {"calcinosis-cds", "hapi", "fixtures-loader"}
    assert services["hapi"]["image"].startswith("hapiproject/hapi:")
    loader = services["fixtures-loader"]
    assert loader["image"] == services["calcinosis-cds"]["image"] and loader["restart"] == "no"
    assert "hapi" in loader["depends_on"]
    args = build_parser().parse_args(loader["command"][1:])  # the loader runs a real command line
    assert (args.command, args.fixtures_command, args.wait_seconds) == ("fixtures", "load", 300)
    fixtures_mount = next(v for v in loader["volumes"] if v.startswith("./fhir_fixtures:"))
    assert fixtures_mount.split(":")[1] == args.dir
    # the service may query exactly the server the fixtures were loaded into
    environment = services["calcinosis-cds"]["environment"]
    assert json.loads(environment["CALCINOSIS_CDS_FHIR_SERVER_ALLOWLIST"]) == [args.fhir_server]
    assert args.fhir_server.startswith("http://hapi:8080/")
