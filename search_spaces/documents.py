"""Reading one YAML or JSON file that a user names: present, and parsable, or one error line.

Search spaces, architecture files and a study's ``pareto.json`` are read the
same way; each caller names its error class and what to say when the file is
missing, and gets the parsed content back to check field by field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search_spaces.errors import EdgeNasError
from search_spaces.safe_files import parse_json, parse_yaml, read_text

__all__ = ["read_document"]


def read_document(path: str | Path, *, error: type[EdgeNasError], missing: str, what: str = "YAML or JSON file") -> Any:
    """The parsed content of ``path``: JSON when its name ends in ``.json``, else YAML.

    No such file raises ``error(missing)``; anything else wrong (a binary or non-UTF-8 file, one too large, nested
    too deep, a key given twice, a syntax error) raises ``error`` naming the file (:mod:`search_spaces.safe_files`).
    """
    path = Path(path)
    if not path.exists():
        raise error(missing)
    text = read_text(path, what=what, error=error)
    parse = parse_json if path.suffix == ".json" else parse_yaml
    return parse(text, source=str(path), error=error)
