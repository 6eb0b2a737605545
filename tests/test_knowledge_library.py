"""The CalcinosisCutis library as a document: it compiles, keeps the output contract, and every
rule cites a sentence that really is in the publication it names."""

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
                   "Available Tests", "Tests Not Proposed", "Values Used", "Order Alerts", "Calcinosis Condition",
                   "Notes")


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
def test_each_type_grade_is_a_tuple_with_type_risk_rationale_and_citation_defines(grade: str):
    body = _define_body(grade)
    for element in ("type:", "risk:", "rationale:", "citation:"):
        assert element in body
    cited_list = re.search(r"citation: (?:Flatten\(\{\s*)?\{([^}]*)\}", body)
    assert cited_list, "a grade cites a list of citation defines"
    cited = re.findall(r'"(Citation [^"]+)"', cited_list.group(1))
    assert cited and set(cited) <= set(_citation_defines())
    assert f"type: '{grade.lower()}'" in body


# A citation names a bibliography key, a section and the sentence: "Cite"('key', 'Section', 'sentence').
_CITE = re.compile(r'"Cite"\(\s*\'([^\']+)\',\s*\'([^\']+)\',\s*\'((?:[^\'\\\\]|\\\\.)+)\'\s*\)')
_CITE_BY_SECTION = re.compile(r'"Cite"\(\s*\'([^\']+)\',\s*\'([^\']+)\',\s*\'\'\s*\)')
# Where the shared background keeps its copy of each publication (for the verbatim check only).
_COPY_OF = {"calcium-stones-in-the-skin": "000", "watch-removing-calcinosis-cutis": "001",
            "statpearls-calcinosis-cutis": "002", "symptoms-causes-and-treatment": "003"}


def _bibliography_keys() -> set[str]:
    import json

    document = json.loads((KNOWLEDGE_DIR / "bibliography.json").read_text(encoding="utf-8"))
    return {entry["key"] for entry in document["entries"]}


def test_every_citation_names_a_publication_a_section_and_quotes_it():
    citations = _citation_defines()
    assert len(citations) >= 6
    for name, body in citations.items():
        found = _CITE.search(body)
        if found is None:  # a guideline or an equation, cited by section: no copy of it to quote from
            unquoted = _CITE_BY_SECTION.search(body)
            assert unquoted, name
            key, section = unquoted.groups()
            assert key in _bibliography_keys() and key not in _COPY_OF, name
            assert len(section) >= 20, name
            continue
        key, section, quote = found.groups()
        assert key in _bibliography_keys(), name
        assert re.fullmatch(r"[A-Z][A-Za-z ,/]+", section), name
        assert len(quote) >= 30, name
        assert "seed" not in body.lower() and "codes.md" not in body, name


def test_every_quoted_citation_sentence_is_verbatim_in_its_source():
    seeds = _seeds_dir()
    if not seeds.is_dir():
        pytest.skip(f"source copies not found at {seeds}")
    texts = {path.name[:3]: " ".join(path.read_text(encoding="utf-8").split()) for path in seeds.glob("*.txt")}
    quotes = []
    # Comments that still quote a source the old way, and comments that quote the StatPearls review.
    quotes += re.findall(r"seed (00[0-3])[^\n]*?:\s*(?://\s*)?\"([^\"]+)\"", TEXT)
    quotes += [("002", q) for q in re.findall(r'StatPearls "Calcinosis Cutis", [^\n]*?:\s*(?://\s*)?"([^"]+)"', TEXT)]
    for key, _section, quote in _CITE.findall(TEXT):
        quotes.append((_COPY_OF[key], quote))
    assert len(quotes) >= 20
    for copy, quote in quotes:
        sentence = " ".join(re.sub(r"\n\s*//", " ", quote).split())
        for part in sentence.split(" ... "):  # an ellipsis marks words left out of the quote
            assert part in texts[copy], f"not in the copy of {copy}: {part}"


def test_the_ca_x_p_threshold_is_declared_once_and_cited():
    assert len(re.findall(r"\b70 'mg2/dL2'", TEXT)) == 1
    threshold_block = TEXT[:TEXT.index('define "CaxP Threshold"')].rsplit("\n\n", 1)[-1]
    assert 'StatPearls "Calcinosis Cutis"' in threshold_block and "exceeds 70 mg^2/dL^2" in threshold_block
    assert "70" not in "".join(line for line in TEXT.splitlines()
                               if not line.lstrip().startswith("//") and "CaxP Threshold\":" not in line
                               and "'" not in line)


def test_the_lookback_parameter_defaults_to_one_year():
    assert re.search(r'^parameter "Lookback" Quantity default 1 year$', TEXT, flags=re.MULTILINE)


def test_rules_resting_on_unverified_codes_say_they_match_names():
    # codes.md marks these U: the library must match them by name and say so.
    for phrase in ("calcium gluconate", "calcinosis cutis", "myositis", "warfarin"):
        assert phrase in TEXT
    assert sum(TEXT.count(phrase) for phrase in ("U (unverified)", "marks the RxNorm codes", "(codes.md U)",
                                                 "could not be verified", "no verified")) >= 2
    for unverified in ("237881004", "6595006", "105502003", "41747008", "1901", "56466", "4450", "1894"):
        assert not re.search(r"'" + unverified + r"'", TEXT), unverified
