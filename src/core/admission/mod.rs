//! Admission: from request headers and body to a decision, one step a file.
//!
//! `path` (which endpoint, what the path names) and `request` (facts from headers and body),
//! `client_headers` (what a client may not send upstream) → `auth` (virtual key, team) →
//! `alias` (resolved first) → `access` (what the request will really reach) → budgets (in [`crate::core::money`]) → `routing` (the deployment) →
//! `decide` (the whole path: [`decide::decide_head`], then [`decide::decide_body`]). Every refusal
//! is a [`denial::Denial`]; `listing` answers `GET /v1/models`; `stored` decides requests
//! for stored responses (routed by the id's affinity mark).

pub mod access;
pub mod alias;
pub mod auth;
pub mod client_headers;
pub mod decide;
pub mod denial;
pub mod listing;
pub mod metadata_tags;
pub mod path;
pub mod request;
pub mod routing;
pub mod stored;
