"""The accounting service alone under load: batches of 100 and 500 spend events from several
concurrent senders (separate processes, keep-alive connections), against the release
`tollgate accounting` on SQLite, on PostgreSQL with one instance, and on PostgreSQL with two
instances sharing the database. Prints sustained events/s and p50/p99 batch latency, and writes
them to .run/bench/accounting.json.

Each event counts against a key's and a team's budget window and two rate-limit windows (as a
filter's events do), over 200 keys and 10 teams, so windows are shared and hot, as in a fleet.
Every event id is new: the numbers are for events stored, not for duplicates.

The senders run on the same two cores as the server and PostgreSQL: the figures are a floor for
a machine where they do not compete. PostgreSQL runs with its defaults (fsync on,
synchronous_commit on), SQLite with WAL and synchronous=FULL, as the server ships.

Usage: scripts/bench-accounting [--seconds 15] [--senders 4]
"""

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from postgres_server import PostgresServer  # noqa: E402
from stack import ACCOUNTING_WRITER_TOKEN, AccountingServer, clean_dir  # noqa: E402

BINARY = ROOT / "target" / "release" / "tollgate"
KEYS, TEAMS = 200, 10

TEMPLATE = json.dumps({
    "specversion": "1.0", "id": "@ID@", "source": "tollgate/bench", "type": "tollgate.spend",
    "time": "2026-12-01T00:00:00.000Z", "subject": "@KEY@", "datacontenttype": "application/json",
    "data": {"policy_version": "bench", "key_hash": "ab" * 32, "key_alias": "@KEY@", "team_id": "@TEAM@",
             "user_id": None, "end_user": None, "endpoint": "chat_completions",
             "requested_model": "gpt-4o", "resolved_model": "gpt-4o", "deployment": "openai-gpt-4o",
             "provider": "openai", "upstream_model": "gpt-4o", "stream": False,
             "usage": {"prompt_tokens": 120, "completion_tokens": 40, "cached_tokens": 0,
                       "cache_creation_tokens": 0, "reasoning_tokens": 0, "estimated": False},
             "cost_nano_usd": 700000, "cost_source": "cost_map", "status": "ok", "http_status": 200,
             "budgets": [{"budget": "key:@KEY@", "window_start": 1764547200, "window_end": 1767225600},
                         {"budget": "team:@TEAM@", "window_start": 1764547200, "window_end": 1767225600}],
             "limits": [{"limit": "key:@KEY@/rpm", "window_start": 1764590400, "window_end": 1764590460,
                         "count": 1},
                        {"limit": "key:@KEY@/tpm", "window_start": 1764590400, "window_end": 1764590460,
                         "count": 160}]}}, separators=(",", ":"))


def batch_body(prefix, n, seq):
    events = []
    for i in range(n):
        k = (seq * n + i) % KEYS
        events.append(TEMPLATE.replace("@ID@", f"{prefix}-{seq}-{i}").replace("@KEY@", f"k{k}")
                      .replace("@TEAM@", f"t{k % TEAMS}"))
    return ("[" + ",".join(events) + "]").encode()


def sender(port, batch_size, seconds, start_at, results):
    prefix = uuid.uuid4().hex[:12]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"authorization": f"Bearer {ACCOUNTING_WRITER_TOKEN}", "content-type": "application/json"}
    latencies, events, errors, seq = [], 0, 0, 0
    body = batch_body(prefix, batch_size, seq)
    while time.time() < start_at:
        time.sleep(0.005)
    stop_at = start_at + seconds
    while time.time() < stop_at:
        headers["x-tollgate-batch-id"] = f"{prefix}-{seq}"
        started = time.perf_counter()
        conn.request("POST", "/v1/spend/batch", body=body, headers=headers)
        response = conn.getresponse()
        reply = response.read()
        took = time.perf_counter() - started
        if response.status == 200 and json.loads(reply)["accepted"] == batch_size:
            latencies.append(took)
            events += batch_size
        else:
            errors += 1
        seq += 1
        body = batch_body(prefix, batch_size, seq)  # made between batches, outside the timing
    results.put({"latencies": latencies, "events": events, "errors": errors})


def run(ports, batch_size, senders, seconds):
    results = multiprocessing.Queue()
    start_at = time.time() + 1.0
    procs = [multiprocessing.Process(target=sender, args=(ports[i % len(ports)], batch_size, seconds, start_at,
                                                          results)) for i in range(senders)]
    for p in procs:
        p.start()
    gathered = [results.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    latencies = sorted(x for g in gathered for x in g["latencies"])
    events = sum(g["events"] for g in gathered)

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000 if latencies else None

    return {"batch_size": batch_size, "senders": senders, "instances": len(ports), "seconds": seconds,
            "events": events, "events_per_s": round(events / seconds), "batches": len(latencies),
            "errors": sum(g["errors"] for g in gathered),
            "p50_ms": round(pct(50), 2), "p99_ms": round(pct(99), 2),
            "mean_ms": round(statistics.mean(latencies) * 1000, 2)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--senders", type=int, default=4)
    args = parser.parse_args()
    if not BINARY.exists():
        sys.exit(f"{BINARY} is missing: cargo build --release --bin tollgate")
    work = clean_dir(ROOT / ".run" / "bench" / "accounting")
    postgres = PostgresServer(work / "postgres")
    rows = []
    try:
        for store in ("sqlite", "postgres", "postgres x2"):
            for batch_size in (100, 500):
                name = f"{store.replace(' ', '')}-{batch_size}"
                db = postgres.create_database(name.replace("-", "_")) if store.startswith("postgres") else None
                servers = [AccountingServer(clean_dir(work / f"{name}-{i}"), binary=BINARY, db=db)
                           for i in range(2 if store.endswith("x2") else 1)]
                try:
                    row = dict(store=store, **run([s.port for s in servers], batch_size, args.senders,
                                                  args.seconds))
                finally:
                    for server in servers:
                        server.stop()
                rows.append(row)
                print(f"{store:12} batch {batch_size:3}: {row['events_per_s']:>7} events/s, "
                      f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms ({row['batches']} batches, "
                      f"{row['errors']} errors)", flush=True)
    finally:
        postgres.stop()
    out = ROOT / ".run" / "bench" / "accounting.json"
    out.write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
