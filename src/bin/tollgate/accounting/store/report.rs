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
    fn column(self, dimension: Dimension, side: Side) -> String {
        match (dimension, self) {
            (Dimension::Key, _) => "COALESCE(e.key_alias, e.key_hash)".into(),
            (Dimension::Team, _) => "e.team_id".into(),
            (Dimension::User, _) => "e.user_id".into(),
            (Dimension::EndUser, _) => "e.end_user".into(),
            (Dimension::Model, _) => "e.resolved_model".into(),
            (Dimension::Deployment, _) => "e.deployment".into(),
            (Dimension::Provider, _) => "e.provider".into(),
            (Dimension::Status, _) => "e.status".into(),
            (Dimension::Tag, _) => "t.tag".into(),
            (Dimension::Day, Dialect::Sqlite | Dialect::SqliteTotal) => {
                format!("strftime('%Y-%m-%d', {}, 'unixepoch')", side.at())
            }
            (Dimension::Day, Dialect::Postgres) => format!(
                "to_char(to_timestamp({}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
                side.at()
            ),
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

/// One of the two sets the report reads: the events stored, and the daily rollups retention
/// folded pruned events into (a row standing for `requests` events). Each is grouped with its
/// own tag table, then the two are summed: joining tags over a union of both would hide the
/// tag tables' indexes from the planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// `events`.
    Events,
    /// `event_rollups`.
    Rollups,
}

impl Side {
    fn table(self) -> &'static str {
        match self {
            Side::Events => "events",
            Side::Rollups => "event_rollups",
        }
    }

    /// When a row's requests ended: events that carry no `ended_at` (written by a binary older
    /// than it) count at `received_at`; a rollup at the start of its day.
    fn at(self) -> &'static str {
        match self {
            Side::Events => "COALESCE(e.ended_at, e.received_at)",
            Side::Rollups => "e.day_start",
        }
    }

    /// Its tag table and the column naming the row.
    fn tags(self) -> (&'static str, &'static str) {
        match self {
            Side::Events => ("event_tags", "event_id"),
            Side::Rollups => ("rollup_tags", "rollup_id"),
        }
    }

    fn requests(self) -> &'static str {
        match self {
            Side::Events => "1",
            Side::Rollups => "e.requests",
        }
    }

    fn estimated(self) -> &'static str {
        match self {
            Side::Events => "CASE WHEN e.estimated THEN 1 ELSE 0 END",
            Side::Rollups => "e.estimated",
        }
    }
}

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

    /// The SQL of this report for `dialect`, with its parameters in order (each bound once and
    /// used by both sides).
    pub fn sql(&self, dialect: Dialect) -> (String, Vec<Param>) {
        let mut params = Vec::new();
        let mut bind = |param: Param| {
            params.push(param);
            dialect.placeholder(params.len())
        };
        let filters: Vec<(Dimension, String)> = self
            .filters
            .iter()
            .map(|(dimension, value)| (*dimension, bind(Param::Text(value.clone()))))
            .collect();
        let from = self.from.map(|from| bind(Param::Int(from)));
        let to = self.to.map(|to| bind(Param::Int(to)));
        let [events, rollups] = [Side::Events, Side::Rollups]
            .map(|side| self.side_sql(dialect, side, &filters, from.as_deref(), to.as_deref()));
        let order = if self.group_by == Dimension::Day {
            "1"
        } else {
            "5 DESC, 1"
        };
        let sql = format!(
            "SELECT g.name, {}, {}, {}, {}, {} FROM ({events} UNION ALL {rollups}) g \
             GROUP BY g.name ORDER BY {order} LIMIT {}",
            dialect.sum("g.requests"),
            dialect.sum("g.prompt_tokens"),
            dialect.sum("g.completion_tokens"),
            dialect.sum("g.cost_nano_usd"),
            dialect.sum("g.estimated"),
            MAX_GROUPS + 1
        );
        (sql, params)
    }

    /// One side's groups, filtered (placeholders already bound).
    fn side_sql(
        &self,
        dialect: Dialect,
        side: Side,
        filters: &[(Dimension, String)],
        from: Option<&str>,
        to: Option<&str>,
    ) -> String {
        let (tags, tagged) = side.tags();
        let mut sql = format!(
            "SELECT COALESCE({}, '-') AS name, {} AS requests, {} AS prompt_tokens, \
             {} AS completion_tokens, {} AS cost_nano_usd, {} AS estimated FROM {} e",
            dialect.column(self.group_by, side),
            dialect.sum(side.requests()),
            dialect.sum("e.prompt_tokens"),
            dialect.sum("e.completion_tokens"),
            dialect.sum("e.cost_nano_usd"),
            dialect.sum(side.estimated()),
            side.table()
        );
        if self.group_by == Dimension::Tag {
            let _ = write!(sql, " LEFT JOIN {tags} t ON t.{tagged} = e.id");
        }
        let mut conditions = Vec::new();
        for (dimension, at) in filters {
            conditions.push(match dimension {
                Dimension::Tag => format!(
                    "EXISTS (SELECT 1 FROM {tags} f WHERE f.{tagged} = e.id AND f.tag = {at})"
                ),
                other => format!("{} = {at}", dialect.column(*other, side)),
            });
        }
        if let Some(from) = from {
            conditions.push(format!("{} >= {from}", side.at()));
        }
        if let Some(to) = to {
            conditions.push(format!("{} < {to}", side.at()));
        }
        if !conditions.is_empty() {
            let _ = write!(sql, " WHERE {}", conditions.join(" AND "));
        }
        sql.push_str(" GROUP BY 1");
        sql
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
        assert!(
            sql.contains("LEFT JOIN event_tags t ON t.event_id = e.id"),
            "{sql}"
        );
        assert!(
            sql.contains("LEFT JOIN rollup_tags t ON t.rollup_id = e.id"),
            "{sql}"
        );
        assert!(
            sql.contains("e.team_id = $1") && sql.contains("f.tag = $2"),
            "{sql}"
        );
        assert!(
            sql.contains("received_at) >= $3") && sql.contains("e.day_start < $4"),
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
