//! `observe_query`: a query's current result, then its result again after each committed
//! change that alters it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::AnyConnection;

use super::hub::{self, Item};
use crate::persist::Persist;
use crate::Result;
use crate::Store;

type Build<M> = Box<
    dyn Fn(<M as Persist<AnyConnection>>::Query) -> <M as Persist<AnyConnection>>::Query
        + Send
        + Sync,
>;

/// The live result of a query: the rows now, then the rows again after every committed change
/// to the model's table that alters them (rows that start or stop matching, or change).
/// Iterate it (blocking), or poll it with [`recv_timeout`](Self::recv_timeout).
pub struct QuerySubscription<M: Persist<AnyConnection>> {
    store: Store,
    queue: Arc<hub::Queue>,
    build: Build<M>,
    last: Option<Vec<M>>,
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
        }
    }

    fn run(&self) -> Result<Vec<M>> {
        self.store.query::<M>(|q| (self.build)(q))
    }

    /// The first result at once; then the next different result, waiting at most `timeout`
    /// (`None` if the result did not change in that time).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Result<Vec<M>>> {
        if self.last.is_none() {
            return Some(self.refresh());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.queue.next(Some(left))?;
            // Everything already committed is in this one new result.
            while let Some(Item::Change(..) | Item::Missed(_)) =
                self.queue.next(Some(Duration::ZERO))
            {}
            let rows = match self.run() {
                Ok(rows) => rows,
                Err(e) => return Some(Err(e)),
            };
            if self.last.as_ref() != Some(&rows) {
                self.last = Some(rows.clone());
                return Some(Ok(rows));
            }
        }
    }

    /// The first result at once; then the next different result, waiting for it.
    pub fn recv(&mut self) -> Result<Vec<M>> {
        loop {
            if let Some(result) = self.recv_timeout(Duration::from_secs(3600)) {
                return result;
            }
        }
    }

    fn refresh(&mut self) -> Result<Vec<M>> {
        let rows = self.run()?;
        self.last = Some(rows.clone());
        Ok(rows)
    }
}

impl<M: Persist<AnyConnection> + PartialEq + Clone> Iterator for QuerySubscription<M> {
    type Item = Result<Vec<M>>;

    /// Blocks until the next different result; never ends.
    fn next(&mut self) -> Option<Result<Vec<M>>> {
        Some(self.recv())
    }
}
