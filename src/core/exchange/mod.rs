//! Exchange: one HTTP exchange driven callback by callback, and the spend sender, written once
//! for both adapters over host traits they implement.
//!
//! `host` ([`host::StreamHost`]: what a stream may ask of Envoy, in Tollgate's words) →
//! `stream` ([`stream::Exchange`]: headers → body → decision → edits → metering → settlement)
//! with `version` (what every stream of one config version shares) and `telemetry` (the
//! counters every adapter emits). `spend_sender` ([`spend_sender::SpendSender`]) batches
//! finished requests to the accounting cluster over [`spend_sender::CalloutHost`], one per set of
//! accounting destination in use (`spend_senders`).
//! Nothing here knows which adapter calls it.

pub mod host;
mod request_facts;
mod response_side;
pub mod spend_sender;
pub mod spend_senders;
pub mod stream;
pub mod telemetry;
pub mod version;
