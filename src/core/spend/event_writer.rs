//! The filter's writer of spend events: one pass from [`SpendData`] to the event's JSON text,
//! with no intermediate envelope, strings or serializer state. Its output is byte-for-byte what
//! `serde_json` writes for the same [`SpendEvent`] (field order, escaping, `null`s), which the
//! tests check; the reader side (the accounting server) keeps using serde.
//!
//! [`SpendEvent`]: super::event::SpendEvent

use super::event::{SpendData, EVENT_TYPE};
use crate::core::config::time::civil_from_days;

/// Writes the CloudEvents JSON of the event `id` from `source`, ended at `ended_at_ms` (Unix
/// milliseconds), carrying `data`, into `out` (cleared first).
pub fn write_event(out: &mut String, id: &str, source: &str, ended_at_ms: i64, data: &SpendData) {
    out.clear();
    out.push_str("{\"specversion\":\"1.0\"");
    text_field(out, "id", Some(id));
    text_field(out, "source", Some(source));
    text_field(out, "type", Some(EVENT_TYPE));
    out.push_str(",\"time\":\"");
    time_millis(out, ended_at_ms);
    out.push('"');
    let subject = data.key_alias.as_deref().unwrap_or(&data.key_hash);
    text_field(out, "subject", Some(subject));
    text_field(out, "datacontenttype", Some("application/json"));
    out.push_str(",\"data\":{\"policy_version\":");
    string(out, &data.policy_version);
    text_field(out, "key_hash", Some(&data.key_hash));
    text_field(out, "key_alias", data.key_alias.as_deref());
    text_field(out, "team_id", data.team_id.as_deref());
    text_field(out, "user_id", data.user_id.as_deref());
    text_field(out, "end_user", data.end_user.as_deref());
    text_field(out, "endpoint", Some(&data.endpoint));
    text_field(out, "requested_model", Some(&data.requested_model));
    text_field(out, "resolved_model", Some(&data.resolved_model));
    text_field(out, "deployment", Some(&data.deployment));
    text_field(out, "provider", Some(&data.provider));
    text_field(out, "upstream_model", Some(&data.upstream_model));
    out.push_str(",\"stream\":");
    out.push_str(if data.stream { "true" } else { "false" });
    let usage = &data.usage;
    out.push_str(",\"usage\":{\"prompt_tokens\":");
    unsigned(out, usage.prompt_tokens);
    number_field(out, "completion_tokens", usage.completion_tokens);
    number_field(out, "cached_tokens", usage.cached_tokens);
    number_field(out, "cache_creation_tokens", usage.cache_creation_tokens);
    number_field(out, "reasoning_tokens", usage.reasoning_tokens);
    out.push_str(",\"estimated\":");
    out.push_str(if usage.estimated { "true" } else { "false" });
    out.push_str("},\"cost_nano_usd\":");
    unsigned(out, data.cost_nano_usd);
    text_field(out, "cost_source", Some(&data.cost_source));
    text_field(out, "status", Some(&data.status));
    number_field(out, "http_status", u64::from(data.http_status));
    out.push_str(",\"budgets\":[");
    for (i, budget) in data.budgets.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"budget\":");
        string(out, &budget.budget);
        out.push_str(",\"window_start\":");
        signed(out, budget.window_start);
        if let Some(end) = budget.window_end {
            out.push_str(",\"window_end\":");
            signed(out, end);
        }
        if let Some(max) = budget.max_nano_usd {
            out.push_str(",\"max_nano_usd\":");
            unsigned(out, max);
        }
        out.push('}');
    }
    out.push(']');
    if !data.limits.is_empty() {
        out.push_str(",\"limits\":[");
        for (i, limit) in data.limits.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"limit\":");
            string(out, &limit.limit);
            out.push_str(",\"window_start\":");
            signed(out, limit.window_start);
            out.push_str(",\"window_end\":");
            signed(out, limit.window_end);
            out.push_str(",\"count\":");
            out.push_str(&limit.count.to_string());
            out.push('}');
        }
        out.push(']');
    }
    if !data.tags.is_empty() {
        out.push_str(",\"tags\":[");
        for (i, tag) in data.tags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            string(out, tag);
        }
        out.push(']');
    }
    if !data.metadata.is_empty() {
        out.push_str(",\"metadata\":{");
        let mut first = true;
        for (name, entries) in [("key", &data.metadata.key), ("team", &data.metadata.team)] {
            if entries.is_empty() {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            string(out, name);
            out.push_str(":{");
            for (i, (entry, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(out, entry);
                out.push(':');
                string(out, value);
            }
            out.push('}');
        }
        out.push('}');
    }
    out.push_str("}}");
}

/// `,"name":` (the key of a field that follows another).
fn key(out: &mut String, name: &str) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":");
}

/// `,"name":"value"`, or `,"name":null` for `None`.
fn text_field(out: &mut String, name: &str, value: Option<&str>) {
    key(out, name);
    match value {
        Some(value) => string(out, value),
        None => out.push_str("null"),
    }
}

/// `,"name":n`.
fn number_field(out: &mut String, name: &str, n: u64) {
    key(out, name);
    unsigned(out, n);
}

/// A JSON string as serde_json writes it: `"` and `\` escaped, control characters as their
/// short escape or `\u00XX`, everything else (non-ASCII included) as is.
fn string(out: &mut String, value: &str) {
    json_string_into(out, value);
}

/// Appends `value` to `out` as a JSON string (quotes and escapes as `serde_json` writes them).
pub fn json_string_into(out: &mut String, value: &str) {
    out.push('"');
    let mut start = 0;
    for (at, byte) in value.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(value.get(start..at).unwrap_or_default());
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            out.push_str(escape);
        }
        start = at + 1;
    }
    out.push_str(value.get(start..).unwrap_or_default());
    out.push('"');
}

fn unsigned(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &digit in &digits[at..] {
        out.push(char::from(digit));
    }
}

fn signed(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    unsigned(out, n.unsigned_abs());
}

fn two(out: &mut String, n: i64) {
    out.push(char::from(b'0' + (n / 10 % 10) as u8));
    out.push(char::from(b'0' + (n % 10) as u8));
}

/// `YYYY-MM-DDTHH:MM:SS.mmm` (UTC) of Unix milliseconds, as `format_millis` writes it.
fn time_millis(out: &mut String, ms: i64) {
    let unix = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(unix.div_euclid(86_400));
    if (0..=9999).contains(&year) {
        two(out, year / 100);
        two(out, year % 100);
    } else {
        // Outside four digits: what `{:04}` would print.
        out.push_str(&format!("{year:04}"));
    }
    out.push('-');
    two(out, month);
    out.push('-');
    two(out, day);
    out.push('T');
    two(out, secs / 3600);
    out.push(':');
    two(out, secs % 3600 / 60);
    out.push(':');
    two(out, secs % 60);
    out.push('.');
    out.push(char::from(b'0' + (millis / 100) as u8));
    two(out, millis % 100);
    out.push('Z');
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::core::spend::event::tests::sample_data;
    use crate::core::spend::event::LimitRef;
    use crate::core::spend::event::{BudgetRef, SpendEvent};

    fn both(id: &str, source: &str, ms: i64, data: SpendData) -> (String, String) {
        let mut written = String::from("left over from the last event");
        write_event(&mut written, id, source, ms, &data);
        let serde = SpendEvent::new(id.into(), source, ms, data).to_json();
        (written, serde)
    }

    #[test]
    fn the_writer_matches_serde_byte_for_byte() {
        let (written, serde) = both("n-1", "tollgate/test", 1_795_402_116_123, sample_data());
        assert_eq!(written, serde);
    }

    #[test]
    fn odd_strings_nulls_and_extreme_numbers_match_serde() {
        let mut data = sample_data();
        data.key_alias = None;
        data.team_id = None;
        data.end_user =
            Some("q\"uo\\te\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f} ünï 日本 😀 </script>".into());
        data.requested_model = String::new();
        data.usage.prompt_tokens = u64::MAX;
        data.usage.completion_tokens = 0;
        data.usage.estimated = true;
        data.stream = false;
        data.cost_nano_usd = u64::MAX;
        data.http_status = u16::MAX;
        data.budgets.push(BudgetRef {
            budget: "key:\u{0}".into(),
            window_start: i64::MIN,
            window_end: None,
            max_nano_usd: None,
        });
        data.budgets.push(BudgetRef {
            budget: "user:u".into(),
            window_start: 0,
            window_end: Some(i64::MAX),
            max_nano_usd: None,
        });
        for ms in [
            0,
            999,
            -1,
            1_795_402_116_007,
            253_402_300_799_999,
            -62_135_596_800_000,
        ] {
            let (written, serde) = both("id-\"x", "s\\rc", ms, data.clone());
            assert_eq!(written, serde, "at {ms} ms");
        }
        data.limits.push(LimitRef {
            limit: "key:\"k/rpm".into(),
            window_start: 60,
            window_end: 120,
            count: u64::MAX,
        });
        let (written, serde) = both("l", "s", 5, data.clone());
        assert_eq!(written, serde, "with limits");
        data.budgets.clear();
        data.limits.clear();
        let (written, serde) = both("", "", 1, data);
        assert_eq!(written, serde);
    }
}
