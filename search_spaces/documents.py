"""Reading one YAML or JSON file that a user names: present, and parsable, or one error line.

Search spaces, architecture files and a study's ``pareto.json`` are read the
same way; each caller names its error class and what to say when the file is
missing, and gets the parsed content back to check field by field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from search_spaces.errors import EdgeNasError, one_line

__all__ = ["read_document"]


def read_document(path: str | Path, *, error: type[EdgeNasError], missing: str) -> Any:
    """The parsed content of ``path``: JSON when its name ends in ``.json``, else YAML.

    No such file raises ``error(missing)``; a syntax error raises ``error`` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise error(missing)
    as_json = path.suffix == ".json"
    try:
        return json.loads(path.read_text()) if as_json else yaml.safe_load(path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not valid {'JSON' if as_json else 'YAML'} ({one_line(exc)})") from None
