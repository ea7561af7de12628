//! What both PostgreSQL listeners (the trigger feed's and the logical decoding feed's) deliver
//! through: the hub, the subscriptions waiting for their marker, and what ends with them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::Instant;

use diesel::sql_types::Text;
use diesel::{PgConnection, QueryableByName};

use super::{PgObserve, TABLES_CHECK_EVERY, Waiting, lock};
use crate::observe::Batch;
use crate::observe::hub::Hub;
use crate::{Error, Result};

/// Where a listener delivers, whichever feed it reads: the hub, the subscriptions waiting for
/// their marker, and what ends with it.
pub(super) struct Outlet {
    /// Held until the listener ends, so that subscriptions end after the last change.
    pub(super) hub: Arc<Hub>,
    /// Gone when the store is.
    pub(super) store: Weak<PgObserve>,
    pub(super) waiting: Arc<Mutex<Vec<Waiting>>>,
    /// Cleared when the listener ends, however it ends.
    pub(super) alive: Arc<AtomicBool>,
    /// Why the listener ended, when it ended on an error.
    pub(super) lost: Option<String>,
}

impl Outlet {
    pub(super) fn store_is_gone(&self) -> bool {
        self.store.strong_count() == 0
    }

    /// Publishes a committed transaction's changes, and those missed with it (nothing, for
    /// none).
    pub(super) fn publish(&self, batch: Batch) {
        if batch.holds_nothing() {
            return;
        }
        let seq = self.hub.next_seq();
        self.hub.publish(seq, batch);
    }

    /// Opens the subscription waiting for the marker `nonce`, if it is this store's: it
    /// receives what commits from now on. Whether there was one.
    pub(super) fn open(&self, nonce: &str) -> bool {
        let waiting = {
            let mut waiting = lock(&self.waiting);
            let Some(i) = waiting.iter().position(|w| w.marker == nonce) else {
                return false;
            };
            waiting.swap_remove(i)
        };
        let queue = self
            .hub
            .subscribe(waiting.tables.as_deref(), waiting.capacity);
        let _ = waiting.reply.send(queue);
        true
    }

    /// Why the feed must end, if a table a live subscription wants no longer reports its
    /// changes (see [`PgObserve::unreported_tables`]): what it commits from then on cannot be
    /// known. The listener then delivers what was committed before it found so, and ends,
    /// its subscriptions told the feed was lost (never a silent stop); the next subscription
    /// sets the tables up as they are then. Asked through `conn` every [`TABLES_CHECK_EVERY`],
    /// at most; `checked` is when it last was.
    pub(super) fn unreported(
        &self,
        conn: &mut PgConnection,
        checked: &mut Instant,
    ) -> std::result::Result<Option<String>, String> {
        if checked.elapsed() < TABLES_CHECK_EVERY {
            return Ok(None);
        }
        *checked = Instant::now();
        if !self.hub.active() {
            return Ok(None); // nobody wants any table: no catalog query
        }
        let Some(store) = self.store.upgrade() else {
            return Ok(None); // the listener delivers what is left, then ends
        };
        let unreported = store
            .unreported_tables(conn, |table| self.hub.wants(table))
            .map_err(connection_failed)?;
        if unreported.is_empty() {
            return Ok(None);
        }
        Ok(Some(format!(
            "observed tables do not report their changes (created again after a drop, or \
             after an observe_all began, their observe triggers or publication removed or \
             disabled, or made partitioned or a partition, which observe does not follow): \
             {}; subscribe again to observe them as they are now",
            unreported.join(", ")
        )))
    }

    /// Whether a marker `nonce` is awaited.
    pub(super) fn awaits(&self, nonce: &str) -> bool {
        lock(&self.waiting).iter().any(|w| w.marker == nonce)
    }
}

impl Drop for Outlet {
    fn drop(&mut self) {
        // The connection was lost while the store lives, or before what was committed while it
        // lived was all delivered (the store gone, the listener flushing): what was committed
        // meanwhile will never be known, so the subscriptions end, saying so, rather than end
        // as if everything had been delivered. Before `alive` is cleared: a new listener,
        // started once it is, opens subscriptions this must not end. A listener that ended
        // well once the store was gone leaves them to end with the hub.
        if !self.store_is_gone() || self.lost.is_some() {
            let reason = self
                .lost
                .take()
                .unwrap_or_else(|| "the observe listener stopped".into());
            self.hub.lose_all(&reason);
        }
        self.alive.store(false, Ordering::SeqCst);
    }
}

#[derive(QueryableByName)]
pub(super) struct SnapshotText {
    #[diesel(sql_type = Text)]
    pub(super) snapshot: String,
}

/// Starts a listener on a thread of its own, named `thread_name` (as `ps` and debuggers show
/// it).
pub(super) fn start(thread_name: &str, listen: impl FnOnce() + Send + 'static) -> Result<()> {
    start_on(thread::Builder::new(), thread_name, listen)
}

fn start_on(
    builder: thread::Builder,
    thread_name: &str,
    listen: impl FnOnce() + Send + 'static,
) -> Result<()> {
    builder
        .name(thread_name.to_owned())
        .spawn(listen)
        .map(drop)
        .map_err(|source| Error::Thread {
            name: "observe listener",
            source,
        })
}

/// Why the listener cannot go on.
pub(super) fn connection_failed(e: impl std::fmt::Display) -> String {
    format!("the observe listener's connection failed: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_the_system_gives_no_thread_is_a_thread_error() {
        // A stack no system can map: the spawn itself fails.
        let refused = start_on(
            thread::Builder::new().stack_size(1 << 60),
            "datastore-test",
            || {},
        );
        match refused {
            Err(Error::Thread { name, source }) => {
                assert_eq!(name, "observe listener");
                assert!(source.raw_os_error().is_some(), "{source:?}");
            }
            other => panic!("expected Error::Thread, got {other:?}"),
        }

        let (started, ran) = std::sync::mpsc::channel();
        start("datastore-test", move || {
            started
                .send(thread::current().name().map(str::to_owned))
                .unwrap()
        })
        .unwrap();
        assert_eq!(ran.recv().unwrap().as_deref(), Some("datastore-test"));
    }
}
