//! Config → Policy: the plugin configuration as operators write it, validated whole and
//! compiled once per version into the indexed snapshot every request reads.
//!
//! `config` (serde structs, LiteLLM vocabulary) → `compile` (+ `compile_deployments`; every
//! error names the JSON path of the bad field) → `index` (the [`index::Policy`]). Helpers:
//! `cost_map` (LiteLLM prices, provider sets derived from them; `fallback_rules`, its provider
//! rules for names it lacks), `pattern` (model wildcards),
//! `time` (RFC 3339 instants, budget windows), `time_zone` (the zone windows are counted in), `key_hash` (SHA-256 of virtual keys).

pub mod compile;
#[allow(clippy::module_inception)]
pub mod config;
pub mod cost_map;
pub mod fallback_rules;
pub mod index;
pub mod key_hash;
pub mod pattern;
pub mod time;
pub mod time_zone;
