//! Panics and re-entry at the FFI boundary.
//!
//! The code is written so that it does not panic (clippy denies `unwrap`, `expect`, `panic!`;
//! wrappers check every pointer/length pair). What remains is guarded twice:
//! - [`install_panic_hook`] (from `on_program_init`) logs any panic's message and place to Envoy's
//!   log (critical) and to stderr.
//! - [`catch`] runs a hook body under `catch_unwind`: a panic is stopped there, and the hook
//!   answers its fail-closed fallback instead of unwinding into C (which Rust would turn into an
//!   abort). This needs unwinding compiled in: the module's build profile (`profile.native`)
//!   keeps `panic = "unwind"` where the release profile aborts, and `./scripts/test` checks the
//!   built `.so` for it.
//!
//! [`FilterCell`] keeps a stream's filter so that a hook Envoy runs *inside* a call the filter
//! makes (its own `send_response` runs this filter's `local_reply` hook synchronously) never
//! creates a second `&mut` to the filter: the filter is taken out while a hook runs.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use super::config::{log, Level};
use super::module::Filter;

/// Sends every panic's message to Envoy's log and stderr (installed once per process).
pub(crate) fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let text = format!("tollgate native module panicked: {info}");
            eprintln!("{text}");
            log(Level::Critical, || text);
        }));
    });
}

/// Runs `body`; on a caught panic logs `hook` and returns `fallback()`.
pub(crate) fn catch<R>(
    hook: &'static str,
    fallback: impl FnOnce() -> R,
    body: impl FnOnce() -> R,
) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(_) => {
            log(Level::Critical, || {
                format!("tollgate native: {hook} panicked; answered fail-closed")
            });
            fallback()
        }
    }
}

/// How a filter hook went.
pub(crate) enum HookRun<R> {
    /// The filter answered.
    Ran(R),
    /// Another of this filter's hooks is running further up the stack (e.g. its own local reply).
    Reentered,
    /// A previous hook panicked; the filter is gone.
    Poisoned,
    /// This hook panicked (caught); the filter is gone.
    Panicked,
}

/// One stream's filter, owned by the box Envoy holds the pointer to.
pub(crate) struct FilterCell {
    filter: Cell<Option<Box<dyn Filter>>>,
    poisoned: Cell<bool>,
}

impl FilterCell {
    /// Wraps a new filter.
    pub(crate) fn new(filter: Box<dyn Filter>) -> Self {
        FilterCell {
            filter: Cell::new(Some(filter)),
            poisoned: Cell::new(false),
        }
    }

    /// Runs `call` with the filter taken out of the cell (so re-entry sees an empty cell).
    pub(crate) fn run<R>(
        &self,
        hook: &'static str,
        call: impl FnOnce(&mut dyn Filter) -> R,
    ) -> HookRun<R> {
        let Some(mut filter) = self.filter.take() else {
            if self.poisoned.get() {
                return HookRun::Poisoned;
            }
            log(Level::Debug, || {
                format!("tollgate native: {hook} re-entered; answered by the adapter")
            });
            return HookRun::Reentered;
        };
        match catch_unwind(AssertUnwindSafe(|| call(filter.as_mut()))) {
            Ok(value) => {
                self.filter.set(Some(filter));
                HookRun::Ran(value)
            }
            Err(_) => {
                self.poisoned.set(true);
                log(Level::Critical, || {
                    format!("tollgate native: {hook} panicked; the stream fails closed")
                });
                // The filter's state is unknown after a panic: leak it rather than run its Drop.
                std::mem::forget(filter);
                HookRun::Panicked
            }
        }
    }
}
