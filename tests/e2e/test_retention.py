"""Issue 13, retention: `tollgate accounting --retain-days N` folds events older than N whole UTC
days into daily rollups and deletes them. Every grouped report, the full report's totals and the
budget windows answer the same before and after; a batch retried after its events were pruned is
answered as duplicates. On SQLite, and on a real PostgreSQL in the PostgreSQL pass (where batches
and prunes of several instances run at once). Every loop is bounded in time."""

import json
import threading
import time
from datetime import datetime, timedelta, timezone

from stack import ROOT, AccountingServer, clean_dir, request, wait_until
from test_accounting_server import event, post_batch

GROUPINGS = [
    "group_by=team", "group_by=tag", "group_by=day", "group_by=key", "group_by=model",
    "group_by=end_user", "group_by=status", "group_by=team&tag=search",
    "group_by=tag&team=team-1", "group_by=day&format=csv",
]


def old_event(event_id, days_ago, team, tags, cost):
    e = event(event_id, cost=cost, end_user=f"u{cost % 3}")
    ended = datetime.now(timezone.utc) - timedelta(days=days_ago, hours=cost % 7)
    e["time"] = ended.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    e["data"]["team_id"] = team
    e["data"]["tags"] = tags
    e["data"]["usage"]["estimated"] = cost % 5 == 0
    e["data"]["budgets"] = [{"budget": f"team:{team}", "window_start": 0}]
    return e


def reports(server):
    answers = {}
    for query in GROUPINGS:
        r = request(server.port, "GET", f"/v1/spend/report?{query}", server.reader_headers())
        assert r.status == 200, r.body
        answers[query] = r.body if "csv" in query else r.json()["rows"]
    return answers


def pruned(server):
    return server.report()["events_pruned"]


def test_pruning_old_events_changes_no_total_and_a_retried_batch_counts_nothing(tmp_path):
    workdir = clean_dir(ROOT / ".run" / "e2e" / "retention-a")
    server = AccountingServer(workdir)
    events = [old_event(f"o{i}", 3 + i % 4, f"team-{i % 3}", [["search"], ["search", "batch"], []][i % 3], 1000 + i)
              for i in range(300)]
    recent = [old_event(f"n{i}", 0, "team-1", ["search"], 10 + i) for i in range(20)]
    batches = [events[i:i + 50] for i in range(0, len(events), 50)] + [recent]
    for n, batch in enumerate(batches):
        assert post_batch(server, batch, batch_id=f"b{n}").json()["accepted"] == len(batch)
    before, report, budgets = reports(server), server.report(), server.budgets()
    assert report["events_pruned"] == 0
    server.stop()

    # The same database, now keeping 2 days: everything 3 or more days old is folded.
    server.extra_args = ["--retain-days", "2", "--prune-every-seconds", "1"]
    server.start()
    try:
        wait_until(lambda: pruned(server) == 300, timeout=20, message="300 events pruned")
        assert sorted(server.event_ids()) == sorted(e["id"] for e in recent), "recent events are kept"
        after = server.report()
        assert reports(server) == before
        for field in ("events", "by_key", "by_team", "by_model", "by_status", "budget_windows"):
            assert after[field] == report[field], field
        assert server.budgets() == budgets
        rollups = server._rows("SELECT COUNT(*), SUM(requests) FROM event_rollups")[0]
        assert rollups[1] == 300 and rollups[0] < 300, rollups

        # Retried (a filter whose answer was lost, days later): nothing counts twice.
        for n, batch in enumerate(batches):
            reply = post_batch(server, batch, batch_id=f"retry{n}").json()
            assert (reply["accepted"], reply["duplicates"]) == (0, len(batch)), reply
        assert reports(server) == before and server.budgets() == budgets

        # A late event of a pruned day is stored, then folded on the next round.
        late = old_event("late", 4, "team-0", ["search"], 5000)
        assert post_batch(server, [late], batch_id="late").json()["accepted"] == 1
        wait_until(lambda: pruned(server) == 301, timeout=10, message="the late event pruned")
        teams = {row["name"]: row for row in reports(server)["group_by=team"]}
        was = {row["name"]: row for row in before["group_by=team"]}
        assert teams["team-0"]["requests"] == was["team-0"]["requests"] + 1
        assert teams["team-0"]["cost_nano_usd"] == was["team-0"]["cost_nano_usd"] + 5000
        metrics = request(server.port, "GET", "/metrics").body.decode()
        assert "tollgate_accounting_events_pruned_total 301" in metrics, metrics
    finally:
        server.stop()


def test_batches_and_retries_racing_the_pruner_store_each_event_exactly_once(tmp_path):
    """Senders post old events and keep retrying them while the pruner (two instances of it on
    PostgreSQL) folds and deletes them: each event is accepted exactly once in all, and the
    totals are the sum of the events."""
    workdir = clean_dir(ROOT / ".run" / "e2e" / "retention-race")
    args = ["--retain-days", "1", "--prune-every-seconds", "1"]
    first = AccountingServer(workdir / "race-a", extra_args=args)
    servers = [first]
    if first.is_postgres:
        servers.append(AccountingServer(workdir / "race-b", db=first.db, extra_args=args))
    events = [old_event(f"r{i}", 2 + i % 3, f"team-{i % 4}", ["race"] if i % 2 else [], 100 + i % 50)
              for i in range(1500)]
    batches = [events[i:i + 100] for i in range(0, len(events), 100)]
    accepted, failures, lock = [0], [], threading.Lock()

    def sender(offset):
        deadline = time.monotonic() + 60
        for round_ in range(4):
            for n in range(len(batches)):
                if time.monotonic() > deadline:
                    return
                i = (n + offset * 3) % len(batches)
                server = servers[(i + round_ + offset) % len(servers)]
                r = post_batch(server, batches[i], batch_id=f"s{offset}-{round_}-{i}")
                with lock:
                    if r.status != 200:
                        failures.append((r.status, r.body[:200]))
                    else:
                        accepted[0] += r.json()["accepted"]

    try:
        threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
        # A batch that waited on a prune's lock past the lock timeout answers 503, and its
        # sender would retry it: send those once more.
        for n, batch in enumerate(batches):
            r = post_batch(first, batch, batch_id=f"final-{n}")
            assert r.status == 200, r.body
            accepted[0] += r.json()["accepted"]
        assert all(status == 503 for status, _ in failures), failures
        assert accepted[0] == len(events), "each event accepted exactly once"
        wait_until(lambda: pruned(first) == len(events), timeout=30, message="every event pruned")
        report = first.report()
        assert report["events"] == len(events)
        teams = {row["name"]: row for row in report["by_team"]}
        for t in range(4):
            mine = [e for e in events if e["data"]["team_id"] == f"team-{t}"]
            assert teams[f"team-{t}"]["requests"] == len(mine)
            assert teams[f"team-{t}"]["cost_nano_usd"] == sum(e["data"]["cost_nano_usd"] for e in mine)
        windows = {w["budget"]: w["spend_nano_usd"] for w in report["budget_windows"]}
        assert windows == {f"team:team-{t}": teams[f"team-{t}"]["cost_nano_usd"] for t in range(4)}
        tags = {row["name"]: row["requests"] for row in json.loads(
            request(first.port, "GET", "/v1/spend/report?group_by=tag", first.reader_headers()).body)["rows"]}
        assert tags == {"race": 750, "-": 750}
    finally:
        for server in servers:
            server.stop()
