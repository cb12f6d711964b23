//! Budget alerts raised by the accounting service: a window's total crossing a share of its
//! budget (`--alert-thresholds`, 50/80/100% by default), found where the total is authoritative
//! (in the transaction that grows it, so once per window however many instances and replicas),
//! and the filters' soft-budget threshold events; each delivered to the configured webhooks
//! (`delivery`).

pub mod delivery;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tollgate::core::spend::event::SpendData;

/// What the alerting part of the service is configured with.
#[derive(Debug, Clone, Default)]
pub struct Alerting {
    /// Shares of a budget (percent) whose crossing raises an alert, ascending.
    pub percents: Vec<u32>,
    /// Webhook URLs every new alert is delivered to.
    pub webhooks: Vec<String>,
}

impl Alerting {
    /// The ids under which deliveries to the configured webhooks are kept (a URL's SHA-256:
    /// the database never holds a webhook's secret path).
    pub fn webhook_ids(&self) -> Vec<String> {
        self.webhooks.iter().map(|url| webhook_id(url)).collect()
    }

    /// The URL of a webhook id this instance knows.
    pub fn webhook_url(&self, id: &str) -> Option<&str> {
        self.webhooks
            .iter()
            .find(|url| webhook_id(url) == id)
            .map(String::as_str)
    }
}

/// Parses `--alert-thresholds` (`50,80,100`; empty: none).
pub fn parse_percents(text: &str) -> Result<Vec<u32>, String> {
    let mut percents = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let n: u32 = part
            .trim_end_matches('%')
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                format!("--alert-thresholds: {part:?} is not a percentage from 1 to 1000")
            })?;
        percents.push(n);
    }
    percents.sort_unstable();
    percents.dedup();
    Ok(percents)
}

/// A webhook's id: the SHA-256 of its URL, in hex.
pub fn webhook_id(url: &str) -> String {
    hex(&Sha256::digest(url.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A window whose total crossed a share of its budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    /// The alert's id: the same for every instance that could see this crossing.
    pub id: String,
    /// `scope:id`.
    pub budget: String,
    /// Window start, Unix seconds.
    pub window_start: i64,
    /// Window end, Unix seconds.
    pub window_end: Option<i64>,
    /// The share crossed, percent.
    pub percent: u32,
    /// The budget, nano-dollars.
    pub max_nano_usd: i64,
    /// The window's total after the batch, nano-dollars.
    pub spend_nano_usd: i64,
}

/// The shares of `max` that a window's total `after` has reached. Each is raised by every batch
/// that finds it reached and stored once (its id is fixed per window and share), so a share is
/// not missed when a limit is lowered below the spend, or first seen after the total passed it.
pub fn crossed(percents: &[u32], max: u64, after: i64) -> Vec<u32> {
    let max = i128::from(max);
    percents
        .iter()
        .copied()
        .filter(|p| {
            let at = max * i128::from(*p) / 100;
            after > 0 && at <= i128::from(after)
        })
        .collect()
}

/// The crossing of `percent` in window (`budget`, `start`).
pub fn crossing(
    budget: &str,
    window: (i64, Option<i64>),
    percent: u32,
    max: u64,
    spend: i64,
) -> Crossing {
    let id = format!(
        "{}{}",
        tollgate::core::spend::threshold::SERVER_ALERT_PREFIX,
        &hex(&Sha256::digest(
            format!("{budget}\n{}\n{percent}", window.0).as_bytes()
        ))[..32]
    );
    Crossing {
        id,
        budget: budget.to_string(),
        window_start: window.0,
        window_end: window.1,
        percent,
        max_nano_usd: i64::try_from(max).unwrap_or(i64::MAX),
        spend_nano_usd: spend,
    }
}

/// What a batch's new events add to one budget window.
#[derive(Debug, Clone)]
pub struct WindowAdd {
    /// Window end, Unix seconds.
    pub end: Option<i64>,
    /// Nano-dollars added.
    pub sum: i64,
    /// The budget's limit, as the events carry it (the latest one).
    pub max: Option<u64>,
    /// Scope, holder name and model, from the first event that added to it.
    pub holder: (String, String, Option<String>),
}

impl WindowAdd {
    /// The first event `data` adding `cost` to `budget` (`scope:id`).
    pub fn new(budget: &tollgate::core::spend::event::BudgetRef, data: &SpendData) -> WindowAdd {
        WindowAdd {
            end: budget.window_end,
            sum: 0,
            max: budget.max_nano_usd,
            holder: holder(&budget.budget, Some(data)),
        }
    }

    /// Adds one more event's cost and limit.
    pub fn add(&mut self, cost: i64, max: Option<u64>) {
        self.sum = self.sum.saturating_add(cost);
        if max.is_some() {
            self.max = max;
        }
    }
}

/// An alert to store (new if its id is).
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// Its id.
    pub id: String,
    /// Its columns.
    pub row: crate::accounting::store::AlertRow,
}

/// The alerts the windows of `adds` raise, given each window's total after the batch.
pub fn percent_alerts(
    percents: &[u32],
    adds: &std::collections::BTreeMap<(String, i64), WindowAdd>,
    total: impl Fn(&(String, i64)) -> Option<i64>,
    now: i64,
) -> Vec<NewAlert> {
    if percents.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (window, add) in adds {
        let (Some(max), Some(after)) = (add.max, total(window)) else {
            continue;
        };
        for percent in crossed(percents, max, after) {
            let c = crossing(&window.0, (window.1, add.end), percent, max, after);
            let (scope, holder, model) = add.holder.clone();
            let threshold =
                i64::try_from(u128::from(max) * u128::from(percent) / 100).unwrap_or(i64::MAX);
            out.push(NewAlert {
                id: c.id,
                row: crate::accounting::store::AlertRow {
                    threshold: format!("percent_{percent}"),
                    budget: c.budget,
                    scope,
                    holder,
                    model,
                    window_start: c.window_start,
                    window_end: c.window_end,
                    threshold_nano_usd: threshold,
                    limit_nano_usd: Some(c.max_nano_usd),
                    spend_nano_usd: c.spend_nano_usd,
                    time: delivery::rfc3339(now),
                    source: "tollgate-accounting".into(),
                },
            });
        }
    }
    out
}

/// The holder's scope and name for a budget `scope:id[:model:entry]`, named from the event
/// that crossed it where it can be (a key's alias rather than its hash).
pub fn holder(budget: &str, data: Option<&SpendData>) -> (String, String, Option<String>) {
    let (scope, rest) = budget.split_once(':').unwrap_or(("budget", budget));
    let (id, model) = match rest.split_once(":model:") {
        Some((id, model)) => (id, Some(model.to_string())),
        None => (rest, None),
    };
    let name = match (scope, data) {
        ("key", Some(d)) => d.key_alias.clone().unwrap_or_else(|| id.to_string()),
        _ => id.to_string(),
    };
    (scope.to_string(), name, model)
}

/// The webhook payload of an alert row (as the report shows it): LiteLLM's budget-alert
/// webhook fields (`event`, `event_group`, `event_message`, `spend`, `max_budget`, …), Slack's
/// `text`, and Tollgate's own under `tollgate`.
pub fn payload(alert_id: &str, alert: &Value) -> Value {
    let text = |field: &str| alert.get(field).and_then(Value::as_str).unwrap_or_default();
    let number = |field: &str| alert.get(field).and_then(Value::as_i64);
    let threshold = text("threshold");
    let usd = |n: Option<i64>| n.map(|n| n as f64 / 1e9);
    let spend = usd(number("spend_nano_usd")).unwrap_or(0.0);
    let limit = usd(number("limit_nano_usd"));
    let (event, share) = match threshold.strip_prefix("percent_") {
        Some("100") => ("budget_crossed", "100%".to_string()),
        Some(p) => ("threshold_crossed", format!("{p}%")),
        None => ("soft_budget_crossed", "the soft budget".to_string()),
    };
    let scope = text("scope");
    let event_group = match scope {
        "user" => "internal_user",
        "end_user" => "customer",
        other => other,
    };
    let model = text("model");
    let of = if model.is_empty() {
        String::new()
    } else {
        format!(" for {model}")
    };
    let budget_text = match limit {
        Some(limit) => format!("${spend:.2} of ${limit:.2}"),
        None => format!("${spend:.2}"),
    };
    let message = format!(
        "Tollgate: {scope} {}{of} has used {share} of its budget ({budget_text}) in the window \
         starting {}",
        text("holder"),
        crate::accounting::alerts::delivery::rfc3339(number("window_start").unwrap_or(0))
    );
    json!({
        "event": event,
        "event_group": event_group,
        "event_message": message,
        "text": message,
        "spend": spend,
        "max_budget": limit,
        "key_alias": (scope == "key").then(|| text("holder")),
        "team_id": (scope == "team").then(|| text("holder")),
        "user_id": (scope == "user").then(|| text("holder")),
        "tollgate": {
            "alert_id": alert_id,
            "threshold": threshold,
            "budget": text("budget"),
            "window_start": number("window_start"),
            "window_end": number("window_end"),
            "model": (!model.is_empty()).then_some(model),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_crosses_each_share_once() {
        let percents = parse_percents("80, 50,100%").unwrap();
        assert_eq!(percents, [50, 80, 100]);
        assert_eq!(crossed(&percents, 1000, 499), Vec::<u32>::new());
        assert_eq!(crossed(&percents, 1000, 500), [50]);
        assert_eq!(crossed(&percents, 1000, 2000), [50, 80, 100]);
        assert_eq!(
            crossed(&percents, 0, 1),
            [50, 80, 100],
            "a zero budget is used up"
        );
        assert_eq!(crossed(&percents, 0, 0), Vec::<u32>::new());
        assert!(parse_percents("0").is_err() && parse_percents("half").is_err());
        assert!(parse_percents("").unwrap().is_empty());
        let a = crossing("team:t", (10, Some(20)), 80, 1000, 850);
        let b = crossing("team:t", (10, Some(20)), 80, 1000, 990);
        assert_eq!(a.id, b.id, "the same window and share: the same alert");
        assert_ne!(a.id, crossing("team:t", (20, None), 80, 1000, 850).id);
    }

    #[test]
    fn the_payload_speaks_litellms_webhook_fields() {
        let alert = json!({"threshold": "percent_80", "budget": "team:search", "scope": "team",
            "holder": "search", "model": null, "window_start": 1_796_083_200, "window_end": null,
            "threshold_nano_usd": 80_000_000_000i64, "limit_nano_usd": 100_000_000_000i64,
            "spend_nano_usd": 81_500_000_000i64});
        let body = payload("budget-1", &alert);
        assert_eq!(body["event"], "threshold_crossed");
        assert_eq!(body["event_group"], "team");
        assert_eq!(body["team_id"], "search");
        assert_eq!(body["spend"], 81.5);
        assert_eq!(body["max_budget"], 100.0);
        assert_eq!(
            body["text"],
            "Tollgate: team search has used 80% of its budget ($81.50 of $100.00) in the window \
             starting 2026-12-01T00:00:00Z"
        );
        let full = json!({"threshold": "percent_100", "scope": "end_user", "holder": "u"});
        assert_eq!(payload("b", &full)["event"], "budget_crossed");
        assert_eq!(payload("b", &full)["event_group"], "customer");
        let soft = json!({"threshold": "soft_budget", "scope": "key", "holder": "k"});
        assert_eq!(payload("b", &soft)["event"], "soft_budget_crossed");
        assert_eq!(payload("b", &soft)["key_alias"], "k");
    }
}
