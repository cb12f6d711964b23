"""A real PostgreSQL test server on 127.0.0.1 (a free port, its own data directory), for the
accounting server's PostgreSQL store. Started as the `postgres` user when the tests run as root
(PostgreSQL refuses to run as root), stopped by PID.

The server binaries are the Debian package's (`scripts/setup` installs postgresql where it is
missing); TOLLGATE_PG_BIN names another bin directory."""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from stack import free_port, stop_process

PG_USER = "tollgate"
PG_PASSWORD = "e2e-postgres-password"


def pg_bin_dir():
    explicit = os.environ.get("TOLLGATE_PG_BIN")
    if explicit:
        return Path(explicit)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                        key=lambda p: int(Path(p).parent.parent.name))
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed: run ./scripts/setup (it installs postgresql-15)")
    return Path(candidates[-1]).parent


class PostgresServer:
    """One PostgreSQL server; `url(database)` gives a connection URL, `create_database(name)` a
    fresh database on it."""

    def __init__(self, workdir, port=None, fsync=True, tls=None):
        """`tls`: `(certificate, key)` PEM files; the server then offers TLS (and still plain
        text: pg_hba is the stock `host … scram-sha-256`)."""
        self.bin = pg_bin_dir()
        self.port = port or free_port()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The data directory lives where the postgres user can reach it (not under /work/…).
        self.data = Path(tempfile.mkdtemp(prefix="tollgate-pg-"))
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            account = pwd.getpwnam("postgres")
            os.chown(self.data, account.pw_uid, account.pw_gid)
        password_file = self.data / "pwfile"
        password_file.write_text(PG_PASSWORD + "\n")
        if self.as_postgres:
            os.chown(password_file, account.pw_uid, account.pw_gid)
        self._run([str(self.bin / "initdb"), "-D", str(self.data / "db"), "-U", PG_USER,
                   f"--pwfile={password_file}", "--auth=scram-sha-256", "-E", "UTF8",
                   "--no-instructions"])
        tls_options = []
        if tls:
            for source, name in zip(tls, ("server.crt", "server.key")):
                target = self.data / "db" / name
                shutil.copyfile(source, target)
                os.chmod(target, 0o600)
                if self.as_postgres:
                    os.chown(target, account.pw_uid, account.pw_gid)
            tls_options = ["-c", "ssl=on", "-c", "ssl_cert_file=server.crt", "-c", "ssl_key_file=server.key"]
        self.log = open(self.workdir / "postgres.log", "ab")
        self.process = subprocess.Popen(
            self._as_owner([str(self.bin / "postgres"), "-D", str(self.data / "db"),
                            "-c", "listen_addresses=127.0.0.1", "-p", str(self.port),
                            "-c", "unix_socket_directories=", "-c", "max_connections=200",
                            "-c", f"fsync={'on' if fsync else 'off'}", *tls_options]),
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()

    def _as_owner(self, command):
        if self.as_postgres:
            return ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", *command]
        return command

    def _run(self, command):
        done = subprocess.run(self._as_owner(command), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stdout}{done.stderr}")

    def connect(self, database="postgres"):
        import psycopg
        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=5)

    def _wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("postgres exited early: "
                                   + (self.workdir / "postgres.log").read_text(errors="replace")[-2000:])
            try:
                self.connect().close()
                return
            except Exception:  # noqa: BLE001 (not accepting connections yet)
                time.sleep(0.1)
        raise RuntimeError("postgres not ready")

    def create_database(self, name):
        """A fresh, empty database `name` (dropped first if it exists)."""
        with self.connect() as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, database):
        return f"postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}/{database}"

    def query(self, database, sql, params=()):
        """The rows of `sql` in `database`."""
        with self.connect(database) as db:
            return db.execute(sql, params).fetchall()

    def stop(self):
        if self.process:
            # SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for every client).
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGINT)
                try:
                    self.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    stop_process(self.process)
            self.process = None
            self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


_shared = None


def shared_server(root):
    """The one PostgreSQL server of this test process (started on first use, stopped at exit)."""
    global _shared
    if _shared is None:
        import atexit
        _shared = PostgresServer(Path(root) / ".run" / "e2e" / "postgres")
        atexit.register(_shared.stop)
    return _shared
