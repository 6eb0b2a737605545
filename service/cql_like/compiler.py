"""The compiler's stages in order: parsed tree -> checker.py -> codegen.py.

The checker resolves names and types and collects every error with its position; only a library
without errors reaches code generation, which builds the closures and reports nothing. Parsing
(parser.py) comes before, and library.py wraps the result for evaluation.
"""

from __future__ import annotations

from typing import Mapping

from . import ast
from . import checker
from . import codegen
from .errors import CqlCompilationError
from .model import ModelInfo
from .valuesets import ValueSet


def compile_tree(tree: ast.LibraryNode, *, source: str, filename: str, model: ModelInfo,
                 valuesets: Mapping[str, ValueSet]) -> codegen.GeneratedLibrary:
    """Check the tree, then generate its closures; raises CqlCompilationError (every error, in
    source order) before any closure is built."""
    checked = checker.check(tree, source=source, filename=filename, model=model, valuesets=valuesets)
    if checked.errors:
        raise CqlCompilationError(checked.errors)
    return codegen.generate(checked.library)
