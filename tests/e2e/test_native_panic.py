"""A panic inside the native module must not take Envoy down: the hook guard stops it and the
stream fails closed (request side: 500 `internal_error`, nothing forwarded) or passes unmetered
(response side). Runs the test-only build with the panic probe (`--features panic-probe`,
target/probe/native/libtollgate.so, made by ./scripts/test); native form only."""

import json

import pytest

from conftest import ROOT, start_stack
from policies import KEYS, base_policy, bearer, chat
from stack import FORM

PROBE = ROOT / "target" / "probe" / "native" / "libtollgate.so"

pytestmark = pytest.mark.skipif(FORM != "native", reason="a Wasm panic only ends that VM (Envoy's own guard)")


@pytest.fixture(scope="module")
def envoy(request, upstreams):
    assert PROBE.exists(), ("the panic-probe build is missing: cargo build --lib --profile native "
                            "--features panic-probe --target-dir target/probe")
    stack = start_stack(request, upstreams, base_policy("panic1"), concurrency=2, native_module=PROBE)
    yield stack
    stack.stop()


def probe(envoy, side):
    headers = dict(bearer(KEYS["all"]), **{"x-panic-probe": side})
    return envoy.request("POST", "/v1/chat/completions", headers, chat("gpt-4o"))


def still_serving(envoy):
    assert envoy.process.poll() is None, envoy.log_tail()
    r = envoy.request("POST", "/v1/chat/completions", bearer(KEYS["all"]), chat("gpt-4o"))
    assert r.status == 200, r


def test_a_panic_on_the_request_side_fails_closed_and_envoy_keeps_serving(envoy, upstreams):
    for _ in range(3):  # every worker may see one; none may abort the process
        r = probe(envoy, "request")
        assert r.status == 500, r
        error = json.loads(r.body)["error"]
        assert (error["type"], error["code"]) == ("server_error", "internal_error"), error
    assert upstreams["openai"].requests() == [], "a request whose hook panicked was forwarded"
    assert "tollgate native module panicked" in envoy.log_path.read_text(errors="replace")
    still_serving(envoy)


def test_a_panic_on_the_response_side_lets_the_answer_through_and_envoy_keeps_serving(envoy):
    r = probe(envoy, "response")
    assert r.status == 200, r
    assert json.loads(r.body)["choices"], r.body
    assert "the response side was asked to panic" in envoy.log_path.read_text(errors="replace")
    still_serving(envoy)
