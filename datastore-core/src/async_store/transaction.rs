//! Async transactions: one pooled connection, held by one blocking thread inside
//! [`Store::transaction`] for the transaction's life, running the closures its handle sends,
//! in the order sent. The body awaits whatever it likes in between; the transaction ends
//! when the body does (commit on `Ok`, rollback on an error or a panic), or when its future
//! is dropped before the body returned (rollback): a guard in the future tells the thread so,
//! whatever handles remain. Once the body returned `Ok`, the commit is sent and goes ahead
//! whether or not anyone still awaits its outcome.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use diesel::connection::TransactionManager;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use super::AsyncRepo;
use crate::{AnyConnection, Error, Result, Store};

/// What the transaction's thread is asked to do.
enum Command {
    /// Run this on the transaction's connection.
    Run(Box<dyn FnOnce(&mut AnyConnection) + Send>),
    /// End the transaction: commit it (`Ok`), or roll it back and report the body's error,
    /// made what the blocking store would report (the statement that aborted a PostgreSQL
    /// transaction, a lost connection).
    End(Result<()>),
}

/// The handle of an async transaction, given to the body of
/// [`AsyncStore::transaction`](super::AsyncStore::transaction): [`AsyncRepo`]'s typed methods
/// (and `run`) on the transaction's connection, and [`transaction`](Self::transaction) for a
/// savepoint. Cheap to clone; statements sent through clones run one at a time, in the order
/// sent. Once the transaction has ended, its calls fail with [`Error::TransactionEnded`].
///
/// A handle runs statements at its own level only: while a savepoint opened from it is open,
/// it and its clones run nothing and fail with [`Error::SavepointOpen`] (the statement would
/// otherwise run inside the savepoint and be undone with it); the savepoint's body uses the
/// handle it is given. A savepoint whose body is still running when the level above it ends
/// (its handle sent to a task that outlived that level) is rolled back, not committed half
/// done; its handle then fails with [`Error::TransactionEnded`].
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> datastore::Result<()> {
/// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
/// let tx_count = store
///     .transaction(|tx: AsyncTransaction| async move {
///         tx.save(Note { text: "one".into(), ..Note::default() }).await?;
///         tx.save(Note { text: "two".into(), ..Note::default() }).await?;
///         tx.count::<Note>().await // sees its own writes
///     })
///     .await?;
/// assert_eq!(tx_count, 2);
/// assert_eq!(store.count::<Note>().await?, 2); // committed
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct AsyncTransaction {
    commands: mpsc::UnboundedSender<Command>,
    /// The transaction's savepoints, shared by all its handles.
    savepoints: Arc<Savepoints>,
    /// The savepoint this handle runs statements in (`None`: the transaction's own level).
    savepoint: Option<u64>,
    /// What statements whose futures were dropped failed with, shared by all its handles.
    unheard: Arc<Unheard>,
}

/// The first panic or error of a statement whose future was dropped before it read it (a
/// timeout, a `select!`): nobody heard it, so the body may have gone on as if the statement had
/// succeeded, and its work is unfinished. The transaction's thread then rolls the transaction
/// back whichever way the body ends, and its end reports it (the panic resumes; the error is
/// its result), as when the body hears it. Refusals ([`Error::TransactionEnded`],
/// [`Error::SavepointOpen`]) ran nothing and are not kept. Kept for the whole transaction,
/// also where the statement ran in a savepoint that was rolled back since (its work undone
/// with it): the transaction does not know whether the body's later work assumed it.
#[derive(Default)]
struct Unheard(Mutex<Option<Failure>>);

/// How a statement nobody heard ended.
enum Failure {
    Panicked(Box<dyn Any + Send>),
    Failed(Error),
}

impl Unheard {
    /// Keeps `outcome`, the outcome of a statement nobody will read, if it is the first panic
    /// or error that ran something.
    fn keep<T>(&self, outcome: std::thread::Result<Result<T>>) {
        let failure = match outcome {
            Err(panic) => Failure::Panicked(panic),
            Ok(Err(Error::TransactionEnded | Error::SavepointOpen) | Ok(_)) => return,
            Ok(Err(error)) => Failure::Failed(error),
        };
        self.lock().get_or_insert(failure);
    }

    fn take(&self) -> Option<Failure> {
        self.lock().take()
    }

    fn lock(&self) -> MutexGuard<'_, Option<Failure>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for Unheard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = match &*self.lock() {
            None => "nothing",
            Some(Failure::Panicked(_)) => "a panic",
            Some(Failure::Failed(_)) => "an error",
        };
        f.debug_tuple("Unheard").field(&kept).finish()
    }
}

/// The savepoints open in a transaction, innermost last, each by an id no other savepoint of
/// the transaction had: a handle runs statements only while its own savepoint is the
/// innermost one open, and a savepoint ended (rolled back with the level above it) is never
/// mistaken for another opened later at the same depth. `open` is read and changed by the
/// transaction's thread only, as it runs the statements in the order they were sent (holding
/// the lock across them): the async side never takes the lock, so that it never waits for the
/// database.
#[derive(Debug, Default)]
struct Savepoints {
    open: Mutex<Vec<u64>>,
    /// The id of the last savepoint asked for.
    last: AtomicU64,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Run(_) => f.write_str("Run"),
            Command::End(outcome) => f.debug_tuple("End").field(outcome).finish(),
        }
    }
}

/// Rolls the transaction back when the future running it is dropped before the body returned
/// (after, it has sent the end already).
struct EndGuard {
    commands: Option<mpsc::UnboundedSender<Command>>,
}

impl EndGuard {
    fn end(&mut self, outcome: Result<()>) {
        if let Some(commands) = self.commands.take() {
            // The thread is gone only if it failed to begin, which was reported already.
            let _ = commands.send(Command::End(outcome));
        }
    }
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.end(Err(Error::TransactionEnded));
    }
}

/// `AsyncStore::transaction`. `waiting` is the permit to wait for a connection, given back
/// once the transaction has one.
pub(super) async fn run<T, F, Fut>(
    store: Arc<Store>,
    waiting: OwnedSemaphorePermit,
    body: F,
) -> Result<T>
where
    F: FnOnce(AsyncTransaction) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let (commands, received) = mpsc::unbounded_channel();
    let savepoints = Arc::new(Savepoints::default());
    let unheard = Arc::new(Unheard::default());
    let (began, has_begun) = oneshot::channel();
    let (ended, has_ended) = oneshot::channel();
    // Armed before the thread starts: from here on, dropping this future rolls back.
    let mut guard = EndGuard {
        commands: Some(commands.clone()),
    };
    let thread_unheard = Arc::clone(&unheard);
    tokio::task::spawn_blocking(move || {
        drive(&store, waiting, received, &thread_unheard, began, ended)
    });
    match has_begun.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(error),
        // The runtime dropped the task before it ran.
        Err(_) => return Err(Error::RuntimeShutdown),
    }
    // A panic here unwinds through the guard: rolled back.
    let top = AsyncTransaction {
        commands,
        savepoints,
        savepoint: None,
        unheard,
    };
    // The body's error goes to the transaction's thread, which rolls back and reports it as
    // `Store::transaction` reports a closure's.
    let (value, end) = match body(top).await {
        Ok(value) => (Some(value), Ok(())),
        Err(error) => (None, Err(error)),
    };
    guard.end(end);
    let ended = match has_ended.await {
        Ok(Ok(ended)) => ended,
        // A statement nobody heard panicked: rolled back, and the panic goes on here.
        Ok(Err(panic)) => resume_unwind(panic),
        Err(_) => Err(Error::RuntimeShutdown),
    };
    match (value, ended) {
        (Some(value), Ok(())) => Ok(value),
        // The body's error; or the commit failed, the database had ended the transaction by
        // itself, or a statement nobody heard failed.
        (_, Err(error)) => Err(error),
        // Not reached: a rollback is reported as an error.
        (None, Ok(())) => Err(Error::TransactionEnded),
    }
}

/// The transaction's thread: begins it (telling `began`), runs what it is sent until it is
/// told to end (or every sender is gone), and tells `ended` how the transaction ended (a panic
/// of a statement nobody heard, to resume). [`Store::transaction`] does the work, so that both
/// stores' transactions are the same.
fn drive(
    store: &Store,
    waiting: OwnedSemaphorePermit,
    mut commands: mpsc::UnboundedReceiver<Command>,
    unheard: &Unheard,
    began: oneshot::Sender<Result<()>>,
    ended: oneshot::Sender<std::thread::Result<Result<()>>>,
) {
    let mut began = Some(began);
    let mut waiting = Some(waiting);
    let mut panicked = None;
    let result = store.transaction(|conn| {
        // The connection is had: another transaction may wait for one.
        drop(waiting.take());
        if let Some(began) = began.take() {
            let _ = began.send(Ok(()));
        }
        loop {
            let end = match commands.blocking_recv() {
                Some(Command::Run(job)) => {
                    job(conn);
                    continue;
                }
                Some(Command::End(outcome)) => outcome,
                None => Err(Error::TransactionEnded),
            };
            // Savepoints whose bodies have not ended are undone by `Store::transaction`, which
            // rolls back every level it did not begin whichever way it ends.
            // A statement nobody heard failed: the body went on without knowing, so its work
            // is unfinished, and the transaction rolls back.
            return match (unheard.take(), end) {
                (Some(Failure::Panicked(panic)), _) => {
                    panicked = Some(panic);
                    // Only asks it to roll back: the panic is reported.
                    Err(Error::TransactionEnded)
                }
                (Some(Failure::Failed(error)), Ok(())) => Err(error),
                (_, end) => end,
            };
        }
    });
    match (began, panicked) {
        (Some(began), _) => {
            let _ = began.send(result);
        }
        (None, Some(panic)) => {
            let _ = ended.send(Err(panic));
        }
        (None, None) => {
            let _ = ended.send(Ok(result));
        }
    }
}

impl Savepoints {
    /// The ids of the savepoints open, for the transaction's thread.
    fn lock(&self) -> MutexGuard<'_, Vec<u64>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether a statement sent through the handle of `savepoint` (`None`: the transaction's own
/// level) may run: its level must be the innermost one open. Ended (rolled back with the level
/// above it), it runs nothing again; with a savepoint open inside it, the statement would run
/// in that savepoint and be undone with it.
fn innermost(conn: &mut AnyConnection, open: &[u64], savepoint: Option<u64>) -> Result<()> {
    if savepoint.is_some_and(|id| !open.contains(&id)) {
        return Err(Error::TransactionEnded);
    }
    if open.last().copied() != savepoint {
        return Err(Error::SavepointOpen);
    }
    // One level more than the savepoints open: a closure that began a transaction of its own
    // on the connection and left it open (a panic through Diesel's `transaction`) holds one.
    match crate::backend::depth(conn).cmp(&(open.len() as u32 + 1)) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(Error::SavepointOpen),
        std::cmp::Ordering::Less => Err(Error::TransactionEnded),
    }
}

/// Releases (`commit`) or rolls back the savepoint `id`, after rolling back every level still
/// open inside it: bodies that have not ended (a handle sent to a task that outlived this
/// level), whose work is unfinished, so undone rather than committed with it; their handles
/// then find them ended. [`Error::TransactionEnded`] if it is not open (ended already, or
/// never begun).
fn end_savepoint(
    conn: &mut AnyConnection,
    savepoints: &Savepoints,
    id: u64,
    commit: bool,
) -> Result<()> {
    let mut open = savepoints.lock();
    let Some(at) = open.iter().position(|&open| open == id) else {
        return Err(Error::TransactionEnded);
    };
    // The savepoint at `at` is at depth `at + 2` (the transaction is at 1).
    open.truncate(at);
    crate::backend::unwind_to(conn, at as u32 + 2)?;
    if commit {
        Ok(AnyConnection::commit_transaction(conn)?)
    } else {
        Ok(crate::backend::rollback(conn)?)
    }
}

/// Rolls the savepoint `id` back if it is still open when the future that opened it is
/// dropped (nothing if it never began).
struct SavepointGuard {
    commands: Option<mpsc::UnboundedSender<Command>>,
    savepoints: Arc<Savepoints>,
    id: u64,
}

impl Drop for SavepointGuard {
    fn drop(&mut self) {
        if let Some(commands) = self.commands.take() {
            let (savepoints, id) = (Arc::clone(&self.savepoints), self.id);
            let _ = commands.send(Command::Run(Box::new(move |conn| {
                let _ = end_savepoint(conn, &savepoints, id, false);
            })));
        }
    }
}

impl AsyncTransaction {
    /// Runs `body` in a savepoint of this transaction: released when `body` returns `Ok`,
    /// rolled back (and the transaction goes on) when it returns an error, panics, or this
    /// future is dropped before `body` returned. Once `body` returned `Ok`, the release is sent
    /// and goes ahead even if this future is dropped while awaiting it. A statement of `body`
    /// that failed or panicked after its own future was dropped (nobody heard it) rolls the
    /// whole transaction back, not only this savepoint.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// store
    ///     .transaction(|tx| async move {
    ///         tx.save(Note { text: "kept".into(), ..Note::default() }).await?;
    ///         let inner: datastore::Result<()> = tx
    ///             .transaction(|tx| async move {
    ///                 tx.save(Note { text: "undone".into(), ..Note::default() }).await?;
    ///                 Err(datastore::Error::TransactionEnded) // any error: rolled back
    ///             })
    ///             .await;
    ///         assert!(inner.is_err());
    ///         Ok(())
    ///     })
    ///     .await?;
    /// assert_eq!(store.count::<Note>().await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn transaction<T, F, Fut>(&self, body: F) -> Result<T>
    where
        F: FnOnce(AsyncTransaction) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let id = self.savepoints.last.fetch_add(1, Ordering::Relaxed) + 1;
        // Armed before the savepoint is asked for: the rollback it sends follows the begin,
        // and does nothing if the begin did not open it.
        let mut guard = SavepointGuard {
            commands: Some(self.commands.clone()),
            savepoints: Arc::clone(&self.savepoints),
            id,
        };
        let (savepoints, within) = (Arc::clone(&self.savepoints), self.savepoint);
        let begin = self
            .send(move |conn| {
                let mut open = savepoints.lock();
                innermost(conn, &open, within)?;
                AnyConnection::begin_transaction(conn)?;
                open.push(id);
                Ok(())
            })
            .await;
        if let Err(error) = begin {
            guard.commands = None;
            return Err(error);
        }
        let outcome = body(AsyncTransaction {
            commands: self.commands.clone(),
            savepoints: Arc::clone(&self.savepoints),
            savepoint: Some(id),
            unheard: Arc::clone(&self.unheard),
        })
        .await;
        guard.commands = None;
        let commit = outcome.is_ok();
        let savepoints = Arc::clone(&self.savepoints);
        let ended = self
            .send(move |conn| end_savepoint(conn, &savepoints, id, commit))
            .await;
        match (outcome, ended) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(error)) => Err(error),
            (Err(error), _) => Err(error),
        }
    }
}

impl AsyncTransaction {
    /// Sends `f` to the transaction's thread, to run after everything sent before it, and
    /// awaits its result; `f` checks the level it may run at. If this future is dropped before
    /// it reads a panic or an error of `f`, the transaction keeps it as [`Unheard`].
    async fn send<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let unheard = Arc::clone(&self.unheard);
        let job = move |conn: &mut AnyConnection| {
            // Caught here, resumed in the body: the transaction's thread goes on to roll back.
            let result = catch_unwind(AssertUnwindSafe(|| f(conn)));
            if let Err(result) = reply.send(result) {
                unheard.keep(result);
            }
        };
        self.commands
            .send(Command::Run(Box::new(job)))
            .map_err(|_| Error::TransactionEnded)?;
        let mut answer = Answer {
            answer,
            unheard: Arc::clone(&self.unheard),
        };
        match (&mut answer.answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => resume_unwind(panic),
            // The transaction ended before running it.
            Err(_) => Err(Error::TransactionEnded),
        }
    }
}

/// The answer of a statement sent: dropped unread (its future dropped after the answer came,
/// before it was polled), it is kept as [`Unheard`] as one that came too late.
struct Answer<T> {
    answer: oneshot::Receiver<std::thread::Result<Result<T>>>,
    unheard: Arc<Unheard>,
}

impl<T> Drop for Answer<T> {
    fn drop(&mut self) {
        // Closed first: an answer sent from now on fails to arrive, and its job keeps it as
        // unheard itself; one sent before is here to read. (Read first, an answer sent between
        // the read and the drop would be dropped with the receiver, heard by nobody.)
        self.answer.close();
        if let Ok(outcome) = self.answer.try_recv() {
            self.unheard.keep(outcome);
        }
    }
}

impl AsyncRepo for AsyncTransaction {
    type Conn = AnyConnection;

    /// Runs `f` on the transaction's connection, after every statement sent before it, at this
    /// handle's level: while a savepoint opened through it is still open, it runs nothing and
    /// fails with [`Error::SavepointOpen`].
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        let (savepoints, savepoint) = (Arc::clone(&self.savepoints), self.savepoint);
        self.send(move |conn| {
            innermost(conn, &savepoints.lock(), savepoint)?;
            f(conn)
        })
        .await
    }
}
