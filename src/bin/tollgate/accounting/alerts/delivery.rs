//! Delivering alerts to webhooks: a background thread of each instance takes one due delivery at
//! a time (on PostgreSQL with `FOR UPDATE SKIP LOCKED`), reserving it for [`LEASE_SECONDS`],
//! far longer than one attempt may take, so no other instance attempts it meanwhile; it POSTs
//! the alert and records the answer only while its lease holds: a 2xx is delivered; anything
//! else is retried with backoff (1 s doubling to 512 s) up to [`MAX_ATTEMPTS`] times.
//!
//! Delivery is at least once: an answer lost after the receiver acted is retried. Every
//! attempt carries the alert's id (`x-tollgate-alert-id`, and `tollgate.alert_id` in the body)
//! for the receiver to deduplicate on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{payload, Alerting};
use crate::accounting::metrics::Metrics;
use crate::accounting::store::SpendStore;

/// Attempts before a delivery is given up (then shown as failed in the report).
pub const MAX_ATTEMPTS: i64 = 12;
/// How long a taken delivery is reserved for the instance that took it.
pub const LEASE_SECONDS: i64 = 60;
/// Deliveries attempted per round (one at a time), before the thread sleeps a second.
const ROUND: usize = 20;

/// One delivery that is due: an alert for one webhook.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The alert's id.
    pub alert_id: String,
    /// The webhook's id ([`super::webhook_id`]).
    pub webhook: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// The lease taken (the `next_attempt_at` it set): the attempt is recorded only while the
    /// delivery still holds it.
    pub lease: i64,
    /// The alert as the report shows it.
    pub alert: Value,
}

/// Seconds to wait after the `attempts`-th failure.
pub fn backoff(attempts: i64) -> i64 {
    let exponent = u32::try_from(attempts.clamp(1, 10) - 1).unwrap_or(0);
    2_i64.pow(exponent).min(600)
}

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Starts the delivery thread; it ends soon after `stop` is set.
pub fn spawn(
    store: Arc<dyn SpendStore>,
    alerting: Arc<Alerting>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        let ids = alerting.webhook_ids();
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..ROUND {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let delivery = match store.due_deliveries(now(), &ids, 1) {
                    Ok(mut due) => match due.pop() {
                        Some(delivery) => delivery,
                        None => break,
                    },
                    Err(e) => {
                        eprintln!("tollgate accounting: reading due alert deliveries: {e}");
                        break;
                    }
                };
                let outcome = match alerting.webhook_url(&delivery.webhook) {
                    Some(url) => post(&agent, url, &delivery),
                    None => Err("this instance does not know the webhook".into()),
                };
                metrics.webhook(outcome.is_ok());
                if let Err(e) = &outcome {
                    eprintln!(
                        "tollgate accounting: alert {} to webhook {}: {e}",
                        delivery.alert_id,
                        delivery.webhook.get(..12).unwrap_or_default()
                    );
                }
                if let Err(e) = store.record_delivery(&delivery, now(), outcome) {
                    eprintln!("tollgate accounting: recording a delivery: {e}");
                }
            }
            for _ in 0..10 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    })
}

fn post(agent: &ureq::Agent, url: &str, delivery: &Delivery) -> Result<(), String> {
    let body = payload(&delivery.alert_id, &delivery.alert).to_string();
    let response = agent
        .post(url)
        .header("content-type", "application/json")
        .header("x-tollgate-alert-id", delivery.alert_id.as_str())
        .send(body.as_str())
        .map_err(|e| described(&e))?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

/// What went wrong, in words that never hold the URL (it may carry a secret).
fn described(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::Io(_) => "connection error".into(),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => "TLS error".into(),
        _ => "request failed".into(),
    }
}

/// Checks a webhook URL at start: `http` or `https` with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed: ureq::http::Uri = url
        .parse()
        .map_err(|_| "an alert webhook is not a URL".to_string())?;
    let scheme_ok = matches!(parsed.scheme_str(), Some("http" | "https"));
    if !scheme_ok || parsed.host().is_none_or(str::is_empty) {
        return Err("an alert webhook must be an http:// or https:// URL with a host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_ten_minutes() {
        let waits: Vec<i64> = (1..=12).map(backoff).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 512, 512]);
        assert_eq!(rfc3339(1_796_083_200), "2026-12-01T00:00:00Z");
        assert!(check_url("https://hooks.example.com/x").is_ok());
        for bad in [
            "https:///hooks/SECRET",
            "ftp://h/x",
            "hooks.example.com",
            "",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
