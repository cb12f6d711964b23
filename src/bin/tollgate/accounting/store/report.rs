//! The grouped spend report, `GET /v1/spend/report?group_by=…`: spend grouped by one dimension
//! (key, team, user, end user, model, deployment, provider, status, tag or day) and filtered by
//! any of them and a time range, as JSON or CSV. One query builder serves both stores; only
//! the placeholders and the day expression differ.

use std::fmt::Write as _;

use serde_json::{json, Value};

/// Most groups one answer lists (the rest are counted as truncated).
pub const MAX_GROUPS: usize = 10_000;

/// What spend can be grouped and filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// The key's alias, else its hash.
    Key,
    /// The key's team.
    Team,
    /// The key's user.
    User,
    /// The body's `user`.
    EndUser,
    /// The model reached after aliases.
    Model,
    /// The deployment that served it.
    Deployment,
    /// The deployment's provider.
    Provider,
    /// `ok`, `client_disconnect`, `upstream_error`.
    Status,
    /// One of the request's tags (an event counts once under each of its tags).
    Tag,
    /// The UTC day the request ended (`YYYY-MM-DD`).
    Day,
}

const DIMENSIONS: [(&str, Dimension); 10] = [
    ("key", Dimension::Key),
    ("team", Dimension::Team),
    ("user", Dimension::User),
    ("end_user", Dimension::EndUser),
    ("model", Dimension::Model),
    ("deployment", Dimension::Deployment),
    ("provider", Dimension::Provider),
    ("status", Dimension::Status),
    ("tag", Dimension::Tag),
    ("day", Dimension::Day),
];

impl Dimension {
    /// The query parameter's name.
    pub fn name(self) -> &'static str {
        DIMENSIONS
            .iter()
            .find(|(_, d)| *d == self)
            .map_or("", |(name, _)| name)
    }

    fn parse(name: &str) -> Option<Dimension> {
        DIMENSIONS.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
    }
}

/// The SQL dialect a store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `?N` placeholders.
    Sqlite,
    /// SQLite, summing in floating point and capping at the largest integer: for a sum that
    /// overflows SQLite's exact `SUM` (only a hostile writer's events can).
    SqliteTotal,
    /// `$N` placeholders.
    Postgres,
}

impl Dialect {
    fn column(self, dimension: Dimension) -> &'static str {
        match (dimension, self) {
            (Dimension::Key, _) => "COALESCE(e.key_alias, e.key_hash)",
            (Dimension::Team, _) => "e.team_id",
            (Dimension::User, _) => "e.user_id",
            (Dimension::EndUser, _) => "e.end_user",
            (Dimension::Model, _) => "e.resolved_model",
            (Dimension::Deployment, _) => "e.deployment",
            (Dimension::Provider, _) => "e.provider",
            (Dimension::Status, _) => "e.status",
            (Dimension::Tag, _) => "t.tag",
            (Dimension::Day, Dialect::Sqlite | Dialect::SqliteTotal) => {
                "strftime('%Y-%m-%d', e.at, 'unixepoch')"
            }
            (Dimension::Day, Dialect::Postgres) => {
                "to_char(to_timestamp(e.at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            }
        }
    }

    fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite | Dialect::SqliteTotal => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    fn sum(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("SUM({column})"),
            Dialect::SqliteTotal => {
                format!("CAST(MIN(TOTAL({column}), 9223372036854775807.0) AS INTEGER)")
            }
            // Sums of bigint are numeric: capped, a hostile writer's sums cannot fail the query.
            Dialect::Postgres => format!("LEAST(SUM({column}), 9223372036854775807)::bigint"),
        }
    }
}

/// The rows the report reads: the events stored, and the rollups retention folded pruned events
/// into (one row standing for `requests` events). `kind` tells them apart, as their tags live in
/// tables of their own; events that carry no `ended_at` (written by a binary older than it)
/// count at `received_at`.
const SPEND_ROWS: &str = "(SELECT 'e' AS kind, id, key_hash, key_alias, team_id, user_id, \
    end_user, resolved_model, deployment, provider, status, COALESCE(ended_at, received_at) AS at, \
    1 AS requests, prompt_tokens, completion_tokens, cost_nano_usd, \
    CASE WHEN estimated THEN 1 ELSE 0 END AS estimated FROM events \
    UNION ALL SELECT 'r', id, key_hash, key_alias, team_id, user_id, end_user, resolved_model, \
    deployment, provider, status, day_start, requests, prompt_tokens, completion_tokens, \
    cost_nano_usd, estimated FROM event_rollups) e";

/// The tags of [`SPEND_ROWS`], keyed by `(kind, id)`.
const SPEND_TAGS: &str = "(SELECT 'e' AS kind, event_id AS id, tag FROM event_tags \
    UNION ALL SELECT 'r', rollup_id, tag FROM rollup_tags)";

/// The answer's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `text/csv`.
    Csv,
}

/// A parsed grouped-report request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    /// What to group by.
    pub group_by: Dimension,
    /// Equality filters, each on one dimension.
    pub filters: Vec<(Dimension, String)>,
    /// Requests that ended at or after this instant (Unix seconds).
    pub from: Option<i64>,
    /// Requests that ended before this instant (Unix seconds).
    pub to: Option<i64>,
    /// JSON or CSV.
    pub format: Format,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// Text.
    Text(String),
    /// A whole number.
    Int(i64),
}

/// One group of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    /// The group's name (`-` for none: no team, no tag, …).
    pub name: String,
    /// Requests.
    pub requests: i64,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// Cost, nano-dollars.
    pub cost_nano_usd: i64,
    /// Requests whose usage was estimated.
    pub estimated: i64,
}

/// Parses the query string of a grouped report. `Ok(None)`: no `group_by`, the full report.
pub fn parse(query: &str) -> Result<Option<ReportQuery>, String> {
    let mut group_by = None;
    let mut filters = Vec::new();
    let (mut from, mut to, mut format) = (None, None, Format::Json);
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let (name, value) = (name.as_ref(), value.into_owned());
        match name {
            "group_by" => {
                group_by = Some(
                    Dimension::parse(&value)
                        .ok_or_else(|| format!("group_by must be one of: {}", names()))?,
                )
            }
            "from" | "to" => {
                let at = instant(&value).ok_or_else(|| {
                    format!("{name} must be Unix seconds or an RFC 3339 time, found {value:?}")
                })?;
                if name == "from" {
                    from = Some(at);
                } else {
                    to = Some(at);
                }
            }
            "format" => {
                format = match value.as_str() {
                    "json" => Format::Json,
                    "csv" => Format::Csv,
                    _ => return Err("format must be json or csv".into()),
                }
            }
            _ => match Dimension::parse(name) {
                Some(Dimension::Day) | None => {
                    return Err(format!(
                    "unknown parameter {name:?}: filters are {}; also group_by, from, to, format",
                    filter_names()
                ))
                }
                Some(dimension) => {
                    if value.len() > 1024 {
                        return Err(format!("{name} is longer than 1024 bytes"));
                    }
                    if filters.len() >= 16 {
                        return Err("at most 16 filters".into());
                    }
                    filters.push((dimension, value));
                }
            },
        }
    }
    match group_by {
        Some(group_by) => Ok(Some(ReportQuery {
            group_by,
            filters,
            from,
            to,
            format,
        })),
        None if filters.is_empty() && from.is_none() && to.is_none() && format == Format::Json => {
            Ok(None)
        }
        None => Err("filters, from, to and format=csv need group_by".into()),
    }
}

fn names() -> String {
    DIMENSIONS.map(|(name, _)| name).join(", ")
}

fn filter_names() -> String {
    DIMENSIONS
        .iter()
        .filter(|(_, d)| *d != Dimension::Day)
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Unix seconds, or an RFC 3339 time (`2026-12-01T00:00:00Z`), or a date (`2026-12-01`, UTC).
fn instant(value: &str) -> Option<i64> {
    if let Ok(seconds) = value.parse::<i64>() {
        return Some(seconds);
    }
    if let Some(seconds) = super::ended_at(value) {
        return Some(seconds);
    }
    super::ended_at(&format!("{value}T00:00:00Z"))
}

impl ReportQuery {
    /// All spend grouped by `group_by`, unfiltered (the sections of the full report).
    pub fn all(group_by: Dimension) -> ReportQuery {
        ReportQuery {
            group_by,
            filters: Vec::new(),
            from: None,
            to: None,
            format: Format::Json,
        }
    }

    /// The SQL of this report for `dialect`, with its parameters in order.
    pub fn sql(&self, dialect: Dialect) -> (String, Vec<Param>) {
        let mut params = Vec::new();
        let bind = |param: Param, params: &mut Vec<Param>| {
            params.push(param);
            dialect.placeholder(params.len())
        };
        let group = dialect.column(self.group_by);
        let mut sql = format!(
            "SELECT COALESCE({group}, '-'), {}, {}, {}, {}, {} FROM {SPEND_ROWS}",
            dialect.sum("e.requests"),
            dialect.sum("e.prompt_tokens"),
            dialect.sum("e.completion_tokens"),
            dialect.sum("e.cost_nano_usd"),
            dialect.sum("e.estimated")
        );
        if self.group_by == Dimension::Tag {
            let _ = write!(
                sql,
                " LEFT JOIN {SPEND_TAGS} t ON t.kind = e.kind AND t.id = e.id"
            );
        }
        let mut conditions = Vec::new();
        for (dimension, value) in &self.filters {
            let at = bind(Param::Text(value.clone()), &mut params);
            conditions.push(match dimension {
                Dimension::Tag => format!(
                    "EXISTS (SELECT 1 FROM {SPEND_TAGS} f \
                     WHERE f.kind = e.kind AND f.id = e.id AND f.tag = {at})"
                ),
                other => format!("{} = {at}", dialect.column(*other)),
            });
        }
        if let Some(from) = self.from {
            let at = bind(Param::Int(from), &mut params);
            conditions.push(format!("e.at >= {at}"));
        }
        if let Some(to) = self.to {
            let at = bind(Param::Int(to), &mut params);
            conditions.push(format!("e.at < {at}"));
        }
        if !conditions.is_empty() {
            let _ = write!(sql, " WHERE {}", conditions.join(" AND "));
        }
        let order = if self.group_by == Dimension::Day {
            "1"
        } else {
            "5 DESC, 1"
        };
        let _ = write!(sql, " GROUP BY 1 ORDER BY {order} LIMIT {}", MAX_GROUPS + 1);
        (sql, params)
    }

    /// The answer's body and content type.
    pub fn render(&self, mut rows: Vec<GroupRow>) -> (String, &'static str) {
        let truncated = rows.len() > MAX_GROUPS;
        rows.truncate(MAX_GROUPS);
        match self.format {
            Format::Json => (self.json(&rows, truncated).to_string(), "application/json"),
            Format::Csv => (self.csv(&rows), "text/csv; charset=utf-8"),
        }
    }

    /// The rows as the report's JSON array.
    pub fn rows_json(rows: &[GroupRow]) -> Value {
        Value::Array(
            rows.iter()
                .map(|r| {
                    super::group_entry(
                        r.name.clone(),
                        r.requests,
                        r.prompt_tokens,
                        r.completion_tokens,
                        r.cost_nano_usd,
                        r.estimated,
                    )
                })
                .collect(),
        )
    }

    fn json(&self, rows: &[GroupRow], truncated: bool) -> Value {
        let filters: serde_json::Map<String, Value> = self
            .filters
            .iter()
            .map(|(d, v)| (d.name().to_string(), Value::String(v.clone())))
            .collect();
        json!({
            "group_by": self.group_by.name(),
            "filters": filters,
            "from": self.from,
            "to": self.to,
            "truncated": truncated,
            "rows": Self::rows_json(rows),
        })
    }

    fn csv(&self, rows: &[GroupRow]) -> String {
        let mut out = format!(
            "{},requests,prompt_tokens,completion_tokens,cost_usd,cost_nano_usd,estimated\r\n",
            self.group_by.name()
        );
        for r in rows {
            let _ = write!(
                out,
                "{},{},{},{},{:.9},{},{}\r\n",
                csv_field(&r.name),
                r.requests,
                r.prompt_tokens,
                r.completion_tokens,
                r.cost_nano_usd as f64 / 1e9,
                r.cost_nano_usd,
                r.estimated
            );
        }
        out
    }
}

/// A CSV field (RFC 4180 quoting). A value a spreadsheet would run as a formula (it starts
/// with `=`, `+`, `-`, `@`, tab or carriage return: names come from clients) is prefixed
/// with `'`.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) && value != "-" {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_string_becomes_one_parameterised_statement() {
        let query = parse(
            "group_by=tag&team=search%20prod&tag=a%2Cb&from=2026-12-01&to=1800000000&format=csv",
        )
        .unwrap()
        .unwrap();
        assert_eq!(query.group_by, Dimension::Tag);
        assert_eq!(query.from, Some(1_796_083_200));
        let (sql, params) = query.sql(Dialect::Postgres);
        assert!(sql.contains("LEFT JOIN (SELECT 'e' AS kind"), "{sql}");
        assert!(
            sql.contains("e.team_id = $1") && sql.contains("f.tag = $2"),
            "{sql}"
        );
        assert!(
            sql.contains("e.at >= $3") && sql.contains("e.at < $4"),
            "{sql}"
        );
        assert_eq!(
            params,
            [
                Param::Text("search prod".into()),
                Param::Text("a,b".into()),
                Param::Int(1_796_083_200),
                Param::Int(1_800_000_000)
            ]
        );
        let (sqlite, _) = query.sql(Dialect::Sqlite);
        assert!(sqlite.contains("e.team_id = ?1"), "{sqlite}");
    }

    #[test]
    fn bad_parameters_are_refused_and_no_group_by_is_the_full_report() {
        assert_eq!(parse("").unwrap(), None);
        for bad in [
            "group_by=password",
            "group_by=team&day=1",
            "group_by=team&evil=1",
            "team=a",
            "group_by=team&from=yesterday",
            "group_by=team&format=xml",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-"), "-");
        let query = parse("group_by=team&format=csv").unwrap().unwrap();
        let (body, kind) = query.render(vec![GroupRow {
            name: "@evil".into(),
            requests: 2,
            prompt_tokens: 3,
            completion_tokens: 4,
            cost_nano_usd: 1_500_000_000,
            estimated: 0,
        }]);
        assert_eq!(kind, "text/csv; charset=utf-8");
        assert_eq!(
            body,
            "team,requests,prompt_tokens,completion_tokens,cost_usd,cost_nano_usd,estimated\r\n\
             '@evil,2,3,4,1.500000000,1500000000,0\r\n"
        );
    }
}
