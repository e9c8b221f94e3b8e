"""The distributed topology's databases from the OS packages: PostgreSQL initialised once, Redis configured.

Both keep their data under the state folder, listen on loopback only and require the passwords generated into
it (``local.environment``); ``local.stack`` starts and stops them by PID like every other service.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training_lib.local.environment import (
    LOOPBACK,
    POSTGRES_DATABASES,
    POSTGRES_OS_USER,
    POSTGRES_USER,
    StackError,
    StackPaths,
    as_postgres_user,
    postgres_bin,
    postgres_password,
    redis_password,
)


def init_postgres(paths: StackPaths, echo: Callable[[str], None]) -> None:
    """``initdb`` the data directory once: password authentication only, the password from the state folder."""
    data = paths.postgres
    if (data / "PG_VERSION").exists():
        return
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    with tempfile.TemporaryDirectory(prefix="fraud-pg-") as scratch:
        password_file = Path(scratch) / "password"
        password_file.write_text(postgres_password(paths))
        if os.geteuid() == 0:
            import pwd

            account = pwd.getpwnam(POSTGRES_OS_USER)
            for path in (data, Path(scratch), password_file):
                os.chown(path, account.pw_uid, account.pw_gid)
            reach = subprocess.run(as_postgres_user(["test", "-w", str(data)]), check=False)
            if reach.returncode != 0:
                raise StackError(
                    f"the {POSTGRES_OS_USER} OS user (PostgreSQL refuses to run as root) cannot write {data}: "
                    f"a parent folder is private; choose a FRAUD_STATE_DIR it can reach"
                )
        argv = [
            postgres_bin("initdb"), "-D", str(data), "-U", POSTGRES_USER, f"--pwfile={password_file}",
            "--auth=scram-sha-256", "-E", "UTF8", "--locale=C",
        ]  # fmt: skip
        log_path = paths.log_file("postgres-initdb")
        with open(log_path, "ab") as log:
            result = subprocess.run(as_postgres_user(argv), stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise StackError(f"initdb failed (exit {result.returncode}); see {log_path}")
    echo(f"[postgres] initialised {data}")


def write_redis_config(paths: StackPaths, port: int) -> None:
    """Redis on loopback with a password, no persistence (Celery messages are re-sent by the scheduler)."""
    config = "\n".join(
        [
            f"bind {LOOPBACK}",
            f"port {port}",
            "protected-mode yes",
            f"requirepass {redis_password(paths)}",
            f"dir {paths.redis}",
            'save ""',
            "appendonly no",
            "daemonize no",
            "",
        ]
    )
    path = paths.redis / "redis.conf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(config)


def create_databases(connection: Any, echo: Callable[[str], None]) -> None:
    """Create the databases of ``POSTGRES_DATABASES`` that do not exist yet (``connection``: psycopg, closed after)."""
    with contextlib.closing(connection):
        connection.autocommit = True
        with connection.cursor() as cursor:
            for database in POSTGRES_DATABASES:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{database}"')
                    echo(f"[postgres] created database {database}")
