//! How much room a deployment has left this minute under its `rpm`/`tpm`: routing skips a
//! full one and prefers the one with the most headroom.

use crate::core::config::index::{Deployment, Policy};
use crate::core::limits::lines::deployment_limits;
use crate::core::limits::rules::LimitKind;
use crate::core::money::budget::Ledger;
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
    if deployment.limits.is_none() {
        return Room::Left(UNLIMITED_ROOM);
    }
    let mut left = UNLIMITED_ROOM;
    for line in deployment_limits(policy, deployment, "", now) {
        let mut seen = Ledger::default();
        let read = store.update(line.ledger_key(), &mut |ledger| {
            seen = ledger.clone();
            false
        });
        let committed = seen.committed(now);
        if read.is_err() || committed >= line.limit {
            return Room::Full {
                kind: line.kind,
                resets_in: line.resets_in(now),
            };
        }
        let free = line.limit - committed;
        let per_mille = (u128::from(free) * 1000 / u128::from(line.limit.max(1))) as u32;
        left = left.min(per_mille);
    }
    Room::Left(left)
}
