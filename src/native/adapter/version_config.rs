//! One config version in the native module: compiled once in `config_new` (Envoy's main thread)
//! into one [`Version`] that every worker's streams share through an `Arc`, with its stats
//! defined and the spend sender of its accounting destination told that this version now sends. A ticker thread
//! posts a tick to this config's main-thread scheduler, where batches and polls are sent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::callouts::{token, MainCallouts, NoCallouts};
use super::counters::{Collected, StatIds};
use super::process::{now_ms, process};
use super::stream::{TollgateFilter, VersionShared};
use crate::core::compile;
use crate::core::exchange::telemetry::metric_label;
use crate::core::exchange::version::{
    accounting_token, rejection_message, Version, EMPTY_CONFIG_MESSAGE, NO_ACCOUNTING_MESSAGE,
};
use crate::core::Policy;
use crate::native::config::{
    log, log_enabled, CalloutOutcome, ConfigHandle, ConfigScheduler, Level,
};
use crate::native::envoy::StreamHandle;
use crate::native::module::{Filter, FilterConfig};

/// The scheduler event of a tick.
const TICK: u64 = 1;

/// A background thread that posts [`TICK`] to a config's scheduler every period, until the
/// config goes (the scheduler is taken out under the lock, so no post follows its deletion).
struct Ticker {
    slot: Arc<Mutex<Option<ConfigScheduler>>>,
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(scheduler: ConfigScheduler, period: Duration) -> Option<Ticker> {
        let slot = Arc::new(Mutex::new(Some(scheduler)));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_slot, thread_stop) = (Arc::clone(&slot), Arc::clone(&stop));
        let spawned = std::thread::Builder::new()
            .name("tollgate-tick".to_string())
            .spawn(move || loop {
                std::thread::sleep(period);
                if thread_stop.load(Ordering::Acquire) {
                    return;
                }
                match thread_slot.lock() {
                    Ok(slot) => match slot.as_ref() {
                        Some(scheduler) => scheduler.commit(TICK),
                        None => return,
                    },
                    Err(_) => return,
                }
            });
        match spawned {
            Ok(_) => Some(Ticker { slot, stop }),
            Err(error) => {
                log(Level::Error, || {
                    format!(
                        "tollgate: could not start the tick thread ({error}); spend is not sent"
                    )
                });
                None
            }
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Ok(mut slot) = self.slot.lock() {
            slot.take();
        }
    }
}

/// One config version.
pub struct VersionConfig {
    shared: Arc<VersionShared>,
    owner: u32,
    _ticker: Option<Ticker>,
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl VersionConfig {
    /// Compiles `filter_config` (the policy document). `None` rejects the version: Envoy
    /// refuses the config (or NACKs the ECDS update) and the previous version keeps serving.
    pub fn new(config: &mut ConfigHandle, filter_config: &[u8]) -> Option<VersionConfig> {
        let stats = StatIds::define(config);
        let counts = Collected::default();
        let owner = process().new_owner();
        let now = now_ms();
        let version = if filter_config.iter().all(u8::is_ascii_whitespace) {
            log(Level::Warn, || EMPTY_CONFIG_MESSAGE.to_string());
            if let Some(mut sender) = process().sender() {
                sender.adopt(&mut NoCallouts(&counts), owner, None, None, now);
            }
            Version::default()
        } else {
            let policy = compiled(filter_config, config, &stats)?;
            adopt(&policy, owner, &counts, now);
            let debug = log_enabled(Level::Debug);
            let (version, warnings) = Version::new(policy, &process_env, debug);
            for line in warnings {
                log(Level::Warn, || line);
            }
            version
        };
        let period = match process().sender().map_or(0, |s| s.tick_period_ms()) {
            0 => 1000,
            ms => ms,
        };
        let ticker = config
            .new_scheduler()
            .and_then(|scheduler| Ticker::start(scheduler, Duration::from_millis(period.into())));
        process().totals.absorb(counts.take());
        process().totals.flush(&stats, config);
        if let Some(label) = version.label() {
            mark_active(config, label);
        }
        let shared = Arc::new(VersionShared {
            version: Arc::new(version),
            stats,
        });
        Some(VersionConfig {
            shared,
            owner,
            _ticker: ticker,
        })
    }
}

/// `tollgate_config_active{version}`: 1 for the newest accepted version, 0 for the one it
/// replaced (a draining version finishes its streams but no longer takes new ones).
fn mark_active(config: &mut ConfigHandle, label: &str) {
    let Some(gauge) = config.define_labelled_gauge("tollgate_config_active", "version") else {
        return;
    };
    let label = metric_label(label);
    if let Some(previous) = process().replace_newest_label(&label) {
        config.set_labelled_gauge(gauge, &previous, 0);
    }
    config.set_labelled_gauge(gauge, &label, 1);
}

/// Compiles a policy, logging the outcome (and counting it on this config's stats).
fn compiled(document: &[u8], config: &mut ConfigHandle, stats: &StatIds) -> Option<Policy> {
    let started = Instant::now();
    let counts = Collected::default();
    let outcome = match compile(document) {
        Ok(policy) => {
            let micros = started.elapsed().as_micros();
            log(Level::Info, || {
                format!(
                    "tollgate {}: accepted {} ({} config bytes compiled in {}.{:03} ms; one \
                     policy for every worker of the process)",
                    crate::BUILD_INFO,
                    policy.summary(),
                    document.len(),
                    micros / 1_000,
                    micros % 1_000,
                )
            });
            crate::core::exchange::telemetry::Telemetry::add(
                &counts,
                "tollgate_config_accepted",
                1,
            );
            Some(policy)
        }
        Err(errors) => {
            log(Level::Error, || rejection_message(&errors));
            crate::core::exchange::telemetry::Telemetry::add(
                &counts,
                "tollgate_config_rejected",
                1,
            );
            None
        }
    };
    process().totals.absorb(counts.take());
    process().totals.flush(stats, config);
    outcome
}

/// Makes this version a sender of its own accounting destination (see [`SpendSenders`]).
///
/// [`SpendSenders`]: crate::core::exchange::spend_senders::SpendSenders
fn adopt(policy: &Policy, owner: u32, counts: &Collected, now: u64) {
    let accounting = policy.accounting.as_ref();
    let token = accounting_token(accounting, &process_env).unwrap_or_else(|line| {
        log(Level::Error, || line);
        None
    });
    if accounting.is_none() {
        log(Level::Info, || NO_ACCOUNTING_MESSAGE.to_string());
    }
    if let Some(mut sender) = process().sender() {
        sender.adopt(&mut NoCallouts(counts), owner, accounting, token, now);
    }
}

impl Drop for VersionConfig {
    fn drop(&mut self) {
        // Possibly on a worker (the one ending this version's last stream): no calls here. A
        // newer version's tick sends what is left; events still queued when Envoy exits are
        // lost (see the README).
        let counts = Collected::default();
        if let Some(mut sender) = process().sender() {
            sender.retire(&mut NoCallouts(&counts), self.owner, now_ms());
        }
        process().totals.absorb(counts.take());
    }
}

impl FilterConfig for VersionConfig {
    fn new_filter(&self, _envoy: &mut StreamHandle) -> Option<Box<dyn Filter>> {
        Some(Box::new(TollgateFilter::new(&self.shared)))
    }

    fn on_scheduled(&self, config: &mut ConfigHandle, event_id: u64) {
        if event_id != TICK {
            return;
        }
        let counts = Collected::default();
        if let Some(mut sender) = process().sender() {
            let mut host = MainCallouts {
                config,
                owner: self.owner,
                counts: &counts,
                policy: self.shared.version.policy.as_deref(),
            };
            sender.tick(&mut host, now_ms(), self.owner);
        }
        process().totals.absorb(counts.take());
        process().totals.flush(&self.shared.stats, config);
    }

    fn on_http_callout_done(
        &self,
        config: &mut ConfigHandle,
        callout_id: u64,
        outcome: CalloutOutcome<'_>,
    ) {
        let status = outcome.status().unwrap_or(0);
        let body = outcome.body();
        let counts = Collected::default();
        if let Some(mut sender) = process().sender() {
            let mut host = MainCallouts {
                config,
                owner: self.owner,
                counts: &counts,
                policy: self.shared.version.policy.as_deref(),
            };
            let call = token(self.owner, callout_id);
            sender.on_response(&mut host, call, status, &body, now_ms());
        }
        process().totals.absorb(counts.take());
    }
}
