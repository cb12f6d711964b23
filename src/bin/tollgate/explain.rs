//! `tollgate explain`: runs the filter's own decision functions on one hypothetical request and
//! prints each step, so operators can test a config change in CI before pushing it.

use std::process::ExitCode;

use hashbrown::HashMap;
use tollgate::core::admission::access::{admits_anywhere, ListLevel};
use tollgate::core::admission::alias::resolve;
use tollgate::core::admission::decide::{
    decide_body, decide_head, HeadOutcome, Surroundings, Verdict,
};
use tollgate::core::admission::denial::usd;
use tollgate::core::admission::path::RequestPath;
use tollgate::core::admission::request::Endpoint;
use tollgate::core::admission::routing::ModelTarget;
use tollgate::core::config::time::format_rfc3339;
use tollgate::core::limits::hold::LimitHold;
use tollgate::core::limits::lines::{LimitLine, LimitScope};
use tollgate::core::limits::rules::Period;
use tollgate::core::money::reservation::MemoryLedgers;
use tollgate::core::{Denial, Policy, RequestHead};

struct Args {
    config: String,
    key: String,
    /// The body's `model` (optional when the path names the model or a stored response).
    model: Option<String>,
    path: String,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut config = None;
    let mut key = None;
    let mut model = None;
    let mut path = "/v1/chat/completions".to_string();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{}", super::USAGE))?;
        match flag.as_str() {
            "--config" => config = Some(value.clone()),
            "--key" => key = Some(value.clone()),
            "--model" => model = Some(value.clone()),
            "--path" => path = value.clone(),
            _ => return Err(format!("unknown option {flag}\n{}", super::USAGE)),
        }
    }
    // A path that names the model (the Azure form) or a stored response needs no --model (nor
    // does one refused for its path).
    let named =
        RequestPath::parse(&path).map_or(true, |p| p.model.is_some() || p.response_id.is_some());
    match (config, key, model) {
        (Some(config), Some(key), model) if model.is_some() || named => Ok(Args {
            config,
            key,
            model,
            path,
        }),
        _ => Err(super::USAGE.to_string()),
    }
}

/// Runs `explain`; exit 0 admitted, 1 refused, 2 usage or config error.
pub fn run(args: &[String]) -> Result<ExitCode, String> {
    let args = parse(args)?;
    let Ok(policy) = super::load(&args.config)? else {
        return Ok(ExitCode::from(2));
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let authorization = format!("Bearer {}", args.key);
    let endpoint = Endpoint::classify(&args.path);
    let head = RequestHead {
        method: endpoint.method(),
        path: &args.path,
        authorization: Some(&authorization),
        ..RequestHead::default()
    };
    println!("policy version {}", policy.version);
    let ticket = match decide_head(Some(&policy), &head, now) {
        HeadOutcome::Deny(denial) => return Ok(deny(&denial)),
        HeadOutcome::Respond { status, body } => {
            println!(
                "ALLOW {status} {} (answered by the filter)\n  {body}",
                args.path
            );
            return Ok(ExitCode::SUCCESS);
        }
        HeadOutcome::ReadBody(ticket) => ticket,
    };
    let credentials: HashMap<String, String> = policy
        .deployments
        .iter()
        .filter_map(|d| d.credential_env.clone())
        .map(|name| (name.clone(), format!("${name}")))
        .collect();
    if let Some(model) = &ticket.path.model {
        println!(
            "  path:   {} form naming model {model:?} (the body's model is replaced with the \
             upstream model)",
            endpoint.name()
        );
    }
    let body = match (&args.model, ticket.path.response_id.is_some()) {
        (_, true) => String::new(),
        (Some(model), false) => serde_json::json!({ "model": model }).to_string(),
        (None, false) => "{}".to_string(),
    };
    // Budgets and rate limits are checked against empty ledgers: explain shows policy, not live
    // spend or traffic.
    let ledgers = MemoryLedgers::default();
    let around = Surroundings {
        credentials: &credentials,
        ledgers: &ledgers,
        random: 0,
        now,
    };
    let Some(verdict) = decide_body(&policy, &ticket, body.as_bytes(), &around) else {
        return Err("internal error: key vanished from the policy".to_string());
    };
    print_trace(&policy, &verdict);
    Ok(match &verdict.outcome {
        Ok(admission) => {
            let d = admission.deployment;
            println!(
                "  route:  deployment {:?} -> cluster {:?}, upstream model {:?} ({} equally eligible)",
                d.id, d.cluster, admission.upstream_model, verdict.trace.candidates
            );
            match (&admission.credential, &d.credential_env) {
                (Some((header, _)), Some(env)) => {
                    println!("  upstream credential: {header} from ${env}")
                }
                _ => println!("  upstream credential: none (deployment has no api_key_env)"),
            }
            if let Some(path) = &admission.upstream_path {
                println!("  upstream path: {path}");
            }
            let reservation = &admission.reservation;
            if !admission.metering.metered {
                println!(
                    "  budget: checked (a used-up budget refuses), nothing reserved or metered \
                     ({} is free at the provider)",
                    endpoint.name()
                );
            } else if !reservation.lines.is_empty() {
                let names: Vec<&str> = reservation.lines.iter().map(|l| l.budget_id()).collect();
                println!(
                    "  budget: would reserve ${} (worst case) on {}",
                    usd(reservation.amount),
                    names.join(", ")
                );
                for line in &reservation.lines {
                    if let Some(end) = line.window_end {
                        println!(
                            "  window: {} from {} until {} (windows counted in {})",
                            line.budget_id(),
                            format_rfc3339(line.window_start),
                            format_rfc3339(end),
                            policy.budget_zone.name()
                        );
                    }
                }
            }
            print_limits(&policy, &admission.limits);
            println!("ALLOW");
            ExitCode::SUCCESS
        }
        Err(denial) => deny(denial),
    })
}

/// The rate-limit step: each counter the request counts against, with its limit and window.
fn print_limits(policy: &Policy, hold: &LimitHold) {
    if hold.is_empty() {
        return;
    }
    let tokens = if hold.lines.iter().any(|l| l.kind.counts_tokens()) {
        format!(
            "; this request's worst case, {} tokens, is held on each token limit (at most the \
             limit) until the response ends",
            hold.tokens
        )
    } else {
        String::new()
    };
    println!(
        "  rate limits: counts against {} (counters start empty here{tokens})",
        hold.lines.len()
    );
    for line in &hold.lines {
        println!("    {}", limit_line(policy, line, hold.tokens));
    }
}

/// One counter: whose (and for which model entry), what and how much, and over which window.
fn limit_line(policy: &Policy, line: &LimitLine, hold_tokens: u64) -> String {
    let whose = match line.scope {
        LimitScope::Deployment => format!(
            "deployment {:?} (serving {:?})",
            line.holder
                .strip_prefix("deployment:")
                .unwrap_or(&line.holder),
            line.label
        ),
        scope => format!("{} {:?}", scope.name(), line.label),
    };
    let model = line
        .model
        .as_ref()
        .map_or(String::new(), |m| format!(" on model {m:?}"));
    let window = match (line.kind.period(), line.window_end) {
        (Some(Period::Day), Some(end)) => format!(
            " per day (from {} until {}, days in {})",
            format_rfc3339(line.window_start),
            format_rfc3339(end),
            policy.budget_zone.name()
        ),
        (Some(period), _) => format!(" per {}", period.name()),
        (None, _) => String::new(), // its unit says it: requests in flight
    };
    let held = if line.kind.counts_tokens() && hold_tokens > line.limit {
        " (the request holds all of it: it passes only into an empty window)".to_string()
    } else {
        String::new()
    };
    format!(
        "{whose}{model}: {} {} {}{window}{held}",
        line.kind.name(),
        line.limit,
        line.kind.unit()
    )
}

fn print_trace(policy: &Policy, verdict: &Verdict) {
    let trace = &verdict.trace;
    let key = trace.key;
    println!(
        "  key:    {} (team {}, user {})",
        key.display_name(),
        trace.team.map_or("-", |t| t.display_name()),
        key.user_id.as_deref().unwrap_or("-")
    );
    let Some(requested) = &trace.requested else {
        return;
    };
    let mut chain = format!("{requested:?}");
    for (layer, target) in &trace.hops {
        chain.push_str(&format!(" -> {target:?} ({})", layer.name()));
    }
    if trace.hops.is_empty() {
        chain.push_str(" (no alias)");
    }
    println!("  alias:  {chain}");
    match &trace.grants {
        Some(grants) => {
            let team = grants.team.map_or("no team".to_string(), |g| {
                format!("team list admits via {g}")
            });
            println!("  access: key list admits via {}; {team}", grants.key);
        }
        None if matches!(verdict.outcome, Err(Denial::ModelNotAllowed { .. })) => {
            let resolution = resolve(policy, key, trace.team, requested);
            let target = ModelTarget::new(policy, resolution.resolved());
            let key_ok = key.allow.all_team_models
                || admits_anywhere(policy, &key.allow, ListLevel::Key, &resolution, &target);
            let whose = if key_ok { "the team's" } else { "the key's" };
            println!(
                "  access: {whose} allow-list admits neither {:?} nor the alias sent",
                resolution.resolved()
            );
        }
        None => {}
    }
}

fn deny(denial: &Denial) -> ExitCode {
    println!(
        "DENY {} {}: {}",
        denial.status(),
        denial.code(),
        denial.message()
    );
    ExitCode::FAILURE
}
