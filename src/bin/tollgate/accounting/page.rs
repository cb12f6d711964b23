//! The spend page, `GET /spend?days=14`: server-rendered HTML with an SVG chart (no scripts, no
//! build step), for people who would rather look than read JSON. Read access only, with the
//! reader tokens of the report (as a bearer token, or as the password of HTTP Basic, so that a
//! browser can ask for it). Every name on it comes from clients or config and is escaped.

use std::fmt::Write as _;

use serde_json::Value;

use super::store::report::{Dimension, GroupRow, ReportQuery};
use super::store::{SpendStore, WindowRow};

/// Days shown when the query does not say.
const DEFAULT_DAYS: i64 = 14;
/// Teams drawn in the chart (the rest are "other").
const CHART_TEAMS: usize = 6;
/// Rows per table.
const TABLE_ROWS: usize = 10;
const COLOURS: [&str; 7] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#bab0ac",
];

/// The page for the last `days` (from the query string) up to `now`.
pub fn render(store: &dyn SpendStore, query: &str, now: i64) -> Result<String, String> {
    let days = form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "days")
        .and_then(|(_, v)| v.parse::<i64>().ok())
        .unwrap_or(DEFAULT_DAYS)
        .clamp(1, 90);
    let today = now - now.rem_euclid(86_400);
    let from = today - (days - 1) * 86_400;
    let grouped = |group_by: Dimension, filters: Vec<(Dimension, String)>| {
        let mut q = ReportQuery::all(group_by);
        q.from = Some(from);
        q.filters = filters;
        store.grouped(&q)
    };
    let teams = grouped(Dimension::Team, Vec::new())?;
    let total_by_day = grouped(Dimension::Day, Vec::new())?;
    let mut series = Vec::new();
    for team in teams.iter().take(CHART_TEAMS) {
        let filter = if team.name == "-" {
            None
        } else {
            Some((Dimension::Team, team.name.clone()))
        };
        match filter {
            Some(filter) => {
                series.push((team.name.clone(), grouped(Dimension::Day, vec![filter])?))
            }
            None => continue,
        }
    }
    let (windows, alerts) = store.page_data(now, 50)?;
    let mut html = String::with_capacity(32 * 1024);
    let total = teams
        .iter()
        .fold(0_i64, |sum, t| sum.saturating_add(t.cost_nano_usd));
    let requests = teams
        .iter()
        .fold(0_i64, |sum, t| sum.saturating_add(t.requests));
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Tollgate spend</title>\
         <style>{STYLE}</style></head><body><h1>Tollgate spend</h1>\
         <p class=\"lead\">Last {days} days (UTC, from {}): <b>{}</b> over <b>{requests}</b> requests. \
         <a href=\"?days=7\">7</a> · <a href=\"?days=14\">14</a> · <a href=\"?days=30\">30</a> · \
         <a href=\"?days=90\">90</a> days</p>",
        day_name(from),
        usd(total)
    );
    html.push_str("<h2>Spend per day by team</h2>");
    chart(&mut html, from, days, &total_by_day, &series);
    html.push_str("<div class=\"grid\">");
    table(&mut html, "Teams", "team", &teams);
    table(
        &mut html,
        "Keys",
        "key",
        &grouped(Dimension::Key, Vec::new())?,
    );
    table(
        &mut html,
        "Models",
        "model",
        &grouped(Dimension::Model, Vec::new())?,
    );
    table(
        &mut html,
        "Tags",
        "tag",
        &grouped(Dimension::Tag, Vec::new())?,
    );
    html.push_str("</div>");
    budgets(&mut html, &windows);
    alerts_table(&mut html, &alerts);
    html.push_str("<p class=\"foot\">The same numbers as JSON or CSV: <code>/v1/spend/report?group_by=team&amp;format=csv</code></p></body></html>");
    Ok(html)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px 32px;color:#222}\
h1{margin:0 0 4px}h2{font-size:17px;margin:22px 0 8px}.lead{color:#555}\
.grid{display:grid;grid-template-columns:repeat(2,minmax(320px,1fr));gap:8px 28px}\
table{border-collapse:collapse;width:100%;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #e3e3e3;text-align:left}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.bar{background:#e8eef6;height:10px;min-width:120px}\
.bar i{display:block;height:10px;background:#4e79a7}.bar i.hot{background:#e15759}\
.legend span{display:inline-block;margin-right:14px;font-size:13px}.legend b{display:inline-block;width:10px;height:10px;margin-right:4px}\
.foot{color:#777;font-size:12px;margin-top:24px}";

/// Text made safe for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn usd(nano: i64) -> String {
    let dollars = nano as f64 / 1e9;
    if dollars != 0.0 && dollars.abs() < 0.01 {
        format!("${dollars:.6}")
    } else {
        format!("${dollars:.2}")
    }
}

fn day_name(seconds: i64) -> String {
    super::alerts::delivery::rfc3339(seconds)
        .get(..10)
        .unwrap_or_default()
        .to_string()
}

fn chart(
    html: &mut String,
    from: i64,
    days: i64,
    totals: &[GroupRow],
    series: &[(String, Vec<GroupRow>)],
) {
    let (width, height, left, bottom) = (960.0_f64, 240.0_f64, 70.0_f64, 24.0_f64);
    // 12 px of room above the chart for the top axis label.
    let pad = 12.0_f64;
    let names: Vec<String> = (0..days).map(|d| day_name(from + d * 86_400)).collect();
    let cost = |rows: &[GroupRow], day: &str| {
        rows.iter()
            .find(|r| r.name == day)
            .map_or(0, |r| r.cost_nano_usd)
    };
    let peak = names
        .iter()
        .map(|d| cost(totals, d))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let slot = (width - left) / days as f64;
    let bar = (slot * 0.7).max(1.0);
    let _ = write!(
        html,
        "<svg role=\"img\" aria-label=\"spend per day\" width=\"{width}\" height=\"{}\" viewBox=\"0 -{pad} {width} {}\">",
        height + bottom + pad,
        height + bottom + pad
    );
    for step in 0..=4 {
        let y = height - height * f64::from(step) / 4.0;
        let value = (peak * f64::from(step) / 4.0) as i64;
        let _ = write!(
            html,
            "<line x1=\"{left}\" x2=\"{width}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#666\">{}</text>",
            left - 6.0,
            y + 4.0,
            usd(value)
        );
    }
    for (i, day) in names.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let mut top = height;
        let mut drawn: i64 = 0;
        for (k, (_, rows)) in series.iter().enumerate() {
            let value = cost(rows, day);
            drawn = drawn.saturating_add(value);
            push_rect(
                html,
                x,
                &mut top,
                bar,
                value as f64 / peak * height,
                COLOURS[k % 6],
                day,
            );
        }
        let other = cost(totals, day).saturating_sub(drawn);
        if other > 0 {
            push_rect(
                html,
                x,
                &mut top,
                bar,
                other as f64 / peak * height,
                COLOURS[6],
                day,
            );
        }
        if days <= 16 || i % (days as usize / 8).max(1) == 0 {
            let _ = write!(
                html,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#666\">{}</text>",
                x + bar / 2.0,
                height + 16.0,
                day.get(5..).unwrap_or(day)
            );
        }
    }
    html.push_str("</svg><div class=\"legend\">");
    for (k, (name, _)) in series.iter().enumerate() {
        let _ = write!(
            html,
            "<span><b style=\"background:{}\"></b>{}</span>",
            COLOURS[k % 6],
            esc(name)
        );
    }
    let _ = write!(
        html,
        "<span><b style=\"background:{}\"></b>other</span></div>",
        COLOURS[6]
    );
}

fn push_rect(
    html: &mut String,
    x: f64,
    top: &mut f64,
    width: f64,
    h: f64,
    colour: &str,
    day: &str,
) {
    if h <= 0.0 {
        return;
    }
    *top -= h;
    let _ = write!(
        html,
        "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{h:.1}\" fill=\"{colour}\"><title>{day}</title></rect>",
        *top
    );
}

fn table(html: &mut String, title: &str, column: &str, rows: &[GroupRow]) {
    let _ = write!(
        html,
        "<div><h2>{title}</h2><table><tr><th>{column}</th><th class=\"n\">requests</th>\
         <th class=\"n\">tokens</th><th class=\"n\">spend</th></tr>"
    );
    for r in rows.iter().take(TABLE_ROWS) {
        let _ = write!(
            html,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&r.name),
            r.requests,
            r.prompt_tokens.saturating_add(r.completion_tokens),
            usd(r.cost_nano_usd)
        );
    }
    if rows.is_empty() {
        html.push_str("<tr><td colspan=\"4\">no spend in this period</td></tr>");
    }
    html.push_str("</table></div>");
}

fn budgets(html: &mut String, windows: &[WindowRow]) {
    html.push_str(
        "<h2>Budgets (open windows)</h2><table><tr><th>budget</th><th class=\"n\">spent</th>\
         <th class=\"n\">budget</th><th>use</th><th>window</th></tr>",
    );
    for w in windows {
        let share = w
            .max_nano_usd
            .filter(|m| *m > 0)
            .map(|m| w.spend_nano_usd as f64 / m as f64);
        let bar = share.map_or(String::new(), |s| {
            let pct = (s * 100.0).clamp(0.0, 100.0);
            let hot = if s >= 0.8 { " class=\"hot\"" } else { "" };
            format!(
                "<div class=\"bar\"><i{hot} style=\"width:{pct:.0}%\"></i></div> {:.0}%",
                s * 100.0
            )
        });
        let _ = write!(
            html,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{bar}</td><td>{}</td></tr>",
            esc(&w.budget),
            usd(w.spend_nano_usd),
            w.max_nano_usd.map_or("soft only".to_string(), usd),
            match w.window_end {
                Some(end) => format!("{} → resets {}", day_name(w.window_start), day_name(end)),
                None => "never resets".to_string(),
            }
        );
    }
    if windows.is_empty() {
        html.push_str("<tr><td colspan=\"5\">no budget windows yet</td></tr>");
    }
    html.push_str("</table>");
}

fn alerts_table(html: &mut String, alerts: &[Value]) {
    html.push_str(
        "<h2>Alerts</h2><table><tr><th>when</th><th>holder</th><th>threshold</th>\
         <th class=\"n\">spent</th><th class=\"n\">budget</th></tr>",
    );
    for a in alerts {
        let text = |field: &str| esc(a.get(field).and_then(Value::as_str).unwrap_or("-"));
        let money = |field: &str| a.get(field).and_then(Value::as_i64).map_or("-".into(), usd);
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{} {}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            text("time"),
            text("scope"),
            text("holder"),
            text("threshold"),
            money("spend_nano_usd"),
            money("limit_nano_usd")
        );
    }
    if alerts.is_empty() {
        html.push_str("<tr><td colspan=\"5\">no alerts</td></tr>");
    }
    html.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_clients_cannot_write_markup() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\u{7}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\u{fffd}"
        );
        assert_eq!(usd(1_500_000_000), "$1.50");
        assert_eq!(usd(80_000), "$0.000080");
        assert_eq!(day_name(1_796_083_200), "2026-12-01");
    }
}
