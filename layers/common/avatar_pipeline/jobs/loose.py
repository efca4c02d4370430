"""Reading a JSON document that may be broken, for best-effort answers (which model, which media)."""

from __future__ import annotations

import json
from typing import Any


def loose_json_object(raw: bytes | str) -> dict[str, Any]:
    """The JSON object in `raw`, or {} when it is not valid JSON or not an object."""
    try:
        document = json.loads(raw)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
