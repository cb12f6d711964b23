"""Issue 13, spend attribution through real Envoy: request tags (LiteLLM's `metadata.tags` in the
body and its `x-litellm-tags` header, Tollgate's `x-tollgate-tags`) and the key's and team's
configured tags and metadata reach the spend events, never the provider; the report groups and
filters by them, as JSON and CSV. Runs on SQLite, and on PostgreSQL in the PostgreSQL pass."""

import csv
import io
import json
import time
import urllib.parse

import openai
import pytest

from conftest import accounting_server, start_stack
from policies import bearer, chat, money_policy
from stack import key_hash, request, wait_until

TAGGED = "sk-e2e-attribution-tagged"
PLAIN = "sk-e2e-attribution-plain"


def policy():
    p = money_policy("attr-1")
    p["teams"].append({"team_id": "research", "team_alias": "Research", "tags": ["team-research"],
                       "metadata": {"cost_center": "cc-7", "org": "r&d"}})
    p["keys"] += [
        {"key_hash": key_hash(TAGGED), "key_alias": "tagged", "team_id": "research", "tags": ["prod"],
         "metadata": {"owner": "ana", "tier": 2, "tags": ["from-metadata"], "limits": {"ignored": True}}},
        {"key_hash": key_hash(PLAIN), "key_alias": "plain"},
    ]
    return p


@pytest.fixture(scope="module")
def accounting():
    server = accounting_server("accounting-attribution")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(request, upstreams, accounting):
    stack = start_stack(request, upstreams, policy(), extra_clusters={"accounting": accounting.port})
    yield stack
    stack.stop()


def events_of(accounting, alias, n):
    return wait_until(lambda: (lambda found: found if len(found) >= n else None)(
        [e["data"] for e in accounting.events() if e["data"]["key_alias"] == alias]),
        timeout=15, message=f"{n} events of {alias}")


def report(accounting, **params):
    query = urllib.parse.urlencode(params)
    r = request(accounting.port, "GET", f"/v1/spend/report?{query}", accounting.reader_headers())
    assert r.status == 200, r
    return r


def test_tags_and_metadata_reach_the_events_and_never_the_provider(gateway, accounting, upstreams):
    client = openai.OpenAI(api_key=TAGGED, base_url=f"http://127.0.0.1:{gateway.listen_port}/v1", max_retries=0)
    answer = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], user="attr-sdk",
        extra_body={"metadata": {"tags": ["search", "exp-a"], "trace": "t-1"}},
        extra_headers={"x-litellm-tags": "beta, exp-a", "x-tollgate-tags": "nightly"})
    assert answer.choices
    seen = upstreams["openai"].requests()[-1]
    body = json.loads(seen["body"])
    assert body["metadata"] == {"trace": "t-1"}, "tags are taken out, the rest of metadata stays"
    assert "x-litellm-tags" not in seen["headers"] and "x-tollgate-tags" not in seen["headers"]
    # Anthropic's messages: metadata keeps user_id.
    r = gateway.request("POST", "/v1/messages", {"x-api-key": TAGGED, "content-type": "application/json"},
                        {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}],
                         "metadata": {"user_id": "u-1", "tags": ["anthro"]}})
    assert r.status == 200, r
    assert json.loads(upstreams["anthropic"].requests()[-1]["body"])["metadata"] == {"user_id": "u-1"}
    # A streamed request with a header tag only.
    r = gateway.request("POST", "/v1/chat/completions", dict(bearer(TAGGED), **{"x-tollgate-tags": "stream-job"}),
                        chat("gpt-4o", stream=True, user="attr-stream"))
    assert r.status == 200 and r.body.rstrip().endswith(b"[DONE]"), r
    r = gateway.request("POST", "/v1/chat/completions", bearer(PLAIN), chat("gpt-4o", user="attr-plain"))
    assert r.status == 200, r

    events = events_of(accounting, "tagged", 3)
    sdk = next(e for e in events if e["end_user"] == "attr-sdk")
    assert sdk["tags"] == sorted(["search", "exp-a", "beta", "nightly", "prod", "from-metadata", "team-research"])
    assert sdk["metadata"] == {"key": {"owner": "ana", "tier": "2"}, "team": {"cost_center": "cc-7", "org": "r&d"}}
    anthropic = next(e for e in events if e["provider"] == "anthropic")
    assert anthropic["tags"] == ["anthro", "from-metadata", "prod", "team-research"]
    streamed = next(e for e in events if e["end_user"] == "attr-stream")
    assert streamed["tags"] == ["from-metadata", "prod", "stream-job", "team-research"]
    plain = events_of(accounting, "plain", 1)[0]
    assert "tags" not in plain and "metadata" not in plain, "absent when there are none"


@pytest.mark.parametrize("send, problem", [
    ({"metadata": {"tags": "not-a-list"}}, "metadata.tags"),
    ({"metadata": {"tags": [1, 2]}}, "metadata.tags"),
    ({"metadata": {"tags": ["a,b"]}}, "metadata.tags"),
    ({"metadata": {"tags": ["x" * 65]}}, "metadata.tags"),
    ({"metadata": {"tags": [f"t{i}" for i in range(17)]}}, "metadata.tags"),
    ({"headers": {"x-tollgate-tags": ",".join(f"h{i}" for i in range(17))}}, "x-tollgate-tags"),
    ({"headers": {"x-litellm-tags": "ok, " + "y" * 65}}, "x-litellm-tags"),
    ({"headers": {"x-tollgate-tags": "ok, -"}}, "x-tollgate-tags"),
    ({"metadata": {"tags": [" padded"]}}, "metadata.tags"),
])
def test_malformed_or_too_many_tags_are_refused_before_the_provider(gateway, upstreams, send, problem):
    before = len(upstreams["openai"].requests())
    headers = dict(bearer(PLAIN), **send.get("headers", {}))
    body = chat("gpt-4o", **({"metadata": send["metadata"]} if "metadata" in send else {}))
    r = gateway.request("POST", "/v1/chat/completions", headers, body)
    assert r.status == 400, r
    error = r.json()["error"]
    assert error["code"] == "invalid_tags" and error["type"] == "invalid_request_error", error
    assert problem in error["message"] or problem == "metadata.tags" and "metadata.tags" in error["message"], error
    assert len(upstreams["openai"].requests()) == before


def test_the_report_groups_and_filters_by_tag_key_team_and_time_as_json_and_csv(gateway, accounting):
    for i in range(3):
        r = gateway.request("POST", "/v1/chat/completions", dict(bearer(TAGGED), **{"x-tollgate-tags": "report-a"}),
                            chat("gpt-4o", user=f"rep-{i}"))
        assert r.status == 200, r
    r = gateway.request("POST", "/v1/chat/completions", dict(bearer(PLAIN), **{"x-tollgate-tags": "report-a"}),
                        chat("gpt-4o", user="rep-plain"))
    assert r.status == 200, r
    wait_until(lambda: sum(1 for e in accounting.events() if "report-a" in e["data"].get("tags", [])) == 4,
               timeout=15, message="the report-a events")
    events = [e["data"] for e in accounting.events()]
    tagged = [e for e in events if "report-a" in e.get("tags", [])]

    by_tag = {row["name"]: row for row in report(accounting, group_by="tag").json()["rows"]}
    assert by_tag["report-a"]["requests"] == 4
    assert by_tag["report-a"]["cost_nano_usd"] == sum(e["cost_nano_usd"] for e in tagged)
    untagged = [e for e in events if not e.get("tags")]
    assert by_tag["-"]["requests"] == len(untagged), "events without tags group under '-'"

    by_key = report(accounting, group_by="key", tag="report-a").json()
    assert by_key["filters"] == {"tag": "report-a"}
    assert {row["name"]: row["requests"] for row in by_key["rows"]} == {"tagged": 3, "plain": 1}

    by_model = report(accounting, group_by="model", tag="report-a", team="research").json()["rows"]
    assert [(row["name"], row["requests"]) for row in by_model] == [("gpt-4o", 3)]

    now = int(time.time())
    later = report(accounting, group_by="team", **{"from": now + 3600}).json()
    assert later["rows"] == [] and later["from"] == now + 3600
    today = time.strftime("%Y-%m-%d", time.gmtime())
    days = report(accounting, group_by="day", **{"from": today}).json()["rows"]
    assert [row["name"] for row in days] == [today] and days[0]["requests"] == len(events)

    r = report(accounting, group_by="team", format="csv")
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.body.decode())))
    teams = {row["team"]: row for row in rows}
    research = [e for e in events if e["team_id"] == "research"]
    assert int(teams["research"]["requests"]) == len(research)
    assert int(teams["research"]["cost_nano_usd"]) == sum(e["cost_nano_usd"] for e in research)
    assert float(teams["research"]["cost_usd"]) == pytest.approx(sum(e["cost_nano_usd"] for e in research) / 1e9)

    for bad in ("group_by=secrets", "group_by=team&from=yesterday", "team=research", "group_by=team&x=1"):
        r = request(accounting.port, "GET", f"/v1/spend/report?{bad}", accounting.reader_headers())
        assert r.status == 400 and r.json()["error"]["message"], (bad, r)
    assert request(accounting.port, "GET", "/v1/spend/report?group_by=tag").status == 401
