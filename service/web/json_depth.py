"""How deeply a decoded JSON body nests, measured without recursion.

The hooks and the core walk request values recursively (copies of draft orders, validation,
narratives, serialization), and each of those steps has its own ceiling: Python's recursion
limit, orjson's 254 levels when writing. One limit, checked once on the decoded body, keeps every
request well below all of them, so no step deeper in the service has to guard itself.
"""

from __future__ import annotations

from typing import Any

# Deepest nesting accepted, counting every object and array from the body's root. A FHIR Bundle
# with contained resources, nested extensions and a QuestionnaireResponse's items stays under 40;
# CDS Hooks adds two levels (prefetch key, request). The recursive steps fail from about 500.
MAX_JSON_DEPTH = 100

_CONTAINERS = (dict, list)  # what orjson decodes objects and arrays to (exact types: no subclasses)
_CONTAINER_SET = frozenset(_CONTAINERS)
_SHOWN_KEY = 40      # characters of one key shown in a location
_SHOWN_PATH = 240    # characters of a location before it is cut


def exceeds_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when some value lies inside more than `limit` nested objects and arrays.

    Level by level, objects and arrays kept apart so that each level costs two flat comprehensions
    and no call per node: on a 2 MB Bundle this costs about what parsing it did, where a comprehension
    per node cost four times as much.
    """
    objects = [value] if type(value) is dict else []
    arrays = [value] if type(value) is list else []
    depth = 0
    while objects or arrays:
        depth += 1
        if depth > limit:
            return True
        below = [child for node in objects for child in node.values() if child.__class__ in _CONTAINER_SET]
        below += [child for node in arrays for child in node if child.__class__ in _CONTAINER_SET]
        objects = [node for node in below if node.__class__ is dict]
        arrays = [node for node in below if node.__class__ is list]
    return False


def _segment(key: Any) -> str:
    if isinstance(key, int):
        return f"[{key}]"
    shown = key if len(key) <= _SHOWN_KEY else key[:_SHOWN_KEY] + "..."
    return "." + shown.encode("unicode_escape").decode("ascii")


def too_deep_location(value: Any, limit: int = MAX_JSON_DEPTH) -> str:
    """A FHIRPath-like location of the first container nested beyond `limit` (cut when long).

    The root is named by its resourceType when it has one (`Bundle.entry[0]...`), else `$`.
    """
    root = value.get("resourceType") if isinstance(value, dict) else None
    root_name = root if isinstance(root, str) and root.isidentifier() else "$"
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(value, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if depth > limit:
            text = root_name + "".join(_segment(key) for key in path)
            if root_name == "$" and text.startswith("$."):
                text = text[2:]
            return text if len(text) <= _SHOWN_PATH else text[:_SHOWN_PATH] + "..."
        items = node.items() if isinstance(node, dict) else enumerate(node)
        stack.extend((child, depth + 1, (*path, key)) for key, child in items if isinstance(child, _CONTAINERS))
    return root_name
