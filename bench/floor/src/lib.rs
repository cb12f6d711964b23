//! Do-nothing proxy-wasm HTTP filters with Tollgate's callback pattern, for `./scripts/bench`.
//!
//! With an empty plugin configuration it only holds the request headers until the body is
//! complete, reads the body once, and sees the response: the floor of any body-reading Wasm
//! filter. With the configuration `edits` it also makes every host call Tollgate makes on the
//! full path, with fixed values and no decisions: header removals and writes, a body
//! replacement, a route-cache clear, four shared-data reads and compare-and-swap writes, a
//! response header, and a filter-state property. What Tollgate costs beyond that is its own code.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FloorRoot { edits: false }) });
}}

struct FloorRoot {
    edits: bool,
}

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.edits = self
            .get_plugin_configuration()
            .is_some_and(|c| c.starts_with(b"edits"));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FloorStream {
            edits: self.edits,
            body_bytes: 0,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One stream; `body_bytes` keeps the reads from being optimised away.
struct FloorStream {
    edits: bool,
    body_bytes: usize,
}

/// Two read-modify-write rounds on shared data, like reserving (or settling) two budgets.
fn ledger_round_trips() {
    for key in ["floor/ledger/key", "floor/ledger/team"] {
        let (value, cas) = hostcalls::get_shared_data(key).unwrap_or((None, None));
        let mut value = value.unwrap_or_default();
        value.resize(48, 0);
        value[0] = value[0].wrapping_add(1);
        let _ = hostcalls::set_shared_data(key, Some(&value), cas);
    }
}

impl Context for FloorStream {}

impl HttpContext for FloorStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.body_bytes = self.get_http_request_headers().len();
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        self.body_bytes += body.len();
        if self.edits {
            ledger_round_trips();
            self.set_http_request_header("authorization", None);
            self.set_http_request_header("x-tollgate-cluster", Some("openai"));
            self.set_http_request_header("authorization", Some("Bearer upstream-secret"));
            self.set_http_request_body(0, body_size, &body);
            self.set_http_request_header("content-length", Some(&body.len().to_string()));
            let _ = hostcalls::call_foreign_function("clear_route_cache", None);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.edits {
            self.set_http_response_header("x-tollgate-policy-version", Some("floor"));
            self.body_bytes += self.get_http_response_headers().len();
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if self.edits {
            self.body_bytes += self
                .get_http_response_body(0, body_size)
                .map_or(0, |b| b.len());
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.edits {
            ledger_round_trips();
            let _ = hostcalls::set_property(vec!["wasm.floor"], Some(b"floor line"));
        }
    }
}
