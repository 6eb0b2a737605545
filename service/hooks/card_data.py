"""The cards' wording, override reasons and indicator policy, loaded once from `cards.json`.

Its own module so that the card builder and the data notes both read it without importing each other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD_DATA_FILE = Path(__file__).with_name("cards.json")


def load_card_data(path: Path = CARD_DATA_FILE) -> dict[str, Any]:
    """Wording, override reasons and indicator policy, from the data file."""
    return json.loads(path.read_text(encoding="utf-8"))


CARD_DATA = load_card_data()
