"""Summary rows of a population, for drawing the screening report (tests and screenshots).

`screened_rows` is the real thing: a synthetic Bulk Data export (the fixture scenarios made anew)
written to disk, each patient's resources grouped and screened by the same pipeline as `$assess`;
it costs the pipeline's time per patient. `synthetic_rows` is made up and instant. Its rows have the shape the screening engines write (one per patient) and a plausible mix: a
kidney clinic's share of patients with high phosphate, some with a calcium or a phosphate missing,
the work-up tests the rule library names, a few data problems. The grades are set from the values
by a rough hand rule, not by the rule library: these rows exercise the page, not the rules.
Seeded: the same seed gives the same rows.
"""

from __future__ import annotations

import random
import sys
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import orjson

TOOLS_DIR = Path(__file__).resolve().parents[2] / "fhir_fixtures" / "assess" / "tools"
EVALUATION_TIME = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)

BASELINE = ("Complete blood count", "Total protein", "24-hour urine calcium", "24-hour urine phosphate")
HORMONES = ("Parathyroid hormone, intact", "25-OH vitamin D")
IMAGING = ("Plain X-ray", "Skin ultrasound", "CT", "MRI", "Bone scintigraphy", "Skin biopsy")
AUTOIMMUNE = ("ANA", "Anti-dsDNA", "Anti-ENA panel")
LAST_DAY = date(2026, 11, 14)


def synthetic_rows(patients: int, *, seed: int = 0) -> Iterator[dict[str, Any]]:
    """`patients` summary rows, one at a time."""
    rng = random.Random(seed)
    for number in range(patients):
        yield _row(rng, number)


def screened_rows(patients: int, work_dir: Path, *, seed: int = 0) -> list[dict[str, Any]]:
    """The summary rows of `patients` synthetic patients screened by the pipeline at EVALUATION_TIME.

    The export is written under `work_dir` and read back whole (fine for the few hundred patients a
    picture needs; the screening engines stream instead).
    """
    from service.config import load_config
    from service.pipeline.assess import get_assessor
    from service.screening.patient_keys import patient_key_of
    from service.screening.patient_screen import screen_patient

    if str(TOOLS_DIR) not in sys.path:
        sys.path.insert(0, str(TOOLS_DIR))
    from synthetic_export import write_export

    export = Path(work_dir) / "export"
    write_export(export, patients, seed=seed)
    by_patient: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(export.glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            resource = orjson.loads(line)
            key = patient_key_of(resource)
            if key is not None:
                by_patient[key].append(resource)
    assessor = get_assessor(load_config({}))
    return [screen_patient(key, resources, assessor, now=EVALUATION_TIME).summary
            for key, resources in by_patient.items()]


def _row(rng: random.Random, number: int) -> dict[str, Any]:
    kidney = rng.random() < 0.45
    calcium = round(rng.gauss(9.2 if kidney else 9.5, 0.7 if kidney else 0.4), 1)
    phosphate = round(min(11.5, max(1.8, rng.gauss(5.9, 1.6) if kidney else rng.gauss(3.7, 0.6))), 1)
    missing = rng.random()
    if missing < 0.05:
        calcium = phosphate = None
    elif missing < 0.12:
        phosphate = None
    elif missing < 0.17:
        calcium = None
    product = round(calcium * phosphate, 2) if calcium is not None and phosphate is not None else None
    egfr = round(rng.uniform(5, 29) if kidney else min(120.0, max(30.0, rng.gauss(82, 18))))
    if rng.random() < 0.1:
        egfr = None
    kind, grade = _grade(rng, kidney, product)
    day = LAST_DAY - timedelta(days=rng.randrange(0, 120))
    tests = [t for t in BASELINE if rng.random() < 0.7]
    if calcium is None:
        tests.append("Calcium")
    if phosphate is None:
        tests.append("Phosphate")
    tests += [t for t in HORMONES if rng.random() < (0.25 if kidney else 0.5)]
    if kind in ("dystrophic", "idiopathic"):
        tests += [t for t in AUTOIMMUNE if rng.random() < 0.6]
    if grade in ("high", "moderate"):
        tests += [t for t in IMAGING if rng.random() < 0.8]
    return {
        "patient_id": f"pt-{number:06d}-{rng.getrandbits(32):08x}",
        "top_type": kind, "top_grade": grade,
        "calcium": calcium, "calcium_date": day.isoformat() if calcium is not None else None,
        "phosphate": phosphate, "phosphate_date": day.isoformat() if phosphate is not None else None,
        "ca_x_p": product, "ca_x_p_date": day.isoformat() if product is not None else None,
        "egfr": egfr, "egfr_date": (day - timedelta(days=rng.randrange(0, 30))).isoformat() if egfr is not None else None,
        "missing_tests": tests,
        "data_problems": rng.choice((1, 1, 2, 3)) if rng.random() < 0.04 else 0,
    }


def _grade(rng: random.Random, kidney: bool, product: float | None) -> tuple[str | None, str | None]:
    if rng.random() < 0.02:
        return None, None  # not assessable
    if product is not None and product > 70:
        return ("calciphylaxis" if kidney and rng.random() < 0.2 else "metastatic"), "high"
    if product is not None and product > 55 and kidney:
        return "metastatic", "moderate"
    if product is None:
        return "metastatic", "low"
    kind = rng.choices(("dystrophic", "metastatic", "idiopathic", "iatrogenic", "calciphylaxis"), (4, 5, 2, 1, 1))[0]
    grade = rng.choices(("high", "moderate", "low", "negligible"), (1, 3, 10, 16))[0]
    return kind, grade
