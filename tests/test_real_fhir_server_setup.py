"""A newcomer's first run says, before it stalls, that it installs the test FHIR server, and how to avoid it."""

from __future__ import annotations

from pathlib import Path

from tests.support.real_fhir_server import SEKMET_PACKAGE, install_notice


def test_a_run_without_the_server_installed_names_the_install_its_place_and_the_command(tmp_path, monkeypatch):
    venv = tmp_path / "sekmet-venv"
    monkeypatch.setenv("CALCINOSIS_SEKMET_VENV", str(venv))

    notice = install_notice()

    assert notice is not None
    assert f"will now install {SEKMET_PACKAGE} into {venv}" in notice
    assert "about 90 s" in notice
    assert f'python3 -m venv {venv} && {venv}/bin/pip install -q "{SEKMET_PACKAGE}"' in notice


def test_a_run_with_the_server_installed_says_nothing(tmp_path, monkeypatch):
    script = tmp_path / "sekmet-venv" / "bin" / "sekmet"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    monkeypatch.setenv("CALCINOSIS_SEKMET_VENV", str(tmp_path / "sekmet-venv"))

    assert install_notice() is None


def test_the_readme_gives_the_same_command_as_ci():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text(encoding="utf-8")
    assert f'install -q "{SEKMET_PACKAGE}"' in ci
    assert ('python3 -m venv ~/.cache/calcinosis-cds/sekmet-venv && '
            f'~/.cache/calcinosis-cds/sekmet-venv/bin/pip install -q "{SEKMET_PACKAGE}"') in readme
