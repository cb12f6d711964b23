//! How much room a deployment has left this minute under its `rpm`/`tpm`: routing skips a
//! full one and prefers the one with the most headroom.

use crate::core::config::index::{Deployment, Policy};
use crate::core::limits::lines::{ledger_key, window_of};
use crate::core::limits::rules::{LimitKind, Period};
use crate::core::money::reservation::LedgerStore;

/// Per-mille of headroom an unlimited deployment counts as (the most there is).
pub const UNLIMITED_ROOM: u32 = 1000;

/// A deployment's room this minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Per-mille of its tighter limit still free (1000 when it has no limit).
    Left(u32),
    /// A limit is reached: it takes nothing more before the window resets.
    Full {
        /// The limit that is reached.
        kind: LimitKind,
        /// Seconds until its window resets.
        resets_in: u64,
    },
}

/// The room `deployment` has at `now` (read only: nothing is written). A counter that cannot
/// be read counts as full, so routing fails closed.
pub fn room(store: &dyn LedgerStore, policy: &Policy, deployment: &Deployment, now: i64) -> Room {
    let Some(limits) = &deployment.limits else {
        return Room::Left(UNLIMITED_ROOM);
    };
    let (start, end) = window_of(Period::Minute, &policy.budget_zone, now);
    let resets_in = u64::try_from(end.saturating_sub(now)).unwrap_or(0).max(1);
    let mut left = UNLIMITED_ROOM;
    for kind in [LimitKind::Rpm, LimitKind::Tpm] {
        let Some(limit) = limits.of(kind) else {
            continue;
        };
        let mut committed = 0;
        let read = store.update(&ledger_key(&limits.id, kind, start), &mut |ledger| {
            committed = ledger.committed(now);
            false
        });
        if read.is_err() || committed >= limit {
            return Room::Full { kind, resets_in };
        }
        let free = limit - committed;
        let per_mille = (u128::from(free) * 1000 / u128::from(limit.max(1))) as u32;
        left = left.min(per_mille);
    }
    Room::Left(left)
}
