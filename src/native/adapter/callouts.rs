//! The spend sender's hosts in the native module: [`MainCallouts`] on Envoy's main thread (config
//! callouts are only safe there), [`NoCallouts`] anywhere else (recording an event never calls
//! out; a batch that would have to waits for the next main-thread tick).

use super::counters::Collected;
use super::process::process;
use crate::core::exchange::host::LogLevel;
use crate::core::exchange::spend_sender::CalloutHost;
use crate::core::exchange::telemetry::Telemetry;
use crate::core::money::reservation::LedgerStore;
use crate::core::spend::accounting_api::BudgetTotal;
use crate::core::spend::threshold::{soft_threshold_of, ThresholdData};
use crate::core::Policy;
use crate::native::config::{log, ConfigHandle, Level};

/// Maps the core's log levels onto Envoy's.
pub fn level_of(level: LogLevel) -> Level {
    match level {
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warn => Level::Warn,
        LogLevel::Error => Level::Error,
    }
}

/// A sender call's id: the config's owner id above its callout id, so calls of different
/// versions never collide in the process-wide senders.
pub fn token(owner: u32, callout_id: u64) -> u64 {
    (u64::from(owner) << 32) | (callout_id & 0xffff_ffff)
}

/// Calls from a config hook on the main thread.
pub struct MainCallouts<'a> {
    /// The config the hook runs for (its callouts answer to it).
    pub config: &'a mut ConfigHandle,
    /// The config's owner id.
    pub owner: u32,
    /// Counts made meanwhile (flushed through the config at the end of the hook).
    pub counts: &'a Collected,
    /// The config's policy (`None` for an empty config).
    pub policy: Option<&'a Policy>,
}

impl CalloutHost for MainCallouts<'_> {
    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Option<u64> {
        let headers: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(name, value)| (*name, value.as_bytes()))
            .collect();
        let id = self
            .config
            .http_callout(cluster, &headers, body, timeout_ms)
            .ok()?;
        Some(token(self.owner, id))
    }

    fn log(&self, level: LogLevel, message: &str) {
        log(level_of(level), || message.to_string());
    }

    fn telemetry(&self) -> &dyn Telemetry {
        self.counts
    }

    fn ledgers(&self) -> &dyn LedgerStore {
        &process().ledgers
    }

    fn budget_window_start(&self, budget: &str, now: i64) -> Option<i64> {
        self.policy?.budget_window_start(budget, now)
    }

    fn limit_window_start(&self, limit: &str, now: i64) -> Option<i64> {
        self.policy?.limit_window_start(limit, now)
    }

    fn soft_threshold(&self, total: &BudgetTotal) -> Option<ThresholdData> {
        soft_threshold_of(self.policy?, total)
    }
}

/// The sender's host where no call may be made.
pub struct NoCallouts<'a>(pub &'a Collected);

impl CalloutHost for NoCallouts<'_> {
    fn dispatch(&mut self, _: &str, _: &[(&str, &str)], _: &[u8], _: u64) -> Option<u64> {
        None
    }

    fn log(&self, level: LogLevel, message: &str) {
        log(level_of(level), || message.to_string());
    }

    fn telemetry(&self) -> &dyn Telemetry {
        self.0
    }

    fn ledgers(&self) -> &dyn LedgerStore {
        &process().ledgers
    }

    /// No answer arrives here (no call is made), so no total is ever taken in.
    fn budget_window_start(&self, _budget: &str, _now: i64) -> Option<i64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_of_different_versions_never_collide() {
        assert_ne!(token(1, 7), token(2, 7));
        assert_eq!(token(3, 7) >> 32, 3);
    }
}
