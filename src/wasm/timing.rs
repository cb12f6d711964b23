//! The in-VM timing build (`--features timing`): every callback and every host call a stream
//! makes is bracketed with the host clock, and the root context logs the medians every few
//! seconds, so each change is measured where it runs (inside V8, between Envoy's work). The
//! core's own compute per callback is the callback's time minus its host calls'. Without the
//! feature, [`time`] is the bare call and costs nothing.

#[cfg(feature = "timing")]
mod enabled {
    use std::cell::RefCell;

    use hashbrown::HashMap;

    use crate::wasm::host::{self, Level};

    thread_local! {
        static SAMPLES: RefCell<HashMap<&'static str, Vec<u64>>> = RefCell::new(HashMap::new());
        static LAST_REPORT: RefCell<u64> = const { RefCell::new(0) };
    }

    /// Runs `f`, recording how long it took under `label`.
    pub fn time<T>(label: &'static str, f: impl FnOnce() -> T) -> T {
        let started = host::now_nanos();
        let out = f();
        let took = host::now_nanos().saturating_sub(started);
        SAMPLES.with(|s| s.borrow_mut().entry(label).or_default().push(took));
        out
    }

    fn median(values: &mut [u64]) -> u64 {
        values.sort_unstable();
        values.get(values.len() / 2).copied().unwrap_or(0)
    }

    /// Logs the medians since the last report (at most every 5 s) and starts over.
    pub fn report() {
        let now = host::now_nanos();
        let due = LAST_REPORT.with(|l| {
            let mut last = l.borrow_mut();
            let due = now.saturating_sub(*last) >= 5_000_000_000;
            if due {
                *last = now;
            }
            due
        });
        if !due {
            return;
        }
        let mut samples = SAMPLES.with(|s| std::mem::take(&mut *s.borrow_mut()));
        let requests = samples.get("cb.on_log").map_or(0, Vec::len) as u64;
        if requests == 0 {
            return;
        }
        let mut rows: Vec<(&'static str, u64, u64, u64)> = samples
            .iter_mut()
            .map(|(label, values)| {
                let total: u64 = values.iter().sum();
                let n = values.len() as u64;
                (*label, median(values), n, total)
            })
            .collect();
        rows.sort_by_key(|row| row.0);
        let per_request = |prefix: &str| -> u64 {
            rows.iter()
                .filter(|row| row.0.starts_with(prefix))
                .map(|row| row.3)
                .sum::<u64>()
                / requests
        };
        let (callbacks, hostcalls) = (per_request("cb."), per_request("host."));
        let calls: u64 = rows
            .iter()
            .filter(|row| row.0.starts_with("host."))
            .map(|row| row.2)
            .sum::<u64>()
            / requests;
        let mut line = format!(
            "tollgate timing over {requests} requests: per request callbacks {:.1} us, host calls \
             {:.1} us ({calls} calls), core {:.1} us; medians (us, calls/request):",
            callbacks as f64 / 1000.0,
            hostcalls as f64 / 1000.0,
            callbacks.saturating_sub(hostcalls) as f64 / 1000.0
        );
        for (label, median, n, _) in rows {
            line.push_str(&format!(
                " {label}={:.2}/{:.1}",
                median as f64 / 1000.0,
                n as f64 / requests as f64
            ));
        }
        host::log(Level::Info, &line);
    }
}

#[cfg(feature = "timing")]
pub use enabled::{report, time};

/// Without the timing feature: the bare call.
#[cfg(not(feature = "timing"))]
#[inline(always)]
pub fn time<T>(_label: &'static str, f: impl FnOnce() -> T) -> T {
    f()
}

/// Without the timing feature: nothing to report.
#[cfg(not(feature = "timing"))]
#[inline(always)]
pub fn report() {}
