"""A throwaway PostgreSQL server for the tests (Debian's binaries, one temp directory).

``SEARCHKIT_PG_URL`` names an existing server instead (the tests then only create and
delete their own studies in it). Without either, the ``postgres`` tests skip - unless
``SEARCHKIT_REQUIRE_POSTGRES`` is set (CI), where a missing server is an error.

Example:
    >>> server = start_server()          # doctest: +SKIP
    >>> server.url                       # doctest: +SKIP
    'postgresql://postgres@127.0.0.1:54321/searchkit'
    >>> server.stop()                    # doctest: +SKIP
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DATABASE = "searchkit"


class ServerUnavailable(RuntimeError):
    """No PostgreSQL binaries here (or they could not start a cluster)."""


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb and pg_ctl (or PATH's)."""
    def version(path: str) -> tuple[int, ...]:
        part = Path(path).parent.parent.name
        return tuple(int(x) for x in part.split(".") if x.isdigit())

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    url: str
    root: Path | None = None  # None: a server we did not start
    bin_dir: Path | None = None

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            _run_as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"),
                              "-m", "immediate", "-w", "stop"], check=False)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


def _run_as_postgres(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    """PostgreSQL refuses to run as root: switch to the ``postgres`` user when we are root."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise ServerUnavailable(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc


def start_server() -> PostgresServer:
    """Init and start a cluster on 127.0.0.1 (a free port; socket in its temp dir) with a
    ``searchkit`` database; trust authentication, no fsync: it is thrown away after."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise ServerUnavailable("no PostgreSQL binaries (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="searchkit-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        data, log = root / "data", root / "server.log"
        _run_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                          "-E", "UTF8", "--no-sync"])
        port = _free_port()
        options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        _run_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                          "-w", "-t", "60", "start"])
        server = PostgresServer(f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}", root, bin_dir)
        try:
            _run_as_postgres([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                              "-U", "postgres", DATABASE])
        except BaseException:
            server.stop()
            raise
        return server
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def provide_server() -> PostgresServer:
    """``SEARCHKIT_PG_URL`` if set, else a throwaway server (:class:`ServerUnavailable` if none)."""
    url = os.environ.get("SEARCHKIT_PG_URL")
    if url:
        return PostgresServer(url)
    return start_server()
