//! The buffers a SQLite connection captures into, handed back for its next transaction once
//! every subscriber has let go of the batch they went out in.
//!
//! A committed transaction's rows go to subscribers in the buffers they were captured in, so
//! without this each transaction captures into new ones: a large transaction then grows them
//! again and again (copying what they hold) and writes into memory the system has yet to map,
//! one page fault every few rows. Given back, the buffers keep their room and their pages.

use std::sync::{Arc, Mutex, PoisonError};

use crate::observe::{RawChange, Rows};

/// The most a connection keeps aside, in bytes: about what a transaction of 20,000 rows of a
/// few short columns captures (a larger one's buffers are freed). Only a connection that
/// captured while someone observed keeps any.
const MOST_KEPT: usize = 16 << 20;

/// A connection's spare buffers: at most one set, given back by the last batch it published
/// (see the module's documentation). Cloned into each batch it publishes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spares(Arc<Mutex<Option<Spare>>>);

/// Emptied buffers, with their room.
#[derive(Debug)]
struct Spare {
    rows: Rows,
    changes: Vec<RawChange>,
}

impl Spares {
    /// Buffers for the next transaction: the spare ones if a batch gave them back, else new
    /// ones sized like those of the transaction before, which captured `previous` and
    /// `previous_changes` changes (a subscriber still reading it holds its buffers: the next
    /// transaction then need not grow its own from nothing, copying them at each doubling).
    pub(crate) fn take(&self, previous: &Rows, previous_changes: usize) -> (Rows, Vec<RawChange>) {
        /// At most as many as the rows' cells are sized for (`Rows::sized_like`).
        const MOST_CHANGES: usize = 1 << 16;
        let spare = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        match spare {
            Some(Spare { rows, changes }) => (rows, changes),
            None => (
                Rows::sized_like(previous),
                Vec::with_capacity(previous_changes.min(MOST_CHANGES)),
            ),
        }
    }

    /// Keeps a published batch's buffers, emptied, for the next transaction, unless a set is
    /// already kept or they are larger than [`MOST_KEPT`].
    pub(crate) fn give_back(&self, mut rows: Rows, mut changes: Vec<RawChange>) {
        let size = rows.allocated() + changes.capacity() * size_of::<RawChange>();
        if size > MOST_KEPT {
            return;
        }
        rows.clear();
        changes.clear();
        let mut spare = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.is_none() {
            *spare = Some(Spare { rows, changes });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{MOST_KEPT, Spares};
    use crate::observe::{Batch, Mark, Op, RawChange, Rows};

    /// Rows holding `n` text values of `len` bytes.
    fn rows(n: usize, len: usize) -> Rows {
        let mut rows = Rows::default();
        for _ in 0..n {
            rows.push_text(&vec![b'x'; len]);
        }
        rows
    }

    fn batch(rows: Rows, spares: &Spares) -> Batch {
        Batch {
            rows,
            changes: vec![RawChange::broken("t".into(), Op::Insert, 0, "test")],
            gap: 0,
            shared: Default::default(),
            spares: Some(spares.clone()),
        }
    }

    #[test]
    fn a_batch_gives_its_buffers_back_once_its_last_holder_lets_go() {
        let spares = Spares::default();
        let captured = rows(1_000, 100);
        let room = captured.allocated();
        let held = Arc::new(batch(captured, &spares));
        let by_another = held.clone();
        drop(held);
        // Still read by another subscriber: the next transaction gets new buffers, sized like
        // the last transaction's.
        let (fresh, _) = spares.take(&Rows::default(), 0);
        assert_eq!(fresh.allocated(), 0);
        let (_, changes) = spares.take(&Rows::default(), 1_000);
        assert!(changes.capacity() >= 1_000);
        drop(by_another);
        let (rows, changes) = spares.take(&Rows::default(), 0);
        assert_eq!(rows.allocated(), room, "the buffers keep their room");
        assert_eq!(rows.since(Mark::default()), 0..0, "and come back empty");
        assert!(changes.is_empty() && changes.capacity() >= 1);
        // Taken: the next one gets new buffers again.
        assert_eq!(spares.take(&Rows::default(), 0).0.allocated(), 0);
    }

    #[test]
    fn one_set_is_kept_and_never_one_larger_than_the_bound() {
        let spares = Spares::default();
        drop(batch(rows(1, MOST_KEPT + 1), &spares));
        assert_eq!(spares.take(&Rows::default(), 0).0.allocated(), 0);
        drop(batch(rows(10, 10), &spares));
        let first = spares.take(&Rows::default(), 0).0.allocated();
        drop(batch(rows(10, 10), &spares));
        drop(batch(rows(1_000, 10), &spares));
        assert_eq!(spares.take(&Rows::default(), 0).0.allocated(), first);
    }
}
