"""The CalcinosisCutis library as a document: it compiles, keeps the output contract, and every
rule cites a sentence that really is in the seed it names."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KNOWLEDGE_DIR = PROJECT_ROOT / "service" / "knowledge"
LIBRARY = KNOWLEDGE_DIR / "CalcinosisCutis.cql"
TEXT = LIBRARY.read_text(encoding="utf-8")
OUTPUT_CONTRACT = ("Dystrophic", "Metastatic", "Idiopathic", "Iatrogenic", "Calciphylaxis", "Recommended Tests",
                   "Available Tests", "Values Used", "Order Alerts", "Calcinosis Condition", "Notes")


def _seeds_dir() -> Path:
    return Path(os.environ.get("CALCINOSIS_SHARED_DIR", PROJECT_ROOT.parent / "shared")) / "seeds"


def _define_body(name: str) -> str:
    match = re.search(r'^define "' + re.escape(name) + r'":\n?(.*?)(?=^define |\Z)', TEXT, flags=re.MULTILINE | re.DOTALL)
    assert match, f'no define "{name}"'
    return match.group(1).split("\n\n", 1)[0]  # the comments of the next define start after a blank line


# A citation written in the publication form names the article instead of the seed file.
PUBLICATIONS = {'StatPearls "Calcinosis Cutis" (Le C, Bedocs PM, 2019)': "002"}


def _cited_seed(body: str) -> str:
    """The seed a citation quotes: named as 'seed 00N', or through its publication."""
    named = re.search(r"seed (00[0-3])", body)
    if named:
        return named.group(1)
    return next(seed for publication, seed in PUBLICATIONS.items() if publication in body)


def _citation_defines() -> dict[str, str]:
    return {name: _define_body(name) for name in re.findall(r'^define "(Citation [^"]+)"', TEXT, flags=re.MULTILINE)}


def test_the_library_compiles_without_errors():
    from service.cql_like import check_library, load_model_info

    errors = check_library(LIBRARY, model=load_model_info(KNOWLEDGE_DIR / "model.json"),
                           valueset_dir=KNOWLEDGE_DIR / "valuesets")
    assert [str(e) for e in errors] == []


def test_every_define_of_the_output_contract_exists_with_its_exact_name():
    from service.cql_like import load_library, load_model_info

    library = load_library(LIBRARY, model=load_model_info(KNOWLEDGE_DIR / "model.json"),
                           valueset_dir=KNOWLEDGE_DIR / "valuesets")
    missing = [name for name in OUTPUT_CONTRACT if name not in library.define_names]
    assert missing == []


@pytest.mark.parametrize("grade", ["Dystrophic", "Metastatic", "Idiopathic", "Iatrogenic", "Calciphylaxis"])
def test_each_type_grade_is_a_tuple_with_type_risk_rationale_and_a_citation_define(grade: str):
    body = _define_body(grade)
    for element in ("type:", "risk:", "rationale:", "citation:"):
        assert element in body
    cited = re.search(r'citation: "(Citation [^"]+)"', body)
    assert cited and cited.group(1) in _citation_defines()
    assert f"type: '{grade.lower()}'" in body


def test_every_citation_names_a_seed_and_a_section_and_quotes_it():
    citations = _citation_defines()
    assert len(citations) >= 6
    for name, body in citations.items():
        assert re.search(r"seed 00[0-3], [A-Z][A-Za-z /]+:", body) or any(
            re.search(re.escape(publication) + r", [A-Z][A-Za-z /]+:", body) for publication in PUBLICATIONS), name
        assert re.search(r'"[^"]{30,}"', body), name


def test_every_quoted_citation_sentence_is_verbatim_in_its_seed():
    seeds = _seeds_dir()
    if not seeds.is_dir():
        pytest.skip(f"seed articles not found at {seeds}")
    texts = {path.name[:3]: " ".join(path.read_text(encoding="utf-8").split()) for path in seeds.glob("*.txt")}
    quotes = []
    for comment_or_citation in re.findall(r"seed (00[0-3])[^\n]*?:\s*(?://\s*)?\"([^\"]+)\"", TEXT):
        quotes.append(comment_or_citation)
    for body in _citation_defines().values():
        seed = _cited_seed(body)
        for publication in PUBLICATIONS:  # its title is quoted too, and is no sentence of the article
            body = body.replace(publication, "")
        quotes.extend((seed, q) for q in re.findall(r'"([^"]+)"', body))
    assert len(quotes) >= 10
    for seed, quote in quotes:
        sentence = " ".join(re.sub(r"\n\s*//", " ", quote).split())
        for part in sentence.split(" ... "):  # an ellipsis marks words left out of the quote
            assert part in texts[seed], f"not in seed {seed}: {part}"


def test_the_ca_x_p_threshold_is_declared_once_and_cited():
    assert len(re.findall(r"\b70 'mg2/dL2'", TEXT)) == 1
    threshold_block = TEXT[:TEXT.index('define "CaxP Threshold"')].rsplit("\n\n", 1)[-1]
    assert "seed 002" in threshold_block and "exceeds 70 mg^2/dL^2" in threshold_block
    assert "70" not in "".join(line for line in TEXT.splitlines()
                               if not line.lstrip().startswith("//") and "CaxP Threshold\":" not in line
                               and "'" not in line)


def test_the_lookback_parameter_defaults_to_one_year():
    assert re.search(r'^parameter "Lookback" Quantity default 1 year$', TEXT, flags=re.MULTILINE)


def test_rules_resting_on_unverified_codes_say_they_match_names():
    # codes.md marks these U: the library must match them by name and say so.
    for phrase in ("calcium gluconate", "calcinosis cutis", "myositis", "warfarin"):
        assert phrase in TEXT
    assert TEXT.count("U (unverified)") + TEXT.count("marks the RxNorm codes") + TEXT.count("(codes.md U)") >= 2
    for unverified in ("237881004", "6595006", "105502003", "41747008", "1901", "56466", "4450", "1894"):
        assert not re.search(r"'" + unverified + r"'", TEXT), unverified
