//! Subscriptions as `futures::Stream`s. Reading one never blocks: the subscriber's queue in
//! the hub wakes the reading task when a commit reaches it (or the subscription ends), as it
//! wakes a blocked thread. Dropping a stream unsubscribes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::task::JoinHandle;

use super::joined;
use crate::model::Model;
use crate::observe::Retry;
use crate::observe::hub::{Item, Queue};
use crate::observe::{
    AllSubscription, Change, LiveSubscription, Observed, RowChange, Snapshot, Subscription,
};
use crate::persist::Persist;
use crate::repo::Repo;
use crate::{AnyConnection, Error, Result, Store};

/// Every committed change of a model (or those a filter keeps), as a stream: what
/// [`AsyncStore::observe`](super::AsyncStore::observe), `observe_where` and `observe_id`
/// return. The same items, in the same order, as the blocking [`Subscription`]: changes in
/// commit order, [`Observed::Missed`] where the buffer overflowed, [`Observed::FeedLost`] as
/// the last item if the feed is lost. It ends once the store is gone. Dropping it
/// unsubscribes.
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// use datastore::observe::{Observed, Op};
/// use futures_util::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> datastore::Result<()> {
/// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
/// let mut notes = store.observe::<Note>().await?;
/// let note = store.save(Note { text: "hi".into(), ..Note::default() }).await?;
/// store.delete(&note).await?;
/// let mut ops = Vec::new();
/// while let Some(Observed::Change(change)) = notes.next().await {
///     ops.push(change.op);
///     if ops.len() == 2 {
///         break;
///     }
/// }
/// assert_eq!(ops, [Op::Insert, Op::Delete]);
/// # Ok(())
/// # }
/// ```
pub struct ChangeStream<M> {
    subscription: Subscription<M>,
}

impl<M> fmt::Debug for ChangeStream<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeStream").finish_non_exhaustive()
    }
}

// Nothing in it is pinned.
impl<M> Unpin for ChangeStream<M> {}

impl<M: Model + Clone> ChangeStream<M> {
    pub(super) fn new(subscription: Subscription<M>) -> Self {
        Self { subscription }
    }

    /// The next change if one is waiting now, without waiting.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::observe::Observed;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let notes = store.observe::<Note>().await?;
    /// assert!(notes.try_next().is_none()); // nothing committed since it subscribed
    /// store.save(Note::default()).await?;
    /// assert!(matches!(notes.try_next(), Some(Observed::Change(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_next(&self) -> Option<Observed<Change<M>>> {
        self.subscription.try_recv()
    }
}

impl<M: Model + Clone> Stream for ChangeStream<M> {
    type Item = Observed<Change<M>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.subscription.poll_recv(cx)
    }
}

/// Every committed change of every table, as raw rows, as a stream: what
/// [`AsyncStore::observe_all`](super::AsyncStore::observe_all) returns. Dropping it
/// unsubscribes.
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// use datastore::observe::{Observed, RawValue};
/// use futures_util::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> datastore::Result<()> {
/// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
/// let mut everything = store.observe_all().await?;
/// store.save(Note { text: "hi".into(), ..Note::default() }).await?;
/// let Some(Observed::Change(row)) = everything.next().await else { panic!("a change") };
/// assert_eq!(row.table, "notes");
/// assert_eq!(row.values[1], RawValue::Text("hi".into()));
/// # Ok(())
/// # }
/// ```
pub struct AllChangeStream {
    subscription: AllSubscription,
}

impl fmt::Debug for AllChangeStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllChangeStream").finish_non_exhaustive()
    }
}

impl AllChangeStream {
    pub(super) fn new(subscription: AllSubscription) -> Self {
        Self { subscription }
    }
}

impl Stream for AllChangeStream {
    type Item = Observed<RowChange>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.subscription.poll_recv(cx)
    }
}

/// How a live query refines its model's query.
type Build<M> = Arc<
    dyn Fn(<M as Persist<AnyConnection>>::Query) -> <M as Persist<AnyConnection>>::Query
        + Send
        + Sync,
>;

/// A live query as a stream of snapshots: what
/// [`AsyncStore::observe_query`](super::AsyncStore::observe_query) returns. The result now,
/// then the new result after each committed change that alters it (changes committed while a
/// result is read come in the next one). After a failed read (a pool that timed out, a busy
/// database), the next poll reads again (a tenth of a second after the failure at the
/// soonest) and yields the result. [`Error::FeedLost`]
/// once if the feed is lost, then the end. Each result is read on a pooled connection, on
/// tokio's blocking pool. Dropping it unsubscribes.
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// use futures_util::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> datastore::Result<()> {
/// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
/// let mut all = store.observe_query::<Note>(|q| q.order(notes::text.asc())).await?;
/// assert!(all.next().await.unwrap()?.is_empty());
/// store.save(Note { text: "b".into(), ..Note::default() }).await?;
/// assert_eq!(all.next().await.unwrap()?.len(), 1);
/// store.save(Note { text: "a".into(), ..Note::default() }).await?;
/// let texts: Vec<String> = all.next().await.unwrap()?.into_iter().map(|n| n.text).collect();
/// assert_eq!(texts, ["a", "b"]);
/// # Ok(())
/// # }
/// ```
pub struct QueryStream<M: Persist<AnyConnection>> {
    store: Arc<Store>,
    queue: Arc<Queue>,
    build: Build<M>,
    last: Option<Vec<M>>,
    /// When the last read failed: the next waits a little.
    retry: Retry,
    reading: Option<JoinHandle<Result<Vec<M>>>>,
    ended: bool,
}

impl<M: Persist<AnyConnection>> fmt::Debug for QueryStream<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryStream")
            .field("model", &M::NAME)
            .finish_non_exhaustive()
    }
}

// Nothing in it is pinned: the rows are plain values, the read a `JoinHandle` (itself `Unpin`).
impl<M: Persist<AnyConnection>> Unpin for QueryStream<M> {}

impl<M: Persist<AnyConnection> + PartialEq + Clone> QueryStream<M> {
    pub(super) fn new(store: Arc<Store>, queue: Arc<Queue>, build: Build<M>) -> Self {
        Self {
            store,
            queue,
            build,
            last: None,
            retry: Retry::default(),
            reading: None,
            ended: false,
        }
    }

    fn read(&self) -> JoinHandle<Result<Vec<M>>> {
        let store = self.store.clone();
        let build = self.build.clone();
        let wait = self.retry.left();
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(wait);
            (*store.pooled()?).query::<M>(|q| build(q))
        })
    }
}

impl<M: Persist<AnyConnection> + PartialEq + Clone> Stream for QueryStream<M> {
    type Item = Result<Vec<M>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(reading) = &mut this.reading {
                let rows = match Pin::new(reading).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => joined(result),
                };
                this.reading = None;
                match rows {
                    Err(error) => {
                        // The changes taken off the queue are in no result handed out: the
                        // next poll reads again at once (as the first does), rather than wait
                        // for a commit that may never come; on a runtime that shut down no
                        // read can run again, and the stream ends.
                        this.last = None;
                        this.retry.failed();
                        this.ended |= matches!(error, Error::RuntimeShutdown);
                        return Poll::Ready(Some(Err(error)));
                    }
                    Ok(rows) if this.last.as_ref() != Some(&rows) => {
                        this.retry.succeeded();
                        this.last = Some(rows.clone());
                        return Poll::Ready(Some(Ok(rows)));
                    }
                    Ok(_) => {
                        this.retry.succeeded();
                        continue; // the change left the result as it was
                    }
                }
            }
            if this.ended {
                return Poll::Ready(None);
            }
            if this.last.is_some() {
                let first = match this.queue.poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => {
                        this.ended = true;
                        return Poll::Ready(None);
                    }
                    Poll::Ready(Some(item)) => item,
                };
                // Everything already committed is in the one new result.
                let lost = std::iter::once(first)
                    .chain(std::iter::from_fn(|| this.queue.try_next()))
                    .find_map(|item| match item {
                        Item::Lost(reason) => Some(reason),
                        Item::Changes(..) | Item::Missed(_) => None,
                    });
                if let Some(reason) = lost {
                    this.ended = true;
                    return Poll::Ready(Some(Err(Error::feed_lost(&reason))));
                }
            }
            this.reading = Some(this.read());
        }
    }
}

/// A live query over relations as a stream: what
/// [`LiveQuery::subscribe_async`](crate::observe::LiveQuery::subscribe_async) returns. The
/// result now, then the next different result after the committed transactions that changed
/// it, with the same guarantees as the blocking
/// [`LiveSubscription`](crate::observe::LiveSubscription) (each result is a committed state,
/// in commit order; a slow reader gets the latest result, not a queue of old ones). After a
/// failed read, the next poll reads the whole result again (a tenth of a second after the
/// failure at the soonest) and yields it.
/// [`Error::FeedLost`] once if the feed of changes is lost, then the end. Waiting for a change
/// never blocks: the hub wakes the task; each read runs on tokio's blocking pool. Dropping it
/// unsubscribes (once a read in flight has ended).
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Post, posts, Comment, comments};
/// use futures_util::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> datastore::Result<()> {
/// # let store = AsyncStore::builder(":memory:")
/// #     .schema(Schema::new().model::<Post>().model::<Comment>())
/// #     .open_async()
/// #     .await?;
/// let mut posts = store.live::<Post>().load(Post::COMMENTS).subscribe_async().await?;
/// assert!(posts.next().await.unwrap()?.is_empty());
/// let post = store.save(Post::default()).await?;
/// assert_eq!(posts.next().await.unwrap()?[0].comments.get().map(<[_]>::len), Some(0));
/// store.save(Comment { post_id: post.id, ..Comment::default() }).await?;
/// assert_eq!(posts.next().await.unwrap()?[0].comments.get().map(<[_]>::len), Some(1));
/// # Ok(())
/// # }
/// ```
pub struct LiveStream<M: Persist<AnyConnection>> {
    queue: Arc<Queue>,
    /// The subscription, while no read holds it.
    subscription: Option<LiveSubscription<M>>,
    /// The read in flight, which gives the subscription back with its result (`None`: the
    /// changes it handled left the result as it was).
    reading: Option<JoinHandle<Reading<M>>>,
    ended: bool,
}

type Reading<M> = (LiveSubscription<M>, Option<Result<Snapshot<M>>>);

impl<M: Persist<AnyConnection>> fmt::Debug for LiveStream<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveStream")
            .field("model", &M::NAME)
            .finish_non_exhaustive()
    }
}

// Nothing in it is pinned: the subscription is a plain value, the read a `JoinHandle`.
impl<M: Persist<AnyConnection>> Unpin for LiveStream<M> {}

impl<M: Persist<AnyConnection> + PartialEq + Clone> LiveStream<M> {
    pub(crate) fn new(subscription: LiveSubscription<M>) -> Self {
        Self {
            queue: subscription.queue().clone(),
            subscription: Some(subscription),
            reading: None,
            ended: false,
        }
    }

    /// How its results were made so far ([`LiveSubscription::stats`]); `None` while a read
    /// is in flight.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use futures_util::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let mut notes = store.live::<Note>().subscribe_async().await?;
    /// notes.next().await.unwrap()?;
    /// assert_eq!(notes.stats().map(|s| s.full), Some(1)); // the first result, read whole
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> Option<crate::observe::live::Stats> {
        self.subscription.as_ref().map(LiveSubscription::stats)
    }
}

impl<M: Persist<AnyConnection> + PartialEq + Clone> Stream for LiveStream<M> {
    type Item = Result<Snapshot<M>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(reading) = &mut this.reading {
                let (subscription, result) = match Pin::new(reading).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(read)) => read,
                    Poll::Ready(Err(error)) => {
                        this.reading = None;
                        this.ended = true;
                        return match error.try_into_panic() {
                            Ok(panic) => std::panic::resume_unwind(panic),
                            Err(_) => Poll::Ready(Some(Err(Error::RuntimeShutdown))),
                        };
                    }
                };
                this.reading = None;
                this.subscription = Some(subscription);
                match result {
                    Some(Err(error)) => {
                        this.ended |= matches!(error, Error::FeedLost { .. });
                        return Poll::Ready(Some(Err(error)));
                    }
                    Some(Ok(rows)) => return Poll::Ready(Some(Ok(rows))),
                    None => {} // the result is as it was: wait for the next change
                }
            }
            if this.ended {
                return Poll::Ready(None);
            }
            let Some(mut subscription) = this.subscription.take() else {
                return Poll::Ready(None);
            };
            // What the subscription has to do without waiting comes first (as in its
            // blocking `recv_timeout`): the first result, the whole result again after a
            // failed read, and the commits a partial refresh took from the queue after the
            // state it read, which the queue no longer holds, so would never wake this task
            // for.
            if !subscription.has_work() {
                match this.queue.poll_next(cx) {
                    Poll::Pending => {
                        this.subscription = Some(subscription);
                        return Poll::Pending;
                    }
                    Poll::Ready(None) => {
                        this.ended = true;
                        return Poll::Ready(None);
                    }
                    Poll::Ready(Some(item)) => subscription.hold(item),
                }
            }
            // Handles what it holds and whatever else is queued by then, without waiting.
            this.reading = Some(tokio::task::spawn_blocking(move || {
                // After a failed read, the next waits a little (see `Retry`).
                let result = subscription.recv_timeout(subscription.retry_left());
                (subscription, result)
            }));
        }
    }
}
