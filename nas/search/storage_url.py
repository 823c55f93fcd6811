"""Storage URLs: which kind (RDB or journal file), which driver, and how to show one without its password.

``--storage`` is an SQLAlchemy URL (``postgresql://user:password@host/db``,
``sqlite:///path``) or a journal file path. A string that starts like a
database URL but lacks ``://`` (``postgresql//…``, ``sqlite:/x``) is refused,
not taken as a file name.

PostgreSQL: SQLAlchemy 2.1 maps a plain ``postgresql://`` to psycopg 3; the
optional dependency ``edgenas[postgres]`` installs psycopg2-binary, so a
plain URL is given the driver that is installed (psycopg 3 first, then
psycopg2). A URL that names its driver (``postgresql+psycopg2://``) is kept.

Every text edgenas writes or logs about a storage goes through
:func:`mask_url` or :func:`mask_secrets`: reports, JSON, log lines, errors.
"""

from __future__ import annotations

import importlib.util
import re
from urllib.parse import unquote

from nas.search.budgets import SearchError

__all__ = [
    "MASK",
    "POSTGRES_DRIVERS",
    "is_masked",
    "is_rdb_url",
    "mask_secrets",
    "mask_url",
    "resolve_rdb_url",
    "storage_secrets",
]

MASK = "***"
MIN_FREE_SECRET = 3  # a secret this long or longer is masked wherever it appears in a text
# SQLAlchemy dialects a user may mean; a string starting with one of these but without "://" is a malformed URL.
DIALECTS = ("postgresql", "postgres", "sqlite", "mysql", "mariadb", "oracle", "mssql", "cockroachdb")
# Driver module -> SQLAlchemy driver name -> pip package, in order of preference for a plain postgresql:// URL.
POSTGRES_DRIVERS = (("psycopg", "psycopg", "psycopg[binary]"), ("psycopg2", "psycopg2", "psycopg2-binary"))
_DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "psycopg2cffi": "psycopg2cffi",
    "pg8000": "pg8000",
    "asyncpg": "asyncpg",
    "pymysql": "pymysql",
    "mysqldb": "mysqlclient",
}
_SCHEME = re.compile(r"^(?P<dialect>[A-Za-z][A-Za-z0-9]*)(?:\+(?P<driver>[A-Za-z0-9_]+))?")
# scheme (also a malformed one: postgresql//, postgres:) and the host part up to the path, query or fragment
_NETLOC = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*:?/*)(?P<netloc>[^/?#]*)")
_QUERY_SECRET = re.compile(r"(?P<key>[?&](?:password|passwd|pwd|sslpassword)=)(?P<value>[^&#]*)", re.IGNORECASE)


def is_rdb_url(storage: str) -> bool:
    """True for a database URL; False for a journal file path. A malformed database URL is a :class:`SearchError`."""
    match = _SCHEME.match(storage)
    if match is None:
        return False
    rest = storage[match.end() :]
    if rest.startswith("://"):
        return True
    if match.group("dialect").lower() in DIALECTS and rest.startswith((":", "//")):
        raise SearchError(
            f"storage {mask_url(storage)!r} is not a valid URL: expected {match.group(0)}://… "
            f"(for example postgresql://user:password@host:5432/db or sqlite:///path/study.db)"
        )
    return False


def resolve_rdb_url(url: str) -> str:
    """``url`` with the installed PostgreSQL driver named; a missing driver is one line naming the package."""
    match = _SCHEME.match(url)
    if match is None:
        raise SearchError(f"storage {mask_url(url)!r} is not a valid URL")
    dialect, driver = match.group("dialect").lower(), match.group("driver")
    if dialect == "postgres":  # the libpq / Heroku spelling; SQLAlchemy knows only "postgresql"
        url, dialect = "postgresql" + url[len(match.group("dialect")) :], "postgresql"
    if driver is not None:
        module = driver.lower()
        package = _DRIVER_PACKAGES.get(module, module)
        if module in _DRIVER_PACKAGES and importlib.util.find_spec(module) is None:
            raise SearchError(
                f"storage {mask_url(url)!r}: the driver {module!r} is not installed (pip install {package})"
            )
        return url
    if dialect != "postgresql":
        return url
    for module, name, _package in POSTGRES_DRIVERS:
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{name}://" + url.split("://", 1)[1]
    raise SearchError(
        f"storage {mask_url(url)!r}: no PostgreSQL driver is installed "
        f"(pip install 'edgenas[postgres]', which installs psycopg2-binary)"
    )


def _split_userinfo(storage: str) -> tuple[str, str, str] | None:
    """``(head, password, tail)`` around the password of ``scheme://user:password@host/...``, else None.

    The user information runs to the last ``@`` of the host part (so a password holding a raw ``@`` is masked
    whole), and also in a malformed URL (``postgresql//user:password@host``) echoed in an error.
    """
    match = _NETLOC.match(storage)
    if match is None or "@" not in match.group("netloc"):
        return None
    userinfo, _, _host = match.group("netloc").rpartition("@")
    if ":" not in userinfo:
        return None
    user, password = userinfo.split(":", 1)
    head = match.group("scheme") + user + ":"
    return head, password, storage[len(head) + len(password) :]


def storage_secrets(storage: str | None) -> list[str]:
    """The secrets in a storage URL: its password (also %-decoded, and up to its first ``@`` as SQLAlchemy reads
    it) and passwords in its query string."""
    if not storage:
        return []
    secrets: list[str] = []
    parts = _split_userinfo(storage)
    if parts is not None:
        password = parts[1]
        secrets += [password, password.split("@", 1)[0]]
    secrets += [m.group("value") for m in _QUERY_SECRET.finditer(storage)]
    secrets += [unquote(s) for s in secrets]
    return sorted({s for s in secrets if s and s != MASK}, key=len, reverse=True)


def mask_url(storage: str | None) -> str | None:
    """``storage`` with its password (and any password in its query string) replaced by ``***``."""
    if storage is None:
        return None
    parts = _split_userinfo(storage)
    masked = storage if parts is None else parts[0] + (MASK if parts[1] else "") + parts[2]
    return _QUERY_SECRET.sub(lambda m: m.group("key") + MASK, masked)


def is_masked(storage: str) -> bool:
    """True when ``storage`` is a URL whose password was masked (as read back from a report)."""
    return "://" in storage and mask_url(storage) == storage and f"{MASK}@" in storage or f"={MASK}" in storage


def mask_secrets(text: str, storage: str | None) -> str:
    """``text`` (an error message, a log line) with every secret of ``storage`` replaced by ``***``."""
    if storage is None:
        return text
    text = text.replace(storage, mask_url(storage) or "")
    for secret in storage_secrets(storage):
        # A very short password would mask every matching letter; it is masked where it follows "user:".
        if len(secret) >= MIN_FREE_SECRET:
            text = text.replace(secret, MASK)
        else:
            text = text.replace(f":{secret}@", f":{MASK}@")
    return text
