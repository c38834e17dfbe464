"""Storage URLs and opening studies: SQLite files, PostgreSQL, journal files.

Example:
    >>> storage = open_storage("sqlite:///:memory:")
    >>> type(storage).__name__, study_names(storage)
    ('RDBStorage', [])
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from searchkit.config import DEFAULT_STORAGE
from searchkit.core.errors import UserError


class StudyError(UserError):
    """A study that cannot be opened or continued as asked (one-line message)."""


def open_storage(url: str) -> BaseStorage:
    """An Optuna storage from a URL or path.

    ``sqlite:///path.db`` and ``postgresql://...`` give an RDB storage; a path ending in
    ``.log`` or ``.jsonl`` (or ``journal:///path``) gives a journal file storage.
    """
    if url.startswith("journal://") or url.endswith((".log", ".jsonl")):
        path = url.removeprefix("journal://")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # NOTE: a generous lock timeout lets a report or a second reader share the file.
        return RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    if url.startswith(("postgresql", "postgres://", "mysql")):
        url = _with_installed_driver(url)
        try:
            return RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except ModuleNotFoundError as exc:
            raise StudyError(f"storage {url.split('://')[0]} needs its driver: "
                             f"pip install 'searchkit[postgres]' ({exc.name} missing)") from None
        except Exception as exc:  # connection refused, bad credentials, ...
            raise StudyError(f"cannot open storage {redact(url)}: {str(exc).splitlines()[0]}") from None
    raise StudyError(f"unsupported storage '{url}': use sqlite:///FILE.db, postgresql://..., "
                     "or a journal file ending in .log")


def _with_installed_driver(url: str) -> str:
    """SQLAlchemy reads a bare ``postgresql://`` as psycopg 3; the ``postgres`` extra brings
    psycopg2, so name it when psycopg 3 is not installed."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare) and importlib.util.find_spec("psycopg") is None \
                and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url[len(bare):]
    return url


def redact(url: str) -> str:
    """The URL without its credentials."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def exists(url: str) -> bool:
    """Whether the storage is there to read: a SQLite or journal file on disk (opening one
    would create it), or any server URL."""
    if url.startswith("journal://") or url.endswith((".log", ".jsonl")):
        return Path(url.removeprefix("journal://")).is_file()
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        return path == ":memory:" or Path(path).is_file()
    return True


def study_names(storage: BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def load_existing(name: str, storage_url: str) -> optuna.Study:
    """Open a study that must exist; the error names the studies that do (a missing storage
    file is not created)."""
    if not exists(storage_url):
        raise StudyError(f"no study '{name}' in {redact(storage_url)} (the storage does not exist yet)")
    storage = open_storage(storage_url)
    names = study_names(storage)
    if name not in names:
        listed = ", ".join(names) if names else "none"
        raise StudyError(f"no study '{name}' in {redact(storage_url)} (studies there: {listed})")
    return optuna.load_study(study_name=name, storage=storage)


def artifact_dir(storage_url: str) -> Path:
    """Where trained candidates' weights go: beside a SQLite/journal file; for a database
    server, a per-user folder named by the server and database (never the working
    directory: every directory a study is continued or exported from finds them)."""
    if storage_url.startswith("sqlite:///") and ":memory:" not in storage_url:
        return Path(storage_url.removeprefix("sqlite:///")).parent / "artifacts"
    if storage_url.endswith((".log", ".jsonl")):
        return Path(storage_url.removeprefix("journal://")).parent / "artifacts"
    url = urlsplit(storage_url)
    host = f"{url.hostname or 'local'}{f'-{url.port}' if url.port else ''}"
    where = f"{url.scheme.split('+')[0]}-{host}-{url.path.strip('/') or 'default'}"
    root = Path(os.environ.get("XDG_DATA_HOME") or "~/.local/share").expanduser()
    return root / "searchkit" / "artifacts" / re.sub(r"[^\w.-]", "_", where)