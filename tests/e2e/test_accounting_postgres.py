"""Issue 13: the accounting server's PostgreSQL store, with several `tollgate accounting`
instances sharing one real PostgreSQL server (started on 127.0.0.1 by the test, its own data
directory). Every loop is bounded in time."""

import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from postgres_server import PostgresServer
from stack import ROOT, AccountingServer, clean_dir, request, wait_until
from test_accounting_server import event, post_batch


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer(clean_dir(ROOT / ".run" / "e2e" / "pg-store"))
    yield server
    server.stop()


@pytest.fixture()
def pair(postgres, request):
    """Two accounting instances on one fresh database."""
    name = request.node.name.replace("[", "_").replace("]", "").lower()[:50]
    url = postgres.create_database(name)
    servers = [AccountingServer(clean_dir(ROOT / ".run" / "e2e" / f"pg-{name}-{i}"), db=url) for i in (0, 1)]
    yield servers, url
    for server in servers:
        server.stop()


def spend_event(event_id, cost, windows):
    e = event(event_id, cost=cost)
    e["data"]["budgets"] = [{"budget": w, "window_start": 0} for w in windows]
    return e


def totals(postgres, url):
    database = url.rsplit("/", 1)[1]
    events = postgres.query(database, "SELECT COUNT(*), COUNT(DISTINCT id), COALESCE(SUM(cost_nano_usd), 0) FROM events")[0]
    windows = dict(postgres.query(database, "SELECT budget, spend_nano_usd FROM budget_windows"))
    return events, windows


def test_the_same_batch_at_two_instances_at_once_is_stored_once(pair, postgres):
    (a, b), url = pair
    batches = [[spend_event(f"e{i}-{j}", 1000 + j, ["team:shared", f"key:k{i % 7}"]) for j in range(50)]
               for i in range(40)]

    def send(args):
        server, i, attempt = args
        r = post_batch(server, batches[i], batch_id=f"b{i}-{attempt}")
        assert r.status == 200, r.body
        reply = r.json()
        assert len(reply["acknowledged"]) == 50 and not reply["rejected"], reply
        return reply["accepted"], reply["duplicates"]

    # Each batch goes to both instances at once, twice (a retry after a lost answer).
    jobs = [(server, i, attempt) for i in range(40) for attempt in (0, 1) for server in (a, b)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(send, jobs))
    accepted = sum(r[0] for r in results)
    duplicates = sum(r[1] for r in results)
    assert accepted == 40 * 50 and duplicates == 3 * 40 * 50, (accepted, duplicates)
    (count, distinct, spent), windows = totals(postgres, url)
    expected = sum(e["data"]["cost_nano_usd"] for batch in batches for e in batch)
    assert (count, distinct, spent) == (2000, 2000, expected)
    assert windows["team:shared"] == expected, "the shared window equals the sum of its events"
    assert sum(v for k, v in windows.items() if k.startswith("key:")) == expected
    # Both instances answer the same totals.
    report_a, report_b = a.report(), b.report()
    assert report_a["budget_windows"] == report_b["budget_windows"]
    assert report_a["events"] == report_b["events"] == 2000


def test_a_poller_misses_no_total_while_two_instances_commit_concurrently(pair, postgres):
    """Each batch adds to a window of its own, once: a change whose number committed after a
    larger one (out of order) would be skipped by the cursor and never seen again."""
    (a, b), url = pair
    stop = threading.Event()
    seen = {}
    errors = []

    def poll():
        cursor = 0
        while True:
            last_round = stop.is_set()
            r = request((a, b)[cursor % 2].port, "GET", f"/v1/spend/budgets?since={cursor}&now=1",
                        a.reader_headers(), timeout=10)
            if r.status != 200:
                errors.append(r.body)
                return
            reply = r.json()
            for total in reply["budgets"]:
                seen[total["budget"]] = total["spend_nano_usd"]
            cursor = reply["cursor"]
            if last_round:
                return

    poller = threading.Thread(target=poll)
    poller.start()

    def send(i):
        server = (a, b)[i % 2]
        batch = [spend_event(f"p{i}-{j}", 7 + j, [f"key:solo-{i}", "team:busy"]) for j in range(20)]
        r = post_batch(server, batch, batch_id=f"p{i}")
        assert r.status == 200, r.body

    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(send, range(300)))
    finally:
        stop.set()
        poller.join(timeout=60)
    assert not errors, errors
    _, windows = totals(postgres, url)
    assert len(windows) == 301
    missed = {k: (v, seen.get(k)) for k, v in windows.items() if seen.get(k) != v}
    assert not missed, f"{len(missed)} window totals never reached the poller: {list(missed.items())[:5]}"


def test_an_instance_restarted_on_the_database_keeps_every_total(pair, postgres):
    (a, b), url = pair
    assert post_batch(a, [spend_event("r1", 10, ["key:r"])]).status == 200
    a.stop()
    a.start()
    r = post_batch(b, [spend_event("r1", 10, ["key:r"]), spend_event("r2", 5, ["key:r"])], batch_id="b2")
    assert r.json()["budgets"] == [{"budget": "key:r", "window_start": 0, "spend_nano_usd": 15}]
    assert r.json()["duplicates"] == 1
    database = url.rsplit("/", 1)[1]
    count, distinct, latest = postgres.query(
        database, "SELECT COUNT(*), COUNT(DISTINCT version), MAX(version) FROM tollgate_migrations")[0]
    assert count == distinct == latest >= 2, "a restart applies no migration twice"
    assert request(a.port, "GET", "/ready").status == 200


def test_a_lost_database_makes_the_instance_unready_and_batches_retryable(postgres, tmp_path):
    other = PostgresServer(tmp_path / "pg", fsync=False)
    url = other.create_database("lost")
    server = AccountingServer(clean_dir(ROOT / ".run" / "e2e" / "pg-lost"), db=url)
    try:
        assert request(server.port, "GET", "/ready").status == 200
        other.stop()
        r = post_batch(server, [spend_event("l1", 1, ["key:l"])])
        assert r.status == 503 and r.json()["error"]["type"], r.body
        deadline = time.monotonic() + 15
        while request(server.port, "GET", "/ready", timeout=10).status != 503:
            assert time.monotonic() < deadline, "readiness never noticed the database was gone"
            time.sleep(0.2)
        assert request(server.port, "GET", "/health").status == 200, "alive, only not ready"
    finally:
        server.stop()
        other.stop()


def test_two_instances_raise_and_deliver_each_alert_once(postgres):
    from test_alerts import Receiver
    receiver = Receiver()
    url = postgres.create_database("alerts_two")
    servers = [AccountingServer(clean_dir(ROOT / ".run" / "e2e" / f"pg-alerts-{i}"), db=url,
                                extra_args=["--alert-webhook", receiver.url]) for i in (0, 1)]
    try:
        def capped(event_id, cost):
            e = spend_event(event_id, cost, [])
            e["data"]["budgets"] = [{"budget": "team:capped", "window_start": 0, "max_nano_usd": 10_000}]
            return e

        def send(i):
            r = post_batch(servers[i % 2], [capped(f"a{i}-{j}", 100) for j in range(5)], batch_id=f"a{i}")
            assert r.status == 200, r.body
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(send, range(24)))  # 120 events of 100: 12,000 of a 10,000 budget
        def all_three():
            ids = [b["tollgate"]["alert_id"] for b in receiver.bodies()]
            return ids if len(set(ids)) == 3 else None
        wait_until(all_three, timeout=20, message="three alerts delivered")
        time.sleep(2.5)  # a second delivery of any of them would arrive now
        ids = [b["tollgate"]["alert_id"] for b in receiver.bodies()]
        assert len(ids) == 3, f"each alert once: {ids}"
        events = sorted(b["event"] for b in receiver.bodies())
        assert events == ["budget_crossed", "threshold_crossed", "threshold_crossed"]
        database = url.rsplit("/", 1)[1]
        assert postgres.query(database, "SELECT COUNT(*) FROM alerts")[0][0] == 3
    finally:
        for server in servers:
            server.stop()
        receiver.stop()


def make_certificates(directory, names):
    """A test CA and a server certificate for `names` (DNS names and IPs), with openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    run = lambda *args: subprocess.run(["openssl", *args], cwd=directory, check=True,
                                       capture_output=True, timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=tollgate test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=postgres")
    (directory / "san.ext").write_text("subjectAltName=" + ",".join(names) + "\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
    return directory / "ca.pem", (directory / "server.crt", directory / "server.key")


def start_failure(workdir, db, extra_args):
    """The log of an accounting server that must refuse to start."""
    try:
        server = AccountingServer(workdir, db=db, extra_args=extra_args)
    except RuntimeError as e:
        return str(e)
    server.stop()
    raise AssertionError("the server started")


def test_tls_to_postgresql_is_verified_and_used(tmp_path):
    ca, server_files = make_certificates(tmp_path / "certs", ["IP:127.0.0.1"])
    other_ca, _ = make_certificates(tmp_path / "other", ["IP:127.0.0.1"])
    tls_server = PostgresServer(tmp_path / "pg", fsync=False, tls=server_files)
    try:
        url = tls_server.create_database("tls") + "?sslmode=require"
        server = AccountingServer(clean_dir(ROOT / ".run" / "e2e" / "pg-tls"), db=url,
                                  extra_args=["--db-ca-file", str(ca)])
        try:
            assert post_batch(server, [spend_event("t1", 7, ["key:t"])]).json()["accepted"] == 1
            assert server.report()["events"] == 1
            rows = tls_server.query("tls", "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a "
                                           "USING (pid) WHERE a.datname = 'tls' AND a.pid <> pg_backend_pid()")
            assert rows and all(ssl for (ssl,) in rows), rows
            log = (server.workdir / "accounting.log").read_text()
            assert "/tls (TLS)" in log and "e2e-postgres-password" not in log
        finally:
            server.stop()
        # A certificate that does not chain to the given roots, or to the Mozilla roots, is refused.
        refused = start_failure(clean_dir(ROOT / ".run" / "e2e" / "pg-tls-other"), url,
                                ["--db-ca-file", str(other_ca)])
        assert "certificate" in refused.lower(), refused
        refused = start_failure(clean_dir(ROOT / ".run" / "e2e" / "pg-tls-mozilla"), url, [])
        assert "certificate" in refused.lower(), refused
        # The name is verified too: the certificate names 127.0.0.1, not localhost (which
        # reaches the same server).
        refused = start_failure(clean_dir(ROOT / ".run" / "e2e" / "pg-tls-name"),
                                url.replace("@127.0.0.1:", "@localhost:"), ["--db-ca-file", str(ca)])
        assert "NotValidForName" in refused or "name" in refused.lower(), refused
        # Roots without TLS asked for are a mistake, said at start.
        refused = start_failure(clean_dir(ROOT / ".run" / "e2e" / "pg-tls-plain"),
                                url.replace("?sslmode=require", ""), ["--db-ca-file", str(ca)])
        assert "sslmode=require" in refused, refused
    finally:
        tls_server.stop()
