//! What every worker of the Envoy process shares: one set of budget ledgers (exact within the
//! process: no per-worker copies, no compare-and-swap retries), the spend senders of every
//! config (one per accounting destination in use, so two configs never send each other's events),
//! and the ids that name each version's callouts.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use super::counters::Totals;
use crate::core::exchange::spend_senders::SpendSenders;
use crate::core::money::process_ledgers::ProcessLedgers;

/// The process-wide state.
pub struct Process {
    /// Budget ledgers, shared by every worker.
    pub ledgers: ProcessLedgers,
    /// Counts waiting for the main-thread tick.
    pub totals: Totals,
    sender: Mutex<SpendSenders>,
    next_owner: AtomicU32,
    /// The label of the newest accepted version (its `tollgate_config_active` gauge is 1).
    newest_label: Mutex<Option<String>>,
}

static PROCESS: OnceLock<Process> = OnceLock::new();

/// The process-wide state, made on first use.
pub fn process() -> &'static Process {
    PROCESS.get_or_init(|| Process {
        ledgers: ProcessLedgers::default(),
        totals: Totals::default(),
        sender: Mutex::new(SpendSenders::new(unique_nonce())),
        next_owner: AtomicU32::new(1),
        newest_label: Mutex::new(None),
    })
}

/// A per-process nonce for spend-event ids: the OS's randomness (std's `RandomState` seed)
/// mixed with the time, since replicas start in the same instant.
fn unique_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    hasher.write_u64(nanos);
    hasher.finish()
}

impl Process {
    /// The spend senders (one per accounting destination in use), or `None` if a thread panicked
    /// holding them (spend is then only counted in the ledgers; the panic itself was logged by
    /// the module's hook).
    pub fn sender(&self) -> Option<MutexGuard<'_, SpendSenders>> {
        self.sender.lock().ok()
    }

    /// Records `label` as the newest version's; returns the label it replaces, if different.
    pub fn replace_newest_label(&self, label: &str) -> Option<String> {
        let mut newest = self.newest_label.lock().ok()?;
        let previous = newest.replace(label.to_string());
        previous.filter(|old| old != label)
    }

    /// A new owner id for a config version (the spend sender's "root").
    pub fn new_owner(&self) -> u32 {
        self.next_owner.fetch_add(1, Ordering::Relaxed)
    }
}

/// The wall clock in Unix milliseconds (0 if it is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
