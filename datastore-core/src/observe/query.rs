//! `observe_query`: a query's current result, then its result again after each committed
//! change that alters it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::AnyConnection;

use super::hub::{self, Item};
use crate::Store;
use crate::persist::Persist;
use crate::repo::Repo;
use crate::{Error, Result};

type Build<M> = Box<
    dyn Fn(<M as Persist<AnyConnection>>::Query) -> <M as Persist<AnyConnection>>::Query
        + Send
        + Sync,
>;

/// The live result of a query: the rows now, then the rows again after every committed change
/// to the model's table that alters them (rows that start or stop matching, or change).
/// Iterate it (blocking), or poll it with [`recv_timeout`](Self::recv_timeout).
///
/// If its feed of changes is lost (on PostgreSQL, the store's listener lost its connection),
/// every call returns [`Error::FeedLost`] at once from then on, and the iterator yields it
/// once and ends: changes committed since may have been missed, so subscribe again.
///
/// ```
/// use std::time::Duration;
/// use datastore::prelude::*;
/// use datastore::Error;
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Task {
///     #[primary_key]
///     pub id: Id,
///     pub done: bool,
/// }
///
/// # fn main() -> datastore::Result<()> {
/// let store = Store::builder(":memory:").schema(Schema::new().model::<Task>()).open()?;
/// let mut open = store.observe_query::<Task>(|q| q.filter(tasks::done.eq(false)))?;
/// assert!(open.recv()?.is_empty()); // the result now
/// store.save(Task::default())?;
/// match open.recv_timeout(Duration::from_secs(5)) {
///     Some(Ok(tasks)) => assert_eq!(tasks.len(), 1), // the result after the commit
///     Some(Err(Error::FeedLost { .. })) => { /* read again, subscribe again */ }
///     Some(Err(e)) => return Err(e),
///     None => panic!("no new result in time"),
/// }
/// # Ok(())
/// # }
/// ```
pub struct QuerySubscription<M: Persist<AnyConnection>> {
    store: Store,
    queue: Arc<hub::Queue>,
    build: Build<M>,
    last: Option<Vec<M>>,
    /// When the last read failed: the next waits a little.
    retry: super::Retry,
    /// Why the feed was lost, once it was: every later call reports it.
    lost: Option<Arc<str>>,
    /// The iterator has yielded the loss.
    ended: bool,
}

impl<M: Persist<AnyConnection>> fmt::Debug for QuerySubscription<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuerySubscription")
            .field("model", &M::NAME)
            .finish_non_exhaustive()
    }
}

impl<M: Persist<AnyConnection> + PartialEq + Clone> QuerySubscription<M> {
    pub(crate) fn new(store: Store, queue: Arc<hub::Queue>, build: Build<M>) -> Self {
        Self {
            store,
            queue,
            build,
            last: None,
            retry: super::Retry::default(),
            lost: None,
            ended: false,
        }
    }

    /// The query's rows as committed: on a pooled connection, so that live queries read side
    /// by side; inside a `store.transaction` of the same store on this thread, on observe's own
    /// connection instead, never waiting for a pooled one (the transaction may hold the pool's
    /// only one) and never reading the transaction's uncommitted rows.
    fn run(&self) -> Result<Vec<M>> {
        if self.store.in_transaction_here() {
            return self
                .store
                .with_observe_conn(|conn| conn.query::<M>(|q| (self.build)(q)));
        }
        (*self.store.pooled()?).query::<M>(|q| (self.build)(q))
    }

    /// The first result at once; then the next different result, waiting at most `timeout`
    /// (`None` if the result did not change in that time). After a failed read (a pool that
    /// timed out, a busy database), the next call reads again and returns the result, as the
    /// first call does, once a tenth of a second has passed since the failure (waiting for it
    /// within `timeout`). [`Error::FeedLost`] at once, and on every later call, once the
    /// feed of changes is lost.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use std::time::Duration;
    ///
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let mut all = store.observe_query::<Note>(|q| q.order(notes::text.asc()))?;
    /// assert_eq!(all.recv_timeout(Duration::ZERO).expect("the first result at once")?, vec![]);
    /// assert!(all.recv_timeout(Duration::from_millis(10)).is_none()); // nothing changed
    /// store.save(Note::default())?;
    /// let rows = all.recv_timeout(Duration::from_secs(5)).expect("a new result")?;
    /// assert_eq!(rows.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Result<Vec<M>>> {
        if let Some(reason) = &self.lost {
            return Some(Err(Error::feed_lost(reason)));
        }
        if self.last.is_none() {
            if !self.retry.wait(timeout) {
                return None;
            }
            return Some(self.refresh());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // `None` only when the time is up: the queue ends otherwise only once its loss was
            // told (an item), since this subscription holds the store, and so its hub.
            let first = self.queue.next(Some(left))?;
            // Everything already committed is in this one new result.
            let mut items = std::iter::once(first)
                .chain(std::iter::from_fn(|| self.queue.next(Some(Duration::ZERO))));
            let lost = items.find_map(|item| match item {
                Item::Lost(reason) => Some(reason),
                Item::Changes(..) | Item::Missed(_) => None,
            });
            drop(items);
            if let Some(reason) = lost {
                let error = Error::feed_lost(&reason);
                self.lost = Some(reason);
                return Some(Err(error));
            }
            let rows = match self.run() {
                Ok(rows) => rows,
                Err(e) => {
                    // The changes taken off the queue are not in any result handed out: the
                    // next call reads again (once a little time has passed), as the first call
                    // does, rather than wait for a commit that may never come.
                    self.last = None;
                    self.retry.failed();
                    return Some(Err(e));
                }
            };
            if self.last.as_ref() != Some(&rows) {
                self.last = Some(rows.clone());
                return Some(Ok(rows));
            }
        }
    }

    /// The first result at once; then the next different result, waiting for it.
    /// [`Error::FeedLost`] at once, and on every later call, once the feed of changes is lost.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let mut all = store.observe_query::<Note>(|q| q)?;
    /// assert!(all.recv()?.is_empty());
    /// let writer = store.clone();
    /// std::thread::spawn(move || writer.save(Note { text: "later".into(), ..Note::default() }));
    /// assert_eq!(all.recv()?[0].text, "later"); // waits for the commit
    /// # Ok(())
    /// # }
    /// ```
    pub fn recv(&mut self) -> Result<Vec<M>> {
        loop {
            if let Some(result) = self.recv_timeout(Duration::from_secs(3600)) {
                return result;
            }
        }
    }

    fn refresh(&mut self) -> Result<Vec<M>> {
        let rows = self.run().inspect_err(|_| self.retry.failed())?;
        self.retry.succeeded();
        self.last = Some(rows.clone());
        Ok(rows)
    }
}

impl<M: Persist<AnyConnection> + PartialEq + Clone> Iterator for QuerySubscription<M> {
    type Item = Result<Vec<M>>;

    /// Blocks until the next different result; yields [`Error::FeedLost`] once if the feed of
    /// changes is lost, and ends after it.
    fn next(&mut self) -> Option<Result<Vec<M>>> {
        if self.ended {
            return None;
        }
        let result = self.recv();
        self.ended = matches!(result, Err(Error::FeedLost { .. }));
        Some(result)
    }
}
