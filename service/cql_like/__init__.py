"""cql_like: a strict subset of HL7 CQL 1.5, compiled to Python closures.

Libraries are text files in CQL syntax; they are parsed (lark), resolved and
type-checked once, and then evaluated per patient against a data provider,
recording which source records each define's value came from.
"""

from .errors import (CqlCompilationError, CqlError, CqlEvaluationError, CqlNameError, CqlSyntaxError,
                     CqlTypeError)
from .formatting import format_value
from .library import DefineResult, EvaluationResult, Library, check_library, compile_library, load_library
from .model import ModelInfo, load_model_info

__all__ = [
    "compile_library", "load_library", "check_library", "load_model_info", "format_value",
    "Library", "ModelInfo", "DefineResult", "EvaluationResult",
    "CqlError", "CqlSyntaxError", "CqlNameError", "CqlTypeError", "CqlEvaluationError", "CqlCompilationError",
]
