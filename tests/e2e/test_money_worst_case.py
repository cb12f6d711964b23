"""Issue 10 (money): the worst case is the worst case, and the price is the price of what was
served. Through real Envoy, the mock upstreams and the reference accounting server:

- `n` multiplies the reserved answer, so a small budget refuses while a 4-answer request is
  in flight;
- a Responses follow-up (`previous_response_id`) reserves the model's whole context window;
- a `priority` answer is priced at the priority rates (the tier the answer reports wins over
  the tier asked for), in the events and in the server's budget totals;
- Anthropic one-hour cache writes are priced at the one-hour rate;
- audio tokens are priced at the audio rates;
- Anthropic web searches are priced per call (`search_context_cost_per_query`, medium), or the
  event is flagged estimated when the model has no search price;
- a Responses stream that ends in `response.incomplete` / `response.failed` is billed by its
  usage, not estimated.
"""

import json
import threading
import time
from decimal import Decimal

import pytest

from conftest import accounting_server, start_stack
from policies import REAL_COST_MAP, bearer, chat, money_policy
from stack import key_hash, wait_until

KEYS = {
    "n": "sk-e2e-worst-n",                # $0.003 key budget
    "followup": "sk-e2e-worst-followup",  # $0.2 key budget
    "tiers": "sk-e2e-worst-tiers",        # $100 key budget: the server keeps its total
    "cache": "sk-e2e-worst-cache-1h",     # anthropic/*, no budget
    "ends": "sk-e2e-worst-ends",          # no budget
    "window": "sk-e2e-worst-window",      # $0.0001 per 5 s window
    "audio": "sk-e2e-worst-audio",        # gpt-4o-audio-preview-2024-12-17, no budget
}
AUDIO_MODEL = "gpt-4o-audio-preview-2024-12-17"


def worst_case_policy(version):
    policy = money_policy(version)
    policy["model_list"].append(
        {"model_name": AUDIO_MODEL, "litellm_params": {"model": f"openai/{AUDIO_MODEL}",
                                                       "api_key_env": "OPENAI_API_KEY"},
         "cluster": "openai", "model_info": {"id": "openai-audio"}})
    policy["keys"] += [
        {"key_hash": key_hash(KEYS["audio"]), "key_alias": "worst-audio", "models": [AUDIO_MODEL]},
        {"key_hash": key_hash(KEYS["n"]), "key_alias": "worst-n", "max_budget": 0.003, "models": ["gpt-4o"]},
        {"key_hash": key_hash(KEYS["followup"]), "key_alias": "worst-followup", "max_budget": 0.2,
         "models": ["gpt-4o"]},
        {"key_hash": key_hash(KEYS["tiers"]), "key_alias": "worst-tiers", "max_budget": 100,
         "models": ["gpt-4o"]},
        {"key_hash": key_hash(KEYS["cache"]), "key_alias": "worst-cache", "models": ["anthropic/*"]},
        {"key_hash": key_hash(KEYS["ends"]), "key_alias": "worst-ends", "models": ["gpt-4o"]},
        {"key_hash": key_hash(KEYS["window"]), "key_alias": "worst-window", "max_budget": 0.0001,
         "budget_duration": "5s", "models": ["gpt-4o"]},
    ]
    return policy


@pytest.fixture(scope="module")
def accounting():
    server = accounting_server("accounting-worst-case")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def money(request, upstreams, accounting):
    stack = start_stack(request, upstreams, worst_case_policy("w1"), extra_clusters={"accounting": accounting.port})
    yield stack
    stack.stop()


def usd(value):
    return Decimal(repr(value))


def nano(amount):
    return int((amount * Decimal(10**9)).to_integral_value(rounding="ROUND_HALF_UP"))


def price(model, field, fallback=None):
    entry = REAL_COST_MAP[model]
    return usd(entry[field] if field in entry else entry[fallback])


def event_for(accounting, alias, predicate, timeout=10):
    def found():
        hits = [e["data"] for e in accounting.events()
                if e["data"]["key_alias"] == alias and predicate(e["data"])]
        return hits[0] if hits else None
    return wait_until(found, timeout, message=f"a spend event of {alias}")


def in_flight(money, upstreams, headers, path, body):
    """Starts a slow streamed request and returns once the upstream has it (its reservation is
    held); join the thread to let it finish."""
    result = {}

    def run():
        result["response"] = money.request("POST", path, dict(headers, **{"x-mock-delay-ms": "400"}), body,
                                           timeout=20)

    before = len(upstreams["openai"].requests())
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: len(upstreams["openai"].requests()) > before, timeout=10, message="the slow request upstream")
    return thread, result


def test_n_answers_reserve_n_times_the_answer(money, accounting, upstreams):
    key = bearer(KEYS["n"])
    # 4 answers of up to 100 tokens at $1e-5: $0.004 reserved, above the $0.003 budget.
    thread, slow = in_flight(money, upstreams, key, "/v1/chat/completions",
                             chat("gpt-4o", n=4, max_tokens=100, stream=True))
    refused = money.request("POST", "/v1/chat/completions", key, chat("gpt-4o", max_tokens=100))
    thread.join(20)
    assert slow["response"].status == 200, slow["response"]
    assert refused.status == 429, f"a second request fit beside a 4-answer reservation: {refused}"
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded" and "reserved" in error["message"], error
    # Once it settled at its real cost ($0.00008), the budget admits again.
    again = money.request("POST", "/v1/chat/completions", key, chat("gpt-4o", max_tokens=100))
    assert again.status == 200, again


def test_a_huge_n_saturates_instead_of_overflowing(money, accounting, upstreams):
    # A fresh $100 budget admits it (its reservation saturates); the upstream's answer is priced.
    r = money.request("POST", "/v1/chat/completions", bearer(KEYS["tiers"]),
                      chat("gpt-4o", n=10**30, max_tokens=10**30, user="huge-n"))
    assert r.status == 200, r
    event = event_for(accounting, "worst-tiers", lambda d: d["end_user"] == "huge-n")
    assert event["cost_nano_usd"] == 80_000
    after = money.request("POST", "/v1/chat/completions", bearer(KEYS["tiers"]), chat("gpt-4o", user="after-huge-n"))
    assert after.status == 200, "the saturated hold was released"


def test_a_responses_follow_up_reserves_the_whole_context_window(money, accounting, upstreams):
    key = bearer(KEYS["followup"])
    first = money.request("POST", "/v1/responses", key, {"model": "gpt-4o", "input": "hi", "max_output_tokens": 10})
    assert first.status == 200, first
    previous = first.json()["id"]
    # gpt-4o's max_input_tokens (128,000) at $2.5e-6 = $0.32 reserved for the conversation so far.
    thread, slow = in_flight(money, upstreams, key, "/v1/responses",
                             {"model": "gpt-4o", "input": "and then?", "previous_response_id": previous,
                              "max_output_tokens": 10, "stream": True})
    refused = money.request("POST", "/v1/responses", key, {"model": "gpt-4o", "input": "hi", "max_output_tokens": 10})
    thread.join(20)
    assert slow["response"].status == 200, slow["response"]
    assert refused.status == 429, f"a follow-up reserved only its new input: {refused}"
    assert refused.json()["error"]["code"] == "budget_exceeded"
    again = money.request("POST", "/v1/responses", key, {"model": "gpt-4o", "input": "hi", "max_output_tokens": 10})
    assert again.status == 200, again


def tier_cost(tier, prompt=12, completion=5):
    suffix = "" if tier == "standard" else f"_{tier}"
    return nano(price("gpt-4o", f"input_cost_per_token{suffix}", "input_cost_per_token") * prompt
                + price("gpt-4o", f"output_cost_per_token{suffix}", "output_cost_per_token") * completion)


def test_priority_answers_are_priced_at_priority_rates_in_events_and_totals(money, accounting, upstreams):
    assert tier_cost("priority") == 136_000 and tier_cost("standard") == 80_000
    key = bearer(KEYS["tiers"])
    cases = [
        # (user, path, body extras, mock headers, expected tier)
        ("asked-priority", "/v1/chat/completions", {"service_tier": "priority"}, {}, "priority"),
        ("auto-got-priority", "/v1/chat/completions", {"service_tier": "auto"},
         {"x-mock-service-tier": "priority"}, "priority"),
        ("asked-priority-got-default", "/v1/chat/completions", {"service_tier": "priority"},
         {"x-mock-service-tier": "default"}, "standard"),
        ("stream-priority", "/v1/chat/completions", {"service_tier": "priority", "stream": True}, {}, "priority"),
        ("responses-priority", "/v1/responses", {"service_tier": "priority", "stream": True}, {}, "priority"),
        ("responses-json-priority", "/v1/responses", {"service_tier": "priority"}, {}, "priority"),
    ]
    for user, path, extra, headers, _ in cases:
        body = dict(chat("gpt-4o", user=user), **extra) if "chat" in path else \
            dict({"model": "gpt-4o", "input": "hi", "user": user}, **extra)
        r = money.request("POST", path, dict(key, **headers), body)
        assert r.status == 200, (user, r)
    total = 0
    for user, _, _, _, tier in cases:
        event = event_for(accounting, "worst-tiers", lambda d, u=user: d["end_user"] == u)
        assert (event["usage"]["prompt_tokens"], event["usage"]["completion_tokens"]) == (12, 5), event
        assert not event["usage"]["estimated"]
        assert event["cost_nano_usd"] == tier_cost(tier), (user, event["cost_nano_usd"], tier)
        total += event["cost_nano_usd"]
    hashed = key_hash(KEYS["tiers"])
    expected = total + sum(e["data"]["cost_nano_usd"] for e in accounting.events()
                           if e["data"]["key_alias"] == "worst-tiers"
                           and e["data"]["end_user"] not in {c[0] for c in cases})

    def server_total():
        totals = [b for b in accounting.budgets() if b["budget"] == f"key:{hashed}"]
        return totals if totals and totals[0]["spend_nano_usd"] == expected else None
    wait_until(server_total, timeout=10, message=f"the server's total of {expected}")


def test_one_hour_cache_writes_cost_the_one_hour_rate(money, accounting, upstreams):
    model = "claude-sonnet-4-6"
    usage = {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 1000,
             "cache_read_input_tokens": 0,
             "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600}}
    key = dict(bearer(KEYS["cache"]), **{"x-mock-usage": json.dumps(usage)})
    for stream in (False, True):
        r = money.request("POST", "/v1/messages", key, chat(model, max_tokens=64, stream=stream))
        assert r.status == 200, r
    expected = nano(price(model, "input_cost_per_token") * 10
                    + price(model, "cache_creation_input_token_cost") * 400
                    + price(model, "cache_creation_input_token_cost_above_1hr") * 600
                    + price(model, "output_cost_per_token") * 5)
    assert expected == 30_000 + 1_500_000 + 3_600_000 + 75_000
    for stream in (False, True):
        event = event_for(accounting, "worst-cache", lambda d, s=stream: d["stream"] == s)
        assert event["usage"]["prompt_tokens"] == 1010 and event["usage"]["cache_creation_tokens"] == 1000
        assert event["cost_nano_usd"] == expected, (stream, event["cost_nano_usd"])


def test_audio_tokens_cost_the_audio_rates(money, accounting, upstreams):
    usage = {"prompt_tokens": 100, "completion_tokens": 50,
             "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 60},
             "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 40}}
    key = dict(bearer(KEYS["audio"]), **{"x-mock-usage": json.dumps(usage)})
    r = money.request("POST", "/v1/chat/completions", key, chat(AUDIO_MODEL, user="audio-1"))
    assert r.status == 200, r
    expected = nano(price(AUDIO_MODEL, "input_cost_per_token") * 40
                    + price(AUDIO_MODEL, "input_cost_per_audio_token") * 60
                    + price(AUDIO_MODEL, "output_cost_per_token") * 10
                    + price(AUDIO_MODEL, "output_cost_per_audio_token") * 40)
    assert expected == 100_000 + 2_400_000 + 100_000 + 3_200_000
    event = event_for(accounting, "worst-audio", lambda d: d["end_user"] == "audio-1")
    assert event["cost_nano_usd"] == expected, f"audio priced as text: {event['cost_nano_usd']}"


def test_anthropic_web_searches_are_charged_per_call_or_flagged_estimated(money, accounting, upstreams):
    usage = {"input_tokens": 10, "output_tokens": 5, "server_tool_use": {"web_search_requests": 3}}
    key = dict(bearer(KEYS["cache"]), **{"x-mock-usage": json.dumps(usage)})
    before = money.counter("wasmcustom.tollgate_spend_tool_calls_unpriced")
    for model in ("claude-sonnet-4-6", "claude-haiku-4-5"):
        for stream in (False, True):
            r = money.request("POST", "/v1/messages", key,
                              chat(model, max_tokens=64, stream=stream))
            assert r.status == 200, r
    # claude-sonnet-4-6 has search_context_cost_per_query (medium: $0.01 a search, as LiteLLM).
    searches = usd(REAL_COST_MAP["claude-sonnet-4-6"]["search_context_cost_per_query"]["search_context_size_medium"])
    expected = nano(price("claude-sonnet-4-6", "input_cost_per_token") * 10
                    + price("claude-sonnet-4-6", "output_cost_per_token") * 5 + searches * 3)
    assert expected == 30_000 + 75_000 + 30_000_000
    for stream in (False, True):
        event = event_for(accounting, "worst-cache",
                          lambda d, s=stream: d["stream"] == s and d["upstream_model"] == "claude-sonnet-4-6"
                          and d["usage"]["prompt_tokens"] == 10)
        assert event["cost_nano_usd"] == expected, (stream, event["cost_nano_usd"])
        assert not event["usage"]["estimated"]
    # claude-haiku-4-5 has no search price: its tokens are charged, and the event says estimated.
    for stream in (False, True):
        event = event_for(accounting, "worst-cache",
                          lambda d, s=stream: d["stream"] == s and d["upstream_model"] == "claude-haiku-4-5"
                          and d["usage"]["prompt_tokens"] == 10)
        assert event["usage"]["estimated"], f"unpriced web searches were not flagged: {event}"
        assert event["cost_nano_usd"] == nano(price("claude-haiku-4-5", "input_cost_per_token") * 10
                                              + price("claude-haiku-4-5", "output_cost_per_token") * 5)
    wait_until(lambda: money.counter("wasmcustom.tollgate_spend_tool_calls_unpriced") >= before + 2, timeout=5,
               message="tollgate_spend_tool_calls_unpriced")


@pytest.mark.parametrize("end", ["response.incomplete", "response.failed"])
def test_incomplete_and_failed_responses_streams_are_billed_by_their_usage(money, accounting, upstreams, end):
    headers = dict(bearer(KEYS["ends"]), **{"x-mock-response-end": end,
                                            "x-mock-usage": json.dumps({"input_tokens": 30, "output_tokens": 64})})
    r = money.request("POST", "/v1/responses", headers,
                      {"model": "gpt-4o", "input": "hi", "stream": True, "user": end})
    assert r.status == 200, r
    assert end in r.body.decode()
    event = event_for(accounting, "worst-ends", lambda d: d["end_user"] == end)
    assert (event["usage"]["prompt_tokens"], event["usage"]["completion_tokens"]) == (30, 64), event
    assert not event["usage"]["estimated"], f"{end} carried its usage, yet was estimated"
    assert event["status"] == "ok"
    assert event["cost_nano_usd"] == nano(price("gpt-4o", "input_cost_per_token") * 30
                                          + price("gpt-4o", "output_cost_per_token") * 64)


def test_each_short_window_starts_afresh_in_the_same_ledger(money, accounting, upstreams):
    """A budget's ledger is one shared-data slot holding its current window: the next window
    replaces it (and late acknowledgements of the old window leave it alone)."""
    key = bearer(KEYS["window"])
    windows = []
    for _ in range(5):
        # Start just after a window boundary (windows align to multiples of 5 s).
        time.sleep(5 - time.time() % 5 + 0.05)
        window = int(time.time()) // 5
        statuses = [money.request("POST", "/v1/chat/completions", key, chat("gpt-4o", max_tokens=1)).status
                    for _ in range(3)]
        if int(time.time()) // 5 != window:
            continue  # too slow for this window; try the next one
        # $0.00008 each: the second still fits under $0.0001 (spend 80k < 100k), the third not.
        assert statuses == [200, 200, 429], (window, windows, statuses)
        windows.append(window)
        if len(windows) == 2:
            return
    pytest.fail(f"three requests fitted in only {len(windows)} of five 5 s windows")
