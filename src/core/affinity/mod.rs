//! Affinity: keeping Responses-API follow-ups on the deployment that created their state.
//!
//! `mark` (the sealed deployment tag written into ids and encrypted content), `stream` (marking
//! an answer as it passes, JSON or SSE), `request` (reading marks on a follow-up and restoring
//! the original values before it goes upstream).

pub mod mark;
pub mod request;
pub mod stream;
