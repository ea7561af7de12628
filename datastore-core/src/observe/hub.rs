//! The store's hub: committed changes from every connection, put in commit order and fanned
//! out to the subscribers' bounded queues. Writers never wait for a subscriber.

use std::any::TypeId;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock, Weak};
use std::task::Waker;
#[cfg(feature = "async")]
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{Batch, NameCase};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SQLite's own tables and Diesel's migration bookkeeping: never observed.
pub(crate) fn internal_table(name: &[u8]) -> bool {
    name.starts_with(b"sqlite_") || name.starts_with(b"__diesel")
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
    /// Held while a subscription changes the counts above (see [`Hub::subscribe`]).
    activity: Mutex<()>,
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
    /// How the database compares tables' names: on SQLite a subscription of `memos`
    /// receives the changes of the table its schema holds as `Memos`.
    name_case: NameCase,
}

#[derive(Default)]
struct Reorder {
    /// The next sequence number to deliver.
    next: u64,
    /// Commits that arrived before an earlier one: `None` for a commit that failed.
    waiting: BTreeMap<u64, Option<Arc<Batch>>>,
}

impl Hub {
    /// The hub of a SQLite database, whose table names compare without regard to ASCII case.
    pub fn sqlite() -> Self {
        let mut hub = Self::default();
        hub.name_case = NameCase::IgnoreAscii;
        hub
    }

    /// Whether changes to `table` are worth capturing (someone observes it).
    /// Changes whenever a subscription starts or ends, so that connections can cache `wants`.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Whether anyone subscribes (read without a lock). A connection that finds so reads the
    /// schema epoch [`Hub::subscribe`] began before it counted the subscriber (acquire loads).
    pub fn active(&self) -> bool {
        self.observed_tables.load(Ordering::Acquire) > 0
            || self.all_tables.load(Ordering::Acquire) > 0
    }

    /// Whether anyone observes the SQLite table its hooks report as `table`, the name as the
    /// schema holds it (`Posts` for a table created so): a subscription of every table, or one
    /// of a name that differs at most in ASCII case (`posts`), SQLite naming tables without
    /// regard to it. Its changes carry the name reported, whoever subscribes (each queue
    /// picks them out the same way: [`Queue::wants`]). Asked once per table and change of
    /// subscriptions, never per row.
    pub fn observes_sqlite_table(&self, table: &str) -> bool {
        if !self.active() {
            return false;
        }
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
        tables
            .keys()
            .any(|known| NameCase::IgnoreAscii.same(known, table))
            || (self.all_tables.load(Ordering::Relaxed) > 0 && !internal_table(table.as_bytes()))
    }

    pub fn wants(&self, table: &str) -> bool {
        if !self.active() {
            return false; // the common case, without a lock
        }
        if self.all_tables.load(Ordering::Relaxed) > 0 {
            return !internal_table(table.as_bytes());
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

    /// Hands a commit's changes to every interested queue: one lock, one entry and one
    /// wake-up per queue and commit, however many rows the commit changed. The queues whose
    /// reader decodes rows into a model are counted first, by model, so that a model's
    /// readers decode each row once between them (see `shared`). A commit's gap (rows no
    /// subscriber was given) goes to every queue, after its changes: which tables those rows
    /// were in is not known.
    fn fan_out(&self, batch: Arc<Batch>) {
        let mut subscribers = lock(&self.subscribers);
        subscribers.retain(|s| s.strong_count() > 0);
        let receiving: Vec<(Arc<Queue>, Option<Indices>)> = subscribers
            .iter()
            .filter_map(Weak::upgrade)
            .map(|queue| {
                let indices = queue.wanted(&batch);
                (queue, indices)
            })
            .filter(|(_, indices)| indices.is_some() || batch.gap > 0)
            .collect();
        drop(subscribers);
        // A queue that keeps a copy of its few changes reads that copy, not the batch.
        let decoding = receiving.iter().filter(|(_, indices)| {
            indices
                .as_ref()
                .is_some_and(|indices| !keeps_too_much(batch.changes.len(), indices.len()))
        });
        if decoding.clone().count() > 1 {
            let models = decoding.filter_map(|(queue, _)| queue.model.get());
            batch.shared.count_readers(models.copied());
        }
        for (queue, indices) in receiving {
            queue.push(&batch, indices, batch.gap);
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
            name_case: self.name_case,
            capacity: capacity.max(1),
            unread: Arc::default(),
            inner: Mutex::new(QueueInner::default()),
            ready: Condvar::new(),
            left: AtomicBool::new(false),
            task_waits: AtomicBool::new(false),
            model: OnceLock::new(),
        });
        // While nobody observed, the connections did not watch for schema changes made by
        // others (see `ConnObserver`'s schema watch): rows captured from now on belong to a
        // new epoch, whose columns are read anew. Begun before the subscriber is counted, so
        // that a connection which sees it counted sees the new epoch too; and only by the
        // first subscriber (under `activity`, which orders it with the last one's leaving), so
        // that subscriptions coming and going do not open epochs whose columns nobody read.
        let activity = lock(&self.activity);
        if !self.active() {
            self.schema_changed();
        }
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
        drop(activity);
        let mut subscribers = lock(&self.subscribers);
        // The queues dropped since the last commit went out (which prunes them too), so that
        // subscriptions that come and go on a store nobody writes to leave nothing behind.
        subscribers.retain(|s| s.strong_count() > 0);
        subscribers.push(Arc::downgrade(&queue));
        drop(subscribers);
        self.queues.fetch_add(1, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        queue
    }

    fn unsubscribe(&self, tables: Option<&[String]>) {
        let _activity = lock(&self.activity);
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
    /// How its tables' names match a change's (the hub's).
    name_case: NameCase,
    capacity: usize,
    /// Changes taken from the queue and not read yet (a [`Run`] being read): they count
    /// against the capacity, as queued changes do.
    unread: Arc<AtomicUsize>,
    inner: Mutex<QueueInner>,
    ready: Condvar,
    /// Whether the hub no longer counts it: set when its reader (the subscription) is
    /// dropped, or when the queue is, whichever comes first. A publisher may hold the queue a
    /// moment longer; the count is exact as soon as the subscription is gone.
    left: AtomicBool,
    /// A task waits for an item: its waker is set (see [`Queue::register`]).
    task_waits: AtomicBool,
    /// The model its reader decodes rows into, if it does (see [`Queue::decodes`]).
    model: OnceLock<TypeId>,
}

#[derive(Default)]
struct QueueInner {
    /// Why nothing more will come, once that is so.
    end: Option<End>,
    /// Changes, and gaps where changes were dropped, in the order they happened.
    entries: VecDeque<Entry>,
    /// How many of `entries` are changes (what the capacity bounds, with `Queue::unread`).
    changes: usize,
    /// The task of an async subscriber waiting for the next item (`poll_next`), woken by
    /// whatever ends its wait, as a blocked thread is by the condition variable.
    waker: Option<Waker>,
    /// How many times a [`Reader`] passed on changes it had taken ([`Queue::pass_on`]).
    passed_on: u64,
}

impl QueueInner {
    /// Whether a reader that found the queue empty when changes had been passed on
    /// `passed_on` times has something to look at now: an item, the end, or changes another
    /// reader passed on since.
    fn has_news(&self, passed_on: u64) -> bool {
        !self.entries.is_empty() || self.end.is_some() || self.passed_on != passed_on
    }
}

enum Entry {
    /// These changes of a commit.
    Changes(Arc<Batch>, Indices),
    /// This many changes were dropped here, the queue being full.
    Gap(u64),
}

/// Which changes of a commit's batch a queue holds, in commit order: all of a run of them (the
/// common case: a subscriber of every table, or a commit that changed only tables it
/// observes), or some picked out.
#[derive(Debug, Clone)]
pub(crate) enum Indices {
    Run(Range<usize>),
    Picked(std::vec::IntoIter<usize>),
}

impl Iterator for Indices {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match self {
            Indices::Run(run) => run.next(),
            Indices::Picked(picked) => picked.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Indices::Run(run) => run.size_hint(),
            Indices::Picked(picked) => picked.size_hint(),
        }
    }
}

impl ExactSizeIterator for Indices {}

impl Indices {
    /// Keeps the first `n`.
    fn truncate(&mut self, n: usize) {
        match self {
            Indices::Run(run) => run.end = run.end.min(run.start + n),
            Indices::Picked(picked) => {
                let kept: Vec<usize> = picked.by_ref().take(n).collect();
                *picked = kept.into_iter();
            }
        }
    }
}

/// Changes of one commit taken from a queue: read one by one as an iterator of their indices
/// in the batch. Until read (or dropped), they count against the queue's capacity, so that a
/// subscriber holds at most that many changes, taken or queued.
pub(crate) struct Run {
    pub batch: Arc<Batch>,
    indices: Indices,
    unread: Arc<AtomicUsize>,
}

impl Run {
    /// The indices of the changes not read yet, without reading them.
    pub fn indices(&self) -> Indices {
        self.indices.clone()
    }
}

impl Iterator for Run {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let i = self.indices.next()?;
        self.unread.fetch_sub(1, Ordering::AcqRel);
        Some(i)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.unread.fetch_sub(self.indices.len(), Ordering::AcqRel);
    }
}

/// Whether a queue holding `held` of a commit's `changes` would keep too many rows it never
/// delivers by holding the whole commit: a subscriber of one table, behind, with commits
/// that mostly write others, would otherwise keep whole commits for a change each, its
/// memory bounded by the commits' sizes rather than by its capacity. It keeps a copy of its
/// own changes instead where the commit holds more than twice as many and 16 more: a queue
/// then keeps at most 2 x its capacity + 16 x its entries of changes. Small commits, and
/// commits it takes most of, stay shared with the other subscribers (with their rows decoded
/// once between a model's subscribers: see `shared`).
fn keeps_too_much(changes: usize, held: usize) -> bool {
    changes > 2 * held + 16
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
    /// Changes of a commit, in order.
    Changes(Run),
    Missed(u64),
    /// The source of changes was lost; nothing follows.
    Lost(Arc<str>),
}

impl Queue {
    /// Its reader decodes rows into `model` (a [`TypeId`]): the hub counts it among the
    /// model's readers of each commit from now on.
    pub fn decodes(&self, model: TypeId) {
        let _ = self.model.set(model);
    }

    /// Whether it receives the changes of `table`, named as the database's schema holds the
    /// name: on SQLite, whatever the ASCII case of either name (`memos` receives `Memos`).
    fn wants(&self, table: &str) -> bool {
        self.tables
            .as_ref()
            .is_none_or(|tables| tables.iter().any(|t| self.name_case.same(t, table)))
    }

    /// The changes of `batch` the queue receives, if any.
    fn wanted(&self, batch: &Batch) -> Option<Indices> {
        let changes = &batch.changes;
        let all = 0..changes.len();
        // A transaction's changes of one table share its name (`Arc`): asked once per run.
        let mut last: Option<&Arc<str>> = None;
        if self.tables.is_none()
            || changes.iter().all(|c| {
                let same = last.is_some_and(|last| Arc::ptr_eq(last, &c.table));
                last = Some(&c.table);
                same || self.wants(&c.table)
            })
        {
            return (!all.is_empty()).then_some(Indices::Run(all));
        }
        let mut last: Option<(&Arc<str>, bool)> = None;
        let picked: Vec<usize> = all
            .filter(|&i| {
                let table = &changes[i].table;
                match last {
                    Some((last, wanted)) if Arc::ptr_eq(last, table) => wanted,
                    _ => {
                        let wanted = self.wants(table);
                        last = Some((table, wanted));
                        wanted
                    }
                }
            })
            .collect();
        (!picked.is_empty()).then(|| Indices::Picked(picked.into_iter()))
    }

    /// Queues changes of a commit: as many as the capacity leaves room for, then a gap
    /// counting the others and the commit's `unseen` rows.
    fn push(&self, batch: &Arc<Batch>, indices: Option<Indices>, unseen: u64) {
        let mut inner = lock(&self.inner);
        let mut dropped = unseen;
        if let Some(mut indices) = indices {
            let count = indices.len();
            let held = inner.changes + self.unread.load(Ordering::Acquire);
            let room = self.capacity.saturating_sub(held).min(count);
            if room > 0 {
                indices.truncate(room);
                let entry = if keeps_too_much(batch.changes.len(), room) {
                    Entry::Changes(Arc::new(batch.pick(indices)), Indices::Run(0..room))
                } else {
                    Entry::Changes(batch.clone(), indices)
                };
                inner.entries.push_back(entry);
                inner.changes += room;
            }
            dropped += (count - room) as u64;
        }
        if dropped > 0 {
            match inner.entries.back_mut() {
                Some(Entry::Gap(missed)) => *missed += dropped,
                _ => inner.entries.push_back(Entry::Gap(dropped)),
            }
        }
        self.wake_readers(inner);
    }

    fn pop(&self, inner: &mut QueueInner) -> Option<Item> {
        match inner.entries.pop_front() {
            Some(Entry::Gap(missed)) => Some(Item::Missed(missed)),
            Some(Entry::Changes(batch, indices)) => {
                inner.changes -= indices.len();
                self.unread.fetch_add(indices.len(), Ordering::AcqRel);
                Some(Item::Changes(Run {
                    batch,
                    indices,
                    unread: self.unread.clone(),
                }))
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
        loop {
            match self.take_now() {
                Found::Item(item) => return Poll::Ready(Some(item)),
                Found::Ended => return Poll::Ready(None),
                Found::Empty(passed_on) => {
                    if self.register(cx, passed_on) {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// The next item if one is queued now (or the loss, once told), without waiting.
    #[cfg(feature = "async")]
    pub fn try_next(&self) -> Option<Item> {
        self.pop(&mut lock(&self.inner))
    }

    /// The next item, waiting at most `timeout` (forever when `None`); `None` when the time
    /// is up or the queue has ended (what it held was taken, a loss told).
    pub fn next(&self, timeout: Option<Duration>) -> Option<Item> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            match self.take_now() {
                Found::Item(item) => return Some(item),
                Found::Ended => return None,
                Found::Empty(passed_on) => {
                    if !self.wait(deadline, passed_on) {
                        return None;
                    }
                }
            }
        }
    }

    /// The next item if one is queued now, or that the queue has ended; otherwise how many
    /// times a [`Reader`] passed on changes it had taken so far (see [`Queue::wait`]).
    fn take_now(&self) -> Found {
        let mut inner = lock(&self.inner);
        match self.pop(&mut inner) {
            Some(item) => Found::Item(item),
            None if inner.end.is_some() => Found::Ended,
            None => Found::Empty(inner.passed_on),
        }
    }

    /// Waits until an item is queued, the queue ends, or a reader passed on changes it had
    /// taken ([`Queue::pass_on`]) since [`take_now`](Self::take_now) found `passed_on`; at most
    /// until `deadline`. Whether it was woken (`false`: the time is up).
    fn wait(&self, deadline: Option<Instant>, passed_on: u64) -> bool {
        let mut inner = lock(&self.inner);
        loop {
            if inner.has_news(passed_on) {
                return true;
            }
            inner = match deadline {
                None => self.ready.wait(inner).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let Some(left) = deadline
                        .checked_duration_since(Instant::now())
                        .filter(|d| !d.is_zero())
                    else {
                        return false;
                    };
                    self.ready
                        .wait_timeout(inner, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// [`wait`](Self::wait) for a task: `cx`'s task is woken by whatever would end the wait,
    /// unless that happened already (`false`: look again).
    #[cfg(feature = "async")]
    fn register(&self, cx: &mut Context<'_>, passed_on: u64) -> bool {
        let mut inner = lock(&self.inner);
        if inner.has_news(passed_on) {
            return false;
        }
        match &mut inner.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        self.task_waits.store(true, Ordering::SeqCst);
        true
    }

    /// Whether a task waits for this queue ([`register`](Self::register)), read without the
    /// lock.
    fn task_waits(&self) -> bool {
        self.task_waits.load(Ordering::SeqCst)
    }

    /// Wakes whoever waits for an item: a reader left changes it had taken for them.
    fn pass_on(&self) {
        let mut inner = lock(&self.inner);
        inner.passed_on += 1;
        self.wake_readers(inner);
    }

    /// Unlocks the queue, then wakes whoever waits for it: the threads on its condition
    /// variable and the task whose waker is set.
    fn wake_readers(&self, mut inner: MutexGuard<'_, QueueInner>) {
        let waker = inner.waker.take();
        if waker.is_some() {
            self.task_waits.store(false, Ordering::SeqCst);
        }
        drop(inner);
        self.ready.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// What a queue holds for its reader now.
enum Found {
    Item(Item),
    /// The queue has ended, and what it held was taken.
    Ended,
    /// Nothing: how many times changes were passed on so far ([`Queue::take_now`]).
    Empty(u64),
}

/// A queue read one change at a time, as subscriptions hand changes out: the commits taken
/// from the queue and not yet read through are kept here, so that the queue's lock (which the
/// writer publishing a commit takes too) is taken once per commit, not once per change.
///
/// Several threads may read one subscription: each reads under the lock of what was taken,
/// locked before the queue's and never after, so that they hand out its items in the queue's
/// order (gaps and losses included), while a writer, which takes the queue's lock alone,
/// never waits for a reader (whose `accept` decodes rows and runs the subscriber's filter).
pub(crate) struct Reader {
    queue: Arc<Queue>,
    taken: Mutex<VecDeque<Run>>,
    /// Threads waiting for the queue: a reader that leaves changes it took wakes them.
    waiting: AtomicUsize,
}

/// What a [`Reader`] reads.
pub(crate) enum Next<'a> {
    /// The change at this index of the batch.
    Change(&'a Batch, usize),
    /// Changes no one was given, this many (the queue counts them in 64 bits).
    Missed(usize),
    /// The source of changes was lost; nothing follows.
    Lost(Arc<str>),
}

/// How a [`Reader`]'s read ended.
enum Read<R> {
    Accepted(R),
    /// The queue has ended.
    Ended,
    /// Nothing more now (see [`Found::Empty`]).
    Empty(u64),
}

impl Reader {
    pub fn new(queue: Arc<Queue>) -> Self {
        Self {
            queue,
            taken: Mutex::new(VecDeque::new()),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Reads on, waiting at most `timeout` (forever when `None`), until `accept` makes
    /// something of what it read; `None` when the time is up or the queue has ended.
    pub fn next<R>(
        &self,
        timeout: Option<Duration>,
        mut accept: impl FnMut(Next<'_>) -> Option<R>,
    ) -> Option<R> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            // What is queued is read first: a zero timeout still takes it.
            let mut taken = lock(&self.taken);
            let passed_on = match self.read(&mut taken, &mut accept) {
                Read::Accepted(accepted) => {
                    self.leave(taken);
                    return Some(accepted);
                }
                Read::Ended => return None,
                Read::Empty(passed_on) => passed_on,
            };
            // Counted while what was taken is still locked: a reader that takes a commit after
            // this one found none passes on what it leaves of it (see `leave`).
            self.waiting.fetch_add(1, Ordering::SeqCst);
            drop(taken);
            let woken = self.queue.wait(deadline, passed_on);
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if !woken {
                return None;
            }
        }
    }

    /// Reads on without waiting until `accept` makes something of what it read: `Pending`
    /// (the task woken when more comes) once the queue is empty, `Ready(None)` once it ended.
    #[cfg(feature = "async")]
    pub fn poll_next<R>(
        &self,
        cx: &mut Context<'_>,
        mut accept: impl FnMut(Next<'_>) -> Option<R>,
    ) -> Poll<Option<R>> {
        loop {
            let mut taken = lock(&self.taken);
            match self.read(&mut taken, &mut accept) {
                Read::Accepted(accepted) => {
                    self.leave(taken);
                    return Poll::Ready(Some(accepted));
                }
                Read::Ended => return Poll::Ready(None),
                // Registered while what was taken is still locked (see `next`).
                Read::Empty(passed_on) => {
                    if self.queue.register(cx, passed_on) {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// Reads what was taken, then takes from the queue and reads on, until `accept` makes
    /// something of what it read or the queue holds nothing now.
    fn read<R>(
        &self,
        taken: &mut VecDeque<Run>,
        accept: &mut impl FnMut(Next<'_>) -> Option<R>,
    ) -> Read<R> {
        loop {
            while let Some(run) = taken.front_mut() {
                while let Some(i) = run.next() {
                    if let Some(accepted) = accept(Next::Change(&run.batch, i)) {
                        return Read::Accepted(accepted);
                    }
                }
                taken.pop_front();
            }
            let told = match self.queue.take_now() {
                Found::Item(Item::Changes(run)) => {
                    taken.push_back(run);
                    continue;
                }
                Found::Item(Item::Missed(count)) => {
                    Next::Missed(usize::try_from(count).unwrap_or(usize::MAX))
                }
                Found::Item(Item::Lost(reason)) => Next::Lost(reason),
                Found::Ended => return Read::Ended,
                Found::Empty(passed_on) => return Read::Empty(passed_on),
            };
            if let Some(accepted) = accept(told) {
                return Read::Accepted(accepted);
            }
        }
    }

    /// Unlocks what was taken, waking the readers waiting for the queue if changes are left
    /// in it for them.
    fn leave(&self, taken: MutexGuard<'_, VecDeque<Run>>) {
        let left = !taken.is_empty();
        drop(taken);
        if left && (self.waiting.load(Ordering::SeqCst) > 0 || self.queue.task_waits()) {
            self.queue.pass_on();
        }
    }
}

impl Hub {
    /// Ends every current subscription, its source of changes being lost (`reason`): each
    /// yields what it holds, then [`Item::Lost`], then ends. Later subscriptions are not
    /// affected, and the lost ones no longer count as wanting their tables, kept or not (a
    /// new listener would otherwise watch tables for a subscription that has ended).
    pub fn lose_all(&self, reason: &str) {
        let subscribers = std::mem::take(&mut *lock(&self.subscribers));
        let lost: Vec<Arc<Queue>> = subscribers.iter().filter_map(Weak::upgrade).collect();
        Self::lose(&lost, reason);
    }

    /// Ends, as [`lose_all`](Self::lose_all) does, the current subscriptions that want one of
    /// `tables` (every table's among them): changes of those tables were not captured for them.
    pub fn lose_wanting(&self, tables: &[String], reason: &str) {
        self.lose_where(
            |wanted| wanted.is_none_or(|wanted| wanted.iter().any(|t| tables.contains(t))),
            reason,
        );
    }

    /// Ends, as [`lose_all`](Self::lose_all) does, the current subscriptions that name one of
    /// `tables` (not those of every table): those tables' changes are no longer theirs.
    pub fn lose_naming(&self, tables: &[String], reason: &str) {
        self.lose_where(
            |wanted| wanted.is_some_and(|wanted| wanted.iter().any(|t| tables.contains(t))),
            reason,
        );
    }

    /// Ends the current subscriptions whose tables (`None`: every table) are `wanting`.
    fn lose_where(&self, wanting: impl Fn(Option<&Vec<String>>) -> bool, reason: &str) {
        let wanting = |queue: &Queue| wanting(queue.tables.as_ref());
        let lost: Vec<Arc<Queue>> = {
            let mut subscribers = lock(&self.subscribers);
            let (lost, kept): (Vec<Weak<Queue>>, _) = std::mem::take(&mut *subscribers)
                .into_iter()
                .partition(|queue| queue.upgrade().is_some_and(|queue| wanting(&queue)));
            *subscribers = kept;
            lost.iter().filter_map(Weak::upgrade).collect()
        };
        Self::lose(&lost, reason);
    }

    /// Ends `queues`, lost, once they are out of the hub's counts: a reader told so, and
    /// subscribing again at once, finds no listener watching their tables for them.
    fn lose(queues: &[Arc<Queue>], reason: &str) {
        for queue in queues {
            queue.leave();
        }
        Self::end(queues, || End::Lost(reason.into()));
    }

    /// Ends every current subscription with `end`.
    fn end_all(&self, end: impl Fn() -> End) {
        let subscribers = std::mem::take(&mut *lock(&self.subscribers));
        let ended: Vec<Arc<Queue>> = subscribers.iter().filter_map(Weak::upgrade).collect();
        Self::end(&ended, end);
    }

    /// Ends `queues` with `end`, waking their readers.
    fn end(queues: &[Arc<Queue>], end: impl Fn() -> End) {
        for queue in queues {
            let mut inner = lock(&queue.inner);
            inner.end.get_or_insert_with(&end);
            queue.wake_readers(inner);
        }
    }
}

impl Drop for Hub {
    /// The store and all its connections are gone: wake every subscriber, for good.
    fn drop(&mut self) {
        self.end_all(|| End::Closed);
    }
}

impl Queue {
    /// Takes it out of the hub's counts (once).
    fn leave(&self) {
        if self.left.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(hub) = self.hub.upgrade() {
            hub.unsubscribe(self.tables.as_deref());
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.leave();
    }
}

impl Drop for Reader {
    /// The subscription is gone: it stops counting now, not when the last publisher lets go
    /// of its queue.
    fn drop(&mut self) {
        self.queue.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{Op, RawChange, RawValue};

    /// A commit changing one row of each of these tables, in order.
    fn commit(hub: &Hub, tables: &[&str]) {
        let changes = tables
            .iter()
            .map(|&t| RawChange::broken(t.into(), Op::Insert, 0, "no row"))
            .collect();
        let batch = Batch {
            changes,
            rows: Default::default(),
            gap: 0,
            shared: Default::default(),
            spares: None,
        };
        hub.publish(hub.next_seq(), batch);
    }

    /// SQLite names tables without regard to ASCII case: every queue of a name that differs
    /// from the schema's at most in case receives the table's changes, under the schema's
    /// name. PostgreSQL's tables of such names are different tables.
    #[test]
    fn a_sqlite_table_is_every_subscription_s_whatever_the_case_of_its_name() {
        let hub = Arc::new(Hub::sqlite());
        assert!(!hub.observes_sqlite_table("Memos"), "nobody subscribes");
        let lower = Reader::new(hub.subscribe(Some(&["memos".to_owned()]), 8));
        let upper = Reader::new(hub.subscribe(Some(&["MEMOS".to_owned()]), 8));
        assert!(hub.observes_sqlite_table("Memos"));
        assert!(!hub.observes_sqlite_table("notes"));
        commit(&hub, &["Memos"]);
        commit(&hub, &["notes", "Memos", "notes"]);
        assert_eq!(read_all(&lower), ["Memos0", "Memos1"]);
        assert_eq!(read_all(&upper), ["Memos0", "Memos1"]);
        let all = Reader::new(hub.subscribe(None, 8));
        assert!(hub.observes_sqlite_table("notes"));
        assert!(!hub.observes_sqlite_table("sqlite_sequence"));

        let postgres = Arc::new(Hub::default());
        let lower = Reader::new(postgres.subscribe(Some(&["memos".to_owned()]), 8));
        commit(&postgres, &["Memos", "memos"]);
        assert_eq!(read_all(&lower), ["memos1"]);
        drop(all);
    }

    /// What a reader reads now: each change as its table and index, each gap as "missed n".
    fn read_all(reader: &Reader) -> Vec<String> {
        std::iter::from_fn(|| {
            reader.next(Some(Duration::ZERO), |next| {
                Some(match next {
                    Next::Change(batch, i) => format!("{}{i}", batch.changes[i].table),
                    Next::Missed(n) => format!("missed {n}"),
                    Next::Lost(reason) => format!("lost {reason}"),
                })
            })
        })
        .collect()
    }

    /// A batch changing one row of `table`.
    fn batch_of(table: &str) -> Batch {
        Batch {
            changes: vec![RawChange::broken(table.into(), Op::Insert, 0, "no row")],
            rows: Default::default(),
            gap: 0,
            shared: Default::default(),
            spares: None,
        }
    }

    #[test]
    fn commits_are_delivered_in_the_order_of_their_numbers_whatever_order_they_publish_in() {
        let hub = Arc::new(Hub::default());
        let reader = Reader::new(hub.subscribe(None, 8));
        // Numbered at their commit hooks, in commit order; published as each statement ends,
        // in any order.
        let (first, second, third) = (hub.next_seq(), hub.next_seq(), hub.next_seq());
        hub.publish(third, batch_of("c"));
        hub.publish(second, batch_of("b"));
        assert!(
            read_all(&reader).is_empty(),
            "held until the first is settled"
        );
        hub.void(first); // the first commit failed after its hook
        assert_eq!(read_all(&reader), ["b0", "c0"]);
        let (fourth, fifth) = (hub.next_seq(), hub.next_seq());
        hub.publish(fifth, batch_of("e"));
        hub.publish(fourth, batch_of("d"));
        assert_eq!(read_all(&reader), ["d0", "e0"]);
    }

    #[test]
    fn a_dropped_subscription_stops_counting_while_a_publisher_still_holds_its_queue() {
        let hub = Arc::new(Hub::default());
        let queue = hub.subscribe(Some(&["a".to_owned()]), 2);
        let publishing = Arc::clone(&queue); // as `publish` holds it, for a moment
        let reader = Reader::new(queue);
        assert_eq!(hub.subscriptions(), 1);
        assert!(hub.wants("a"));
        drop(reader);
        assert_eq!(hub.subscriptions(), 0);
        assert!(!hub.wants("a"), "nobody observes the table any more");
        drop(publishing);
        assert_eq!(hub.subscriptions(), 0, "counted out once");
        // A queue never read (a subscription that failed before it began) counts out too.
        drop(hub.subscribe(None, 2));
        assert_eq!(hub.subscriptions(), 0);
    }

    #[test]
    fn subscriptions_that_come_and_go_without_commits_leave_nothing_behind() {
        let hub = Arc::new(Hub::default());
        for _ in 0..1_000 {
            drop(Reader::new(hub.subscribe(None, 2)));
        }
        let kept = hub.subscribe(None, 2);
        assert_eq!(lock(&hub.subscribers).len(), 1);
        drop(kept);
    }

    #[test]
    fn a_queue_holds_the_changes_of_its_tables_up_to_its_capacity() {
        let hub = Arc::new(Hub::default());
        let reader = Reader::new(hub.subscribe(Some(&["a".to_owned()]), 2));
        // Picked out of a commit of two tables, the third `a` beyond the capacity.
        commit(&hub, &["a", "b", "a", "a"]);
        commit(&hub, &["b"]);
        assert_eq!(read_all(&reader), ["a0", "a2", "missed 1"]);
        // Read: room again, for a whole run this time.
        commit(&hub, &["a", "a"]);
        assert_eq!(read_all(&reader), ["a0", "a1"]);
    }

    #[test]
    fn changes_taken_and_not_yet_read_count_against_the_capacity() {
        let hub = Arc::new(Hub::default());
        let reader = Reader::new(hub.subscribe(None, 3));
        commit(&hub, &["a", "b"]);
        // Takes the commit whole, reads one change: one still held.
        let first = reader.next(None, |next| match next {
            Next::Change(batch, i) => Some(format!("{}{i}", batch.changes[i].table)),
            _ => None,
        });
        assert_eq!(first.as_deref(), Some("a0"));
        commit(&hub, &["c", "d", "e"]);
        assert_eq!(read_all(&reader), ["b1", "c0", "d1", "missed 1"]);
        // A commit taken and dropped unread gives its room back.
        let queue = hub.subscribe(None, 3);
        commit(&hub, &["i"]);
        match queue.next(Some(Duration::ZERO)) {
            Some(Item::Changes(run)) => drop(run),
            _ => panic!("a commit"),
        }
        assert_eq!(queue.unread.load(Ordering::SeqCst), 0);
        commit(&hub, &["j", "k", "l"]);
        let reader = Reader::new(queue);
        assert_eq!(read_all(&reader), ["j0", "k1", "l2"]);
    }

    /// A commit inserting one row of `(n, "row n")` into each of these tables, in order.
    fn commit_rows(hub: &Hub, tables: &[&str]) {
        let mut rows = crate::observe::Rows::default();
        let changes = tables
            .iter()
            .enumerate()
            .map(|(n, &t)| {
                let mark = rows.mark();
                rows.push_integer(n as i64);
                rows.push_text(format!("row {n}").as_bytes());
                RawChange {
                    table: t.into(),
                    op: Op::Insert,
                    old: None,
                    new: Some(rows.since(mark)),
                    depth: 0,
                    shape: crate::observe::Shape::Epoch(0),
                }
            })
            .collect();
        let batch = Batch {
            changes,
            rows,
            gap: 0,
            shared: Default::default(),
            spares: None,
        };
        hub.publish(hub.next_seq(), batch);
    }

    #[test]
    fn a_queue_keeps_its_own_rows_of_a_commit_that_mostly_changed_other_tables() {
        let hub = Arc::new(Hub::default());
        let few = Reader::new(hub.subscribe(Some(&["a".to_owned()]), 8));
        let all = Reader::new(hub.subscribe(None, 1_000));
        let mut tables = vec!["b"; 100];
        tables[7] = "a";
        tables[90] = "a";
        commit_rows(&hub, &tables);
        // (changes in the batch it reads from, the row's values)
        let read = |reader: &Reader| {
            std::iter::from_fn(|| {
                reader.next(Some(Duration::ZERO), |next| match next {
                    Next::Change(batch, i) => {
                        let row = batch.row(&batch.changes[i]);
                        Some((batch.changes.len(), row.values()))
                    }
                    _ => None,
                })
            })
            .collect::<Vec<_>>()
        };
        let expected = |n: i64| vec![RawValue::Integer(n), RawValue::Text(format!("row {n}"))];
        // A copy of its two changes, not the commit's hundred.
        assert_eq!(read(&few), [(2, expected(7)), (2, expected(90))]);
        // A subscriber of every table shares the commit.
        let everything = read(&all);
        assert_eq!(everything.len(), 100);
        assert!(everything.iter().all(|(changes, _)| *changes == 100));
        assert_eq!(everything[90].1, expected(90));
        // A small commit is shared whatever the queue takes of it.
        commit_rows(&hub, &["b", "a", "b"]);
        assert_eq!(read(&few), [(3, expected(1))]);
        // A queue with room for few of a large commit keeps those alone.
        let behind = Reader::new(hub.subscribe(None, 3));
        commit_rows(&hub, &["c"; 100]);
        assert_eq!(
            read(&behind),
            [(3, expected(0)), (3, expected(1)), (3, expected(2))]
        );
    }
}
