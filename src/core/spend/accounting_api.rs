//! The accounting protocol's shared parts: the replies (read by the filter, written by the
//! reference server), the batch identity, and the validation of incoming events (the reference
//! server's, fuzzed). The full protocol is in `docs/accounting-api.md`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::core::spend::event::{SpendEvent, EVENT_TYPE};
use crate::core::spend::threshold::{check_threshold, ThresholdEvent, THRESHOLD_EVENT_TYPE};

/// Request header carrying a batch's identity; the reply must echo it as `batch_id`.
pub const BATCH_ID_HEADER: &str = "x-tollgate-batch-id";

/// Longest event id accepted.
pub const MAX_EVENT_ID_BYTES: usize = 256;
/// Longest string field of an event's `data` accepted (ids, names, models, budgets).
pub const MAX_FIELD_BYTES: usize = 1024;
/// Most budget windows one event may count against.
pub const MAX_EVENT_BUDGETS: usize = 16;
/// Most rate-limit windows one event may count on.
pub const MAX_EVENT_LIMITS: usize = 32;
/// Largest cost of one event: one million dollars, in nano-dollars.
pub const MAX_EVENT_COST_NANO: u64 = 1_000_000 * 1_000_000_000;
/// Largest token count of one event.
pub const MAX_EVENT_TOKENS: u64 = 10_000_000_000;
/// Largest serialised event accepted (and sent: a larger one is quarantined by the filter).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Path (after `accounting.path_prefix`) that takes a batch of spend events.
pub const BATCH_PATH: &str = "/v1/spend/batch";

/// Path (after `accounting.path_prefix`) that answers authoritative budget totals.
pub const BUDGETS_PATH: &str = "/v1/spend/budgets";

/// Spend of one budget window, across every replica that reported to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetTotal {
    /// `scope:id`, as in the events' `data.budgets[].budget`.
    pub budget: String,
    /// Window start, Unix seconds.
    pub window_start: i64,
    /// Window end, Unix seconds (absent: never resets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<i64>,
    /// Total spend in nano-dollars.
    pub spend_nano_usd: u64,
}

impl BudgetTotal {
    /// The shared-data key of this window's ledger (see [`crate::core::money::budget::BudgetLine`]).
    pub fn ledger_key(&self) -> String {
        format!("tollgate/budget/{}/{}", self.budget, self.window_start)
    }
}

/// What every replica counted on one rate-limit window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitTotal {
    /// `holder/kind`, as in the events' `data.limits[].limit`.
    pub limit: String,
    /// Window start, Unix seconds.
    pub window_start: i64,
    /// Window end, Unix seconds.
    pub window_end: i64,
    /// Requests or tokens counted.
    pub count: u64,
}

impl LimitTotal {
    /// The ledger key of this window's counter (see [`crate::core::limits::lines::LimitLine`]).
    pub fn ledger_key(&self) -> String {
        format!("tollgate/limit/{}/{}", self.limit, self.window_start)
    }
}

/// An event the server refused (malformed); it is not retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedEvent {
    /// The event id, if it had one.
    pub id: Option<String>,
    /// Why.
    pub reason: String,
}

/// The answer to `POST /v1/spend/batch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReply {
    /// The batch's identity, echoed from the request's [`BATCH_ID_HEADER`].
    pub batch_id: String,
    /// Ids of the events stored, now or earlier: only these leave the sender's outbox.
    pub acknowledged: Vec<String>,
    /// Events stored now.
    #[serde(default)]
    pub accepted: u64,
    /// Events already stored earlier (same id); not counted again.
    #[serde(default)]
    pub duplicates: u64,
    /// Events refused as malformed.
    #[serde(default)]
    pub rejected: Vec<RejectedEvent>,
    /// Current totals of every budget window the batch touched.
    #[serde(default)]
    pub budgets: Vec<BudgetTotal>,
    /// Current totals of every rate-limit window the batch touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<LimitTotal>,
}

/// The answer to `GET /v1/spend/budgets?since=<cursor>&now=<unix seconds>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetsReply {
    /// Pass back as `since` to get only windows that changed after this answer.
    pub cursor: u64,
    /// Windows still open at `now` that changed after `since`.
    pub budgets: Vec<BudgetTotal>,
    /// Rate-limit windows still open at `now` that changed after `since`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<LimitTotal>,
}

impl BatchReply {
    /// Reads the answer to batch `batch_id`: it must be a reply of this protocol and name this
    /// batch, or it acknowledges nothing (the sender retries the batch).
    pub fn for_batch(body: &[u8], batch_id: &str) -> Result<BatchReply, String> {
        let reply: BatchReply = serde_json::from_slice(body)
            .map_err(|e| format!("the answer is not a batch reply: {e}"))?;
        if reply.batch_id != batch_id {
            return Err(format!(
                "the answer names batch {:?}, not {batch_id:?}",
                truncated(&reply.batch_id, 64)
            ));
        }
        Ok(reply)
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One element of an incoming batch: a valid event with its JSON text, or why it is refused.
pub type BatchItem = Result<(Incoming, String), RejectedEvent>;

/// One event of a batch: a request's spend, or a budget threshold reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A [`crate::core::spend::event::EVENT_TYPE`] event.
    Spend(Box<SpendEvent>),
    /// A [`THRESHOLD_EVENT_TYPE`] event.
    Threshold(Box<ThresholdEvent>),
}

impl Incoming {
    /// The event's id.
    pub fn id(&self) -> &str {
        match self {
            Incoming::Spend(event) => &event.id,
            Incoming::Threshold(event) => &event.id,
        }
    }
}

/// Reads a batch body (a JSON array of events), each element on its own, so that one invalid
/// event is refused alone. `Err` only when the body as a whole is not a JSON array.
pub fn read_batch(body: &[u8]) -> Result<Vec<BatchItem>, String> {
    let items: Vec<&RawValue> =
        serde_json::from_slice(body).map_err(|e| format!("the batch is not a JSON array: {e}"))?;
    Ok(items.into_iter().map(read_event).collect())
}

#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow, rename = "type")]
    kind: Option<&'a RawValue>,
}

fn read_event(raw: &RawValue) -> BatchItem {
    let text = raw.get();
    let envelope = serde_json::from_str::<IdOnly>(text).ok();
    let field =
        |raw: Option<&RawValue>| raw.and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
    let id = envelope
        .as_ref()
        .and_then(|v| field(v.id))
        .map(|id| truncated(&id, MAX_EVENT_ID_BYTES).to_string());
    let reject = |reason: String| RejectedEvent {
        id: id.clone(),
        reason,
    };
    if text.len() > MAX_EVENT_BYTES {
        return Err(reject(format!(
            "the event is larger than {MAX_EVENT_BYTES} bytes"
        )));
    }
    if envelope.and_then(|v| field(v.kind)).as_deref() == Some(THRESHOLD_EVENT_TYPE) {
        let event: ThresholdEvent =
            serde_json::from_str(text).map_err(|e| reject(e.to_string()))?;
        check_threshold(&event).map_err(reject)?;
        return Ok((Incoming::Threshold(Box::new(event)), text.to_string()));
    }
    let event: SpendEvent = serde_json::from_str(text).map_err(|e| reject(e.to_string()))?;
    check_event(&event).map_err(reject)?;
    Ok((Incoming::Spend(Box::new(event)), text.to_string()))
}

/// Checks an event's values: envelope, bounded strings, counts and cost, budgets `scope:id`.
pub fn check_event(event: &SpendEvent) -> Result<(), String> {
    if event.specversion != "1.0" {
        return Err(format!(
            "specversion must be 1.0, found {:?}",
            truncated(&event.specversion, 64)
        ));
    }
    if event.kind != EVENT_TYPE {
        return Err(format!(
            "type must be {EVENT_TYPE}, found {:?}",
            truncated(&event.kind, 64)
        ));
    }
    if event.id.is_empty() || event.id.len() > MAX_EVENT_ID_BYTES || event.id.contains('\0') {
        return Err(format!(
            "id must be 1 to {MAX_EVENT_ID_BYTES} bytes without a NUL character"
        ));
    }
    let d = &event.data;
    let fields: [(&str, Option<&str>); 16] = [
        ("source", Some(event.source.as_str())),
        ("time", Some(event.time.as_str())),
        ("subject", Some(event.subject.as_str())),
        ("data.policy_version", Some(d.policy_version.as_str())),
        ("data.key_hash", Some(d.key_hash.as_str())),
        ("data.key_alias", d.key_alias.as_deref()),
        ("data.team_id", d.team_id.as_deref()),
        ("data.user_id", d.user_id.as_deref()),
        ("data.end_user", d.end_user.as_deref()),
        ("data.endpoint", Some(d.endpoint.as_ref())),
        ("data.requested_model", Some(d.requested_model.as_str())),
        ("data.resolved_model", Some(d.resolved_model.as_str())),
        ("data.deployment", Some(d.deployment.as_str())),
        ("data.provider", Some(d.provider.as_str())),
        ("data.upstream_model", Some(d.upstream_model.as_str())),
        ("data.cost_source", Some(d.cost_source.as_ref())),
    ];
    for (name, value) in fields
        .into_iter()
        .chain([("data.status", Some(d.status.as_ref()))])
    {
        if value.is_some_and(|v| v.len() > MAX_FIELD_BYTES) {
            return Err(format!("{name} is longer than {MAX_FIELD_BYTES} bytes"));
        }
        // A NUL cannot be stored as text in PostgreSQL: refused here, for every store alike.
        if value.is_some_and(|v| v.contains('\0')) {
            return Err(format!("{name} holds a NUL character"));
        }
    }
    if d.cost_nano_usd > MAX_EVENT_COST_NANO {
        return Err(format!(
            "data.cost_nano_usd {} is above the bound of {MAX_EVENT_COST_NANO}",
            d.cost_nano_usd
        ));
    }
    let u = &d.usage;
    for (name, count) in [
        ("prompt_tokens", u.prompt_tokens),
        ("completion_tokens", u.completion_tokens),
        ("cached_tokens", u.cached_tokens),
        ("cache_creation_tokens", u.cache_creation_tokens),
        ("reasoning_tokens", u.reasoning_tokens),
    ] {
        if count > MAX_EVENT_TOKENS {
            return Err(format!(
                "data.usage.{name} {count} is above the bound of {MAX_EVENT_TOKENS}"
            ));
        }
    }
    if d.budgets.len() > MAX_EVENT_BUDGETS {
        return Err(format!(
            "an event counts against at most {MAX_EVENT_BUDGETS} budgets"
        ));
    }
    for (i, budget) in d.budgets.iter().enumerate() {
        let counted_before = d.budgets[..i]
            .iter()
            .any(|b| (&b.budget, b.window_start) == (&budget.budget, budget.window_start));
        if counted_before {
            // One request counts once against a window: listed twice, it would be added twice.
            return Err(format!(
                "budget {:?} window {} is listed twice",
                truncated(&budget.budget, 64),
                budget.window_start
            ));
        }
        if budget.budget.len() > MAX_FIELD_BYTES || budget.budget.contains('\0') {
            return Err(format!(
                "a budget is longer than {MAX_FIELD_BYTES} bytes or holds a NUL character"
            ));
        }
        if budget.budget.split_once(':').is_none() {
            return Err(format!(
                "budget {:?} is not scope:id",
                truncated(&budget.budget, 64)
            ));
        }
        if budget.window_start < 0
            || budget
                .window_end
                .is_some_and(|end| end < budget.window_start)
        {
            return Err(format!(
                "budget {:?} has an invalid window",
                truncated(&budget.budget, 64)
            ));
        }
    }
    check_limits(d)?;
    check_attribution(d)
}

/// Checks an event's tags and metadata: bounded in count and size, no NUL.
fn check_attribution(d: &crate::core::spend::event::SpendData) -> Result<(), String> {
    use crate::core::spend::attribution::{MAX_EVENT_TAGS, MAX_METADATA_ENTRIES};
    if d.tags.len() > MAX_EVENT_TAGS {
        return Err(format!("an event carries at most {MAX_EVENT_TAGS} tags"));
    }
    let bad = |text: &str| text.is_empty() || text.len() > MAX_FIELD_BYTES || text.contains('\0');
    if d.tags.iter().any(|tag| bad(tag)) {
        return Err(format!(
            "a tag must be 1 to {MAX_FIELD_BYTES} bytes without a NUL character"
        ));
    }
    for (name, entries) in [("key", &d.metadata.key), ("team", &d.metadata.team)] {
        if entries.len() > MAX_METADATA_ENTRIES {
            return Err(format!(
                "data.metadata.{name} has more than {MAX_METADATA_ENTRIES} entries"
            ));
        }
        if entries
            .iter()
            .any(|(k, v)| bad(k) || v.len() > MAX_FIELD_BYTES || v.contains('\0'))
        {
            return Err(format!(
                "data.metadata.{name}: names and values must be at most {MAX_FIELD_BYTES} bytes without a NUL character"
            ));
        }
    }
    Ok(())
}

/// Checks an event's rate-limit counts: bounded, `holder/kind`, each window once.
fn check_limits(d: &crate::core::spend::event::SpendData) -> Result<(), String> {
    if d.limits.len() > MAX_EVENT_LIMITS {
        return Err(format!(
            "an event counts on at most {MAX_EVENT_LIMITS} rate-limit windows"
        ));
    }
    for (i, limit) in d.limits.iter().enumerate() {
        let name = truncated(&limit.limit, 64);
        if limit.limit.len() > MAX_FIELD_BYTES || limit.limit.contains('\0') {
            return Err(format!(
                "a limit is longer than {MAX_FIELD_BYTES} bytes or holds a NUL character"
            ));
        }
        let well_formed = limit
            .limit
            .rsplit_once('/')
            .is_some_and(|(holder, kind)| holder.contains(':') && !kind.is_empty());
        if !well_formed {
            return Err(format!("limit {name:?} is not holder/kind"));
        }
        if d.limits[..i]
            .iter()
            .any(|l| (&l.limit, l.window_start) == (&limit.limit, limit.window_start))
        {
            return Err(format!(
                "limit {name:?} window {} is listed twice",
                limit.window_start
            ));
        }
        if limit.window_start < 0 || limit.window_end <= limit.window_start {
            return Err(format!("limit {name:?} has an invalid window"));
        }
        if limit.count > MAX_EVENT_TOKENS {
            return Err(format!(
                "limit {name:?} counts {} (above the bound of {MAX_EVENT_TOKENS})",
                limit.count
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::core::spend::event::tests::sample_data;
    use crate::core::spend::event::SpendEvent;

    fn event_json(edit: impl FnOnce(&mut SpendEvent)) -> String {
        let mut event = SpendEvent::new("ev-1".into(), "test", 0, sample_data());
        edit(&mut event);
        event.to_json()
    }

    #[test]
    fn a_reply_acknowledges_only_when_it_is_a_reply_for_this_batch() {
        let good = br#"{"batch_id":"b-7","acknowledged":["e1"],"budgets":[]}"#;
        let reply = BatchReply::for_batch(good, "b-7").unwrap();
        assert_eq!(reply.acknowledged, ["e1"]);
        assert!(
            BatchReply::for_batch(good, "b-8").is_err(),
            "another batch's answer"
        );
        for garbage in [
            &b"{}"[..],
            b"",
            b"garbage",
            b"[]",
            br#"{"accepted":3}"#,
            br#"{"batch_id":"b-7"}"#,
        ] {
            assert!(
                BatchReply::for_batch(garbage, "b-7").is_err(),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn a_batch_is_read_element_by_element_and_bad_values_are_refused_alone() {
        let ok = event_json(|_| {});
        let negative = ok.replace("\"cost_nano_usd\":45000", "\"cost_nano_usd\":-5");
        assert_ne!(negative, ok);
        let huge_cost = event_json(|e| e.data.cost_nano_usd = MAX_EVENT_COST_NANO + 1);
        let huge_tokens = event_json(|e| e.data.usage.prompt_tokens = MAX_EVENT_TOKENS + 1);
        let long_user = event_json(|e| e.data.end_user = Some("u".repeat(MAX_FIELD_BYTES + 1)));
        let bad_budget = event_json(|e| e.data.budgets[0].budget = "nocolon".into());
        let bad_window = event_json(|e| e.data.budgets[0].window_start = -1);
        let wrong_type = event_json(|e| e.kind = "other".into());
        let too_big = event_json(|e| e.data.key_alias = Some("a".repeat(MAX_EVENT_BYTES)));
        let nul = event_json(|e| e.data.requested_model = "gpt\0".into());
        let nul_budget = event_json(|e| e.data.budgets[0].budget = "key:\0".into());
        let twice = event_json(|e| {
            let first = e.data.budgets[0].clone();
            e.data.budgets.push(first);
        });
        let body = format!(
            "[{ok},{negative},{huge_cost},{huge_tokens},{long_user},{bad_budget},{bad_window},{wrong_type},{too_big},{{\"id\":\"x\"}},3,{twice},{nul},{nul_budget}]"
        );
        let items = read_batch(body.as_bytes()).unwrap();
        assert_eq!(items.len(), 14);
        assert!(items[0].is_ok());
        for (i, item) in items.iter().enumerate().skip(1) {
            let rejected = item
                .as_ref()
                .err()
                .unwrap_or_else(|| panic!("item {i} accepted"));
            let expected = if i == 9 {
                Some("x")
            } else if i == 10 {
                None
            } else {
                Some("ev-1")
            };
            assert_eq!(
                rejected.id.as_deref(),
                expected,
                "item {i}: {}",
                rejected.reason
            );
        }
        assert!(read_batch(b"{}").is_err());
        assert!(read_batch(b"[").is_err());
    }
}
