"""The `calcinosis-cds` command: assess a bundle, screen a population, serve the API, check or evaluate the rules.

Exit codes: 0 success, 1 the rules or the input have errors, 2 usage errors (argparse).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import orjson

from .config import load_config
from .errors import ConfigError, ServiceError


def _read_json(source: str) -> Any:
    raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    return orjson.loads(raw)


def _parse_now(text: str | None) -> datetime | None:
    """An ISO 8601 instant for --now; argparse turns the ValueError into a usage error."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return value


def _instant(text: str) -> str:
    try:
        _parse_now(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date-time, e.g. 2026-11-15T09:00:00Z") from None
    return text


def _config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if getattr(args, "lookback_days", None) is not None:
        overrides["LOOKBACK_DAYS"] = args.lookback_days
    if getattr(args, "rules", None):
        overrides["RULE_LIBRARY"] = str(Path(args.rules).resolve())
    return load_config(overrides)


def _print_service_error(error: ServiceError) -> None:
    for issue in error.issues:
        where = f" at {issue.location}" if issue.location else ""
        print(f"error{where}: {issue.diagnostics}", file=sys.stderr)


def _setup_errors() -> tuple[type[Exception], ...]:
    from .cql_like import CqlError

    return (ConfigError, CqlError, OSError)


def _assessor(args: argparse.Namespace) -> Any:
    from .pipeline.assess import get_assessor

    return get_assessor(_config_from_args(args))


def _setup_failed(error: Exception) -> int:
    """A bad configuration or rule library: one readable message, no traceback."""
    if isinstance(error, OSError):
        print(f"error: cannot read {error.filename}: {error.strerror}", file=sys.stderr)
    else:
        print(f"error: {error}", file=sys.stderr)
    return 1


def cmd_assess(args: argparse.Namespace) -> int:
    """`assess`: one bundle file to a text summary or the result Bundle; exit 1 on unreadable input or rules."""
    from .fhir_outputs.result_bundle import build_result_bundle
    from .summary import format_summary

    try:
        bundle = _read_json(args.file)
    except OSError as error:
        print(f"error: cannot read {args.file}: {error.strerror}", file=sys.stderr)
        return 1
    except orjson.JSONDecodeError as error:
        print(f"error: {args.file} is not valid JSON: {error}", file=sys.stderr)
        return 1
    try:
        assessor = _assessor(args)
    except _setup_errors() as error:
        return _setup_failed(error)
    try:
        run = assessor.assess(bundle, now=_parse_now(args.now))
    except ServiceError as error:
        _print_service_error(error)
        return 1
    if args.format == "json":
        result = build_result_bundle(run.patients, run.issues, validate=load_config()["VALIDATE_OUTPUTS"])
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(format_summary(run.patients, run.issues))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """`serve`: run the HTTP API under gunicorn until interrupted."""
    from .web.wsgi_server import serve

    config = load_config()
    serve(host=args.host, port=args.port, workers=args.workers or config["SERVE_WORKERS"],
          threads=args.threads or config["SERVE_THREADS"], backlog=args.backlog or config["SERVE_BACKLOG"],
          timeout=args.timeout)
    return 0


def _rule_paths(args: argparse.Namespace) -> list[Path]:
    config = load_config()
    return [Path(p) for p in args.paths] if args.paths else [Path(config["RULE_LIBRARY"])]


def cmd_rules_check(args: argparse.Namespace) -> int:
    """`rules check`: compile rule files and print every error with its position; exit 1 if there is any."""
    from .cql_like import load_model_info
    from .cql_like.tooling import check_paths

    config = load_config()
    paths = _rule_paths(args)
    model = load_model_info(Path(config["MODEL_INFO"]))
    valueset_dir = Path(args.valuesets or config["VALUESET_DIR"])
    errors = check_paths(paths, model=model, valueset_dir=valueset_dir)
    for error in errors:
        print(str(error), file=sys.stderr)
    if errors:
        print(f"{len(errors)} error(s)", file=sys.stderr)
        return 1
    print(f"ok: {', '.join(str(p) for p in paths)}")
    return 0


def cmd_rules_eval(args: argparse.Namespace) -> int:
    """`rules eval`: print one define's value for each patient of a bundle, to see why a rule fired or not."""
    from .cql_like import CqlError
    from .cql_like.tooling import render_result
    from .pipeline.ingest import read_bundle
    from .pipeline.normalize import build_facts

    try:
        assessor = _assessor(args)
    except _setup_errors() as error:
        return _setup_failed(error)
    if args.define not in assessor.library.define_names:
        print(f"error: the library has no define {args.define!r}", file=sys.stderr)
        return 1
    now = _parse_now(args.now) or datetime.now(timezone.utc)
    try:
        ingested = read_bundle(_read_json(args.bundle))
    except ServiceError as error:
        _print_service_error(error)
        return 1
    except OSError as error:
        return _setup_failed(error)
    except orjson.JSONDecodeError as error:
        print(f"error: {args.bundle} is not valid JSON: {error}", file=sys.stderr)
        return 1
    status = 0
    for patient in ingested.patients:
        facts = build_facts(patient, now=now, terminology=assessor.terminology, gaps=ingested.gaps)
        print(f"# {patient.patient_reference}")
        try:
            outcome = assessor.library.evaluate_define(args.define, facts, parameters=assessor.parameters, now=now)
        except CqlError as error:
            print(str(error), file=sys.stderr)
            status = 1
            continue
        print(render_result(args.define, outcome))
    return status


def cmd_feedback_report(args: argparse.Namespace) -> int:
    """`feedback report`: summarize the clinicians' feedback on issued cards."""
    from .hooks.feedback_store import feedback_report

    config = load_config()
    print(feedback_report(Path(args.db or config["CDS_FEEDBACK_DB"])))
    return 0


def cmd_fixtures_load(args: argparse.Namespace) -> int:
    """`fixtures load`: post every fixture to a FHIR server as a transaction; 1 when any was refused."""
    import requests

    from .fixture_loading import fixture_files, load_fixtures, wait_for_server

    root = Path(args.dir) if args.dir else Path(__file__).resolve().parent.parent / "fhir_fixtures"
    files = fixture_files(root)
    if not files:
        print(f"no fixtures under {root} (expected assess/*.json and cds-hooks/*-request.json)", file=sys.stderr)
        return 1
    with requests.Session() as session:
        if args.wait_seconds:
            try:
                wait_for_server(args.fhir_server.rstrip("/"), args.wait_seconds, session)
            except RuntimeError as error:
                print(str(error), file=sys.stderr)
                return 1
        reports = load_fixtures(args.fhir_server, files, session=session)
    for report in reports:
        print(report.line())
    failed = [report for report in reports if not report.ok]
    print(f"{len(reports) - len(failed)} of {len(reports)} fixtures loaded into {args.fhir_server}")
    return 1 if failed else 0


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _download_for_screen(args: argparse.Namespace, config: dict[str, Any]) -> Any:
    """A FHIR server's Bulk Data $export, downloaded into --out/export (reused by --resume when finished)."""
    from .screening.bulk_export import fetch_export, stderr_progress
    from .screening.export_folder import EXPORT_FOLDER

    return fetch_export(args.source, Path(args.out) / EXPORT_FOLDER, group=args.group, since=args.since,
                        settings=config, resume=args.resume, progress=None if args.quiet else stderr_progress)


def cmd_screen(args: argparse.Namespace) -> int:
    """`screen`: every patient of an export, a Bundle folder or a FHIR server; outputs in --out."""
    try:
        config = _config_from_args(args)
    except ConfigError as error:
        return _setup_failed(error)
    if args.engine == "spark" and args.resume:  # refused before any download
        print("error: --resume is for the local engine; Spark retries failed tasks itself, so run the "
              "spark engine again without it", file=sys.stderr)
        return 1
    now = _parse_now(args.now)
    source = args.source
    export_issues: list[dict[str, Any]] = []
    if _is_url(source):
        # A FHIR server: its Bulk Data $export is downloaded first, then screened as the export folder it wrote.
        from .screening.bulk_export import ExportError

        try:
            exported = _download_for_screen(args, config)
        except ExportError as error:
            print(f"error: Bulk Data $export of {source.split('?')[0]}: {error}", file=sys.stderr)
            return 1
        except OSError as error:
            return _setup_failed(error)
        source, export_issues = str(exported.folder), exported.issues
    elif args.group or args.since:
        print("error: --group and --since apply to a FHIR server URL only", file=sys.stderr)
        return 2
    if not Path(source).is_dir():
        print(f"error: {source} is not a folder (a Bulk Data export or a folder of Bundles) or a URL", file=sys.stderr)
        return 1
    from concurrent.futures.process import BrokenProcessPool

    try:
        if args.engine == "spark":
            try:
                from .screening.spark_engine import run_spark
            except ImportError as error:
                print(f"error: the spark engine is not available ({error}); pip install '.[spark]'", file=sys.stderr)
                return 1
            from .screening.spark_session import spark_missing

            missing = spark_missing()
            if missing:
                print(f"error: the spark engine cannot run here: {missing}", file=sys.stderr)
                return 1
            run = run_spark(Path(source), Path(args.out), now=now, master=args.master or "local[*]",
                            config=config, progress=not args.quiet,
                            extra_issues=export_issues)
        else:
            from .screening.local_engine import run_local

            run = run_local(Path(source), Path(args.out), workers=args.workers, resume=args.resume, now=now,
                            config=config, progress=not args.quiet, extra_issues=export_issues)
    except _setup_errors() as error:
        return _setup_failed(error)
    except BrokenProcessPool:
        print("error: a worker process died (out of memory?); finished shards are kept: run again with --resume",
              file=sys.stderr)
        return 1
    print(run.final_line(), file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line; each subcommand sets `handler` to its cmd_* function."""
    parser = argparse.ArgumentParser(prog="calcinosis-cds", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    assess = commands.add_parser("assess", help="assess a FHIR Bundle file (or - for stdin)")
    assess.add_argument("file", help="path to a FHIR R4 Bundle in JSON, or - for standard input")
    assess.add_argument("--format", choices=("text", "json"), default="text",
                        help="text: a readable summary (default); json: the result Bundle")
    assess.add_argument("--now", type=_instant, help="evaluation instant, ISO 8601 (default: the current time)")
    assess.add_argument("--lookback-days", type=_positive, help="how many days a result stays current")
    assess.add_argument("--rules", help="a rule library file to use instead of the shipped one")
    assess.set_defaults(handler=cmd_assess)

    serve = commands.add_parser("serve", help="serve the HTTP API with a production WSGI server")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=_positive,
                       help="worker processes (default: SERVE_WORKERS, else one per core)")
    serve.add_argument("--threads", type=_positive,
                       help="threads per worker (default: SERVE_THREADS): a slow client holds one thread, not a worker")
    serve.add_argument("--backlog", type=_positive,
                       help="connections queued per worker before new ones are refused (default: SERVE_BACKLOG)")
    serve.add_argument("--timeout", type=int, default=60, help="worker timeout in seconds")
    serve.set_defaults(handler=cmd_serve)

    rules = commands.add_parser("rules", help="check or evaluate the rule library")
    rule_commands = rules.add_subparsers(dest="rules_command", required=True)
    check = rule_commands.add_parser("check", help="compile rule files and print errors as file:line:col")
    check.add_argument("paths", nargs="*", help="rule files or folders (default: the shipped library)")
    check.add_argument("--valuesets", help="value set folder (default: the shipped one)")
    check.set_defaults(handler=cmd_rules_check)
    evaluate = rule_commands.add_parser("eval", help="evaluate one define for each patient of a bundle")
    evaluate.add_argument("--define", required=True, help='the define to evaluate, e.g. "Metastatic"')
    evaluate.add_argument("bundle", help="a FHIR Bundle file, or - for standard input")
    evaluate.add_argument("--now", type=_instant, help="evaluation instant, ISO 8601")
    evaluate.add_argument("--rules", help="a rule library file to use instead of the shipped one")
    evaluate.add_argument("--lookback-days", type=_positive, help="how many days a result stays current")
    evaluate.set_defaults(handler=cmd_rules_eval)

    feedback = commands.add_parser("feedback", help="CDS Hooks card feedback")
    feedback_commands = feedback.add_subparsers(dest="feedback_command", required=True)
    report = feedback_commands.add_parser("report", help="acceptance and override counts per card type")
    report.add_argument("--db", help="feedback database path (default: configured CDS_FEEDBACK_DB)")
    report.set_defaults(handler=cmd_feedback_report)

    screen = commands.add_parser("screen", help="screen every patient of a Bulk Data export or a folder of Bundles")
    screen.add_argument("source", help="a Bulk Data export folder (<Type>.ndjson, .ndjson.gz), a folder of Bundle "
                                       "JSON files, or a FHIR server base URL")
    screen.add_argument("--out", required=True, help="the folder to write the outputs into")
    screen.add_argument("--engine", choices=("local", "spark"), default="local",
                        help="local: a process pool on this machine (default); spark: PySpark (pip install '.[spark]')")
    screen.add_argument("--workers", type=_positive, help="worker processes of the local engine (default: one per core)")
    screen.add_argument("--master", help="the Spark master for --engine spark (default: local[*])")
    screen.add_argument("--resume", action="store_true",
                        help="continue an interrupted run into the same --out: finished shards are not redone")
    screen.add_argument("--now", type=_instant, help="evaluation instant, ISO 8601 (default: the current time)")
    screen.add_argument("--lookback-days", type=_positive, help="how many days a result stays current")
    screen.add_argument("--rules", help="a rule library file to use instead of the shipped one")
    screen.add_argument("--quiet", action="store_true", help="no progress bar (the final line is still printed)")
    screen.add_argument("--group", help="with a FHIR server URL: export Group/{id}/$export instead of Patient/$export")
    screen.add_argument("--since", type=_instant,
                        help="with a FHIR server URL: only resources changed after this instant (_since)")
    screen.set_defaults(handler=cmd_screen)

    fixtures = commands.add_parser("fixtures", help="the example fixtures")
    fixture_commands = fixtures.add_subparsers(dest="fixtures_command", required=True)
    load = fixture_commands.add_parser("load", help="post every fixture to a FHIR server as a transaction Bundle")
    load.add_argument("--fhir-server", required=True, help="the FHIR base URL, e.g. http://127.0.0.1:8090/fhir")
    load.add_argument("--dir", help="the fixtures folder (default: the repository's fhir_fixtures)")
    load.add_argument("--wait-seconds", type=_positive, default=None,
                      help="first wait up to this long for the server's /metadata to answer")
    load.set_defaults(handler=cmd_fixtures_load)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit code says whether it succeeded (see the module docstring)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as error:
        return _setup_failed(error)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
