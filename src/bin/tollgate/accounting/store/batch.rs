//! A batch as the PostgreSQL store reads it: each element parsed and checked, and the first
//! occurrence of each id told apart from its repeats within the same batch.

use std::collections::HashSet;

use tollgate::core::spend::accounting_api::{read_batch, Incoming, RejectedEvent};
use tollgate::core::spend::event::SpendEvent;
use tollgate::core::spend::threshold::ThresholdEvent;

/// A batch read and split: the first occurrence of each id counts, later ones are duplicates.
pub struct Batch {
    /// The elements, in the order they came.
    pub items: Vec<Item>,
}

/// One element of a batch.
pub enum Item {
    /// A spend event; `first` is false for a repeat of an id earlier in the same batch.
    Spend {
        event: Box<SpendEvent>,
        json: String,
        first: bool,
    },
    /// A threshold event; `first` as for spend events.
    Threshold {
        event: Box<ThresholdEvent>,
        json: String,
        first: bool,
    },
    /// An element refused on its own.
    Rejected(RejectedEvent),
}

impl Batch {
    /// Reads `body`; `Err((400, _))` when it is not a JSON array.
    pub fn read(body: &[u8]) -> Result<Batch, (u16, String)> {
        // Spend and threshold events live in tables of their own: an id is a repeat only of
        // an earlier element of the same kind.
        let (mut seen, mut seen_thresholds) = (HashSet::new(), HashSet::new());
        let items = read_batch(body)
            .map_err(|e| (400, e))?
            .into_iter()
            .map(|item| match item {
                Ok((Incoming::Spend(event), json)) => {
                    let first = seen.insert(event.id.clone());
                    Item::Spend { event, json, first }
                }
                Ok((Incoming::Threshold(event), json)) => {
                    let first = seen_thresholds.insert(event.id.clone());
                    Item::Threshold { event, json, first }
                }
                Err(rejected) => Item::Rejected(rejected),
            })
            .collect();
        Ok(Batch { items })
    }

    /// The first occurrence of each spend event, sorted by id.
    pub fn spends(&self) -> Vec<(&SpendEvent, &str)> {
        let mut spends: Vec<_> = self
            .items
            .iter()
            .filter_map(|item| match item {
                Item::Spend {
                    event,
                    json,
                    first: true,
                } => Some((event.as_ref(), json.as_str())),
                _ => None,
            })
            .collect();
        spends.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        spends
    }

    /// The first occurrence of each threshold event, sorted by id.
    pub fn thresholds(&self) -> Vec<(&ThresholdEvent, &str)> {
        let mut alerts: Vec<_> = self
            .items
            .iter()
            .filter_map(|item| match item {
                Item::Threshold {
                    event,
                    json,
                    first: true,
                } => Some((event.as_ref(), json.as_str())),
                _ => None,
            })
            .collect();
        alerts.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        alerts
    }
}
