"""Issue 3/4: Responses-API follow-ups reach the deployment (credential) that can decrypt them,
on any replica, across config versions. The mock upstream signs response ids, reasoning item ids
and encrypted reasoning with the credential that produced them and answers 400
invalid_encrypted_content to any other credential, as OpenAI and Azure do."""

import json

import pytest

from affinity_marks import mark_id, tag_of, tenant_of, unmark_content, unmark_id
from conftest import start_stack
from mock_upstream import new_encrypted, new_id
from policies import AFFINITY_KEY, REASONING_MODEL, UPSTREAM_ENV, affinity_policy, bearer

SECRETS = {UPSTREAM_ENV[k]: k for k in ("OPENAI_EAST_KEY", "OPENAI_WEST_KEY", "OPENAI_VAULT_KEY")}


@pytest.fixture(scope="module")
def replicas(request, upstreams):
    stacks = [start_stack(request, upstreams, affinity_policy(), name=f"affinity-{i}") for i in range(2)]
    yield stacks
    for stack in stacks:
        stack.stop()


def parse(response):
    """The final response object of a JSON or SSE answer."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for block in response.body.decode().split("\n\n"):
            for line in block.splitlines():
                if line.startswith("data:") and '"response.completed"' in line:
                    return json.loads(line[5:])["response"]
        raise AssertionError(f"no response.completed in {response.body[:300]!r}")
    return response.json()


def turn(stack, history, text, stream=False, **extra):
    body = dict({"model": REASONING_MODEL, "store": False, "include": ["reasoning.encrypted_content"],
                 "input": history + [{"role": "user", "content": text}], "stream": stream}, **extra)
    r = stack.request("POST", "/v1/responses", bearer(AFFINITY_KEY), body)
    return r, (parse(r) if r.status == 200 else None)


def converse(stack, turns=3, stream=False, history=None):
    history = list(history or [])
    for t in range(turns):
        r, response = turn(stack, history, f"turn {t}", stream)
        if r.status != 200:
            return r, history
        history += [{"role": "user", "content": f"turn {t}"}] + response["output"]
    return None, history


def unmarked(history):
    """What a client would send through a gateway that does not mark (the original values)."""
    out = []
    for item in history:
        item = dict(item)
        if item.get("type") == "reasoning":
            item["id"] = unmark_id(item["id"])[0]
            item["encrypted_content"] = unmark_content(item["encrypted_content"])[0]
        out.append(item)
    return out


def upstream_responses(upstreams):
    return [r for r in upstreams["openai"].requests() if r["path"].startswith("/v1/responses")]


def test_fifty_conversations_succeed_and_would_fail_without_marks(replicas, upstreams):
    a = replicas[0]
    histories = []
    for _ in range(50):
        failure, history = converse(a)
        assert failure is None, failure
        histories.append(history)
    # Both credentials served conversations (the load balancer spread them).
    used = {r["headers"]["authorization"].removeprefix("Bearer ") for r in upstream_responses(upstreams)}
    assert used == {UPSTREAM_ENV["OPENAI_EAST_KEY"], UPSTREAM_ENV["OPENAI_WEST_KEY"]}
    # The same follow-ups without marks (the originals, which anyone can decode from a mark):
    # nothing vouches for their tenant (issue 10), so their reasoning is stripped before it could
    # reach a credential at random, and the turn goes on without it.
    upstreams["openai"].clear()
    for history in histories[:10]:
        r, _ = turn(a, unmarked(history), "again")
        assert r.status == 200, r
    seen = upstream_responses(upstreams)
    assert len(seen) == 10
    for request in seen:
        assert '"encrypted_content"' not in request["body"] and '"rs_' not in request["body"]


def test_streamed_conversations_succeed(replicas, upstreams):
    for _ in range(20):
        failure, history = converse(replicas[0], stream=True)
        assert failure is None, failure
        assert any(item.get("type") == "reasoning" for item in history)


def test_follow_ups_on_another_replica_succeed(replicas, upstreams):
    a, b = replicas
    for i in range(20):
        failure, history = converse(a, turns=1, stream=bool(i % 2))
        assert failure is None, failure
        failure, _ = converse(b, turns=2, history=history)
        assert failure is None, failure


def test_clients_see_marked_ids_and_the_upstream_only_what_it_issued(replicas, upstreams):
    a, b = replicas
    r, first = turn(a, [], "hello", store=True)
    assert r.status == 200
    marked = first["id"]
    original, tag = unmark_id(marked)
    assert tag and len(marked) <= 64 and marked != original
    upstreams["openai"].clear()
    r, second = turn(b, [], "and then?", previous_response_id=marked, store=True)
    assert r.status == 200, r
    [seen] = upstream_responses(upstreams)
    sent = json.loads(seen["body"])
    assert sent["previous_response_id"] == original
    assert SECRETS[seen["headers"]["authorization"].removeprefix("Bearer ")] in ("OPENAI_EAST_KEY", "OPENAI_WEST_KEY")
    for request in upstream_responses(upstreams):
        assert "_ts" not in request["body"] and '"ts' not in request["body"], "a mark reached the upstream"
    assert len(second["id"]) <= 64


def test_a_version_without_the_origin_deployment_follows_the_fallback(replicas, upstreams):
    a = replicas[0]
    east_tag = tag_of("o4-east", "cred:OPENAI_EAST_KEY")

    def east_conversation(store=False):
        for _ in range(40):
            r, response = turn(a, [], "start", store=store)
            assert r.status == 200
            if unmark_id(response["id"])[1] == east_tag:
                return [{"role": "user", "content": "start"}] + response["output"], response["id"]
        raise AssertionError("no conversation landed on east")

    history, _ = east_conversation()
    _, stored_id = east_conversation(store=True)
    try:
        # The origin is gone but another deployment holds the same credential: pinned there.
        a.push_policy(affinity_policy("a2", deployments=("west", "east2")), "a2")
        upstreams["openai"].clear()
        r, _ = turn(a, history, "next")
        assert r.status == 200, r
        [seen] = upstream_responses(upstreams)
        assert SECRETS[seen["headers"]["authorization"].removeprefix("Bearer ")] == "OPENAI_EAST_KEY"

        # No deployment on east's boundary: the default fallback strips the encrypted reasoning.
        a.push_policy(affinity_policy("a3", deployments=("west",)), "a3")
        upstreams["openai"].clear()
        r, _ = turn(a, history, "next")
        assert r.status == 200, r
        [seen] = upstream_responses(upstreams)
        sent = json.loads(seen["body"])
        assert not [i for i in sent["input"] if i.get("type") == "reasoning"]
        assert [i for i in sent["input"] if i.get("role") == "user"], "readable content is kept"
        # A stored response cannot be continued elsewhere: refused, whatever the fallback.
        r, _ = turn(a, [], "next", previous_response_id=stored_id, store=True)
        assert r.status == 409 and r.json()["error"]["code"] == "affinity_unavailable", r

        a.push_policy(affinity_policy("a4", deployments=("west",), fallback="fail"), "a4")
        r, _ = turn(a, history, "next")
        assert r.status == 409 and r.json()["error"]["code"] == "affinity_unavailable", r
    finally:
        a.push_policy(affinity_policy("a1"), "a1-back")


def test_a_tampered_mark_never_reaches_a_deployment_the_key_may_not_use(replicas, upstreams):
    a = replicas[0]
    vault = UPSTREAM_ENV["OPENAI_VAULT_KEY"]
    forged_tag = tag_of("o4-vault", "cred:OPENAI_VAULT_KEY")
    # Sealed for the key's own tenant (the test knows the secret): only the pin is forged.
    own = tenant_of(key=AFFINITY_KEY)
    forged_previous = mark_id(new_id("resp", vault), forged_tag, own)
    forged_item = {"type": "reasoning", "id": mark_id(new_id("rs", vault), forged_tag, own),
                   "encrypted_content": new_encrypted(vault), "summary": []}
    upstreams["openai"].clear()
    r, _ = turn(a, [], "hi", previous_response_id=forged_previous, store=True)
    assert r.status == 409, r
    r, _ = turn(a, [forged_item], "hi")
    assert r.status in (200, 400), r  # stripped (default) or refused upstream: never the vault
    for request in upstream_responses(upstreams):
        assert request["headers"]["authorization"] != f"Bearer {vault}"
    damaged = forged_previous[:-3] + ("AAA" if not forged_previous.endswith("AAA") else "BBB")
    r, _ = turn(a, [], "hi", previous_response_id=damaged)
    assert r.status == 400 and r.json()["error"]["code"] == "invalid_affinity_mark", r
