"""The CalcinosisCutis rule library written out by hand in plain Python.

Why it exists: the benchmark measures what the cql_like engine costs compared with the same
logic as ordinary code, and a test asserts that both give identical results on every
fixture. It reads the same facts through the same data-provider protocol
(`provider.patient()`, `provider.retrieve(type_name, codes)`) and the same value set files,
and returns the output-contract defines of service/knowledge/CalcinosisCutis.cql with the
same values (CqlTuple, lists, Records, Quantity). Keep it in step with the .cql file: each
function below is named after the define it mirrors.

The service itself never uses this module: clinical rules live in the .cql library.
"""

from __future__ import annotations

import calendar
import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

from service.cql_like.quantity import Quantity
from service.cql_like.values import Code, Concept, CqlTuple, Record

VALUESET_DIR = Path(__file__).resolve().parent.parent / "service" / "knowledge" / "valuesets"
VALUESET_BASE = "https://calcinosis-cds.org/fhir/ValueSet/"
LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"

OUTPUT_DEFINES: tuple[str, ...] = (
    "Dystrophic", "Metastatic", "Idiopathic", "Iatrogenic", "Calciphylaxis",
    "Recommended Tests", "Available Tests", "Values Used", "Order Alerts", "Calcinosis Condition", "Notes",
)

VALID_RESULT_STATUSES = ("final", "amended", "corrected", "preliminary")
ACTIVE_CLINICAL_STATUSES = ("active", "recurrence", "relapse")
EXCLUDED_VERIFICATION_STATUSES = ("refuted", "entered-in-error")
OPEN_ORDER_STATUSES = ("draft", "active")
HIGH_FLAGS = ("H", "HH", "HU", ">")
LOW_FLAGS = ("L", "LL", "LU", "<")
OTHER_ABNORMAL_FLAGS = ("A", "AA")

CAXP_THRESHOLD = Quantity(Decimal(70), "mg2/dL2")
REFERENCE_ALBUMIN_G_DL = Decimal("4.0")
ALBUMIN_CORRECTION_FACTOR = Quantity(Decimal("0.8"), "mg/dL")
PLAUSIBLE_ALBUMIN_LOW_EXCLUSIVE = Quantity(Decimal(0), "g/dL")   # plausibility guard, not a clinical range
PLAUSIBLE_ALBUMIN_HIGH = Quantity(Decimal(10), "g/dL")
LOWEST_POSSIBLE_CORRECTED_CALCIUM = Quantity(Decimal(0), "mg/dL")
CALCIPHYLAXIS_RISK_FACTORS_FOR_HIGH = 1

CITATIONS = {
    "dystrophic": 'seed 002, Pathophysiology: "Dystrophic calcification is the most common type of calcinosis cutis. Serum calcium and phosphorus levels are normal. This condition is characterized by tissue damage that leads to the release of phosphate-binding proteins by dying cells."',
    "metastatic": 'seed 002, Pathophysiology: "Metastatic calcification is deposition of calcium salts in the presence of abnormal serum calcium and phosphorus levels. Calcium deposition occurs when the calcium phosphate product exceeds 70 mg^2/dL^2." and "The most common cause of metastatic calcification is chronic kidney failure. Other causes include hypervitaminosis D, hyperparathyroidism, sarcoidosis, milk-alkali syndrome, and malignant neoplasms."',
    "idiopathic": 'seed 002, Pathophysiology: "Idiopathic calcification occurs when there is deposition of calcium salts without underlying tissue damage or abnormal calcium or phosphorus levels."',
    "iatrogenic": 'seed 002, Pathophysiology: "It has been seen with intravenous calcium gluconate, calcium chloride, and para-aminosalicylic acid during the treatment of pulmonary tuberculosis." and "Tumor lysis syndrome and calcinosis cutis after organ transplant fall under this category."',
    "calciphylaxis": 'seed 002, Pearls and Other Issues: "Calciphylaxis is a disease of calcification of small and medium-sized vessels that lead to ischemia and necrosis of the overlying skin. It is seen in patients with chronic renal failure and on dialysis but can also occur in those with normal kidney functions."',
    "calciphylaxis-risk-factors": 'seed 003, Calciphylaxis: "However, there is suspicion that calcification is associated with the following conditions: • Excess weight • Diabetes • Hyperparathyroidism • Chronic kidney failure"',
    "order-alert": 'seed 002, Iatrogenic Calcification: "Iatrogenic calcification can be prevented by diluting the calcium solution and lowering phosphorus levels before administration."',
}

# (code, display, group, availability key, reason) in the order the library lists them.
SKIN_GANGRENE_SITES = ("skin", "cutaneous", "digit", "toe", "finger", "foot", "feet", "leg", "limb", "extremit", "heel", "hand",
                       "retiform")
SKIN_ULCER_SITES = ("skin", "cutaneous", "leg", "foot", "feet", "toe", "heel", "ankle", "thigh", "calf", "buttock", "abdominal wall",
                    "flank", "breast", "pressure", "decubitus", "venous", "arterial", "ischemic")
NOT_SKIN_NECROSIS_WORDS = ("peptic", "gastric", "duodenal", "corneal", "colitis", "tubular", "avascular", "femoral head",
                           "fat necrosis", "cholecyst", "gallbladder", "append", "bowel", "intestin", "colon", "lung",
                           "pulmonary", "pneumon")

PANEL: tuple[tuple[str, str, str, str, str], ...] = (
    ("58410-2", "Complete blood count (hemogram) panel - Blood by Automated count", "baseline", "cbc",
     "Complete blood count for lupus erythematosus and malignant neoplasms (seed 002, Evaluation)."),
    ("24321-2", "Basic metabolic 2000 panel - Serum or Plasma", "baseline", "metabolic",
     "Basic metabolic panel with creatinine and urea for chronic kidney failure (seed 002, Evaluation)."),
    ("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "baseline", "calcium",
     "Serum calcium for metastatic calcification and the Ca x P product (seed 002, Evaluation)."),
    ("2777-1", "Phosphate [Mass/volume] in Serum or Plasma", "baseline", "phosphate",
     "Serum phosphate for metastatic calcification and the Ca x P product (seed 002, Evaluation)."),
    ("2885-2", "Protein [Mass/volume] in Serum or Plasma", "baseline", "total-protein",
     "Total protein for metastatic calcification (seed 002, Evaluation)."),
    ("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "baseline", "albumin",
     "Albumin for metastatic calcification and the albumin-corrected calcium (seed 002, Evaluation)."),
    ("2731-8", "Parathyrin.intact [Mass/volume] in Serum or Plasma", "baseline", "pth",
     "Parathyroid hormone to rule out hyperparathyroidism (seed 002, Evaluation)."),
    ("62292-8", "25-Hydroxyvitamin D2+25-Hydroxyvitamin D3 [Mass/volume] in Serum or Plasma", "baseline", "vitamin-d",
     "Vitamin D level to rule out hypervitaminosis D (seed 002, Evaluation)."),
    ("6874-2", "Calcium [Mass/time] in 24 hour Urine", "baseline", "urine-calcium",
     "24 h urine calcium excretion for metastatic calcification (seed 002, Evaluation)."),
    ("2779-7", "Phosphate [Mass/time] in 24 hour Urine", "baseline", "urine-phosphate",
     "24 h urine phosphate excretion for metastatic calcification (seed 002, Evaluation)."),
    ("2157-6", "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma", "myositis", "ck",
     "Creatine phosphokinase to evaluate for dermatomyositis (seed 002, Evaluation)."),
    ("2532-0", "Lactate dehydrogenase [Enzymatic activity/volume] in Serum or Plasma", "myositis", "ldh",
     "Lactate dehydrogenase to evaluate for dermatomyositis (seed 002, Evaluation)."),
    ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "myositis", "ast",
     "AST (glutamic oxaloacetic transaminase) to evaluate for dermatomyositis (seed 002, Evaluation)."),
    ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "myositis", "alt",
     "ALT (glutamic pyruvic transaminase) to evaluate for dermatomyositis (seed 002, Evaluation)."),
    ("1761-6", "Aldolase [Enzymatic activity/volume] in Serum or Plasma", "myositis", "aldolase",
     "Aldolase to evaluate for dermatomyositis (seed 002, Evaluation)."),
    ("8061-4", "Nuclear Ab [Presence] in Serum", "autoimmune", "ana",
     "Antinuclear antibodies for lupus and systemic sclerosis (seed 002, Evaluation)."),
    ("5130-0", "DNA double strand Ab [Units/volume] in Serum", "autoimmune", "anti-dsdna",
     "Anti-dsDNA for lupus and systemic sclerosis (seed 002, Evaluation)."),
    ("43119-7", "Extractable nuclear Ab panel - Serum", "autoimmune", "ena",
     "Anti-ENA (Ro, La, Sm, RNP, Scl-70, Jo-1) for lupus and systemic sclerosis (seed 002, Evaluation)."),
    ("1963-8", "Bicarbonate [Moles/volume] in Serum or Plasma", "milk-alkali", "bicarbonate",
     "Bicarbonate {purpose} milk-alkali syndrome: {milk_alkali} (seed 002, Evaluation)."),
    ("2744-1", "pH of Arterial blood", "milk-alkali", "arterial-ph",
     "Arterial pH {purpose} milk-alkali syndrome: {milk_alkali} (seed 002, Evaluation)."),
)

CALCIUM_SALT_ALERT = (
    "Intravenous calcium salts can cause iatrogenic calcinosis cutis at the infusion site: dilute the solution and "
    "watch the infusion site for extravasation. Current calcium: "
)
PHOSPHATE_INFUSION_ALERT = (
    "This phosphate infusion raises phosphate, and a high phosphate or Ca x P can cause calcinosis cutis: check the "
    "current phosphate and Ca x P before giving it. Current values: "
)
WARFARIN_PHRASE = ("Not counted toward the grade: warfarin on file (a calciphylaxis risk factor in the project's clinical notes; the source articles "
                   "name it as a treatment of calcinosis). ")
NECROTIC_SKIN_WORDS = ("eschar", "retiform purpura", "necros", "necrotic")
VALUE_USED_NOTE_ANALYTES = ("calcium", "calcium-ionized", "phosphate", "pth", "vitamin-d-25oh", "creatinine", "egfr", "albumin")


class DataProvider(Protocol):
    def patient(self) -> Record | None: ...

    def retrieve(self, type_name: str, codes: frozenset[Code] | None) -> Sequence[Record]: ...


def load_valuesets(directory: Path = VALUESET_DIR) -> dict[str, frozenset[Code]]:
    """slug -> codes, from the FHIR ValueSet files the library compiles against."""
    sets: dict[str, frozenset[Code]] = {}
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        codes = {Code(c["code"], c["system"]) for c in data.get("expansion", {}).get("contains", [])}
        for include in data.get("compose", {}).get("include", []):
            codes |= {Code(c["code"], include["system"]) for c in include.get("concept", [])}
        sets[data["url"].removeprefix(VALUESET_BASE)] = frozenset(codes)
    return sets


# ---- small functions mirroring section 3 of the library -----------------------------------

def _format_decimal(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if "." in text else text + ".0"


def number_text(value: Decimal) -> str:
    if value == int(value):
        return str(int(value))
    return _format_decimal(value)


def unit_text(unit: str) -> str:
    return "mL/min/1.73 m2" if unit == "mL/min/{1.73_m2}" else unit


def show(q: Quantity) -> str:
    return f"{number_text(q.value)} {unit_text(q.unit)}"


def show_rounded(q: Quantity) -> str:
    return f"{number_text(q.value.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP))} {unit_text(q.unit)}"


def day(value: datetime) -> str:
    return value.date().isoformat()


def flag_suffix(flag: str | None) -> str:
    return " (no flag)" if flag is None else f" ({flag})"


def is_high(flag: str | None) -> bool:
    return flag in HIGH_FLAGS


def is_low(flag: str | None) -> bool:
    return flag in LOW_FLAGS


def is_normal(flag: str | None) -> bool:
    return flag == "N"


def is_abnormal(flag: str | None) -> bool:
    return is_high(flag) or is_low(flag) or flag in OTHER_ABNORMAL_FLAGS


def is_known(flag: str | None) -> bool:
    return is_normal(flag) or is_abnormal(flag)


def mentions(text: str | None, terms: Iterable[str]) -> bool:
    """Plain substring search of the lower-cased text (a name of any length is searched)."""
    if text is None:
        return False
    lowered = text.lower()
    return any(term in lowered for term in terms)


def has_word(text: str | None, pattern: str) -> bool:
    """A space-separated word of at most 100 characters holding the pattern with no letter next to it."""
    if text is None:
        return False
    return any(len(w) <= 100 and re.fullmatch("(.*[^a-z])?(" + pattern + ")([^a-z].*)?", w, flags=re.DOTALL) is not None
               for w in text.lower().split(" "))


def supersession_rank(status: str | None) -> int:
    if status in ("amended", "corrected"):
        return 2
    return 1 if status == "final" else 0


def says_intravenous(text: str | None) -> bool:
    return mentions(text, ("intravenous",)) or has_word(text, r"i\.v\.?|iv|ivpb")


def concept_text(concept: Concept | None) -> str:
    if concept is None:
        return " "
    # A CQL query with a return clause is distinct by default, so repeated displays appear once.
    displays = " ".join(distinct(c.display for c in concept.codes if c.display is not None))
    return ((concept.display or "") + " " + displays).lower()


def concept_name(concept: Concept | None) -> str:
    if concept is None:
        return "unnamed concept"
    if concept.display is not None:
        return concept.display
    for c in concept.codes:
        if c.display is not None:
            return c.display
    if concept.codes:
        return concept.codes[0].code
    return "unnamed concept"


def route_name(route: Concept | None) -> str | None:
    if route is None:
        return None
    if route.display is not None:
        return route.display
    return next((c.display for c in route.codes if c.display is not None), None)


def has_icd10cm_code(concept: Concept | None, pattern: str) -> bool:
    return concept is not None and any(
        x.system == ICD10CM and x.code is not None and re.fullmatch(pattern, x.code, flags=re.DOTALL) for x in concept.codes)


def in_valueset(concept: Concept | None, codes: frozenset[Code]) -> bool:
    return concept is not None and any(Code(c.code, c.system) in codes for c in concept.codes)


def distinct(items: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def combine(items: Iterable[str | None], separator: str) -> str:
    return separator.join(i for i in items if i is not None)


def count(items: Iterable[Any]) -> int:
    return sum(1 for i in items if i is not None)


def subtract_duration(moment: datetime, duration: Quantity) -> datetime:
    """Now() - Lookback with CQL calendar semantics (year/month keep the day, clamped)."""
    amount = int(duration.value)
    unit = duration.unit.rstrip("s")
    if unit in ("year", "a"):
        return _shift_months(moment, -12 * amount)
    if unit in ("month", "mo"):
        return _shift_months(moment, -amount)
    days = {"week": 7, "wk": 7, "day": 1, "d": 1}.get(unit)
    if days is None:
        raise ValueError(f"unsupported lookback unit {duration.unit!r}")
    from datetime import timedelta
    return moment - timedelta(days=days * amount)


def _shift_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return moment.replace(year=year, month=month + 1, day=min(moment.day, last))


def _tuple(**elements: Any) -> CqlTuple:
    return CqlTuple(elements)


# ---- the library ---------------------------------------------------------------------------

@dataclass
class HandwrittenCalcinosisRules:
    """One patient's evaluation; each cached property mirrors the define of the same name."""

    provider: DataProvider
    now: datetime
    lookback: Quantity
    valuesets: dict[str, frozenset[Code]]

    # -- retrieval and facts ------------------------------------------------------------------
    def _retrieve(self, type_name: str, slug: str | None = None) -> list[Record]:
        codes = None if slug is None else self.valuesets[slug]
        return list(self.provider.retrieve(type_name, codes))

    @cached_property
    def lookback_start(self) -> datetime:
        return subtract_duration(self.now, self.lookback)

    def current_reports(self, results: list[Record]) -> list[Record]:
        kept = [o for o in results
                if o.get("status") in VALID_RESULT_STATUSES and o.get("effective") is not None
                and self.lookback_start <= o.get("effective") <= self.now]
        # sort by effective desc, issued desc (nulls last), supersession rank desc; stable.
        return sorted(kept, key=lambda o: (o.get("effective"), o.get("issued") is not None,
                                           o.get("issued") or o.get("effective"),
                                           supersession_rank(o.get("status"))), reverse=True)

    def current_results(self, results: list[Record]) -> list[Record]:
        return [o for o in self.current_reports(results) if o.get("value") is not None]

    def latest(self, slug: str) -> Record | None:
        found = self.current_results(self._retrieve("Observation", slug))
        return found[0] if found else None

    def latest_report(self, slug: str) -> Record | None:
        found = self.current_reports(self._retrieve("Observation", slug))
        return found[0] if found else None

    def active(self, conditions: list[Record]) -> list[Record]:
        return [c for c in conditions
                if (c.get("clinicalStatus") is None or c.get("clinicalStatus") in ACTIVE_CLINICAL_STATUSES)
                and (c.get("verificationStatus") is None or c.get("verificationStatus") not in EXCLUDED_VERIFICATION_STATUSES)]

    def active_in(self, slug: str) -> list[Record]:
        return self.active(self._retrieve("Condition", slug))

    @staticmethod
    def names(conditions: list[Record]) -> list[str]:
        return distinct(concept_name(c.get("code")) for c in conditions)

    @cached_property
    def lookback_text(self) -> str:
        return f"{number_text(self.lookback.value)} {self.lookback.unit}"

    @cached_property
    def calcium(self) -> Record | None:
        return self.latest("calcium-total")

    @cached_property
    def ionized_calcium(self) -> Record | None:
        return self.latest("calcium-ionized")

    @cached_property
    def phosphate(self) -> Record | None:
        return self.latest("phosphate")

    @cached_property
    def albumin(self) -> Record | None:
        return self.latest("albumin")

    @cached_property
    def pth(self) -> Record | None:
        return self.latest("pth-intact")

    @cached_property
    def vitamin_d(self) -> Record | None:
        return self.latest("vitamin-d-25oh")

    @cached_property
    def creatinine(self) -> Record | None:
        return self.latest("creatinine")

    @cached_property
    def egfr(self) -> Record | None:
        return self.latest("egfr")

    @cached_property
    def availability(self) -> dict[str, Record | None]:
        metabolic = self.latest_report("metabolic-panel")
        return {
            "cbc": self.latest_report("complete-blood-count"),
            "metabolic": metabolic if metabolic is not None else self.creatinine,
            "calcium": self.calcium,
            "phosphate": self.phosphate,
            "total-protein": self.latest("total-protein"),
            "albumin": self.albumin,
            "pth": self.pth,
            "vitamin-d": self.vitamin_d,
            "urine-calcium": self.latest("urine-calcium-24h"),
            "urine-phosphate": self.latest("urine-phosphate-24h"),
            "ck": self.latest("creatine-kinase"),
            "ldh": self.latest("lactate-dehydrogenase"),
            "ast": self.latest("aspartate-aminotransferase"),
            "alt": self.latest("alanine-aminotransferase"),
            "aldolase": self.latest("aldolase"),
            "ana": self.latest_report("antinuclear-antibody"),
            "anti-dsdna": self.latest_report("anti-dsdna"),
            "ena": self.latest_report("ena-panel"),
            "bicarbonate": self.latest("bicarbonate"),
            "arterial-ph": self.latest("arterial-ph"),
        }

    # -- conditions, procedures, medications --------------------------------------------------
    @cached_property
    def active_conditions(self) -> list[Record]:
        return self.active(self._retrieve("Condition"))

    @cached_property
    def myositis_conditions(self) -> list[Record]:
        dm = self.valuesets["dermatomyositis"]
        return [c for c in self.active_conditions
                if in_valueset(c.get("code"), dm) or has_icd10cm_code(c.get("code"), r"M33.*")
                or mentions(concept_text(c.get("code")), ("myositis",))]

    @cached_property
    def autoimmune_conditions(self) -> list[Record]:
        sets = [self.valuesets[slug] for slug in
                ("systemic-sclerosis", "lupus", "rheumatoid-arthritis", "sjogren", "mixed-connective-tissue-disease")]
        return [c for c in self.active_conditions
                if any(in_valueset(c.get("code"), vs) for vs in sets)
                or has_icd10cm_code(c.get("code"), r"(M05|M06|M32|M34|M35\.0|M35\.1).*")
                or mentions(concept_text(c.get("code")), ("lupus erythematosus", "lupus panniculitis", "scleroderma", "systemic sclerosis",
                                                       "crest syndrome", "sjogren", "mixed connective tissue", "rheumatoid arthritis"))]

    @cached_property
    def tissue_damage(self) -> list[Record]:
        return self.autoimmune_conditions + self.myositis_conditions + self.active_in("dystrophic-other-causes")

    @cached_property
    def ckd_conditions(self) -> list[Record]:
        return self.active_in("chronic-kidney-disease")

    @cached_property
    def esrd_conditions(self) -> list[Record]:
        return self.active_in("end-stage-renal-disease")

    @cached_property
    def dialysis_conditions(self) -> list[Record]:
        return self.active_in("dialysis")

    @cached_property
    def dialysis_procedures(self) -> list[Record]:
        return [p for p in self._retrieve("Procedure", "dialysis") if p.get("status") in ("completed", "in-progress")]

    @cached_property
    def ckd_stage5_conditions(self) -> list[Record]:
        snomed = self.active(list(self.provider.retrieve("Condition", frozenset({Code("433146000", "http://snomed.info/sct")}))))
        icd = self.active(list(self.provider.retrieve("Condition", frozenset({Code("N18.5", ICD10CM)}))))
        return snomed + icd

    @cached_property
    def has_renal_failure(self) -> bool:
        return (bool(self.esrd_conditions) or bool(self.ckd_stage5_conditions) or bool(self.dialysis_conditions)
                or bool(self.dialysis_procedures))

    @cached_property
    def has_ckd_or_esrd(self) -> bool:
        return bool(self.ckd_conditions) or self.has_renal_failure

    @cached_property
    def hyperparathyroidism_conditions(self) -> list[Record]:
        return self.active_in("hyperparathyroidism")

    @cached_property
    def milk_alkali_conditions(self) -> list[Record]:
        return self.active_in("milk-alkali-syndrome")

    @cached_property
    def malignancy_conditions(self) -> list[Record]:
        vs = self.valuesets["malignancy"]
        out = []
        for c in self.active_conditions:
            concept = c.get("code")
            if in_valueset(concept, vs) or has_icd10cm_code(concept, r"C([0-8][0-9]|9[0-6]).*"):
                out.append(c)
        return out

    @cached_property
    def metastatic_cause_conditions(self) -> list[Record]:
        return (self.ckd_conditions + self.esrd_conditions + self.dialysis_conditions + self.hyperparathyroidism_conditions
                + self.active_in("hypervitaminosis-d") + self.active_in("sarcoidosis") + self.milk_alkali_conditions
                + self.malignancy_conditions)

    @cached_property
    def skin_necrosis_conditions(self) -> list[Record]:
        out = []
        for c in self.active_conditions:
            text = concept_text(c.get("code"))
            if mentions(text, NOT_SKIN_NECROSIS_WORDS):
                continue
            if (mentions(text, ("eschar", "retiform purpura"))
                    or (mentions(text, ("gangren",)) and mentions(text, SKIN_GANGRENE_SITES))
                    or (mentions(text, ("ulcer", "necros", "necrotic")) and mentions(text, SKIN_ULCER_SITES))):
                out.append(c)
        return out

    @cached_property
    def calciphylaxis_conditions(self) -> list[Record]:
        vs = self.valuesets["calciphylaxis"]
        return [c for c in self.active_conditions
                if in_valueset(c.get("code"), vs) or mentions(concept_text(c.get("code")), ("calciphylaxis",))]

    @cached_property
    def diabetes_conditions(self) -> list[Record]:
        vs = self.valuesets["diabetes"]
        return [c for c in self.active_conditions
                if in_valueset(c.get("code"), vs) or mentions(concept_text(c.get("code")), ("diabetes mellitus",))]

    @cached_property
    def on_warfarin(self) -> bool:
        vs = self.valuesets["warfarin"]
        for type_name in ("MedicationRequest", "MedicationStatement"):
            for m in self._retrieve(type_name):
                if m.get("status") in ("active", "completed") and (
                        in_valueset(m.get("code"), vs) or mentions(m.get("name"), ("warfarin",))):
                    return True
        return False

    def is_intravenous_route(self, route: Concept | None) -> bool:
        return in_valueset(route, self.valuesets["intravenous-route"]) or says_intravenous(concept_text(route))

    def is_calcium_or_phosphate_infusion(self, name: str | None, route: Concept | None) -> bool:
        if mentions(name, ("calcium chloride",)):
            return True
        drug = mentions(name, ("calcium gluconate",)) or (
            mentions(name, ("potassium phosphate", "sodium phosphate", "potassium glycerophosphate", "sodium glycerophosphate"))
            and not mentions(name, ("methasone", "solone", "cortisone", "clindamycin", "oseltamivir", "codeine", "chloroquine", "primaquine", "fosphenytoin", "sitagliptin", "estramustine", "fludarabine")))
        intravenous = (mentions(name, ("inject", "infusion")) or has_word(name, "inj") or says_intravenous(name)
                       or self.is_intravenous_route(route))
        return drug and intravenous

    @staticmethod
    def is_pas(name: str | None) -> bool:
        return mentions(name, ("aminosalicyl",)) and not mentions(name, ("5-aminosalicyl",))

    def is_iatrogenic_drug(self, name: str | None, route: Concept | None) -> bool:
        return self.is_calcium_or_phosphate_infusion(name, route) or self.is_pas(name)

    def within_lookback_or_undated(self, value: datetime | None) -> bool:
        return value is None or value >= self.lookback_start

    @cached_property
    def iatrogenic_drug_names(self) -> list[str | None]:
        names: list[str | None] = []
        for type_name, statuses, date_field in (
                ("MedicationAdministration", ("completed", "in-progress"), "effective"),
                ("MedicationStatement", ("active", "completed"), "effective"),
                ("MedicationRequest", ("active", "completed"), "authoredOn")):
            for m in self._retrieve(type_name):
                if (m.get("status") in statuses and self.within_lookback_or_undated(m.get(date_field))
                        and self.is_iatrogenic_drug(m.get("name"), m.get("route"))):
                    names.append(m.get("name"))
        return distinct(names)

    @cached_property
    def iatrogenic_exposures(self) -> list[str]:
        texts: list[str] = []
        for type_name, statuses, date_field in (
                ("MedicationAdministration", ("completed", "in-progress"), "effective"),
                ("MedicationStatement", ("active", "completed"), "effective"),
                ("MedicationRequest", ("active", "completed"), "authoredOn")):
            for m in self._retrieve(type_name):
                if (m.get("status") in statuses and self.within_lookback_or_undated(m.get(date_field))
                        and self.is_iatrogenic_drug(m.get("name"), m.get("route"))):
                    when = m.get(date_field)
                    parts = [p for p in (route_name(m.get("route")), "undated" if when is None else day(when)) if p is not None]
                    texts.append(f"{m.get('name')} ({', '.join(parts)})")
        return distinct(texts)

    @cached_property
    def tumor_lysis_conditions(self) -> list[Record]:
        return self.active_in("tumor-lysis-syndrome")

    @cached_property
    def transplant_names(self) -> list[str]:
        vs = self.valuesets["organ-transplant"]
        conditions = [c for c in self.active_conditions
                      if in_valueset(c.get("code"), vs) or has_icd10cm_code(c.get("code"), r"Z94.*")]
        procedures = [p for p in self._retrieve("Procedure")
                      if p.get("status") == "completed" and mentions(concept_text(p.get("code")), ("transplant",))]
        return distinct(self.names(conditions) + [concept_name(p.get("code")) for p in procedures])

    @cached_property
    def alkali_intake(self) -> list[str | None]:
        out: list[str | None] = []
        for type_name in ("MedicationStatement", "MedicationRequest"):
            out.extend(distinct(m.get("name") for m in self._retrieve(type_name) if m.get("status") in ("active", "completed")
                                and mentions(m.get("name"), ("calcium carbonate", "calcium citrate", "calcium acetate", "antacid", "sodium bicarbonate", "tums"))))
        return out

    @cached_property
    def open_calcium_or_phosphate_orders(self) -> list[Record]:
        return [m for m in self._retrieve("MedicationRequest")
                if m.get("status") in OPEN_ORDER_STATUSES and self.is_calcium_or_phosphate_infusion(m.get("name"), m.get("route"))]

    # -- derived lab picture ------------------------------------------------------------------
    @cached_property
    def albumin_correction_applies(self) -> bool:
        return (self.calcium is not None and self.albumin is not None and not self.has_ckd_or_esrd
                and self.calcium.get("value").unit == "mg/dL" and self.albumin.get("value").unit in ("g/dL", "g/L"))

    @cached_property
    def albumin_in_g_dl(self) -> Quantity | None:
        return self.albumin.get("value").convert("g/dL") if self.albumin is not None else None

    @cached_property
    def albumin_implausible(self) -> bool:
        if not self.albumin_correction_applies:
            return False
        albumin = self.albumin_in_g_dl
        return not (PLAUSIBLE_ALBUMIN_LOW_EXCLUSIVE < albumin <= PLAUSIBLE_ALBUMIN_HIGH)

    @cached_property
    def albumin_looks_like_g_per_l(self) -> bool:
        albumin = self.albumin_in_g_dl
        return albumin is not None and Quantity(Decimal(10), "g/dL") < albumin <= Quantity(Decimal(100), "g/dL")

    @cached_property
    def computed_corrected_calcium(self) -> Quantity | None:
        if not self.albumin_correction_applies or self.albumin_implausible:
            return None
        albumin_g_dl = self.albumin_in_g_dl.value
        return self.calcium.get("value") + ALBUMIN_CORRECTION_FACTOR * (REFERENCE_ALBUMIN_G_DL - albumin_g_dl)

    @cached_property
    def corrected_calcium_impossible(self) -> bool:
        corrected = self.computed_corrected_calcium
        return corrected is not None and corrected <= LOWEST_POSSIBLE_CORRECTED_CALCIUM

    @cached_property
    def corrected_calcium(self) -> Quantity | None:
        return None if self.corrected_calcium_impossible else self.computed_corrected_calcium

    def _implausible_albumin_text(self) -> str:
        hint = " (g/L sent as g/dL?)" if self.albumin_looks_like_g_per_l else ""
        return f"{show(self.albumin.get('value'))} on {day(self.albumin.get('effective'))} is implausible{hint}"

    def _impossible_correction_text(self) -> str:
        return (f"Ca {show(self.calcium.get('value'))} with albumin {show(self.albumin.get('value'))} gives a value "
                f"<= {show(LOWEST_POSSIBLE_CORRECTED_CALCIUM)}, which is impossible")

    @cached_property
    def albumin_correction_refusal(self) -> str | None:
        if self.albumin_implausible:
            return f"albumin {self._implausible_albumin_text()}: corrected calcium not computed"
        if self.corrected_calcium_impossible:
            return f"corrected calcium not computed: {self._impossible_correction_text()}"
        return None

    @cached_property
    def corrected_calcium_flag(self) -> str | None:
        if self.corrected_calcium is None or self.calcium.get("referenceRange") is None:
            return None
        rng = self.calcium.get("referenceRange")
        # A comparison with a missing bound is null in CQL, so `if` falls through to the next branch.
        if rng.low is not None and self.corrected_calcium < rng.low:
            return "L"
        if rng.high is not None and self.corrected_calcium > rng.high:
            return "H"
        if rng.low is None or rng.high is None or self.calcium.get("interpretation") is None:
            return None  # inside a range that cannot judge the total calcium: unknown, not normal
        return "N"

    @cached_property
    def ionized_calcium_decides(self) -> bool:
        if self.ionized_calcium is None:
            return False
        return self.calcium is None or day(self.ionized_calcium.get("effective")) >= day(self.calcium.get("effective"))

    @property
    def ionized_calcium_older_than_total(self) -> bool:
        return self.ionized_calcium is not None and not self.ionized_calcium_decides

    @cached_property
    def calcium_flag(self) -> str | None:
        if self.ionized_calcium_decides and self.ionized_calcium.get("interpretation") is not None:
            return self.ionized_calcium.get("interpretation")
        if self.corrected_calcium_flag is not None:
            return self.corrected_calcium_flag
        return self.calcium.get("interpretation") if self.calcium is not None else None

    @cached_property
    def phosphate_flag(self) -> str | None:
        return self.phosphate.get("interpretation") if self.phosphate is not None else None

    @cached_property
    def caxp(self) -> Quantity | None:
        calcium = self.corrected_calcium if self.corrected_calcium is not None else (
            self.calcium.get("value") if self.calcium is not None else None)
        if calcium is None or self.phosphate is None:
            return None
        if calcium.unit != "mg/dL" or self.phosphate.get("value").unit != "mg/dL":
            return None
        return calcium * self.phosphate.get("value")

    @cached_property
    def caxp_text(self) -> str | None:
        """One decimal, two within 0.5 of the threshold, every digit when two still read the threshold."""
        if self.caxp is None:
            return None
        value, limit = self.caxp.value, CAXP_THRESHOLD.value
        if abs(value - limit) >= Decimal("0.5"):
            return show_rounded(self.caxp)
        two = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        if two == limit and value != limit:
            return show(self.caxp)
        return f"{number_text(two)} {self.caxp.unit}"

    @cached_property
    def caxp_above_threshold(self) -> bool:
        return self.caxp is not None and self.caxp > CAXP_THRESHOLD

    @property
    def calcium_known(self) -> bool:
        return is_known(self.calcium_flag)

    @property
    def phosphate_known(self) -> bool:
        return is_known(self.phosphate_flag)

    @property
    def no_labs(self) -> bool:
        return not self.calcium_known and not self.phosphate_known

    @property
    def labs_normal(self) -> bool:
        return is_normal(self.calcium_flag) and is_normal(self.phosphate_flag)

    @property
    def ca_or_p_high(self) -> bool:
        return is_high(self.calcium_flag) or is_high(self.phosphate_flag)

    @property
    def ca_or_p_abnormal(self) -> bool:
        return is_abnormal(self.calcium_flag) or is_abnormal(self.phosphate_flag)

    @property
    def pth_high(self) -> bool:
        return self.pth is not None and is_high(self.pth.get("interpretation"))

    @property
    def vitamin_d_high(self) -> bool:
        return self.vitamin_d is not None and is_high(self.vitamin_d.get("interpretation"))

    def _obs_phrase(self, prefix: str, o: Record) -> str:
        return f"{prefix} {show(o.get('value'))} on {day(o.get('effective'))}{flag_suffix(o.get('interpretation'))}"

    @cached_property
    def calcium_phrase(self) -> str:
        if self.calcium is None and self.ionized_calcium is None:
            calcium_phrase = f"no usable calcium result within {self.lookback_text}"
        else:
            parts = []
            if self.ionized_calcium_older_than_total:
                ion, total = self.ionized_calcium, self.calcium
                parts.append(f"ionized Ca {show(ion.get('value'))} on {day(ion.get('effective'))} is older than total Ca "
                             f"{show(total.get('value'))} on {day(total.get('effective'))}: total used")
            elif self.ionized_calcium is not None:
                parts.append(self._obs_phrase("ionized Ca", self.ionized_calcium))
            if self.calcium is not None:
                parts.append(self._obs_phrase("Ca", self.calcium))
            if self.corrected_calcium is not None:
                parts.append(f"albumin-corrected Ca {show_rounded(self.corrected_calcium)} (albumin "
                             f"{show(self.albumin.get('value'))} on {day(self.albumin.get('effective'))})"
                             f"{flag_suffix(self.corrected_calcium_flag)}")
            if self.albumin_correction_refusal is not None:
                parts.append(self.albumin_correction_refusal)
            calcium_phrase = ", ".join(parts)
        return calcium_phrase

    @cached_property
    def phosphate_phrase(self) -> str:
        if self.phosphate is None:
            return f"no usable phosphate result within {self.lookback_text}"
        return (f"P {show(self.phosphate.get('value'))} on {day(self.phosphate.get('effective'))}"
                f"{flag_suffix(self.phosphate_flag)}")

    @cached_property
    def caxp_phrase(self) -> str:
        if self.caxp is None:
            return "Ca x P cannot be computed"
        if self.caxp_above_threshold:
            return f"Ca x P {self.caxp_text} exceeds {show(CAXP_THRESHOLD)}"
        return f"Ca x P {self.caxp_text} does not exceed {show(CAXP_THRESHOLD)}"

    @cached_property
    def caxp_dated_phrase(self) -> str:
        if self.caxp is None:
            return self.caxp_phrase
        return (f"{self.caxp_phrase} (calcium of {day(self.calcium.get('effective'))}, "
                f"phosphate of {day(self.phosphate.get('effective'))})")

    @cached_property
    def lab_summary(self) -> str:
        calcium_phrase, phosphate_phrase, caxp_phrase = self.calcium_phrase, self.phosphate_phrase, self.caxp_phrase
        if self.no_labs:
            ending = ": calcium and phosphate are unknown, not normal."
        elif not self.calcium_known or not self.phosphate_known:
            ending = ": calcium or phosphate status is unknown."
        else:
            ending = "."
        return f"Labs: {calcium_phrase}; {phosphate_phrase}; {caxp_phrase}{ending}"

    def _pth_text(self) -> str:
        return f"PTH {show(self.pth.get('value'))} on {day(self.pth.get('effective'))} ({self.pth.get('interpretation')})"

    # -- grades ---------------------------------------------------------------------------------
    @cached_property
    def calciphylaxis_risk_factors(self) -> list[str]:
        out = self.names(self.active_in("obesity")) + self.names(self.diabetes_conditions) + self.names(self.hyperparathyroidism_conditions)
        if self.pth_high:
            out.append(self._pth_text())
        return out

    @cached_property
    def necrotic_skin_conditions(self) -> list[Record]:
        return [c for c in self.skin_necrosis_conditions if mentions(concept_text(c.get("code")), NECROTIC_SKIN_WORDS)]

    @cached_property
    def calciphylaxis(self) -> CqlTuple:
        necrosis = self.skin_necrosis_conditions
        factors = self.calciphylaxis_risk_factors
        if self.calciphylaxis_conditions:
            risk = "high"
        elif self.has_renal_failure and necrosis and count(factors) >= CALCIPHYLAXIS_RISK_FACTORS_FOR_HIGH:
            risk = "high"
        elif necrosis and self.has_ckd_or_esrd:
            risk = "moderate"
        elif self.necrotic_skin_conditions and count(factors) >= 1:
            risk = "moderate"
        elif self.has_ckd_or_esrd or necrosis:
            risk = "low"
        else:
            risk = "negligible"
        renal_names = distinct(self.names(self.esrd_conditions) + self.names(self.ckd_stage5_conditions)
                               + self.names(self.dialysis_conditions)
                               + [concept_name(p.get("code")) for p in self.dialysis_procedures])
        text = ""
        if self.calciphylaxis_conditions:
            text += f"Calciphylaxis is on file: {combine(self.names(self.calciphylaxis_conditions), ', ')}. "
        if self.has_renal_failure:
            text += f"Kidney failure / dialysis: {combine(renal_names, ', ')}. "
        elif self.has_ckd_or_esrd:
            text += f"Chronic kidney disease (not on dialysis): {combine(self.names(self.ckd_conditions), ', ')}. "
        else:
            text += "No chronic kidney disease, ESRD or dialysis on file. "
        text += (f"Skin necrosis or ulceration: {combine(self.names(necrosis), ', ')}. " if necrosis
                 else "No skin necrosis or ulceration on file. ")
        text += (f"Risk factors: {combine(factors, ', ')}. " if count(factors) > 0
                 else "No risk factors (obesity, diabetes, hyperparathyroidism) on file. ")
        if self.on_warfarin:
            text += WARFARIN_PHRASE
        text += self.lab_summary
        return _tuple(type="calciphylaxis", risk=risk, rationale=text,
                      citation=CITATIONS["calciphylaxis"] + " " + CITATIONS["calciphylaxis-risk-factors"])

    @cached_property
    def metastatic_causes(self) -> list[str]:
        out = self.names(self.metastatic_cause_conditions) + [concept_name(p.get("code")) for p in self.dialysis_procedures]
        if self.pth_high:
            out.append(self._pth_text())
        if self.vitamin_d_high:
            v = self.vitamin_d
            out.append(f"25-OH vitamin D {show(v.get('value'))} on {day(v.get('effective'))} ({v.get('interpretation')})")
        if self.milk_alkali_intake_picture:
            out.append(f"milk-alkali picture: {self.milk_alkali_intake_phrase}{self.bicarbonate_phrase}")
        return distinct(out)

    @cached_property
    def calcium_decided_phrase(self) -> str:
        if self.ionized_calcium_decides and self.ionized_calcium.get("interpretation") is not None:
            text = f"ionized calcium {show(self.ionized_calcium.get('value'))}"
        elif self.corrected_calcium_flag is not None:
            text = f"albumin-corrected calcium {show_rounded(self.corrected_calcium)}"
        else:
            text = f"calcium {show(self.calcium.get('value'))}"
        return text + flag_suffix(self.calcium_flag)

    @cached_property
    def milk_alkali_intake_picture(self) -> bool:
        return (is_high(self.calcium_flag) or bool(self.active_in("hypercalcemia"))) and count(self.alkali_intake) > 0

    @cached_property
    def milk_alkali_intake_phrase(self) -> str | None:
        if not self.milk_alkali_intake_picture:
            return None
        lead = (self.calcium_decided_phrase if is_high(self.calcium_flag)
                else combine(self.names(self.active_in("hypercalcemia")), ", ") + " on file")
        return f"{lead} with {combine(self.alkali_intake, ', ')} intake"

    @cached_property
    def bicarbonate_phrase(self) -> str:
        b = self.latest("bicarbonate")
        if b is None:
            return ""
        return f", bicarbonate {show(b.get('value'))} on {day(b.get('effective'))}{flag_suffix(b.get('interpretation'))}"

    @property
    def milk_alkali_purpose(self) -> str:
        return "to assess" if self.milk_alkali_conditions else "to rule out"

    @cached_property
    def milk_alkali_reason(self) -> str:
        if self.milk_alkali_intake_phrase is not None:
            return self.milk_alkali_intake_phrase
        return combine(self.names(self.milk_alkali_conditions), ", ") + " on file"

    @property
    def has_metastatic_cause(self) -> bool:
        return count(self.metastatic_causes) > 0

    @property
    def vitamin_d_unflagged(self) -> bool:
        return self.vitamin_d is not None and self.vitamin_d.get("interpretation") is None

    @property
    def calciphylaxis_picture_below_threshold(self) -> bool:
        return self.has_renal_failure and bool(self.skin_necrosis_conditions) and not self.caxp_above_threshold

    @cached_property
    def metastatic(self) -> CqlTuple:
        both_known = self.calcium_known and self.phosphate_known
        cause = self.has_metastatic_cause
        would_be_high = self.ca_or_p_high and (self.caxp_above_threshold or cause)
        if would_be_high and not self.calciphylaxis_picture_below_threshold:
            risk = "high"
        elif self.ca_or_p_high:
            risk = "moderate"
        elif self.labs_normal and self.caxp_above_threshold:
            risk = "moderate"
        elif cause and not both_known:
            risk = "moderate"
        elif cause or self.ca_or_p_abnormal or not both_known:
            risk = "low"
        else:
            risk = "negligible"
        if self.ca_or_p_high:
            lead = "Calcium and/or phosphate are high. "
        elif self.labs_normal:
            lead = "Calcium and phosphate are within the applied ranges. "
        elif self.ca_or_p_abnormal:
            lead = "Calcium or phosphate is abnormal but not high. "
        else:
            lead = ""
        if cause:
            tail = f" Causes of metastatic calcinosis on file: {combine(self.metastatic_causes, ', ')}."
        elif self.vitamin_d_unflagged:
            tail = (" No cause of metastatic calcinosis (kidney failure, hyperparathyroidism, sarcoidosis, "
                    "milk-alkali syndrome, malignancy) on file.")
        else:
            tail = (" No cause of metastatic calcinosis (kidney failure, hypervitaminosis D, hyperparathyroidism, sarcoidosis, "
                    "milk-alkali syndrome, malignancy) on file.")
        if self.vitamin_d_unflagged and not self.active_in("hypervitaminosis-d"):
            tail += (f" 25-OH vitamin D {show(self.vitamin_d.get('value'))}: no upper reference limit is known, "
                     "so a high level cannot be flagged (hypervitaminosis D not excluded).")
        if self.calciphylaxis_picture_below_threshold and would_be_high:
            tail += (" Graded at most moderate: kidney failure with skin necrosis or ulceration and a Ca x P not above "
                     f"{show(CAXP_THRESHOLD)} points to calciphylaxis.")
        labs = [f"{label} {show(o.get('value'))} on {day(o.get('effective'))}{flag_suffix(o.get('interpretation'))}"
                for label, o in (("creatinine", self.creatinine), ("eGFR", self.egfr), ("PTH", self.pth),
                                 ("25-OH vitamin D", self.vitamin_d)) if o is not None]
        other = (f" Other labs: {', '.join(labs)}." if labs
                 else f" No usable creatinine, eGFR, PTH or 25-OH vitamin D result within {self.lookback_text}.")
        return _tuple(type="metastatic", risk=risk, rationale=lead + self.lab_summary + other + tail,
                      citation=CITATIONS["metastatic"])

    @property
    def has_iatrogenic_drug(self) -> bool:
        return count(self.iatrogenic_drug_names) > 0

    @property
    def has_iatrogenic_cause(self) -> bool:
        return self.has_iatrogenic_drug or bool(self.tumor_lysis_conditions) or count(self.transplant_names) > 0

    @cached_property
    def iatrogenic(self) -> CqlTuple:
        orders = self.open_calcium_or_phosphate_orders
        if self.has_iatrogenic_drug or self.tumor_lysis_conditions:
            risk = "high"
        elif count(self.transplant_names) > 0:
            risk = "moderate"
        elif orders:
            risk = "low"
        else:
            risk = "negligible"
        if not self.has_iatrogenic_cause and not orders:
            text = ("No intravenous calcium or phosphate, para-aminosalicylic acid, tumor lysis syndrome or organ transplant "
                    f"on file within {self.lookback_text}.")
        else:
            parts = []
            if self.has_iatrogenic_drug:
                parts.append(f"Calcium/phosphate-containing or para-aminosalicylic acid treatment: {combine(self.iatrogenic_exposures, ', ')}.")
            if self.tumor_lysis_conditions:
                parts.append(f"Tumor lysis syndrome: {combine(self.names(self.tumor_lysis_conditions), ', ')}.")
            if count(self.transplant_names) > 0:
                parts.append(f"Organ transplant: {combine(self.transplant_names, ', ')}.")
            if orders:
                parts.append(f"Open order: {combine(distinct(m.get('name') for m in orders), ', ')}.")
            text = " ".join(parts)
        return _tuple(type="iatrogenic", risk=risk, rationale=text, citation=CITATIONS["iatrogenic"])

    @cached_property
    def dystrophic(self) -> CqlTuple:
        damage = self.tissue_damage
        if damage and self.labs_normal:
            risk = "high"
        elif damage and not self.ca_or_p_abnormal:
            risk = "moderate"
        elif damage:
            risk = "low"
        elif self.labs_normal:
            risk = "low"
        elif self.ca_or_p_abnormal:
            risk = "negligible"
        else:
            risk = "low"
        lead = (f"Tissue damage on file: {combine(self.names(damage), ', ')}. " if damage
                else "No connective tissue disease or other tissue damage on file. ")
        return _tuple(type="dystrophic", risk=risk, rationale=lead + self.lab_summary, citation=CITATIONS["dystrophic"])

    @cached_property
    def idiopathic(self) -> CqlTuple:
        other = bool(self.tissue_damage) or self.has_iatrogenic_cause or self.has_metastatic_cause or bool(self.calciphylaxis_conditions)
        if other or self.ca_or_p_abnormal or self.caxp_above_threshold:
            risk = "negligible"
        elif self.labs_normal and self.calcinosis_condition is not None:
            risk = "high"
        elif self.labs_normal:
            risk = "moderate"
        else:
            risk = "low"
        if other:
            names = distinct(distinct(self.names(self.tissue_damage)) + self.iatrogenic_drug_names
                             + self.names(self.tumor_lysis_conditions) + self.transplant_names + self.metastatic_causes
                             + self.names(self.calciphylaxis_conditions))
            lead = f"Another cause is on file: {combine(names, ', ')}. "
        elif self.labs_normal:
            lead = "No tissue damage, iatrogenic or metastatic cause on file and calcium and phosphate are normal. "
        else:
            lead = "No tissue damage, iatrogenic or metastatic cause on file, but normal labs are not confirmed. "
        return _tuple(type="idiopathic", risk=risk, rationale=lead + self.lab_summary, citation=CITATIONS["idiopathic"])

    # -- work-up -----------------------------------------------------------------------------
    @cached_property
    def groups_suggested(self) -> list[str]:
        groups = ["baseline"]
        if self.myositis_conditions:
            groups.append("myositis")
        if self.autoimmune_conditions or self.dystrophic["risk"] in ("moderate", "high"):
            groups.append("autoimmune")
        if self.milk_alkali_conditions or self.milk_alkali_intake_picture:
            groups.append("milk-alkali")
        return groups

    @cached_property
    def orders(self) -> dict[str, Record | None]:
        """The first open order of each panel test, through the value sets a result is matched by."""
        open_orders = [s for s in self._retrieve("ServiceRequest")
                       if s.get("status") in OPEN_ORDER_STATUSES and s.get("code") is not None]

        def first(*slugs: str, cmp: bool = False) -> Record | None:
            for s in open_orders:
                concept = s.get("code")
                if any(in_valueset(concept, self.valuesets[slug]) for slug in slugs) or (
                        cmp and any(x.system == LOINC and x.code == "24323-8" for x in concept.codes)):
                    return s
            return None

        return {
            "cbc": first("complete-blood-count"), "metabolic": first("metabolic-panel", "creatinine"),
            "calcium": first("calcium-total", cmp=True), "phosphate": first("phosphate"),
            "total-protein": first("total-protein", cmp=True), "albumin": first("albumin", cmp=True),
            "pth": first("pth-intact"), "vitamin-d": first("vitamin-d-25oh"),
            "urine-calcium": first("urine-calcium-24h"), "urine-phosphate": first("urine-phosphate-24h"),
            "ck": first("creatine-kinase"), "ldh": first("lactate-dehydrogenase"), "ast": first("aspartate-aminotransferase"),
            "alt": first("alanine-aminotransferase"), "aldolase": first("aldolase"), "ana": first("antinuclear-antibody"),
            "anti-dsdna": first("anti-dsdna"), "ena": first("ena-panel"), "bicarbonate": first("bicarbonate"),
            "arterial-ph": first("arterial-ph"),
        }

    def _suggested_panel(self) -> list[tuple[str, str, str, Record | None, Record | None, str]]:
        return [(code, display, group, self.availability[key], self.orders[key],
                 reason.format(purpose=self.milk_alkali_purpose, milk_alkali=self.milk_alkali_reason)
                 if group == "milk-alkali" else reason)
                for code, display, group, key, reason in PANEL if group in self.groups_suggested]

    @cached_property
    def recommended_tests(self) -> list[CqlTuple]:
        return [_tuple(code=code, system=LOINC, display=display, group=group, reason=reason)
                for code, display, group, available, ordered, reason in self._suggested_panel()
                if available is None and ordered is None]

    @staticmethod
    def result_summary(o: Record) -> str:
        if o.get("value") is not None:
            return f"{show(o.get('value'))} on {day(o.get('effective'))}"
        if o.get("valueText") is not None:
            return f"{o.get('valueText')} on {day(o.get('effective'))}"
        return f"reported on {day(o.get('effective'))}"

    @classmethod
    def available_summary(cls, code: str, o: Record) -> str:
        concept = o.get("code")
        if concept is not None and any(x.system == LOINC and x.code == code for x in concept.codes):
            return cls.result_summary(o)
        return f"{concept_name(concept)}: {cls.result_summary(o)}"

    @staticmethod
    def ordered_summary(s: Record) -> str:
        authored = s.get("authoredOn")
        return f"already ordered (ServiceRequest {s.get('status')}{'' if authored is None else ', ' + day(authored)})"

    @cached_property
    def available_tests(self) -> list[CqlTuple]:
        panel = self._suggested_panel()
        with_result = [_tuple(code=code, system=LOINC, display=display, summary=self.available_summary(code, available),
                              result=available)
                       for code, display, group, available, ordered, reason in panel if available is not None]
        ordered_only = [_tuple(code=code, system=LOINC, display=display, summary=self.ordered_summary(ordered), result=ordered)
                        for code, display, group, available, ordered, reason in panel if available is None and ordered is not None]
        return with_result + ordered_only

    # -- values used, alerts, condition, notes ---------------------------------------------
    @staticmethod
    def range_bounds(rng: Any) -> str | None:
        if rng is None:
            return None
        if rng.low is None:
            return f"<= {show(rng.high)}"
        if rng.high is None:
            return f">= {show(rng.low)}"
        return f"{number_text(rng.low.value)}-{show(rng.high)}"

    @classmethod
    def range_text(cls, o: Record) -> str | None:
        rng = o.get("referenceRange")
        source = o.get("referenceRangeSource")
        if rng is None:
            return None if source is None else f"({source})"
        return f"{cls.range_bounds(rng)} ({source if source is not None else 'lab'})"

    def value_used(self, analyte: str, label: str, o: Record | None) -> CqlTuple | None:
        if o is None:
            return None
        return _tuple(analyte=analyte, label=label, value=o.get("value"), effective=o.get("effective"), result=o,
                      flag=o.get("interpretation"), range=self.range_text(o))

    @cached_property
    def values_used(self) -> list[CqlTuple]:
        items = [
            self.value_used("calcium", "Calcium (total)", self.calcium),
            self.value_used("calcium-ionized", "Calcium (ionized)", self.ionized_calcium),
            None if self.corrected_calcium is None else _tuple(
                analyte="calcium-corrected", label="Calcium (albumin-corrected)", value=self.corrected_calcium,
                effective=self.calcium.get("effective"), result=self.calcium, flag=self.corrected_calcium_flag,
                range=self.range_text(self.calcium)),
            self.value_used("phosphate", "Phosphate", self.phosphate),
            None if self.caxp is None else _tuple(
                analyte="ca-x-p", label="Calcium x phosphate product", value=self.caxp, effective=self.calcium.get("effective"),
                result=self.calcium, flag="H" if self.caxp_above_threshold else "N",
                range=f"<= {show(CAXP_THRESHOLD)} (seed 002)"),
            self.value_used("pth", "Parathyroid hormone (intact)", self.pth),
            self.value_used("vitamin-d-25oh", "25-hydroxyvitamin D", self.vitamin_d),
            self.value_used("creatinine", "Creatinine", self.creatinine),
            self.value_used("egfr", "eGFR", self.egfr),
            self.value_used("albumin", "Albumin", self.albumin),
        ]
        return [v for v in items if v is not None]

    def order_alert_message(self, name: str | None) -> str:
        if mentions(name, ("calcium chloride", "calcium gluconate")):
            high = self.ca_or_p_high or self.caxp_above_threshold
            extra = f"; {self.phosphate_phrase}; {self.caxp_dated_phrase}" if high else ""
            return f"{CALCIUM_SALT_ALERT}{self.calcium_phrase}{extra}."
        return f"{PHOSPHATE_INFUSION_ALERT}{self.phosphate_phrase}; {self.caxp_dated_phrase}."

    @cached_property
    def order_alerts(self) -> list[CqlTuple]:
        return [_tuple(order=m, display=m.get("name"), message=self.order_alert_message(m.get("name")),
                       citation=CITATIONS["order-alert"])
                for m in self.open_calcium_or_phosphate_orders]

    @cached_property
    def calcinosis_condition(self) -> Record | None:
        vs = self.valuesets["calcinosis-cutis"]
        for c in self.active_conditions:
            if in_valueset(c.get("code"), vs) or mentions(concept_text(c.get("code")), ("calcinosis cutis",)):
                return c
        return None

    @cached_property
    def notes(self) -> list[str]:
        notes: list[str] = []
        if self.no_labs:
            notes.append(f"No usable calcium or phosphate result within {self.lookback_text}: labs are unknown, not normal; "
                         "the baseline panel is recommended.")
        if self.has_ckd_or_esrd and self.calcium is not None and self.albumin is not None:
            notes.append("Albumin-corrected calcium is inaccurate in CKD/ESRD, so it was not used; ionized calcium is preferred.")
        if self.albumin_implausible:
            notes.append(f"Albumin {self._implausible_albumin_text()}: albumin-corrected calcium not computed.")
        if self.corrected_calcium_impossible:
            notes.append(f"Albumin-corrected calcium not computed: {self._impossible_correction_text()}.")
        used = [v for v in self.values_used if v["analyte"] in VALUE_USED_NOTE_ANALYTES]
        notes.extend(f"Preliminary result used: {v['label']} {show(v['value'])} on {day(v['effective'])}."
                     for v in used if v["result"].get("status") == "preliminary")
        for v in used:
            source = v["result"].get("referenceRangeSource")
            if source is not None and source != "lab":
                bounds = self.range_bounds(v["result"].get("referenceRange"))
                notes.append(f"{v['label']}: {source} reference range applied "
                             f"({bounds if bounds is not None else 'no range'}); the lab sent none.")
        return notes

    def outputs(self) -> dict[str, Any]:
        return {
            "Dystrophic": self.dystrophic,
            "Metastatic": self.metastatic,
            "Idiopathic": self.idiopathic,
            "Iatrogenic": self.iatrogenic,
            "Calciphylaxis": self.calciphylaxis,
            "Recommended Tests": self.recommended_tests,
            "Available Tests": self.available_tests,
            "Values Used": self.values_used,
            "Order Alerts": self.order_alerts,
            "Calcinosis Condition": self.calcinosis_condition,
            "Notes": self.notes,
        }


_VALUESET_CACHE: dict[Path, dict[str, frozenset[Code]]] = {}


def evaluate(provider: DataProvider, *, now: datetime, lookback: Quantity | None = None,
             valueset_dir: Path = VALUESET_DIR) -> dict[str, Any]:
    """Every output-contract define of CalcinosisCutis for the provider's patient."""
    if valueset_dir not in _VALUESET_CACHE:
        _VALUESET_CACHE[valueset_dir] = load_valuesets(valueset_dir)
    rules = HandwrittenCalcinosisRules(provider=provider, now=now,
                                       lookback=lookback if lookback is not None else Quantity(Decimal(1), "year"),
                                       valuesets=_VALUESET_CACHE[valueset_dir])
    return rules.outputs()
