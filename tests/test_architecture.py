"""The layers of `service` and the one direction of their imports.

Dependencies point one way: web -> hooks -> pipeline -> (fhir_reading, cql_like, terminology,
fhir_outputs), with the shared model, errors and configuration at the bottom, reachable from
everywhere. `ALLOWED` below is the whole rule: every import statement in `service` (absolute or
relative, at module level or inside a function) is read with `ast` and the component it lands in
must be the importer's own or one listed for it. A new package must be added to the table.
The engine and the knowledge stay free of Flask; the engine knows nothing of calcinosis.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "service"

# The shared bottom: what every layer may import.
BASE = frozenset({"assessment_model", "errors", "config", "version"})

# Component -> the components it may import (besides itself). A component is a sub-package of
# `service` (`web`, `pipeline`, ...), a top-level module (`cli`, `config`, ...), or `service`
# itself (the package's `__init__`).
ALLOWED: dict[str, frozenset[str]] = {
    # top: the package's public face and the command line
    "service": frozenset({"web", "version"}),
    "cli": frozenset({"web", "pipeline", "hooks", "fhir_outputs", "cql_like", "summary", "fixture_loading",
                      "screening"}) | BASE,
    # posting the example fixtures into a FHIR server (no service logic)
    "fixture_loading": BASE,
    "summary": frozenset({"fhir_outputs"}) | BASE,
    # the HTTP surface (the only place Flask lives)
    "web": frozenset({"hooks", "pipeline", "fhir_outputs", "trend", "knowledge_artifacts"}) | BASE,
    # CDS Hooks logic without Flask
    "hooks": frozenset({"pipeline", "fhir_outputs", "terminology"}) | BASE,
    # population screening: a whole export, each patient through the same pipeline and output builders
    "screening": frozenset({"pipeline", "hooks", "fhir_reading", "fhir_outputs", "terminology", "trend",
                            "bibliography"}) | BASE,
    # the laboratory trend and its chart, read again from the Bundle an assessment was made from
    "trend": frozenset({"pipeline", "fhir_outputs", "terminology"}) | BASE,
    # the rule library published as FHIR knowledge artifacts, and PlanDefinition/$apply
    "knowledge_artifacts": frozenset({"pipeline", "cql_like", "fhir_outputs", "bibliography"}) | BASE,
    # bundle -> facts -> rules -> assessment
    "pipeline": frozenset({"fhir_reading", "cql_like", "terminology", "bibliography"}) | BASE,
    # below the pipeline
    "fhir_outputs": frozenset({"bibliography"}) | BASE,
    "fhir_reading": frozenset({"cql_like"}) | BASE,
    "terminology": frozenset({"cql_like"}) | BASE,  # unit factors are derived with the engine's UCUM
    "bibliography": frozenset({"assessment_model", "errors"}),
    "cql_like": frozenset(),  # the engine knows nothing of the service
    # the shared bottom, itself ordered
    "config": frozenset({"errors"}),
    "errors": frozenset({"assessment_model"}),
    "assessment_model": frozenset(),
    "version": frozenset(),
}

# Third-party packages only one component may import.
WEB_ONLY = frozenset({"flask", "werkzeug", "flask_cors", "gunicorn", "prometheus_client"})


def _modules_loaded_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_the_engine_does_not_import_flask():
    loaded = _modules_loaded_by("import service.cql_like")
    assert "flask" not in loaded and "werkzeug" not in loaded


def test_importing_the_assessment_core_does_not_import_flask():
    loaded = _modules_loaded_by("import service.pipeline.assess, service.fhir_outputs.result_bundle")
    assert "flask" not in loaded


def test_importing_the_cds_hooks_logic_does_not_import_flask():
    loaded = _modules_loaded_by("import service.hooks.hook_call, service.hooks.components, service.hooks.feedback_checks")
    assert "flask" not in loaded and "werkzeug" not in loaded


def test_importing_the_knowledge_artifacts_does_not_import_flask():
    loaded = _modules_loaded_by("import service.knowledge_artifacts, service.knowledge_artifacts.rule_check")
    assert "flask" not in loaded and "werkzeug" not in loaded


def test_the_engine_source_never_mentions_calcinosis_or_flask():
    for path in (ROOT / "service" / "cql_like").rglob("*"):
        if path.suffix in {".py", ".lark", ".json"}:
            text = path.read_text(encoding="utf-8").lower()
            assert "calcinosis" not in text, path
            assert "import flask" not in text and "from flask" not in text, path


def component_of(module: str) -> str:
    """`service.web.app` -> `web`; `service.config` -> `config`; `service` -> `service`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def service_modules(root: Path = SERVICE) -> dict[str, str]:
    """Every module of the package, by dotted name, with its source."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path.read_text(encoding="utf-8")
    return modules


def imported_modules(module: str, source: str, is_package: bool, known: set[str]) -> list[tuple[int, str]]:
    """(line, dotted target) for every import in `source`, relative ones resolved, function-local ones included."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.append((node.lineno, submodule if submodule in known else target))
    return found


def violations(modules: dict[str, str], packages: set[str], allowed: dict[str, frozenset[str]]) -> list[str]:
    """Every import that leaves the importer's component for one the table does not allow."""
    known = set(modules)
    problems = []
    for module, source in sorted(modules.items()):
        here = component_of(module)
        if here not in allowed:
            problems.append(f"{module}: component {here!r} is not in the allowed-dependencies table")
            continue
        for line, target in imported_modules(module, source, module in packages, known):
            top = target.split(".")[0]
            if top in WEB_ONLY and here != "web":
                problems.append(f"{module}:{line} imports {target} (only web may import {top})")
            if top != "service":
                continue
            there = component_of(target)
            if there != here and there not in allowed[here]:
                problems.append(f"{module}:{line} imports {target}: {here} -> {there} is not allowed")
    return problems


def _packages(root: Path = SERVICE) -> set[str]:
    return {".".join(p.parent.relative_to(root.parent).parts) for p in root.rglob("__init__.py")}


def test_every_import_in_service_points_down_the_layers():
    assert violations(service_modules(), _packages(), ALLOWED) == []


def test_the_table_names_every_component_and_only_existing_ones():
    components = {component_of(m) for m in service_modules()}
    assert components == set(ALLOWED), "add each new package or top-level module to ALLOWED, with its dependencies"


def test_the_allowed_dependencies_have_no_cycle():
    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in ALLOWED[start])

    assert [c for c in ALLOWED if reaches(c, c)] == []


def test_the_checker_catches_an_import_that_points_up():
    modules = {
        "service": "",
        "service.web": "",
        "service.web.app": "from ..pipeline.assess import assess_bundle\nimport flask\n",
        "service.pipeline": "",
        "service.pipeline.assess": (
            "from ..assessment_model import PatientAssessment\n"
            "def late():\n"
            "    from ..hooks import cards\n"  # upwards, and hidden in a function
        ),
        "service.pipeline.ingest": "import service.web.app\nfrom .. import web\n",  # absolute, and a package
        "service.hooks": "",
        "service.hooks.cards": "from flask import request\n",  # Flask outside web
        "service.cql_like": "",
        "service.cql_like.runtime": "from ..config import setting\n",  # the engine reads no settings
        "service.assessment_model": "",
        "service.config": "",
        "service.shiny": "",  # a new component nobody placed
    }
    packages = {"service", "service.web", "service.pipeline", "service.hooks", "service.cql_like"}
    found = violations(modules, packages, ALLOWED)
    assert found == [
        "service.cql_like.runtime:1 imports service.config: cql_like -> config is not allowed",
        "service.hooks.cards:1 imports flask (only web may import flask)",
        "service.pipeline.assess:3 imports service.hooks.cards: pipeline -> hooks is not allowed",
        "service.pipeline.ingest:1 imports service.web.app: pipeline -> web is not allowed",
        "service.pipeline.ingest:2 imports service.web: pipeline -> web is not allowed",
        "service.shiny: component 'shiny' is not in the allowed-dependencies table",
    ]


def test_the_knowledge_folder_is_data_only():
    assert not list((SERVICE / "knowledge").rglob("*.py"))


def test_the_readme_architecture_names_every_package():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Architecture\n", 1)[1].split("\n## ", 1)[0]
    folders = {p.name for p in SERVICE.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))}
    assert {f for f in folders if f"  {f}/" not in section} == set()
