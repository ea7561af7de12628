//! Transactions SQLite rolled back by itself.
//!
//! On some errors (a full database or disk, an I/O error, out of memory) SQLite undoes the whole
//! transaction and goes back to autocommit: the statements after it would each commit on their
//! own. A connection's hooks (`ffi/sqlite.rs`) notice the rollback and mark its transaction
//! *lost*; from then on every statement on it but `ROLLBACK` is refused, until that `ROLLBACK`
//! ends the transaction for its owner too.
//!
//! The hooks cannot tell why (SQLite sets the error after they ran), and Diesel gives no way from
//! a connection to its hooks: both ends meet on the thread running the statement. The first
//! database error converted on that thread after the loss is its cause; the error of a refused
//! statement says the transaction was lost, and why; and `Store::transaction` learns of a loss
//! of one of its store's connections on its thread.
//!
//! PostgreSQL refuses every statement after a failed one itself (SQLSTATE 25P02), until the
//! transaction ends. What it does not keep is why: [`FirstFailure`], the instrumentation of the
//! store's PostgreSQL connections, keeps the error that aborted the transaction, for
//! `Store::transaction` to report.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind};

/// The database error that ended a transaction, kept to be reported again.
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    pub kind: DatabaseErrorKind,
    message: String,
    details: Option<String>,
    table: Option<String>,
    column: Option<String>,
}

impl Cause {
    pub fn new(kind: DatabaseErrorKind, info: &dyn DatabaseErrorInformation) -> Self {
        Self {
            kind,
            message: info.message().to_owned(),
            details: info.details().map(str::to_owned),
            table: info.table_name().map(str::to_owned),
            column: info.column_name().map(str::to_owned),
        }
    }
}

impl DatabaseErrorInformation for Cause {
    fn message(&self) -> &str {
        &self.message
    }
    fn details(&self) -> Option<&str> {
        self.details.as_deref()
    }
    fn hint(&self) -> Option<&str> {
        None
    }
    fn table_name(&self) -> Option<&str> {
        self.table.as_deref()
    }
    fn column_name(&self) -> Option<&str> {
        self.column.as_deref()
    }
    fn constraint_name(&self) -> Option<&str> {
        None
    }
    fn statement_position(&self) -> Option<i32> {
        None
    }
}

/// One lost transaction: the store whose connection lost it, and why.
#[derive(Debug)]
pub(crate) struct Lost {
    store: usize,
    /// The error that made SQLite roll back, once converted.
    cause: Mutex<Option<Cause>>,
    /// Its owner ended it (`ROLLBACK`, or the connection closed).
    ended: AtomicBool,
}

impl Lost {
    /// The error the transaction was lost to, if it is known.
    pub fn cause(&self) -> Option<Cause> {
        self.cause.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// How many connections of the process have a lost transaction nobody ended yet. While any
/// has, a SQLite connection going back to a store's pool gets a `ROLLBACK`, which ends it if it
/// is one of them (see `BackendManager::has_broken`).
static UNENDED: AtomicUsize = AtomicUsize::new(0);

/// Whether a connection of the process has a lost transaction nobody ended yet.
pub(crate) fn any_unended() -> bool {
    UNENDED.load(Ordering::Relaxed) > 0
}

thread_local! {
    /// How many transactions were lost on this thread, and the last of them.
    static LAST: RefCell<(u64, Option<Arc<Lost>>)> = const { RefCell::new((0, None)) };
    /// A lost transaction whose cause is the next database error converted on this thread.
    static AWAITING_CAUSE: RefCell<Option<Arc<Lost>>> = const { RefCell::new(None) };
    /// A lost transaction whose connection just refused a statement.
    static REFUSED: RefCell<Option<Arc<Lost>>> = const { RefCell::new(None) };
}

/// A connection's view of its transaction: lost or not. Only its hooks touch it.
#[derive(Debug)]
pub(crate) struct Watch {
    store: usize,
    lost: RefCell<Option<Arc<Lost>>>,
    /// `lost.is_some()`, read on every commit without borrowing.
    is_lost: Cell<bool>,
}

impl Watch {
    /// The watch of a connection of the store `store` (see `Store::id`).
    pub fn new(store: usize) -> Self {
        Self {
            store,
            lost: RefCell::new(None),
            is_lost: Cell::new(false),
        }
    }

    pub fn is_lost(&self) -> bool {
        self.is_lost.get()
    }

    /// Whether `sql`, starting while the transaction is lost, ends the loss (see
    /// [`ends_lost_transaction`]).
    pub fn ended_by(&self, sql: &str) -> bool {
        ends_lost_transaction(sql, super::transaction::is_open_in_hook(self.store))
    }

    /// SQLite rolled the transaction back by itself, during a statement that is not `ROLLBACK`.
    pub fn lose(&self) {
        if self.is_lost() {
            return;
        }
        let lost = Arc::new(Lost {
            store: self.store,
            cause: Mutex::new(None),
            ended: AtomicBool::new(false),
        });
        // Hooks never panic: `try_with`, in case the thread is ending.
        let _ = LAST.try_with(|last| {
            let mut last = last.borrow_mut();
            *last = (last.0 + 1, Some(lost.clone()));
        });
        let _ = AWAITING_CAUSE.try_with(|awaiting| *awaiting.borrow_mut() = Some(lost.clone()));
        *self.lost.borrow_mut() = Some(lost);
        self.is_lost.set(true);
        UNENDED.fetch_add(1, Ordering::Relaxed);
    }

    /// A statement is refused: its error will say the transaction was lost.
    pub fn refuse(&self) {
        if let Some(lost) = &*self.lost.borrow() {
            let _ = REFUSED.try_with(|refused| *refused.borrow_mut() = Some(lost.clone()));
        }
    }

    /// A statement that ends the lost transaction starts: it is over for its owner too.
    pub fn recover(&self) {
        if let Some(lost) = self.lost.borrow_mut().take() {
            lost.ended.store(true, Ordering::Relaxed);
            UNENDED.fetch_sub(1, Ordering::Relaxed);
        }
        self.is_lost.set(false);
        forget_pending();
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // The connection closes: its lost transaction, if any, ends with it.
        self.recover();
    }
}

/// Forgets the loss this thread's next database error would be told of (its cause, or a
/// statement refused because of it): that loss is over, or the error never came (the
/// application kept Diesel's error, or Diesel replaced it by another). Never panics: a hook may
/// call it while its thread ends.
pub(crate) fn forget_pending() {
    let _ = AWAITING_CAUSE.try_with(|awaiting| awaiting.try_borrow_mut().map(|mut a| a.take()));
    let _ = REFUSED.try_with(|refused| refused.try_borrow_mut().map(|mut r| r.take()));
}

/// The transaction a connection lost on this thread most recently, if nobody ended it yet:
/// Diesel, having forgotten it (a statement failed in what SQLite made autocommit), answers
/// its owner's `COMMIT` with `NotInTransaction`, which is this loss.
pub(crate) fn unended_here() -> Option<Arc<Lost>> {
    LAST.with(|last| {
        last.borrow()
            .1
            .clone()
            .filter(|lost| !lost.ended.load(Ordering::Relaxed))
    })
}

/// How many transactions were lost on this thread so far.
pub(crate) fn generation() -> u64 {
    LAST.with(|last| last.borrow().0)
}

/// The transaction a connection of `store` lost on this thread after `generation`, if any.
pub(crate) fn lost_since(generation: u64, store: usize) -> Option<Arc<Lost>> {
    LAST.with(|last| match &*last.borrow() {
        (now, Some(lost)) if *now > generation && lost.store == store => Some(lost.clone()),
        _ => None,
    })
}

/// A database error is being converted on this thread: if a statement was refused because its
/// transaction was lost, that transaction; otherwise the error is the cause of a loss that
/// awaits one.
pub(crate) fn refused_or_cause(
    kind: DatabaseErrorKind,
    info: &dyn DatabaseErrorInformation,
) -> Option<Arc<Lost>> {
    // A refused statement fails as interrupted (the progress handler) or as a commit the commit
    // hook turned into a rollback.
    let message = info.message();
    if message == "interrupted" || message.starts_with("constraint failed") {
        if let Some(lost) = REFUSED.with(|refused| refused.borrow_mut().take()) {
            return Some(lost);
        }
    }
    if let Some(lost) = AWAITING_CAUSE.with(|awaiting| awaiting.borrow_mut().take()) {
        if let Ok(mut cause) = lost.cause.lock() {
            cause.get_or_insert_with(|| Cause::new(kind, info));
        }
    }
    None
}

/// The instrumentation of the store's PostgreSQL connections: it keeps the error of the first
/// statement that failed in the connection's transaction, which aborted it, unless a rollback
/// to a savepoint made the transaction usable again. It also reports the statements through
/// `tracing`, and every event reaches the application's default instrumentation, if it set
/// one.
pub(crate) struct FirstFailure {
    failure: Option<Cause>,
    /// A rollback to a savepoint is running.
    rolling_back_to_savepoint: bool,
    default: Option<Box<dyn Instrumentation>>,
    /// Reports the connection's statements through `tracing`.
    log: crate::trace::StatementLog,
    /// The connection's backend process (`pg_backend_pid()`), read once when it was set up:
    /// observe tells by it whether installing a trigger would wait for this connection's
    /// transaction.
    backend_pid: Option<i32>,
    /// The server's default isolation level for the connection's transactions is
    /// `SERIALIZABLE`, read once when it was set up: see [`Self::serializable`].
    serializable: bool,
    /// A statement failed because a prepared statement's plan no longer fits the schema: see
    /// [`plans_outdated`](Self::plans_outdated).
    plans_outdated: bool,
    /// The depth of the transactions Diesel began, as its events tell (and as Diesel's own
    /// record says where a transaction ended without an event: see
    /// [`transaction_ended`](Self::transaction_ended) and [`lend`](Self::lend)).
    depth: u32,
    /// The next query is Diesel's own `BEGIN` (its event comes first).
    diesel_begins: bool,
    /// A statement failed while Diesel had no transaction open: see
    /// [`failed_outside_transaction`](Self::failed_outside_transaction).
    failed_outside_transaction: bool,
    /// The connection is lent to the store's caller ([`lend`](Self::lend)), and what SQL it
    /// ran since (but Diesel's own `BEGIN`) may have left: see
    /// [`take_leftover`](Self::take_leftover).
    lent: bool,
    leftover: Leftover,
    /// The statements that give the connection's session the store's settings again
    /// (`lock_timeout`, and English messages where the setup had to set them), run where a
    /// caller may have reset them: see `ConnectionSetup::apply_postgres`.
    settings: String,
    /// The store's own statements are running ([`own`](Self::own)): their SQL is not read.
    own: bool,
    /// How many more of a lent connection's queries are read before the round trip at its
    /// check-in is taken as spent anyway (see [`READS`]).
    reads_left: u32,
}

impl FirstFailure {
    /// Statements slower than `slow_statements` are reported.
    pub fn new(slow_statements: Option<std::time::Duration>) -> Self {
        Self {
            failure: None,
            rolling_back_to_savepoint: false,
            default: diesel::connection::get_default_instrumentation(),
            log: crate::trace::StatementLog::new(slow_statements),
            backend_pid: None,
            serializable: false,
            plans_outdated: false,
            depth: 0,
            diesel_begins: false,
            failed_outside_transaction: false,
            lent: false,
            leftover: Leftover::Clean,
            settings: String::new(),
            own: false,
            reads_left: 0,
        }
    }

    /// The connection is lent to the store's caller (`Store::conn`), who may run SQL of their
    /// own on it.
    pub fn lend(conn: &mut diesel::PgConnection) {
        use diesel::Connection;
        let depth = crate::backend::depth(conn);
        if let Some(recorder) = conn.instrumentation().downcast_mut::<Self>() {
            recorder.lent = true;
            recorder.leftover = Leftover::Clean;
            recorder.depth = depth;
            recorder.own = false;
            recorder.reads_left = READS;
        }
    }

    /// Runs `f`, statements of the store's own (a [`Persist`](crate::Persist) method), on `conn`:
    /// on a lent connection their SQL, which begins no transaction of its own making (the
    /// store's transactions are Diesel's), is not read for one: building Diesel's text of a
    /// statement of many rows is costly (8% of a 10-row insert's time on PostgreSQL,
    /// measured). Also when `f` panics, the mark is taken off before the panic goes on (a
    /// caller may catch it and go on with the connection).
    pub fn own<T>(
        conn: &mut diesel::PgConnection,
        f: impl FnOnce(&mut diesel::PgConnection) -> T,
    ) -> T {
        let outer = Self::mark_own(conn, true);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut *conn)));
        Self::mark_own(conn, outer);
        result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Marks the store's own statements as running or not; what the mark was (a method of the
    /// store's may run inside another's).
    fn mark_own(conn: &mut diesel::PgConnection, own: bool) -> bool {
        use diesel::Connection;
        conn.instrumentation()
            .downcast_mut::<Self>()
            .is_some_and(|recorder| std::mem::replace(&mut recorder.own, own))
    }

    /// The transaction Diesel began ended with SQL of the store's own, which Diesel follows
    /// from libpq's state without an event (`Store::transaction`'s commit).
    pub fn transaction_ended(conn: &mut diesel::PgConnection) {
        use diesel::Connection;
        if let Some(recorder) = conn.instrumentation().downcast_mut::<Self>() {
            recorder.depth = 0;
        }
    }

    /// What the SQL the store's caller ran on the connection may have left on its session, as
    /// it comes back (reset by the call): see [`Leftover`]. `None` if the connection's
    /// instrumentation is no longer this one (the caller replaced it), which tells nothing.
    pub fn take_leftover(conn: &mut diesel::PgConnection) -> Option<Leftover> {
        use diesel::Connection;
        let recorder = conn.instrumentation().downcast_mut::<Self>()?;
        let lent = std::mem::take(&mut recorder.lent);
        let leftover = std::mem::take(&mut recorder.leftover);
        Some(if lent { leftover } else { Leftover::Clean })
    }

    /// Records the statements that give the connection's session the store's settings again.
    pub fn set_settings(conn: &mut diesel::PgConnection, settings: String) {
        use diesel::Connection;
        if let Some(recorder) = conn.instrumentation().downcast_mut::<Self>() {
            recorder.settings = settings;
        }
    }

    /// The statements that give the connection's session the store's settings again (none
    /// for a connection the store did not set up).
    pub fn settings(conn: &mut diesel::PgConnection) -> String {
        use diesel::Connection;
        conn.instrumentation()
            .downcast_mut::<Self>()
            .map(|recorder| recorder.settings.clone())
            .unwrap_or_default()
    }

    /// Whether a statement failed since the last call while Diesel had no transaction open
    /// (reset by the call): the connection may be inside a transaction its user began with SQL
    /// of their own, which Diesel does not follow.
    pub fn failed_outside_transaction(conn: &mut diesel::PgConnection) -> bool {
        use diesel::Connection;
        conn.instrumentation()
            .downcast_mut::<Self>()
            .is_some_and(|recorder| std::mem::take(&mut recorder.failed_outside_transaction))
    }

    /// Whether a statement of the connection failed because another session changed the type
    /// of a column it reads: PostgreSQL then refuses the prepared statement for good ("cached
    /// plan must not change result type"), and Diesel keeps it in its cache, so every later
    /// run of that query on the connection would fail the same way. The pool discards such a
    /// connection (`BackendManager::has_broken`); the next one prepares the query anew.
    pub fn plans_outdated(conn: &mut diesel::PgConnection) -> bool {
        use diesel::Connection;
        conn.instrumentation()
            .downcast_mut::<Self>()
            .is_some_and(|recorder| recorder.plans_outdated)
    }

    /// Records the connection's backend process, and whether its transactions are
    /// `SERIALIZABLE` unless told otherwise.
    pub fn set_server_facts(conn: &mut diesel::PgConnection, pid: i32, serializable: bool) {
        use diesel::Connection;
        if let Some(recorder) = conn.instrumentation().downcast_mut::<Self>() {
            recorder.backend_pid = Some(pid);
            recorder.serializable = serializable;
        }
    }

    /// Whether the connection's transactions are `SERIALIZABLE` unless told otherwise (the
    /// server's, database's, role's or connection's `default_transaction_isolation`, as it was
    /// when the connection was set up: a later `SET` of a caller's is not seen): the store's
    /// own transactions, which read one snapshot (`REPEATABLE READ`), then run at that level
    /// too, rather than step out of the serializable transactions' checks. `false` for a
    /// connection the store did not set up.
    pub fn serializable(conn: &mut diesel::PgConnection) -> bool {
        use diesel::Connection;
        conn.instrumentation()
            .downcast_mut::<Self>()
            .is_some_and(|recorder| recorder.serializable)
    }

    /// The connection's backend process, if it was recorded.
    pub fn backend_pid(conn: &mut diesel::PgConnection) -> Option<i32> {
        use diesel::Connection;
        conn.instrumentation()
            .downcast_mut::<Self>()
            .and_then(|recorder| recorder.backend_pid)
    }

    /// The error that aborted the connection's transaction, if a statement failed in it.
    pub fn take(conn: &mut diesel::PgConnection) -> Option<Cause> {
        use diesel::Connection;
        conn.instrumentation()
            .downcast_mut::<Self>()
            .and_then(|recorder| recorder.failure.take())
    }
}

impl Instrumentation for FirstFailure {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        self.log.on_event(&event);
        match &event {
            InstrumentationEvent::BeginTransaction { depth, .. } => {
                self.depth = depth.get();
                self.diesel_begins = true;
                if depth.get() == 1 {
                    self.failure = None;
                }
            }
            InstrumentationEvent::CommitTransaction { depth, .. } => {
                self.depth = depth.get() - 1;
            }
            InstrumentationEvent::RollbackTransaction { depth, .. } => {
                self.depth = depth.get() - 1;
                self.rolling_back_to_savepoint = depth.get() > 1;
            }
            InstrumentationEvent::StartQuery { query, .. } => {
                // Read inside Diesel's transactions too: SQL of the caller's own may end one
                // and begin another, which Diesel would then not end.
                let diesels_own = std::mem::take(&mut self.diesel_begins);
                if self.lent && !diesels_own && !self.own && self.leftover != Leftover::Discarded {
                    let read = match self.reads_left.checked_sub(1) {
                        Some(left) => {
                            self.reads_left = left;
                            leftover(*query)
                        }
                        None => Leftover::Unsettled,
                    };
                    self.leftover = self.leftover.max(read);
                }
            }
            InstrumentationEvent::FinishQuery { error, .. } => {
                self.failed_outside_transaction |= error.is_some() && self.depth == 0;
                if let Some(diesel::result::Error::DatabaseError(_, info)) = error {
                    self.plans_outdated |= info
                        .message()
                        .starts_with("cached plan must not change result type");
                }
                match error {
                    Some(diesel::result::Error::DatabaseError(kind, info))
                        if self.failure.is_none() =>
                    {
                        self.failure = Some(Cause::new(*kind, info.as_ref()));
                    }
                    None if self.rolling_back_to_savepoint => self.failure = None,
                    _ => {}
                }
                self.rolling_back_to_savepoint = false;
            }
            _ => {}
        }
        if let Some(default) = &mut self.default {
            default.on_connection_event(event);
        }
    }
}

/// How many of a lent connection's queries are read for what they may leave: reading
/// one costs Diesel's building of its text (about 17,000 instructions, some 5 µs, for a find
/// by key through Diesel's DSL: `profile pg-find-diesel`), the round trip that ends a
/// transaction at check-in about 70 µs on the machine of `BENCHMARKS.md`; past this many reads
/// the round trip is taken as spent, and no more are read, so that a connection lent for long
/// pays at most about twice the cheaper of the two.
const READS: u32 = 16;

/// What SQL a caller ran on a connection the store lent may have left on its session, as the
/// words of the SQL tell (see [`leftover`]); worse ones later.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Leftover {
    /// Nothing the store must undo.
    #[default]
    Clean,
    /// A transaction begun and left open (`BEGIN`, `START TRANSACTION`), which Diesel does not
    /// follow, or the settings the store gave the session taken back (`RESET ALL`, `RESET
    /// lock_timeout`): the connection is settled as it goes back, in a round trip.
    Unsettled,
    /// The session discarded (`DISCARD ALL`): with its settings, the statements Diesel
    /// prepared and keeps (it would run them again, and the server refuse them). The
    /// connection is replaced.
    Discarded,
}

/// What the SQL of `query` may leave on its session ([`Leftover`]): by whether a word of it is
/// `BEGIN`, `START` or `RESET` ([`Leftover::Unsettled`]), or `DISCARD` (in any case),
/// wherever it stands, in a string, a comment or a quoted name too. It errs on one side only:
/// a transaction block can begin with no other statement, a setting is reset by no other
/// (`SET x TO DEFAULT` sets it: the caller's own change, as any `SET`), and a word that does
/// neither (a function's body, a column named `start`) costs a round trip, or a connection, at
/// most. Read from Diesel's text of the query: a batch's whole, or a query's SQL, whose binds
/// that follow it are left unformatted.
fn leftover(query: &dyn std::fmt::Display) -> Leftover {
    /// Reads the text as it is written, one piece after another, up to Diesel's binds.
    #[derive(Default)]
    struct Words {
        /// The word being read, upper-cased, while it is at most 7 letters long and all letters.
        word: [u8; 7],
        len: usize,
        /// The word being read is longer than 7 bytes, or holds a byte other than a letter.
        other: bool,
        found: Leftover,
    }
    impl Words {
        fn end_word(&mut self) {
            let word = &self.word[..self.len];
            let found = match word {
                _ if self.other => Leftover::Clean,
                b"BEGIN" | b"START" | b"RESET" => Leftover::Unsettled,
                b"DISCARD" => Leftover::Discarded,
                _ => Leftover::Clean,
            };
            self.found = self.found.max(found);
            (self.len, self.other) = (0, false);
        }
    }
    impl std::fmt::Write for Words {
        fn write_str(&mut self, piece: &str) -> std::fmt::Result {
            if piece == " -- binds: " {
                return Err(std::fmt::Error); // Diesel's binds follow: not SQL
            }
            for byte in piece.bytes() {
                if byte.is_ascii_alphabetic() && self.len < self.word.len() && !self.other {
                    self.word[self.len] = byte.to_ascii_uppercase();
                    self.len += 1;
                } else if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' {
                    self.other = true;
                } else if !byte.is_ascii() {
                    self.other = true; // a letter of an identifier, in UTF-8
                } else {
                    self.end_word();
                }
            }
            Ok(())
        }
    }
    let mut words = Words::default();
    let _ = std::fmt::write(&mut words, format_args!("{query}"));
    words.end_word();
    words.found
}

/// Whether `conn` is a PostgreSQL connection whose prepared statements outlived a change of
/// the schema (see [`FirstFailure::plans_outdated`]): the pool drops it, and a read it refused
/// runs again on another.
pub(crate) fn plans_outdated(conn: &mut crate::AnyConnection) -> bool {
    match conn {
        crate::AnyConnection::Postgres(conn) => FirstFailure::plans_outdated(conn),
        crate::AnyConnection::Sqlite(_) => false,
    }
}

/// Whether a statement starting on a connection whose transaction was lost shows that its owner
/// knows the transaction is over: `ROLLBACK` ends it (Diesel's, or `Store::transaction`'s), and
/// `BEGIN` starts another (Diesel forgets a transaction by itself when a statement fails and
/// SQLite is back in autocommit), unless `in_store_transaction`: then the `BEGIN` is Diesel's
/// nested transaction inside the lost one (its `SAVEPOINT` was refused, and Diesel forgot the
/// transaction), whose writes would commit on their own, and only the `ROLLBACK` that
/// `Store::transaction` sends ends the loss.
pub(crate) fn ends_lost_transaction(sql: &str, in_store_transaction: bool) -> bool {
    is_rollback(sql)
        || (!in_store_transaction
            && sql
                .split(|c: char| c.is_whitespace() || c == ';')
                .find(|w| !w.is_empty())
                .is_some_and(|w| w.eq_ignore_ascii_case("BEGIN")))
}

/// Whether `sql` is `ROLLBACK` (or `ROLLBACK TRANSACTION`), which ends a transaction, rather than
/// `ROLLBACK TO` a savepoint.
pub(crate) fn is_rollback(sql: &str) -> bool {
    let mut words = sql
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty());
    if !words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("ROLLBACK"))
    {
        return false;
    }
    match words.next() {
        None => true,
        Some(w) if w.eq_ignore_ascii_case("TRANSACTION") => words.next().is_none(),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{Leftover, is_rollback, leftover};

    /// Whether the SQL leaves the connection to be settled, as a transaction begun does.
    fn may_begin_transaction(sql: &dyn std::fmt::Display) -> bool {
        leftover(sql) != Leftover::Clean
    }

    /// A transaction block begins with `BEGIN` or `START TRANSACTION`, in any case and
    /// anywhere in a batch: each is found, and nothing is without either word (which is
    /// found wherever it stands, erring on the side of a round trip).
    #[test]
    fn sql_that_may_begin_a_transaction_is_told_by_its_words() {
        for sql in [
            "BEGIN",
            "begin;",
            "SELECT 1; Begin ISOLATION LEVEL SERIALIZABLE; DELETE FROM posts",
            "start transaction read write",
            "\tBEGIN\n",
            "/* x */begin",
            "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$",
            "SELECT \"start\" FROM t",
        ] {
            assert!(may_begin_transaction(&sql), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "SELECT beginning, started, _begin, begin_, begin2, $begin FROM t",
            "COMMIT",
            "ROLLBACK",
            "SAVEPOINT a; RELEASE SAVEPOINT a",
            "SELECT 'béGIN'",
        ] {
            assert!(!may_begin_transaction(&sql), "{sql}");
        }
    }

    /// Diesel's text of a query is its SQL, then `-- binds:` and each bind's value: values are
    /// not read (a bind is no SQL), nor formatted.
    #[test]
    fn a_querys_binds_are_not_read() {
        use diesel::pg::Pg;
        let query = diesel::sql_query("SELECT $1").bind::<diesel::sql_types::Text, _>("BEGIN");
        let text = diesel::debug_query::<Pg, _>(&query);
        assert!(text.to_string().contains("BEGIN"), "{text}");
        assert!(!may_begin_transaction(&text));
        let query = diesel::sql_query("BEGIN").bind::<diesel::sql_types::Text, _>("x");
        assert!(may_begin_transaction(&diesel::debug_query::<Pg, _>(&query)));
    }

    /// A session's settings are taken back by `RESET` (`RESET ALL`, or one of them), which
    /// leaves the connection to be settled; `DISCARD` (`DISCARD ALL`) also drops Diesel's
    /// prepared statements, which leaves it to be replaced, whatever else the SQL holds.
    #[test]
    fn sql_that_may_reset_or_discard_the_session_is_told_by_its_words() {
        for (sql, left) in [
            ("RESET ALL", Leftover::Unsettled),
            ("select 1; reset lock_timeout", Leftover::Unsettled),
            ("DISCARD ALL", Leftover::Discarded),
            ("BEGIN; SELECT 1; discard plans", Leftover::Discarded),
            ("discard all; begin", Leftover::Discarded),
            (
                "SELECT resets, discards, discarded, reset_at, $discard FROM t",
                Leftover::Clean,
            ),
            ("SET lock_timeout TO DEFAULT", Leftover::Clean),
        ] {
            assert_eq!(leftover(&sql), left, "{sql}");
        }
    }

    /// A statement refused after a loss whose error the application never converted (it kept
    /// Diesel's) must not make a later, unrelated error on the thread that loss's.
    #[test]
    fn a_loss_ended_is_no_later_errors_cause() {
        use super::{Watch, refused_or_cause};
        use diesel::result::DatabaseErrorKind;
        let watch = Watch::new(1);
        watch.lose();
        watch.refuse();
        watch.recover();
        let later = "interrupted".to_owned();
        assert!(refused_or_cause(DatabaseErrorKind::Unknown, &later).is_none());
    }

    #[test]
    fn a_rollback_or_a_new_transaction_ends_a_lost_one() {
        use super::ends_lost_transaction;
        for sql in [
            "ROLLBACK",
            "BEGIN",
            "begin immediate",
            " BEGIN DEFERRED TRANSACTION",
        ] {
            assert!(ends_lost_transaction(sql, false), "{sql}");
        }
        // Inside `store.transaction`, only a rollback ends it.
        assert!(ends_lost_transaction("ROLLBACK", true));
        assert!(!ends_lost_transaction("BEGIN", true));
        for sql in [
            "ROLLBACK TO a",
            "SAVEPOINT a",
            "COMMIT",
            "INSERT INTO begin VALUES (1)",
        ] {
            assert!(!ends_lost_transaction(sql, false), "{sql}");
        }
    }

    #[test]
    fn only_a_rollback_of_the_transaction_is_one() {
        for sql in [
            "ROLLBACK",
            "rollback;",
            "  Rollback Transaction ",
            "ROLLBACK TRANSACTION;",
        ] {
            assert!(is_rollback(sql), "{sql}");
        }
        for sql in [
            "ROLLBACK TO SAVEPOINT a",
            "ROLLBACK TRANSACTION TO a",
            "RELEASE a",
            "SELECT 1",
            "",
        ] {
            assert!(!is_rollback(sql), "{sql}");
        }
    }
}
