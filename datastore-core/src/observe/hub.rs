//! The store's hub: committed changes from every connection, put in commit order and fanned
//! out to the subscribers' bounded queues. Writers never wait for a subscriber.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};
use std::task::Waker;
#[cfg(feature = "async")]
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::Batch;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
pub(crate) struct Hub {
    /// Subscribers observing every table.
    all_tables: AtomicUsize,
    /// Subscribers per observed table.
    tables: RwLock<HashMap<String, usize>>,
    /// How many subscribers observe one table (the sum of `tables`), read without a lock.
    observed_tables: AtomicUsize,
    /// How many queues are open (a queue of several tables counts once).
    queues: AtomicUsize,
    /// Bumped whenever a subscription starts or ends.
    generation: AtomicU64,
    subscribers: Mutex<Vec<Weak<Queue>>>,
    next_seq: AtomicU64,
    order: Mutex<Reorder>,
    /// Signalled whenever commits were delivered (see [`Hub::wait_delivered`]).
    delivered: Condvar,
    /// SQLite: bumped whenever a connection of the store may read some table's columns
    /// otherwise than before (see `ConnObserver`'s schema watch). Rows carry the epoch they
    /// were captured in.
    schema_epoch: AtomicU64,
    /// The schema cookie (`PRAGMA schema_version`) that recent epochs are known to have.
    epoch_cookies: Mutex<VecDeque<(u64, i64)>>,
}

#[derive(Default)]
struct Reorder {
    /// The next sequence number to deliver.
    next: u64,
    /// Commits that arrived before an earlier one: `None` for a commit that failed.
    waiting: BTreeMap<u64, Option<Arc<Batch>>>,
}

impl Hub {
    /// Whether changes to `table` are worth capturing (someone observes it).
    /// Changes whenever a subscription starts or ends, so that connections can cache `wants`.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Whether anyone subscribes (read without a lock).
    pub fn active(&self) -> bool {
        self.observed_tables.load(Ordering::Relaxed) > 0
            || self.all_tables.load(Ordering::Relaxed) > 0
    }

    pub fn wants(&self, table: &str) -> bool {
        if !self.active() {
            return false; // the common case, without a lock
        }
        if self.all_tables.load(Ordering::Relaxed) > 0 {
            return !table.starts_with("sqlite_") && !table.starts_with("__diesel");
        }
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
        !tables.is_empty() && tables.contains_key(table)
    }

    /// The current schema epoch.
    pub fn schema_epoch(&self) -> u64 {
        self.schema_epoch.load(Ordering::SeqCst)
    }

    /// A connection may now read some table's columns otherwise than before: a new epoch.
    pub fn schema_changed(&self) {
        self.schema_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// A new connection loaded the schema whose cookie is `cookie`: the epoch goes on if it
    /// is the current epoch's, else a new one begins (whose cookie is not known yet).
    pub fn schema_loaded(&self, cookie: i64) {
        let cookies = lock(&self.epoch_cookies);
        let epoch = self.schema_epoch();
        if !cookies.contains(&(epoch, cookie)) {
            self.schema_changed();
        }
    }

    /// Every row captured in `epoch` is in the columns of the schema whose cookie is
    /// `cookie` (a catalog read while that epoch lasted tells so).
    pub fn learn_cookie(&self, epoch: u64, cookie: i64) {
        let mut cookies = lock(&self.epoch_cookies);
        if !cookies.iter().any(|&(e, _)| e == epoch) {
            if cookies.len() == 64 {
                cookies.pop_front();
            }
            cookies.push_back((epoch, cookie));
        }
    }

    /// The schema cookie of `epoch`, if known.
    pub fn cookie_of(&self, epoch: u64) -> Option<i64> {
        lock(&self.epoch_cookies)
            .iter()
            .find(|&&(e, _)| e == epoch)
            .map(|&(_, cookie)| cookie)
    }

    /// A sequence number for a commit, taken inside the commit (SQLite commits one at a time).
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::SeqCst)
    }

    /// Delivers a commit's changes once every earlier commit was delivered.
    pub fn publish(&self, seq: u64, changes: Batch) {
        self.settle(seq, Some(Arc::new(changes)));
    }

    /// Skips a sequence number whose commit failed.
    pub fn void(&self, seq: u64) {
        self.settle(seq, None);
    }

    fn settle(&self, seq: u64, changes: Option<Arc<Batch>>) {
        let mut order = lock(&self.order);
        order.waiting.insert(seq, changes);
        loop {
            let next = order.next;
            let Some(ready) = order.waiting.remove(&next) else {
                break;
            };
            order.next += 1;
            if let Some(changes) = ready {
                self.fan_out(changes);
            }
        }
        drop(order);
        self.delivered.notify_all();
    }

    /// A fence: every commit that took its sequence number before this call (SQLite takes it
    /// in the commit hook, before the commit is visible to any reader) is numbered below the
    /// value returned.
    pub fn fence(&self) -> u64 {
        self.next_seq.load(Ordering::SeqCst)
    }

    /// Waits until every commit numbered below `fence` was handed to the queues (or voided);
    /// false if that took longer than `timeout`.
    pub fn wait_delivered(&self, fence: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut order = lock(&self.order);
        while order.next < fence {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            order = self
                .delivered
                .wait_timeout(order, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Hands a commit's changes to every interested queue: one lock and one wake-up per queue
    /// and commit, however many rows the commit changed.
    fn fan_out(&self, batch: Arc<Batch>) {
        let mut subscribers = lock(&self.subscribers);
        subscribers.retain(|s| s.strong_count() > 0);
        let queues: Vec<Arc<Queue>> = subscribers.iter().filter_map(Weak::upgrade).collect();
        drop(subscribers);
        for queue in &queues {
            let wanted = batch
                .changes
                .iter()
                .enumerate()
                .filter(|(_, c)| queue.wants(&c.table))
                .map(|(i, _)| i);
            queue.push_all(&batch, wanted);
        }
    }

    /// How many subscriptions are live.
    pub fn subscriptions(&self) -> usize {
        self.queues.load(Ordering::SeqCst)
    }

    /// A new subscriber's queue: every table's changes (`None`), or those of some tables.
    pub fn subscribe(self: &Arc<Self>, tables: Option<&[String]>, capacity: usize) -> Arc<Queue> {
        let queue = Arc::new(Queue {
            hub: Arc::downgrade(self),
            tables: tables.map(<[String]>::to_vec),
            capacity: capacity.max(1),
            inner: Mutex::new(QueueInner::default()),
            ready: Condvar::new(),
        });
        match tables {
            Some(wanted) => {
                let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
                for t in wanted {
                    *tables.entry(t.clone()).or_default() += 1;
                    self.observed_tables.fetch_add(1, Ordering::SeqCst);
                }
            }
            None => {
                self.all_tables.fetch_add(1, Ordering::SeqCst);
            }
        }
        lock(&self.subscribers).push(Arc::downgrade(&queue));
        self.queues.fetch_add(1, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        queue
    }

    fn unsubscribe(&self, tables: Option<&[String]>) {
        self.queues.fetch_sub(1, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        match tables {
            Some(wanted) => {
                let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
                for t in wanted {
                    if let Some(count) = tables.get_mut(t) {
                        *count -= 1;
                        self.observed_tables.fetch_sub(1, Ordering::SeqCst);
                        if *count == 0 {
                            tables.remove(t);
                        }
                    }
                }
            }
            None => {
                self.all_tables.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

/// One subscriber's bounded queue.
pub(crate) struct Queue {
    hub: Weak<Hub>,
    /// The tables whose changes it receives (every table's for `None`).
    tables: Option<Vec<String>>,
    capacity: usize,
    inner: Mutex<QueueInner>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueInner {
    /// Why nothing more will come, once that is so.
    end: Option<End>,
    /// Changes, and gaps where changes were dropped, in the order they happened.
    entries: VecDeque<Entry>,
    /// How many of `entries` are changes (what the capacity bounds).
    changes: usize,
    /// The task of an async subscriber waiting for the next item (`poll_next`), woken by
    /// whatever ends its wait, as a blocked thread is by the condition variable.
    waker: Option<Waker>,
}

enum Entry {
    /// The change at this index of the batch.
    Change(Arc<Batch>, usize),
    /// This many changes were dropped here, the queue being full.
    Gap(u64),
}

/// Why a queue receives nothing more.
enum End {
    /// The hub is gone (the store and all its connections): everything committed was
    /// delivered.
    Closed,
    /// The source of changes was lost (PostgreSQL's listener): what was committed since may
    /// never arrive. Told to the subscriber once, after what the queue holds.
    Lost(Arc<str>),
}

/// What a queue yields.
pub(crate) enum Item {
    /// The change at this index of the batch.
    Change(Arc<Batch>, usize),
    Missed(u64),
    /// The source of changes was lost; nothing follows.
    Lost(Arc<str>),
}

impl Queue {
    fn wants(&self, table: &str) -> bool {
        self.tables
            .as_ref()
            .is_none_or(|tables| tables.iter().any(|t| t == table))
    }

    fn push_all(&self, batch: &Arc<Batch>, changes: impl Iterator<Item = usize>) {
        let mut inner = lock(&self.inner);
        let mut pushed = false;
        for change in changes {
            pushed = true;
            if inner.changes >= self.capacity {
                match inner.entries.back_mut() {
                    Some(Entry::Gap(missed)) => *missed += 1,
                    _ => inner.entries.push_back(Entry::Gap(1)),
                }
            } else {
                inner
                    .entries
                    .push_back(Entry::Change(batch.clone(), change));
                inner.changes += 1;
            }
        }
        let waker = if pushed { inner.waker.take() } else { None };
        drop(inner);
        if pushed {
            self.ready.notify_all();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn pop(inner: &mut QueueInner) -> Option<Item> {
        match inner.entries.pop_front() {
            Some(Entry::Gap(missed)) => Some(Item::Missed(missed)),
            Some(Entry::Change(batch, index)) => {
                inner.changes -= 1;
                Some(Item::Change(batch, index))
            }
            // Told once; the queue is simply ended afterwards.
            None => match inner.end.take() {
                Some(End::Lost(reason)) => {
                    inner.end = Some(End::Closed);
                    Some(Item::Lost(reason))
                }
                end => {
                    inner.end = end;
                    None
                }
            },
        }
    }

    /// The next item if there is one, without waiting: `Ready(None)` once the queue has ended;
    /// `Pending` otherwise, `cx`'s task to be woken when an item arrives or the queue ends.
    /// What an async subscriber reads with: no thread waits.
    #[cfg(feature = "async")]
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let mut inner = lock(&self.inner);
        if let Some(item) = Self::pop(&mut inner) {
            return Poll::Ready(Some(item));
        }
        if inner.end.is_some() {
            return Poll::Ready(None);
        }
        match &mut inner.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next item if one is queued now (or the loss, once told), without waiting.
    #[cfg(feature = "async")]
    pub fn try_next(&self) -> Option<Item> {
        Self::pop(&mut lock(&self.inner))
    }

    /// The next item, waiting at most `timeout` (forever when `None`); `None` when the time
    /// is up or the queue has ended (what it held was taken, a loss told).
    pub fn next(&self, timeout: Option<Duration>) -> Option<Item> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut inner = lock(&self.inner);
        loop {
            if let Some(item) = Self::pop(&mut inner) {
                return Some(item);
            }
            if inner.end.is_some() {
                return None;
            }
            inner = match deadline {
                None => self.ready.wait(inner).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline
                        .checked_duration_since(Instant::now())
                        .filter(|d| !d.is_zero())?;
                    self.ready
                        .wait_timeout(inner, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

impl Hub {
    /// Ends every current subscription, its source of changes being lost (`reason`): each
    /// yields what it holds, then [`Item::Lost`], then ends. Later subscriptions are not
    /// affected.
    pub fn lose_all(&self, reason: &str) {
        self.end_all(|| End::Lost(reason.into()));
    }

    fn end_all(&self, end: impl Fn() -> End) {
        let subscribers = std::mem::take(&mut *lock(&self.subscribers));
        for queue in subscribers.iter().filter_map(Weak::upgrade) {
            let mut inner = lock(&queue.inner);
            inner.end.get_or_insert_with(&end);
            let waker = inner.waker.take();
            drop(inner);
            queue.ready.notify_all();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

impl Drop for Hub {
    /// The store and all its connections are gone: wake every subscriber, for good.
    fn drop(&mut self) {
        self.end_all(|| End::Closed);
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.unsubscribe(self.tables.as_deref());
        }
    }
}
