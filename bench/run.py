"""Benchmarks: rule compile time, per-patient evaluation against a one-define floor, $assess throughput.

Run from the project root: `python bench/run.py` (add `--quick` for fewer rounds). Every figure
is printed beside a floor measured in the same run on the same data, so the ratios mean
something on a shared, noisy machine:
- evaluation: every define of the compiled library, and the defines $assess reads (and what they
  need), vs the same engine evaluating one define
  ("Calcium": a value-set retrieve, the validity filter, the sort and First), over the same
  normalized facts. The floor repeats no clinical logic, so rules change in one place only;
- $assess: the whole path (parse, ingest, validate, normalize, evaluate, build and validate
  FHIR output) vs just parsing the same JSON with orjson.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from service.pipeline.assess import get_assessor  # noqa: E402
from service.config import load_config  # noqa: E402
from service.cql_like import load_library, load_model_info  # noqa: E402
from service.fhir_outputs.result_bundle import build_result_bundle  # noqa: E402
from service.pipeline.ingest import read_bundle  # noqa: E402
from service.pipeline.normalize import build_facts  # noqa: E402

NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)
FLOOR_DEFINE = "Calcium"


def _median_seconds(action: Callable[[], object], rounds: int) -> float:
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def _inputs() -> list[Path]:
    paths = sorted(p for p in (ROOT / "fhir_fixtures" / "assess").glob("*.json")
                   if not p.name.endswith(".expected.json") and p.name != "MANIFEST.json")
    synthea = ROOT.parent / "shared" / "fhir-samples" / "synthea"
    if synthea.is_dir():
        paths += sorted(synthea.glob("*.json"))
    return paths


def bench_compile(rounds: int) -> float:
    """Median time to compile the shipped rule library; printed and returned in seconds."""
    config = load_config()
    model = load_model_info(Path(config["MODEL_INFO"]))

    def compile_once() -> object:
        """Compile from the files each round: what a service start pays."""
        return load_library(Path(config["RULE_LIBRARY"]), model=model, valueset_dir=Path(config["VALUESET_DIR"]))

    seconds = _median_seconds(compile_once, rounds)
    print(f"compile   shipped library                      {seconds * 1000:9.2f} ms (median of {rounds})")
    return seconds


def bench_evaluation(paths: list[Path], rounds: int) -> float:
    """Whole-library evaluation per patient over one define's evaluation on the same facts; returns that ratio."""
    assessor = get_assessor(load_config())
    facts = []
    for path in paths:
        for patient in read_bundle(orjson.loads(path.read_bytes())).patients:
            facts.append(build_facts(patient, now=NOW, terminology=assessor.terminology))

    def whole_library() -> None:
        """Evaluate every define of the compiled library for every patient."""
        for provider in facts:
            assessor.library.evaluate(provider, parameters=assessor.parameters, now=NOW)

    def assessment_defines() -> None:
        """Evaluate the defines the assessment reads (what $assess evaluates) for every patient."""
        for provider in facts:
            assessor.library.evaluate(provider, parameters=assessor.parameters, now=NOW,
                                      defines=assessor.output_defines)

    def one_define() -> None:
        """The engine's fixed cost per patient plus one retrieve-filter-sort: the floor."""
        for provider in facts:
            assessor.library.evaluate_define(FLOOR_DEFINE, provider, parameters=assessor.parameters, now=NOW)

    whole_s = _median_seconds(whole_library, rounds) / len(facts)
    outputs_s = _median_seconds(assessment_defines, rounds) / len(facts)
    floor_s = _median_seconds(one_define, rounds) / len(facts)
    ratio = whole_s / floor_s if floor_s else float("inf")
    defines = len(assessor.library.define_names)
    print(f"evaluate  whole library per patient ({len(facts):3d} patients, {defines} defines) {whole_s * 1e6:9.1f} us")
    print(f"evaluate  the assessment's {len(assessor.output_defines)} defines per patient"
          f"                  {outputs_s * 1e6:9.1f} us")
    print(f"evaluate  one define ({FLOOR_DEFINE!r}) per patient (floor)      {floor_s * 1e6:9.1f} us")
    print(f"ratio     whole library / one define                       {ratio:9.2f} x")
    return ratio


def bench_assess(paths: list[Path], rounds: int) -> float:
    """The whole $assess path over parsing the same JSON alone; returns that ratio."""
    assessor = get_assessor(load_config())
    bodies = [p.read_bytes() for p in paths]
    size = sum(len(b) for b in bodies)

    def parse_only() -> None:
        """JSON parsing alone: the floor of the $assess path."""
        for body in bodies:
            orjson.loads(body)

    def full_path() -> None:
        """Everything $assess does, including building and serializing the result Bundle."""
        for body in bodies:
            run = assessor.assess(orjson.loads(body), now=NOW)
            orjson.dumps(build_result_bundle(run.patients, run.issues))

    floor = _median_seconds(parse_only, rounds)
    full = _median_seconds(full_path, rounds)
    mb = size / 1e6
    print(f"$assess   {len(bodies)} bundles, {mb:.1f} MB: parse only (floor)     {floor * 1000:9.1f} ms  ({mb / floor:7.1f} MB/s)")
    print(f"$assess   full path                                 {full * 1000:9.1f} ms  ({mb / full:7.1f} MB/s)")
    print(f"ratio     full path / parse floor                   {full / floor:9.1f} x")
    return full / floor


def main() -> int:
    """Run every benchmark and print each figure beside its floor."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    rounds = 3 if args.quick else 15
    paths = _inputs()
    bench_compile(rounds)
    bench_evaluation(paths, rounds)
    bench_assess(paths, max(3, rounds // 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
