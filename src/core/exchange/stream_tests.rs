//! Unit tests of one exchange over a scripted host: the callback order, the edits it asks
//! for, what it refuses, and what it settles — the same code both adapters run.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::cell::RefCell;
use std::sync::Arc;

use super::*;
use crate::core::config::index::Accounting;
use crate::core::config::key_hash::{digest, to_hex};
use crate::core::exchange::telemetry::Telemetry;
use crate::core::money::reservation::{LedgerStore, MemoryLedgers};
use crate::core::money::settlement::Finished;

#[derive(Default)]
struct Counters(RefCell<Vec<String>>);

impl Telemetry for Counters {
    fn add(&self, name: &'static str, _by: u64) {
        self.0.borrow_mut().push(name.to_string());
    }
    fn add_labelled(&self, prefix: &'static str, label: &str, _by: u64) {
        self.0.borrow_mut().push(format!("{prefix}{label}"));
    }
    fn record(&self, _name: &'static str, _value: u64) {}
    fn record_tagged(&self, _: &'static str, _: &[(&'static str, &str)], _: u64) {}
    fn add_tagged(&self, _: &'static str, _: &[(&'static str, &str)], _: u64) {}
}

/// A host that plays Envoy: header maps as lists, one request body, answers recorded.
#[derive(Default)]
struct ScriptedHost {
    request: Vec<(String, String)>,
    trailers: Vec<(String, String)>,
    response: Vec<(String, String)>,
    body: Vec<u8>,
    chunk: Vec<u8>,
    reply: Option<(u16, String)>,
    refuse_edits: bool,
    route_cleared: u32,
    log_line: Option<String>,
    spend: Vec<Finished>,
    ledgers: MemoryLedgers,
    counters: Counters,
    details: String,
}

fn map_of(host: &mut ScriptedHost, map: HeaderMap) -> &mut Vec<(String, String)> {
    match map {
        HeaderMap::Request => &mut host.request,
        HeaderMap::RequestTrailers => &mut host.trailers,
        HeaderMap::Response => &mut host.response,
    }
}

impl StreamHost for ScriptedHost {
    fn headers(&mut self, map: HeaderMap) -> HeaderBlock {
        let mut block = HeaderBlock::default();
        for (n, v) in map_of(self, map).iter() {
            block.push(n.as_bytes(), v.as_bytes());
        }
        block
    }
    fn set_header(&mut self, map: HeaderMap, name: &str, value: &str) -> bool {
        if self.refuse_edits {
            return false;
        }
        let list = map_of(self, map);
        list.retain(|(n, _)| n != name);
        list.push((name.to_string(), value.to_string()));
        true
    }
    fn remove_header(&mut self, map: HeaderMap, name: &[u8]) -> bool {
        map_of(self, map).retain(|(n, _)| n.as_bytes() != name);
        true
    }
    fn request_body(&mut self, _size: usize) -> Option<Vec<u8>> {
        Some(self.body.clone())
    }
    fn replace_request_body(&mut self, _size: usize, data: &[u8]) -> bool {
        self.body = data.to_vec();
        true
    }
    fn response_chunk(&mut self, _size: usize) -> Option<Vec<u8>> {
        Some(self.chunk.clone())
    }
    fn replace_response_chunk(&mut self, _size: usize, data: &[u8]) -> bool {
        self.chunk = data.to_vec();
        true
    }
    fn send_response(&mut self, status: u16, _d: &str, _h: &[(&str, &str)], body: &[u8]) -> bool {
        self.reply = Some((status, String::from_utf8_lossy(body).into_owned()));
        true
    }
    fn clear_route_cache(&mut self) -> bool {
        self.route_cleared += 1;
        true
    }
    fn response_code_details(&mut self) -> String {
        self.details.clone()
    }
    fn set_access_log_line(&mut self, line: &str) {
        self.log_line = Some(line.to_string());
    }
    fn log(&self, _level: LogLevel, _message: &str) {}
    fn clock_seconds(&self) -> Option<i64> {
        Some(1_700_000_000)
    }
    fn now_ms(&self) -> u64 {
        1_700_000_000_000
    }
    fn random(&mut self) -> u64 {
        7
    }
    fn ledgers(&self) -> &dyn LedgerStore {
        &self.ledgers
    }
    fn telemetry(&self) -> &dyn Telemetry {
        &self.counters
    }
    fn record_spend(&mut self, finished: Finished, _accounting: Option<&Accounting>) {
        self.spend.push(finished);
    }
}

fn version() -> Arc<Version> {
    let json = format!(
        r#"{{"version":"v1","cost_map":{{"gpt-4o":{{"litellm_provider":"openai",
            "input_cost_per_token":0.000001,"output_cost_per_token":0.000002}}}},
          "model_list":[{{"model_name":"gpt-4o","cluster":"openai",
            "litellm_params":{{"model":"openai/gpt-4o","api_key_env":"OPENAI_KEY"}}}}],
          "keys":[{{"key_hash":"{}","key_alias":"k","models":["gpt-4o"],"max_budget":10}}],
          "settings":{{"access_log":true}}}}"#,
        to_hex(&digest("sk-k"))
    );
    let policy = crate::core::compile(json.as_bytes()).unwrap();
    let env = |name: &str| (name == "OPENAI_KEY").then(|| "sk-upstream".to_string());
    Arc::new(Version::new(policy, &env, false).0)
}

fn chat_request(host: &mut ScriptedHost) {
    for (n, v) in [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("authorization", "Bearer sk-k"),
        ("x-tollgate-cluster", "attacker"),
        ("content-length", "40"),
    ] {
        host.request.push((n.to_string(), v.to_string()));
    }
    host.body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#.to_vec();
}

fn header<'a>(list: &'a [(String, String)], name: &str) -> Option<&'a str> {
    list.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn headers_are_held_until_the_body_decides_then_edited_before_release() {
    let mut host = ScriptedHost::default();
    chat_request(&mut host);
    let mut exchange = Exchange::new(version());
    assert_eq!(exchange.on_request_headers(&mut host, false), Step::Pause);
    // Before any decision: the client's credential and internal header are gone.
    assert_eq!(header(&host.request, "authorization"), None);
    assert_eq!(header(&host.request, "x-tollgate-cluster"), None);
    assert_eq!(exchange.on_request_body(&mut host, 20, false), Step::Pause);
    let size = host.body.len();
    assert_eq!(
        exchange.on_request_body(&mut host, size, true),
        Step::Continue
    );
    assert_eq!(header(&host.request, "x-tollgate-cluster"), Some("openai"));
    assert_eq!(
        header(&host.request, "authorization"),
        Some("Bearer sk-upstream")
    );
    assert_eq!(header(&host.request, "accept-encoding"), Some("identity"));
    assert!(
        host.route_cleared >= 2,
        "the route is picked again on the written header"
    );
    assert!(host.reply.is_none());
    let reserved: u64 = host
        .ledgers
        .0
        .borrow()
        .values()
        .map(|l| l.reserved(1_700_000_000))
        .sum();
    assert!(
        reserved > 0,
        "the worst case is reserved while the request is out"
    );
}

#[test]
fn a_body_before_headers_is_refused_not_released() {
    let mut host = ScriptedHost::default();
    let mut exchange = Exchange::new(version());
    assert_eq!(exchange.on_request_body(&mut host, 10, true), Step::Pause);
    let (status, body) = host.reply.clone().unwrap();
    assert_eq!(status, 500);
    assert!(body.contains("request_out_of_order"), "{body}");
}

#[test]
fn a_refused_edit_refuses_the_request_and_releases_its_reservation() {
    let mut host = ScriptedHost::default();
    chat_request(&mut host);
    let mut exchange = Exchange::new(version());
    exchange.on_request_headers(&mut host, false);
    host.refuse_edits = true;
    let size = host.body.len();
    assert_eq!(exchange.on_request_body(&mut host, size, true), Step::Pause);
    let (_, body) = host.reply.clone().unwrap();
    assert!(body.contains("request_not_editable"), "{body}");
    let ledgers = host.ledgers.0.borrow();
    assert!(!ledgers.is_empty(), "the key's budget was reserved on");
    for ledger in ledgers.values() {
        assert_eq!(
            ledger.reserved(1_700_000_000),
            0,
            "the reservation was released"
        );
    }
}

#[test]
fn a_metered_answer_settles_once_with_its_real_usage_and_leaves_a_log_line() {
    let mut host = ScriptedHost::default();
    chat_request(&mut host);
    let mut exchange = Exchange::new(version());
    exchange.on_request_headers(&mut host, false);
    let size = host.body.len();
    exchange.on_request_body(&mut host, size, true);
    host.response = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
    ];
    exchange.on_response_headers(&mut host, false);
    assert_eq!(
        header(&host.response, "x-tollgate-policy-version"),
        Some("v1")
    );
    host.chunk = br#"{"id":"c1","usage":{"prompt_tokens":1000,"completion_tokens":500}}"#.to_vec();
    let size = host.chunk.len();
    exchange.on_response_body(&mut host, size, true);
    host.details = "via_upstream".into();
    exchange.on_complete(&mut host);
    exchange.on_complete(&mut host);
    assert_eq!(host.spend.len(), 1, "settled exactly once");
    let finished = &host.spend[0];
    assert_eq!(finished.data.usage.prompt_tokens, 1000);
    assert_eq!(finished.data.usage.completion_tokens, 500);
    // 1000 × $0.000001 + 500 × $0.000002 = $0.002.
    assert_eq!(finished.cost.nano_usd, 2_000_000);
    let line = host.log_line.clone().unwrap();
    assert!(line.contains("decision=allowed"), "{line}");
}

#[test]
fn an_unknown_key_is_denied_with_the_openai_error_and_counted() {
    let mut host = ScriptedHost::default();
    chat_request(&mut host);
    host.request[2].1 = "Bearer sk-unknown".into();
    let mut exchange = Exchange::new(version());
    assert_eq!(exchange.on_request_headers(&mut host, false), Step::Pause);
    let (status, body) = host.reply.clone().unwrap();
    assert_eq!(status, 401);
    assert!(body.contains(r#""code":"invalid_api_key""#), "{body}");
    assert!(host
        .counters
        .0
        .borrow()
        .contains(&"tollgate_requests_denied_invalid_api_key".to_string()));
    exchange.on_complete(&mut host);
    assert!(host.log_line.unwrap().contains("decision=denied"));
    assert!(host.spend.is_empty());
}

#[test]
fn no_access_log_line_is_made_unless_the_version_asks_for_one() {
    let mut host = ScriptedHost::default();
    chat_request(&mut host);
    host.request[2].1 = "Bearer sk-unknown".into();
    let policy = crate::core::compile(br#"{"version":"quiet","keys":[]}"#).unwrap();
    let none = |_: &str| None;
    let mut exchange = Exchange::new(Arc::new(Version::new(policy, &none, false).0));
    exchange.on_request_headers(&mut host, false);
    exchange.on_complete(&mut host);
    assert_eq!(host.reply.clone().unwrap().0, 401);
    assert!(host.log_line.is_none());
}

#[test]
fn without_a_policy_every_request_is_refused_with_503() {
    let mut host = ScriptedHost::default();
    chat_request(&mut host);
    let mut exchange = Exchange::new(Arc::new(Version::default()));
    exchange.on_request_headers(&mut host, false);
    let size = host.body.len();
    exchange.on_request_body(&mut host, size, true);
    assert_eq!(host.reply.clone().unwrap().0, 503);
}

#[test]
fn the_azure_form_goes_upstream_on_the_canonical_path_without_its_query_credentials() {
    let mut host = ScriptedHost::default();
    chat_request(&mut host);
    host.request[1].1 =
        "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21&api-key=sk-k".into();
    host.body = br#"{"messages":[]}"#.to_vec();
    let mut exchange = Exchange::new(version());
    exchange.on_request_headers(&mut host, false);
    let size = host.body.len();
    assert_eq!(
        exchange.on_request_body(&mut host, size, true),
        Step::Continue
    );
    assert_eq!(header(&host.request, ":path"), Some("/v1/chat/completions"));
    assert_eq!(host.body, br#"{"model":"gpt-4o","messages":[]}"#);
    assert_eq!(header(&host.request, "content-length"), Some("32"));
}

#[test]
fn a_free_answer_is_relayed_without_a_spend_event() {
    let mut host = ScriptedHost::default();
    chat_request(&mut host);
    host.request[1].1 = "/v1/messages/count_tokens".into();
    let mut exchange = Exchange::new(version());
    exchange.on_request_headers(&mut host, false);
    let size = host.body.len();
    assert_eq!(
        exchange.on_request_body(&mut host, size, true),
        Step::Continue
    );
    assert_eq!(header(&host.request, "x-tollgate-cluster"), Some("openai"));
    assert!(host.ledgers.0.borrow().is_empty(), "nothing reserved");
    host.response = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
    ];
    exchange.on_response_headers(&mut host, false);
    host.chunk = br#"{"input_tokens":12,"usage":{"input_tokens":12}}"#.to_vec();
    let size = host.chunk.len();
    exchange.on_response_body(&mut host, size, true);
    exchange.on_complete(&mut host);
    assert!(host.spend.is_empty(), "no spend event");
    let line = host.log_line.clone().unwrap();
    assert!(
        line.contains("endpoint=count_tokens") && line.contains("metered=false"),
        "{line}"
    );
}
