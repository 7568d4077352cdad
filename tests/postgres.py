"""A PostgreSQL server for the store, registry and tuning tests: started on loopback from Debian's `postgresql`
package (initdb and pg_ctl into a temporary directory, as the `postgres` user when the tests run as root) and
stopped afterwards; or the server LMWRIGHT_TEST_PG_URL names. Without either the tests that need it are skipped,
unless LMWRIGHT_REQUIRE_POSTGRES=1 (CI), when that is a failure."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """An admin URL (`postgresql+psycopg://...`) of a server that lives as long as the `with` block."""
    given = os.environ.get("LMWRIGHT_TEST_PG_URL")
    if given:
        yield given
        return
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        if os.environ.get("LMWRIGHT_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is required here (LMWRIGHT_REQUIRE_POSTGRES=1) but initdb was not found: "
                        "apt-get install -y postgresql")
        pytest.skip("no PostgreSQL here (apt-get install -y postgresql, or set LMWRIGHT_TEST_PG_URL)")
    bindir = os.path.dirname(bins[-1])
    root = tempfile.mkdtemp(prefix="lmwright-pg-")
    data = os.path.join(root, "data")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres")
        os.chmod(root, 0o755)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    try:
        run(f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "lmwright", "--no-sync", "-E", "UTF8")
        run(f"{bindir}/pg_ctl", "-D", data, "-l", os.path.join(root, "log"), "-w", "-t", "60", "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200", "start")
        yield f"postgresql+psycopg://lmwright@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def new_database(admin_url: str) -> str:
    """A fresh, empty database on the server; its URL."""
    from sqlalchemy import create_engine, text

    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
