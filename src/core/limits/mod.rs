//! Rate limits: how fast a key, team, user, end user, model or deployment may go.
//!
//! `rules` (what a holder may do: requests and tokens per minute or per day, requests in
//! flight, compiled once per version) → `lines` (the counters one request counts against, each
//! in its current window) → `hold` (count, reserve and settle them on the same ledger store as
//! budgets, all or none) → `headers` (the OpenAI `x-ratelimit-*` answer headers) and
//! `deployment_room` (how much room each deployment has left, for routing).
//!
//! Windows are fixed and clock-aligned (each UTC minute; each local day in
//! `settings.budget_timezone`), as LiteLLM's and Envoy's rate-limit service count: a window's
//! counters start afresh at its start.

pub mod deployment_room;
pub mod headers;
pub mod hold;
pub mod lines;
pub mod rules;
