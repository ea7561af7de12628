//! SQLite's C API: finding a new connection's handle, and installing the hooks observe is
//! built on (what they capture is recorded by `observe/sqlite/`).

use std::cell::Cell;
use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use libsqlite3_sys as sqlite;

use crate::observe::Rows;
use crate::observe::sqlite::{
    ConnObserver, Counters, SavepointCommand, Side, Statement, TableName,
};
use crate::store::lost::{self, Watch};
use crate::trace;

thread_local! {
    /// The handle of the last connection opened on this thread.
    static OPENED: Cell<*mut sqlite::sqlite3> = const { Cell::new(ptr::null_mut()) };
}

static REGISTER: Once = Once::new();

/// SQLite calls this inside every `sqlite3_open_v2` of the process, on the opening thread.
unsafe extern "C" fn remember_opened(
    db: *mut sqlite::sqlite3,
    _error: *mut *mut c_char,
    _api: *const sqlite::sqlite3_api_routines,
) -> c_int {
    OPENED.with(|opened| opened.set(db));
    sqlite::SQLITE_OK
}

/// Registers [`remember_opened`] once per process; connections opened afterwards are seen.
pub(crate) fn register() {
    REGISTER.call_once(|| {
        // SAFETY: `remember_opened` has the signature SQLite expects of an auto-extension
        // entry point, and is a plain function that lives as long as the process.
        let rc = unsafe { sqlite::sqlite3_auto_extension(Some(remember_opened)) };
        debug_assert_eq!(rc, sqlite::SQLITE_OK);
    });
}

/// A connection handle, taken right after the connection was opened on this thread.
pub(crate) struct Handle(*mut sqlite::sqlite3);

/// Sets up `conn`, the connection just opened on this thread (as r2d2's `on_acquire` runs):
/// keeps its handle in it ([`in_transaction`]), and installs the hooks that feed the observer
/// `observer` makes. Nothing if its handle was not seen ([`register`] ran after it opened).
pub(crate) fn set_up(
    conn: &mut diesel::SqliteConnection,
    observer: impl FnOnce() -> ConnObserver,
    slow_statements: Option<Duration>,
) {
    if let Some(handle) = take_opened() {
        // `conn` opened on this thread right before: `handle` is its own.
        let hooks = install(&handle, observer(), slow_statements);
        handle.keep_in(conn, hooks);
    }
}

impl Handle {
    /// Keeps the handle in `conn`, the connection it is the handle of, as its instrumentation
    /// (which passes Diesel's events on to the application's default instrumentation, if it
    /// set one): see [`in_transaction`]. Diesel's events turn the statement hooks of `hooks`
    /// on and off (see [`Installed::query_starts`]).
    fn keep_in(&self, conn: &mut diesel::SqliteConnection, hooks: Option<Hooks>) {
        diesel::Connection::set_instrumentation(
            conn,
            Kept {
                db: self.0,
                hooks,
                default: diesel::connection::get_default_instrumentation(),
            },
        );
    }
}

/// The instrumentation of the store's SQLite connections: the connection's handle, its hooks,
/// and the application's default instrumentation.
struct Kept {
    db: *mut sqlite::sqlite3,
    hooks: Option<Hooks>,
    default: Option<Box<dyn diesel::connection::Instrumentation>>,
}

/// The hooks installed on a connection, as its instrumentation reaches them.
struct Hooks {
    installed: *const Installed,
    /// Cleared as SQLite frees `installed`, when the connection closes.
    open: Arc<AtomicBool>,
}

impl Hooks {
    /// The hooks, while the connection is open.
    fn installed(&self) -> Option<&Installed> {
        // SAFETY: `installed` lives until SQLite calls `release` as the connection closes,
        // which clears `open` first; both run on the thread that holds the connection.
        self.open
            .load(Ordering::Relaxed)
            .then(|| unsafe { &*self.installed })
    }
}

// SAFETY: the handle and the hooks are those of the connection this instrumentation is set
// on, which moves between threads whole and is used by one thread at a time (`&mut`); they are
// used only through that connection's events and `drop`, on the thread that holds it.
unsafe impl Send for Kept {}

impl diesel::connection::Instrumentation for Kept {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        use diesel::connection::InstrumentationEvent as Event;
        if let Some(installed) = self.hooks.as_ref().and_then(Hooks::installed) {
            match &event {
                Event::StartQuery { .. } => installed.query_starts(),
                Event::FinishQuery { error, .. } => installed.query_finished(matches!(
                    error,
                    Some(diesel::result::Error::DatabaseError(..))
                )),
                _ => {}
            }
        }
        if let Some(default) = &mut self.default {
            default.on_connection_event(event);
        }
    }
}

impl Drop for Kept {
    /// Replaced by an instrumentation of the connection's user (`set_instrumentation`), while
    /// the connection stays open: nothing turns its statement hooks on when someone observes
    /// any more, so they stay on.
    fn drop(&mut self) {
        if let Some(installed) = self.hooks.as_ref().and_then(Hooks::installed) {
            installed.pinned.set(true);
            // SAFETY: the connection is open (`installed` is), and held by this thread, which
            // is replacing its instrumentation, between two statements.
            unsafe {
                installed.hooks_on();
                installed.trace_ends_as_wanted(); // with ends, now that it is pinned
            }
            // No query's end will be told from now on (Diesel tells no end of a query whose
            // binding failed, either): what waits for one goes now, or at SQLite's events.
            installed.query_finished(false);
        }
    }
}

/// Whether `conn`, a connection of the store whose handle it keeps ([`Handle::keep_in`]), is
/// inside a transaction (SQLite's own answer: one its user began with SQL of their own counts,
/// which Diesel knows nothing of). `None` where the handle is not kept: a connection its user
/// gave an instrumentation of their own.
pub(crate) fn in_transaction(conn: &mut diesel::SqliteConnection) -> Option<bool> {
    let instrumentation = diesel::Connection::instrumentation(conn);
    instrumentation.downcast_mut::<Kept>().map(|kept| {
        // SAFETY: `kept.db` is the handle of `conn` (`set_up` kept it in the connection it is
        // the handle of), open while `conn` is, and used here on the thread that holds `conn`
        // mutably.
        unsafe { sqlite::sqlite3_get_autocommit(kept.db) == 0 }
    })
}

/// Tells the hooks of `conn`, a connection of the store, that the query it ran last failed with
/// an error of the database, where Diesel does not pass that failure to the connection's
/// instrumentation: a query read through `load` or `get_result` (Diesel reports its failed step
/// as the error of a row, and its end as a success). Observe then takes the statement to have
/// failed (see `ConnObserver::query_failed`). Does nothing on a connection whose
/// instrumentation its user replaced (its handle is not kept).
pub(crate) fn report_failed_query(conn: &mut diesel::SqliteConnection) {
    let instrumentation = diesel::Connection::instrumentation(conn);
    if let Some(installed) = instrumentation
        .downcast_mut::<Kept>()
        .and_then(|kept| kept.hooks.as_ref())
        .and_then(Hooks::installed)
    {
        installed.query_failed();
    }
}

/// The handle of the connection just opened on this thread (call right after opening it, as
/// r2d2's `on_acquire` does), if [`register`] ran before it opened.
fn take_opened() -> Option<Handle> {
    let db = OPENED.with(|opened| opened.replace(ptr::null_mut()));
    (!db.is_null()).then_some(Handle(db))
}

/// The handle of the connection just opened on this thread, left in place for [`take_opened`]
/// (the store's first connection, which runs migrations under [`SkipTransactionControl`]).
pub(crate) fn peek_opened() -> Option<Handle> {
    let db = OPENED.with(|opened| opened.get());
    (!db.is_null()).then_some(Handle(db))
}

/// While it lives, SQLite makes `BEGIN`, `COMMIT`, `ROLLBACK` and `PRAGMA foreign_keys` no-ops
/// on the connection (an authorizer answers `SQLITE_IGNORE` when they are prepared): a migration
/// written to manage its own transaction then runs inside the one the store holds as its
/// migration lock. Savepoints are left alone. Dropped, it gives the connection back the
/// authorizer the hooks need (see [`one_row_at_a_time`]).
pub(crate) struct SkipTransactionControl<'c> {
    db: *mut sqlite::sqlite3,
    conn: &'c mut diesel::SqliteConnection,
}

impl<'c> SkipTransactionControl<'c> {
    /// `handle` is `conn`'s, taken with [`peek_opened`] right after `conn` was opened.
    pub(crate) fn new(handle: &Handle, conn: &'c mut diesel::SqliteConnection) -> Self {
        // SAFETY: `handle` is the open connection `conn`, which this guard borrows, so it stays
        // open until the authorizer is removed in `drop`. `skip_transaction_control` has the
        // signature SQLite expects and uses no user data.
        unsafe {
            sqlite::sqlite3_set_authorizer(
                handle.0,
                Some(skip_transaction_control),
                ptr::null_mut(),
            );
        }
        Self { db: handle.0, conn }
    }
}

impl std::ops::Deref for SkipTransactionControl<'_> {
    type Target = diesel::SqliteConnection;

    fn deref(&self) -> &Self::Target {
        self.conn
    }
}

impl std::ops::DerefMut for SkipTransactionControl<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.conn
    }
}

impl Drop for SkipTransactionControl<'_> {
    fn drop(&mut self) {
        // SAFETY: as in `new`: the connection is still open, borrowed by this guard; its client
        // data is the hooks' context if they were installed (NULL otherwise).
        unsafe {
            let ctx = sqlite::sqlite3_get_clientdata(self.db, CLIENT_DATA.as_ptr());
            delete_row_by_row(self.db, ctx);
        }
    }
}

/// The authorizer of [`SkipTransactionControl`]: SQLite calls it while preparing a statement,
/// once per action, with the action's arguments (for a pragma, its name).
unsafe extern "C" fn skip_transaction_control(
    _ctx: *mut c_void,
    action: c_int,
    argument: *const c_char,
    _value: *const c_char,
    _database: *const c_char,
    _trigger: *const c_char,
) -> c_int {
    let skipped = match action {
        sqlite::SQLITE_TRANSACTION => true,
        // SAFETY: for SQLITE_PRAGMA the first argument is the pragma's NUL-terminated name.
        sqlite::SQLITE_PRAGMA if !argument.is_null() => unsafe { CStr::from_ptr(argument) }
            .to_bytes()
            .eq_ignore_ascii_case(b"foreign_keys"),
        _ => false,
    };
    // SAFETY: SQLite passes NULL or a NUL-terminated string. Asked of every action, which it
    // follows from one to the next.
    let answer = unsafe { one_row_at_a_time(action, argument) };
    if skipped {
        sqlite::SQLITE_IGNORE
    } else {
        answer
    }
}

/// Makes SQLite delete rows one at a time on `db` (see [`one_row_at_a_time`]) for every
/// statement prepared from now on, where the pre-update hook may be installed, and tell the
/// hooks of `ctx` (if not NULL) of statements that change the schema; expires the statements
/// prepared before (as every change of authorizer does), so that they are prepared again.
///
/// # Safety
/// `db` is an open connection, not in use on another thread; `ctx` is NULL or the context of
/// the hooks installed on it.
unsafe fn delete_row_by_row(db: *mut sqlite::sqlite3, ctx: *mut c_void) {
    // SAFETY: guaranteed by the caller; `ctx` stays valid until `release`, which runs as the
    // connection closes, after which SQLite calls no authorizer.
    unsafe {
        if PREUPDATE_HOOK {
            sqlite::sqlite3_set_authorizer(db, Some(authorize), ctx);
        } else {
            sqlite::sqlite3_set_authorizer(db, None, ptr::null_mut());
        }
    }
}

/// The authorizer of every connection the hooks are installed on (but while
/// [`SkipTransactionControl`] runs a migration): see [`one_row_at_a_time`]. Statements that
/// change the schema are told to the observer (which needs to know of those prepared while the
/// statement hooks are off: see `ConnObserver::hooks_on`).
unsafe extern "C" fn authorize(
    ctx: *mut c_void,
    action: c_int,
    argument: *const c_char,
    value: *const c_char,
    _database: *const c_char,
    _trigger: *const c_char,
) -> c_int {
    if !ctx.is_null() {
        // SAFETY: `ctx` is the hooks' context, valid while the connection is open; SQLite
        // passes NULL or NUL-terminated strings.
        guarded(|| unsafe { tell_observer(installed(ctx), action, argument, value) });
    }
    // SAFETY: SQLite passes NULL or a NUL-terminated string.
    unsafe { one_row_at_a_time(action, argument) }
}

/// Tells the observer of `installed` what it follows of a statement being prepared: whether it
/// changes the schema and, while the statement hooks are off, the transaction and savepoint
/// commands (see `ConnObserver::dormant_command`); and notes a `PRAGMA wal_autocheckpoint = N`
/// (see [`Installed::wal_hook_replaced`]).
///
/// # Safety
/// `installed.db` is the connection preparing the statement; `argument` and `value` are an
/// authorizer's first two arguments for `action`.
unsafe fn tell_observer(
    installed: &Installed,
    action: c_int,
    argument: *const c_char,
    value: *const c_char,
) {
    let observer = &installed.observer;
    observer.statement_prepared();
    // SAFETY: for SQLITE_PRAGMA the first argument is the pragma's NUL-terminated name, the
    // second its value (NULL when it is read).
    if action == sqlite::SQLITE_PRAGMA
        && !value.is_null()
        && !argument.is_null()
        && unsafe { CStr::from_ptr(argument) }
            .to_bytes()
            .eq_ignore_ascii_case(b"wal_autocheckpoint")
    {
        installed.wal_hook_replaced.set(true);
    }
    if changes_schema(action) {
        observer.schema_statement_prepared();
    }
    if installed.statement_hooks.get()
        || !matches!(
            action,
            sqlite::SQLITE_TRANSACTION | sqlite::SQLITE_SAVEPOINT
        )
    {
        return;
    }
    // SAFETY: guaranteed by the caller: NULL or NUL-terminated.
    let text = |p: *const c_char| unsafe {
        if p.is_null() {
            ""
        } else {
            CStr::from_ptr(p).to_str().unwrap_or_default()
        }
    };
    // For both, the first argument is the operation; for a savepoint, the second its name.
    let (operation, name) = (text(argument), text(value));
    let name = || name.to_ascii_lowercase();
    let command = match (action, operation) {
        (sqlite::SQLITE_TRANSACTION, "BEGIN") => None,
        (sqlite::SQLITE_SAVEPOINT, "BEGIN") => Some(SavepointCommand::Savepoint(name())),
        (sqlite::SQLITE_SAVEPOINT, "RELEASE") => Some(SavepointCommand::Release(name())),
        (sqlite::SQLITE_SAVEPOINT, "ROLLBACK") => Some(SavepointCommand::RollbackTo(name())),
        _ => return,
    };
    let counters = installed.counters();
    observer.dormant_command(command, counters.total_changes(), counters.autocommit());
}

/// Whether an authorizer's `action` creates, alters or drops a schema object.
fn changes_schema(action: c_int) -> bool {
    matches!(
        action,
        sqlite::SQLITE_CREATE_INDEX..=sqlite::SQLITE_CREATE_VIEW
            | sqlite::SQLITE_DROP_INDEX..=sqlite::SQLITE_DROP_VIEW
            | sqlite::SQLITE_ALTER_TABLE
            | sqlite::SQLITE_CREATE_VTABLE
            | sqlite::SQLITE_DROP_VTABLE
    )
}

thread_local! {
    /// The action just authorized on this thread was a `DROP TABLE` (or view): see
    /// [`one_row_at_a_time`].
    static DROPPING: Cell<bool> = const { Cell::new(false) };
}

/// The `DROP` actions SQLite follows, in the same preparation, with a `DELETE` of the dropped
/// table's rows to authorize.
const DROPS_OF_TABLES: [c_int; 5] = [
    sqlite::SQLITE_DROP_TABLE,
    sqlite::SQLITE_DROP_TEMP_TABLE,
    sqlite::SQLITE_DROP_VIEW,
    sqlite::SQLITE_DROP_TEMP_VIEW,
    sqlite::SQLITE_DROP_VTABLE,
];

/// What the authorizers answer SQLite, preparing a statement, for an `action` on `table` (its
/// first argument) that they otherwise allow: `SQLITE_IGNORE` for the `DELETE` of a `DELETE`
/// statement, which lets it run but turns off SQLite's truncate optimization. Without it, a
/// `DELETE` with no `WHERE` on a table with no trigger and no foreign key, prepared while the
/// pre-update hook is not installed (nobody observed), is compiled to clear the table in one
/// step, calling no hook for its rows; and Diesel keeps prepared statements, so it would clear
/// a table unseen after someone subscribed.
///
/// `DROP TABLE`, `DROP VIEW`, `DROP INDEX` and `DROP TRIGGER` ask for `DELETE`s too (of the
/// schema table's rows, and of the dropped table's), and compile to nothing, silently, when
/// one is answered anything but `SQLITE_OK`: those are allowed. The dropped table's `DELETE`
/// has the arguments of a `DELETE` statement's, and is told by coming right after the `DROP`.
///
/// # Safety
/// `table` is NULL or a NUL-terminated string.
unsafe fn one_row_at_a_time(action: c_int, table: *const c_char) -> c_int {
    let after_drop = DROPPING.with(|dropping| dropping.replace(DROPS_OF_TABLES.contains(&action)));
    if action != sqlite::SQLITE_DELETE || after_drop {
        return sqlite::SQLITE_OK;
    }
    // SAFETY: guaranteed by the caller.
    let table = if table.is_null() {
        &[][..]
    } else {
        unsafe { CStr::from_ptr(table) }.to_bytes()
    };
    let schema_table = [
        "sqlite_master",
        "sqlite_temp_master",
        "sqlite_schema",
        "sqlite_temp_schema",
    ]
    .iter()
    .any(|name| table.eq_ignore_ascii_case(name.as_bytes()));
    if schema_table {
        sqlite::SQLITE_OK
    } else {
        sqlite::SQLITE_IGNORE
    }
}

/// Whether SQLite was compiled with the pre-update hook.
pub(crate) const PREUPDATE_HOOK: bool = cfg!(datastore_preupdate_hook);

/// What the hooks' context pointer points at: the observer, the connection it observes, and
/// whether that connection's transaction was lost.
struct Installed {
    db: *mut sqlite::sqlite3,
    observer: ConnObserver,
    watch: Watch,
    /// Statements running longer are reported (`trace::slow`).
    slow_statements: Option<Duration>,
    /// Whether the pre-update hook is installed: only while someone observes (see
    /// [`capture_while_observed`]). Read and written by the connection's own hooks only.
    capturing: Cell<bool>,
    /// Whether the statement hooks are installed (see [`Installed::query_starts`]); whether
    /// they trace statements' ends, the observer holds (see [`Installed::ends_wanted`]).
    statement_hooks: Cell<bool>,
    /// The statement hooks stay on: the connection's instrumentation, which turns them off,
    /// was replaced.
    pinned: Cell<bool>,
    /// SQLite's automatic checkpoint threshold (pages in the write-ahead log), which the
    /// store's WAL hook carries on (see [`on_wal`]), set as it is installed (0: none).
    autocheckpoint: Cell<c_int>,
    /// A `PRAGMA wal_autocheckpoint = N` was prepared, which puts SQLite's own WAL hook (or
    /// none) in place of the store's as SQLite compiles it: the store's is put back as the
    /// query ends (or, if Diesel told no end, as the next starts), with the new threshold (see
    /// [`Installed::hook_wal`]).
    wal_hook_replaced: Cell<bool>,
    /// Cleared by `release`, as SQLite frees this.
    open: Arc<AtomicBool>,
}

/// The statement hooks (SQLite's trace events at each statement's start, and where needed its
/// end: see [`Installed::ends_wanted`]) cost every statement a few hundred instructions. They
/// are needed while
/// someone observes (to capture), while statements are traced or timed for a subscriber of
/// `tracing`, and while the connection's transaction is lost (to refuse statements); otherwise
/// Diesel's query events (which the connection's instrumentation passes here) turn them off
/// between queries with no transaction open, and on again as the first query starts that
/// needs them, inside a transaction too. Meanwhile the observer keeps what it needs without
/// them: a transaction's rows by the change counter, read as each query starts, and its
/// savepoints from the authorizer (see `ConnObserver::hooks_off`). A subscription that starts
/// while a query runs with them off is told the rows its commit wrote as missed, once the query
/// has finished.
impl Installed {
    /// Whether the statement hooks are needed now.
    fn statement_hooks_wanted(&self) -> bool {
        self.pinned.get()
            || self.observer.anyone_observes()
            || self.watch.is_lost()
            || trace::statements_enabled()
            || (self.slow_statements.is_some() && trace::slow_enabled())
    }

    /// Whether the statement hooks trace each statement's end (SQLite's profile event, which
    /// reads the clock twice a statement): where Diesel's query events do not reach the hooks
    /// (the connection's instrumentation was replaced), and for the slow-statement reports,
    /// which time statements. Otherwise a statement's end is told as the next one starts, or
    /// as Diesel's query ends (see `ConnObserver::query_finished`).
    fn ends_wanted(&self) -> bool {
        self.pinned.get() || (self.slow_statements.is_some() && trace::slow_enabled())
    }

    /// Installs the statement hooks' trace, with statements' ends if wanted.
    ///
    /// # Safety
    /// As for [`Self::hooks_on`], between two statements.
    unsafe fn trace_statements(&self) {
        let ends = self.ends_wanted();
        self.observer.trace_ends(ends);
        let mask = if ends {
            sqlite::SQLITE_TRACE_STMT | sqlite::SQLITE_TRACE_PROFILE
        } else {
            sqlite::SQLITE_TRACE_STMT
        };
        let ctx = self as *const Installed as *mut c_void;
        // SAFETY: guaranteed by the caller; `ctx` stays valid until `release`, which removes
        // the hook; `on_trace` has the signature SQLite expects.
        unsafe {
            sqlite::sqlite3_trace_v2(self.db, mask as c_uint, Some(on_trace), ctx);
        }
    }

    /// Traces statements' ends, or stops, as [`Self::ends_wanted`] now says (the statement
    /// hooks on): the trace is installed again only if that changed.
    ///
    /// # Safety
    /// As for [`Self::trace_statements`].
    unsafe fn trace_ends_as_wanted(&self) {
        if self.ends_wanted() != self.observer.ends_traced() {
            // SAFETY: guaranteed by the caller.
            unsafe { self.trace_statements() };
        }
    }

    /// Diesel starts a query (before it prepares or runs any statement).
    fn query_starts(&self) {
        if self.wal_hook_replaced.replace(false) {
            // SAFETY: a query of this open connection starts on the thread that holds it.
            unsafe { self.hook_wal() };
        }
        let wanted = self.statement_hooks_wanted();
        if wanted && self.statement_hooks.get() {
            // SAFETY: a query of this open connection starts on the thread that holds it.
            unsafe { self.trace_ends_as_wanted() };
        }
        if wanted != self.statement_hooks.get() {
            // SAFETY: a query of this open connection starts on the thread that holds it.
            unsafe {
                if wanted {
                    self.hooks_on();
                } else if self.counters().autocommit() {
                    self.hooks_off();
                }
            }
        } else if !wanted {
            self.observer.dormant_query(
                self.counters().total_changes(),
                self.counters().autocommit(),
            );
            return;
        }
        if self.statement_hooks.get() {
            self.observer.query_started();
        }
    }

    /// Diesel's query finished (every statement it ran ended, its commit is done), having
    /// `failed` with an error of the database.
    fn query_finished(&self, failed: bool) {
        if self.wal_hook_replaced.replace(false) {
            // SAFETY: Diesel's query ends on the thread that holds the open connection.
            unsafe { self.hook_wal() };
        }
        if !self.statement_hooks.get() {
            let counters = self.counters();
            self.observer
                .dormant_query_finished(|| (counters.total_changes(), counters.autocommit()));
            return;
        }
        if failed {
            self.query_failed();
        }
        self.observer.query_finished(|| {
            let counters = self.counters();
            (counters.total_changes(), counters.autocommit())
        });
    }

    /// The query that ran last failed: its last statement's rows may have been undone.
    fn query_failed(&self) {
        // With no transaction open, its transaction is over, committed or rolled back, and
        // the commit and rollback hooks have settled its rows.
        if self.statement_hooks.get() && !self.counters().autocommit() {
            self.observer.query_failed();
        }
    }

    /// Installs the WAL hook ([`on_wal`]) in place of SQLite's own, which checkpoints the log
    /// automatically, and whose argument is its threshold, carried on by `on_wal`: SQLite's as
    /// `sqlite3_open` installed it, or as a `PRAGMA wal_autocheckpoint = N` did (N <= 0
    /// installs none: no checkpoints). Kept if the hook in place is already the store's (a
    /// VFS took the pragma over).
    ///
    /// # Safety
    /// Called on the thread that holds the open connection, outside its hooks.
    unsafe fn hook_wal(&self) {
        let ctx = self as *const Installed as *mut c_void;
        // SAFETY: guaranteed by the caller; `ctx` stays valid until `release`, which removes
        // the hook; `on_wal` has the signature SQLite expects.
        let previous = unsafe { sqlite::sqlite3_wal_hook(self.db, Some(on_wal), ctx) };
        if previous != ctx {
            self.autocheckpoint
                .set(c_int::try_from(previous as usize).unwrap_or(0));
        }
    }

    /// Installs the statement hooks.
    ///
    /// # Safety
    /// Called on the thread that holds the open connection, outside its hooks.
    unsafe fn hooks_on(&self) {
        if self.statement_hooks.replace(true) {
            return;
        }
        // SAFETY: guaranteed by the caller.
        unsafe { self.trace_statements() };
        let in_transaction = !self.counters().autocommit();
        self.observer
            .hooks_on(self.counters().total_changes(), in_transaction);
    }

    /// Removes the statement hooks (and the pre-update hook), with no transaction open.
    ///
    /// # Safety
    /// As for [`Self::hooks_on`].
    unsafe fn hooks_off(&self) {
        self.statement_hooks.set(false);
        // SAFETY: guaranteed by the caller.
        unsafe {
            sqlite::sqlite3_trace_v2(self.db, 0, None, ptr::null_mut());
            if self.capturing.replace(false) {
                uninstall_preupdate(self.db);
            }
        }
        self.observer.hooks_off(self.counters().total_changes());
    }

    /// The connection's counters, read on the thread that holds it (`db` is open while `self`
    /// lives).
    fn counters(&self) -> Connection {
        Connection(self.db)
    }
}

/// The key of the observer in the connection's client data (which SQL cannot reach or
/// replace, unlike a function or a module).
const CLIENT_DATA: &CStr = c"datastore::observe";

/// Installs the hooks that feed `observer`, which lives until the connection closes, and
/// report the connection's statements through `tracing` (those slower than `slow_statements`
/// as such): the commit, rollback and authorizer hooks now, the statement hooks as the
/// connection's queries need them (see [`Installed::query_starts`]).
fn install(
    handle: &Handle,
    observer: ConnObserver,
    slow_statements: Option<Duration>,
) -> Option<Hooks> {
    let db = handle.0;
    let watch = Watch::new(observer.store_id());
    let open = Arc::new(AtomicBool::new(true));
    let installed = Box::into_raw(Box::new(Installed {
        db,
        observer,
        watch,
        slow_statements,
        capturing: Cell::new(false),
        statement_hooks: Cell::new(false),
        pinned: Cell::new(false),
        autocheckpoint: Cell::new(0),
        wal_hook_replaced: Cell::new(false),
        open: Arc::clone(&open),
    }));
    let ctx = installed as *mut c_void;
    // SAFETY: `db` is an open connection (just opened on this thread, not yet shared). `ctx`
    // stays valid until SQLite calls `release` as the connection closes; `release` removes
    // every hook before it frees `ctx`, so no hook can run after. The callbacks match the
    // signatures SQLite expects.
    unsafe {
        if sqlite::sqlite3_set_clientdata(db, CLIENT_DATA.as_ptr(), ctx, Some(release))
            != sqlite::SQLITE_OK
        {
            return None; // out of memory: SQLite already called `release`; nothing is installed
        }
        // Before the hooks, whose pre-update hook comes and goes with subscribers.
        delete_row_by_row(db, ctx);
        sqlite::sqlite3_commit_hook(db, Some(on_commit), ctx);
        sqlite::sqlite3_rollback_hook(db, Some(on_rollback), ctx);
        (*installed).hook_wal();
    }
    Some(Hooks { installed, open })
}

/// Installs the pre-update hook when someone observes and removes it when nobody does, as a
/// statement starts (before it changes any row). Installed, SQLite prepares every changed
/// row's values for it, even when it returns at once (0.13k instructions a row); so a
/// statement is captured whole if a subscriber observed as it started, and not at all
/// otherwise (a subscription that starts while a statement runs sees the statements after).
/// What SQLite compiles does not depend on whether the hook was installed at the time but for
/// a `DELETE` without `WHERE`, which [`one_row_at_a_time`] makes run row by row either way.
/// Whether the statement is captured.
///
/// # Safety
/// Called from a hook of `installed.db`, with the `ctx` SQLite passes to it.
unsafe fn capture_while_observed(installed: &Installed, ctx: *mut c_void) -> bool {
    let observed = installed.observer.anyone_observes();
    if observed != installed.capturing.get() {
        installed.capturing.set(observed);
        // SAFETY: guaranteed by the caller: `db` is open and runs this hook; `ctx` stays valid
        // until `release`, which removes the hook.
        unsafe {
            if observed {
                install_preupdate(installed.db, ctx);
            } else {
                uninstall_preupdate(installed.db);
            }
        }
    }
    observed
}

#[cfg(datastore_preupdate_hook)]
unsafe fn install_preupdate(db: *mut sqlite::sqlite3, ctx: *mut c_void) {
    // SAFETY: as in `install`; the build enabled SQLITE_ENABLE_PREUPDATE_HOOK, so it links.
    unsafe {
        sqlite::sqlite3_preupdate_hook(db, Some(on_preupdate), ctx);
    }
}

#[cfg(not(datastore_preupdate_hook))]
unsafe fn install_preupdate(_db: *mut sqlite::sqlite3, _ctx: *mut c_void) {}

#[cfg(datastore_preupdate_hook)]
unsafe fn uninstall_preupdate(db: *mut sqlite::sqlite3) {
    // SAFETY: as in `release`.
    unsafe {
        sqlite::sqlite3_preupdate_hook(db, None, ptr::null_mut());
    }
}

#[cfg(not(datastore_preupdate_hook))]
unsafe fn uninstall_preupdate(_db: *mut sqlite::sqlite3) {}

/// Runs a hook body; a panic must not unwind into SQLite (it would abort the process).
fn guarded(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}

/// # Safety
/// `ctx` is the pointer `install` passed to SQLite, valid until `release`.
unsafe fn observer<'a>(ctx: *mut c_void) -> &'a ConnObserver {
    // SAFETY: guaranteed by the caller.
    unsafe { &(*(ctx as *const Installed)).observer }
}

/// # Safety
/// As for [`observer`].
unsafe fn installed<'a>(ctx: *mut c_void) -> &'a Installed {
    // SAFETY: guaranteed by the caller.
    unsafe { &*(ctx as *const Installed) }
}

/// SQLite frees a connection's client data early in `sqlite3_close`, before it rolls back an
/// open transaction (which runs the rollback hook): the hooks go first, then the observer.
unsafe extern "C" fn release(ctx: *mut c_void) {
    // SAFETY: `ctx` came from `Box::into_raw` in `install`, and SQLite calls this exactly once,
    // on the thread closing the connection, which still holds a valid `db`.
    unsafe {
        let installed = Box::from_raw(ctx as *mut Installed);
        installed.open.store(false, Ordering::Relaxed);
        let db = installed.db;
        sqlite::sqlite3_commit_hook(db, None, ptr::null_mut());
        sqlite::sqlite3_rollback_hook(db, None, ptr::null_mut());
        sqlite::sqlite3_trace_v2(db, 0, None, ptr::null_mut());
        sqlite::sqlite3_progress_handler(db, 0, None, ptr::null_mut());
        sqlite::sqlite3_wal_hook(db, None, ptr::null_mut());
        uninstall_preupdate(db);
        guarded(move || drop(installed));
    }
}

unsafe extern "C" fn on_commit(ctx: *mut c_void) -> c_int {
    // SAFETY: hooks run only while the connection (and so `ctx`) is alive.
    let installed = unsafe { installed(ctx) };
    if installed.watch.is_lost() {
        // A write in autocommit after the transaction was lost: turned into a rollback.
        guarded(|| installed.watch.refuse());
        return 1;
    }
    if installed.statement_hooks.get() {
        guarded(|| installed.observer.committed());
    } else {
        guarded(|| installed.observer.dormant_committed());
    }
    0
}

/// SQLite calls it once a statement has finished in `sqlite3_step` with no transaction open,
/// having written to the write-ahead log (WAL mode): a commit is written and other connections
/// can read it. A commit waiting for its statement's end is published now: the statement may
/// be read to its end through a cursor its caller keeps (Diesel's `load_iter`), whose end is
/// told only as the cursor is dropped. Then the log is checkpointed as SQLite's own hook would,
/// at its threshold ([`Installed::hook_wal`], which also takes over the threshold a `PRAGMA
/// wal_autocheckpoint = N` sets). While this hook is installed, that pragma reads 0 (SQLite
/// reads its own hook's threshold only), though the log is checkpointed.
unsafe extern "C" fn on_wal(
    ctx: *mut c_void,
    db: *mut sqlite::sqlite3,
    database: *const c_char,
    frames: c_int,
) -> c_int {
    // SAFETY: as in `on_commit`.
    let installed = unsafe { installed(ctx) };
    if installed.statement_hooks.get() {
        guarded(|| {
            installed
                .observer
                // SAFETY: `db` is the open connection whose hook runs, on its thread.
                .commit_visible(|| unsafe { sqlite::sqlite3_total_changes64(db) });
        });
    }
    let threshold = installed.autocheckpoint.get();
    if threshold > 0 && frames >= threshold {
        // SAFETY: as SQLite's own hook does, from this hook, with the name SQLite passed.
        unsafe { sqlite::sqlite3_wal_checkpoint(db, database) };
    }
    sqlite::SQLITE_OK
}

unsafe extern "C" fn on_rollback(ctx: *mut c_void) {
    guarded(|| {
        // SAFETY: as in `on_commit`.
        let installed = unsafe { installed(ctx) };
        // SAFETY: as in `on_commit`; `db` is the connection rolling back.
        if unsafe { rolled_back_by_itself(installed) } {
            lose_transaction(installed, ctx);
        }
        installed.observer.rolled_back();
    });
}

/// Whether SQLite is rolling back an explicit transaction by itself, after an error in a
/// statement: the connection is still inside the transaction (SQLite leaves autocommit mode
/// only after the rollback) and no running statement is a `ROLLBACK` (which also rolls back
/// before it leaves). A failed `COMMIT` has left the transaction when it rolls back. The
/// running statements are those SQLite finds busy (asked here, where the statement hooks may
/// be off; a rollback is rare).
///
/// # Safety
/// Called from the rollback hook of `installed.db`.
unsafe fn rolled_back_by_itself(installed: &Installed) -> bool {
    // SAFETY: `db` is the open connection whose hook runs, on its thread; its statements are
    // alive while listed, and their SQL text is NUL-terminated (or NULL).
    unsafe {
        if sqlite::sqlite3_get_autocommit(installed.db) != 0 {
            return false;
        }
        let mut statement = sqlite::sqlite3_next_stmt(installed.db, ptr::null_mut());
        while !statement.is_null() {
            if sqlite::sqlite3_stmt_busy(statement) != 0 {
                let sql = sqlite::sqlite3_sql(statement);
                if !sql.is_null()
                    && lost::is_rollback(CStr::from_ptr(sql).to_str().unwrap_or_default())
                {
                    return false;
                }
            }
            statement = sqlite::sqlite3_next_stmt(installed.db, statement);
        }
        true
    }
}

/// The connection's transaction is lost: every statement but `ROLLBACK` is refused until a
/// `ROLLBACK` starts, by a progress handler called at every step of the virtual machine
/// (installed only while the transaction is lost).
fn lose_transaction(installed: &Installed, ctx: *mut c_void) {
    installed.watch.lose();
    // SAFETY: `db` is open (its hook runs); `ctx` stays valid until `release`, which removes the
    // handler; `on_progress` has the signature SQLite expects.
    unsafe {
        sqlite::sqlite3_progress_handler(installed.db, 1, Some(on_progress), ctx);
    }
}

/// SQLite also calls it while preparing a statement, before the statement is known: a
/// statement is refused once it runs (its start sets the observer's running statement), so
/// that a `ROLLBACK` can be prepared, start, and end the lost transaction.
unsafe extern "C" fn on_progress(ctx: *mut c_void) -> c_int {
    // SAFETY: as in `on_commit`: the handler is removed before `ctx` is freed.
    let installed = unsafe { installed(ctx) };
    if installed.watch.is_lost() && installed.observer.running_statement().is_some() {
        guarded(|| installed.watch.refuse());
        1 // interrupts the statement
    } else {
        0
    }
}

unsafe extern "C" fn on_trace(
    event: c_uint,
    ctx: *mut c_void,
    stmt: *mut c_void,
    detail: *mut c_void,
) -> c_int {
    guarded(|| {
        // SAFETY: as in `on_commit`. For SQLITE_TRACE_STMT `detail` is the statement's SQL
        // text, NUL-terminated; `stmt` is the running statement, whose connection is ours.
        unsafe {
            let installed = installed(ctx);
            let (observer, db) = (&installed.observer, installed.db);
            if event == sqlite::SQLITE_TRACE_STMT {
                // SQLite reports the start of each trigger or foreign-key action subprogram
                // (one for each row a cascade deletes) under the running statement's handle
                // and text: part of that statement, already recorded.
                let last = observer.running_or_ended();
                // Where ends are not traced, the statement that started last stays the running
                // one until the next starts: a start under its handle is then a new statement
                // that took the address of a finalized one (in a batch) if SQLite counted no
                // run of it yet (it counts a run after reporting its start), or the same
                // statement run again (see `runs_again`).
                let mut run_again = false;
                if last == Some(Statement::Running(stmt as usize)) {
                    if observer.ends_traced() {
                        return;
                    }
                    if sqlite::sqlite3_stmt_status(
                        stmt as *mut sqlite::sqlite3_stmt,
                        sqlite::SQLITE_STMTSTATUS_RUN,
                        0,
                    ) > 0
                    {
                        if !runs_again(stmt as usize, detail as *const c_char) {
                            return;
                        }
                        run_again = true;
                    }
                }
                // A captured statement that SQLite found out of date as it ran (the schema
                // changed) ends, is prepared again, and runs again without a new start; its
                // trigger and foreign-key action subprograms then report theirs under its handle.
                // SQLite counts a run after reporting its start, and each end of a captured
                // statement resets the count: a start under the handle of the statement that
                // ended last, with a run counted since, belongs to that run again.
                if last == Some(Statement::Ended(stmt as usize))
                    && installed.capturing.get()
                    && sqlite::sqlite3_stmt_status(
                        stmt as *mut sqlite::sqlite3_stmt,
                        sqlite::SQLITE_STMTSTATUS_RUN,
                        0,
                    ) > 0
                {
                    return;
                }
                let captured = capture_while_observed(installed, ctx);
                let sql = detail as *const c_char;
                // SQLite reports a statement run from inside another as "-- " and its text.
                // The other, still running, was prepared again (if at all) before it ran this
                // one: asked now, as this one's start takes its place (see `State::shape`).
                // Found among the connection's busy statements first (a statement's own text
                // may begin with a comment, the statement that started last then finalized).
                if !observer.ends_traced()
                    && *sql == b'-' as c_char
                    && *sql.add(1) == b'-' as c_char
                {
                    if let Some(Statement::Running(outer)) = last {
                        if statement_running(db, outer) && reprepared_since_start(outer) {
                            observer.statement_reprepared();
                        }
                    }
                }
                if trace::statements_enabled() {
                    trace::statement(CStr::from_ptr(sql).to_str().unwrap_or("(not UTF-8)"));
                }
                // The statement past leading whitespace and comments, found once.
                let start = past_blanks(sql as *const u8);
                let whole = || {
                    CStr::from_ptr(start as *const c_char)
                        .to_str()
                        .unwrap_or_default()
                };
                let command = command(start);
                // Only savepoint commands are read whole: reading the text of every statement
                // would cost more than the rest of the hook.
                let text = if command == Command::Savepoint {
                    whole()
                } else {
                    ""
                };
                if installed.watch.is_lost() && installed.watch.ended_by(whole()) {
                    // The owner ends the lost transaction: statements run again.
                    installed.watch.recover();
                    sqlite::sqlite3_progress_handler(db, 0, None, ptr::null_mut());
                }
                // A fresh count of the statement's re-preparations (see `statement_ended`), for
                // a captured statement only: one that captures nothing needs no schema epoch,
                // and the first subscriber starts a new one anyway (`Hub::subscribe`).
                if captured {
                    sqlite::sqlite3_stmt_status(
                        stmt as *mut sqlite::sqlite3_stmt,
                        sqlite::SQLITE_STMTSTATUS_REPREPARE,
                        1,
                    );
                }
                // A fresh count of the statement's steps, for `runs_again`, where it is the
                // signal (ends not traced).
                if !observer.ends_traced() {
                    sqlite::sqlite3_stmt_status(
                        stmt as *mut sqlite::sqlite3_stmt,
                        sqlite::SQLITE_STMTSTATUS_VM_STEP,
                        1,
                    );
                }
                observer.statement_started(
                    stmt as usize,
                    text,
                    &Connection(db),
                    command == Command::Schema,
                    captured,
                    run_again,
                );
            } else if event == sqlite::SQLITE_TRACE_PROFILE {
                let autocommit = sqlite::sqlite3_get_autocommit(db) != 0;
                // Whether SQLite prepared the statement again while it ran, having found the
                // schema changed by another connection (asked of a captured statement only).
                let reprepared = installed.capturing.get() && {
                    let stmt = stmt as *mut sqlite::sqlite3_stmt;
                    // Its runs counted from here (see the start's test for a run again).
                    sqlite::sqlite3_stmt_status(stmt, sqlite::SQLITE_STMTSTATUS_RUN, 1);
                    sqlite::sqlite3_stmt_status(stmt, sqlite::SQLITE_STMTSTATUS_REPREPARE, 1) > 0
                };
                // Reset or finalized while it still ran: SQLite reports the end before it halts
                // the statement (and commits, in autocommit); ended in `sqlite3_step`, it halted.
                let reset = sqlite::sqlite3_stmt_busy(stmt as *mut sqlite::sqlite3_stmt) != 0;
                observer.statement_ended(stmt as usize, autocommit, reprepared, reset, || {
                    sqlite::sqlite3_total_changes64(db)
                });
                // For SQLITE_TRACE_PROFILE `detail` points to the statement's running time in
                // nanoseconds.
                let elapsed = Duration::from_nanos(*(detail as *const u64));
                if let Some(threshold) = installed.slow_statements {
                    if elapsed >= threshold {
                        let sql = sqlite::sqlite3_sql(stmt as *mut sqlite::sqlite3_stmt);
                        if !sql.is_null() {
                            trace::slow(
                                CStr::from_ptr(sql).to_str().unwrap_or("(not UTF-8)"),
                                elapsed,
                                threshold,
                            );
                        }
                    }
                }
            }
        }
    });
    0
}

/// The connection whose hook runs, as the observer reads its counters.
struct Connection(*mut sqlite::sqlite3);

impl Counters for Connection {
    fn total_changes(&self) -> i64 {
        // SAFETY: made in a hook of this open connection, and used only during it.
        unsafe { sqlite::sqlite3_total_changes64(self.0) }
    }

    fn changes(&self) -> i64 {
        // SAFETY: as in `total_changes`.
        unsafe { sqlite::sqlite3_changes64(self.0) }
    }

    fn autocommit(&self) -> bool {
        // SAFETY: as in `total_changes`.
        unsafe { sqlite::sqlite3_get_autocommit(self.0) != 0 }
    }
}

/// What a statement is, as far as the hooks care: told by its first word, in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// `SAVEPOINT`, `RELEASE` or `ROLLBACK`: read whole by the savepoint bookkeeping.
    Savepoint,
    /// `CREATE`, `ALTER` or `DROP`: changes the schema.
    Schema,
    Other,
}

/// The first words the hooks look for, and what each makes a statement.
const COMMANDS: [(&[u8], Command); 6] = [
    (b"SAVEPOINT", Command::Savepoint),
    (b"RELEASE", Command::Savepoint),
    (b"ROLLBACK", Command::Savepoint),
    (b"CREATE", Command::Schema),
    (b"ALTER", Command::Schema),
    (b"DROP", Command::Schema),
];

/// What the statement `sql` is, read from at most its first few bytes: most statements
/// (`SELECT`, `INSERT`, `UPDATE`, `DELETE`, `BEGIN`, `COMMIT`) by their first two letters
/// alone, which begin none of [`COMMANDS`].
///
/// # Safety
/// `sql` points to a NUL-terminated string, past its leading blanks ([`past_blanks`]).
unsafe fn command(sql: *const u8) -> Command {
    // SAFETY: guaranteed by the caller; reading stops at the NUL, and the second byte is read
    // only after a first that is not the NUL.
    let prefix = unsafe {
        let first = *sql;
        let second = if first == 0 { 0 } else { *sql.add(1) };
        [first.to_ascii_uppercase(), second.to_ascii_uppercase()]
    };
    if !COMMANDS.iter().any(|(word, _)| word[..2] == prefix) {
        return Command::Other;
    }
    // SAFETY: guaranteed by the caller.
    let (word, len) = unsafe { first_word(sql) };
    COMMANDS
        .iter()
        .find(|(command, _)| *command == &word[..len])
        .map_or(Command::Other, |&(_, command)| command)
}

/// Where the statement `sql` begins, past whitespace and comments (`-- ...` to the end of the
/// line, `/* ... */`), as SQLite's tokenizer skips them.
///
/// # Safety
/// `sql` points to a NUL-terminated string.
unsafe fn past_blanks(sql: *const u8) -> *const u8 {
    // SAFETY: guaranteed by the caller; each byte is read only after the bytes before it were
    // found not to be the NUL.
    unsafe {
        let mut p = sql;
        loop {
            match (*p, if *p == 0 { 0 } else { *p.add(1) }) {
                (byte, _) if byte.is_ascii_whitespace() => p = p.add(1),
                (b'-', b'-') => {
                    p = p.add(2);
                    while *p != 0 && *p != b'\n' {
                        p = p.add(1);
                    }
                }
                (b'/', b'*') => {
                    p = p.add(2);
                    while *p != 0 && !(*p == b'*' && *p.add(1) == b'/') {
                        p = p.add(1);
                    }
                    if *p != 0 {
                        p = p.add(2);
                    }
                }
                _ => return p,
            }
        }
    }
}

/// The word `sql` starts with, upper-cased, if it is at most nine letters long (longer words
/// are no command this module looks for); read from at most its first ten bytes.
///
/// # Safety
/// `sql` points to a NUL-terminated string.
unsafe fn first_word(sql: *const u8) -> ([u8; 9], usize) {
    let mut word = [0u8; 9];
    let mut len = 0;
    // SAFETY: guaranteed by the caller; reading stops at the NUL, which is not a letter.
    unsafe {
        let mut p = sql;
        while (*p).is_ascii_alphabetic() {
            if len == word.len() {
                return (word, 0);
            }
            word[len] = (*p).to_ascii_uppercase();
            len += 1;
            p = p.add(1);
        }
    }
    (word, len)
}

#[cfg(datastore_preupdate_hook)]
unsafe extern "C" fn on_preupdate(
    ctx: *mut c_void,
    db: *mut sqlite::sqlite3,
    op: c_int,
    database: *const c_char,
    table: *const c_char,
    _old_rowid: sqlite::sqlite3_int64,
    _new_rowid: sqlite::sqlite3_int64,
) {
    // SAFETY: as in `on_commit`.
    let observer = unsafe { observer(ctx) };
    // A panic must not unwind into SQLite: the change it failed to take is told as missed.
    let captured = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in `on_commit`; SQLite passes the table's NUL-terminated name, and the
        // preupdate accessors are valid for the duration of this callback.
        unsafe {
            // Also when every subscriber left since the statement started (the hook goes at
            // the next start): the row is then counted as one nobody was given.
            let depth = sqlite::sqlite3_preupdate_depth(db);
            // The models are tables of `main`: a table of the same name in an attached database
            // or in `temp` is another table, whose rows are not the model's.
            if !is_main(database as *const u8) {
                observer.changed_elsewhere(depth);
                return;
            }
            let table = HookTable::new(table);
            let count = sqlite::sqlite3_preupdate_count(db);
            let sides = (op != sqlite::SQLITE_INSERT, op != sqlite::SQLITE_DELETE);
            observer.changed(&table, depth, sides, |rows, side| {
                let accessor = match side {
                    Side::Old => sqlite::sqlite3_preupdate_old,
                    Side::New => sqlite::sqlite3_preupdate_new,
                };
                for i in 0..count {
                    let mut value = ptr::null_mut();
                    if accessor(db, i, &mut value) == sqlite::SQLITE_OK {
                        push_value(rows, value);
                    } else {
                        rows.push_null();
                    }
                }
            });
        }
    }));
    if captured.is_err() {
        observer.change_lost();
    }
}

/// The name of the table a pre-update hook is called for: a NUL-terminated string SQLite
/// passes, valid while the hook runs.
#[cfg_attr(not(datastore_preupdate_hook), allow(dead_code))]
struct HookTable<'a>(*const c_char, PhantomData<&'a CStr>);

#[cfg_attr(not(datastore_preupdate_hook), allow(dead_code))]
impl HookTable<'_> {
    /// # Safety
    /// `name` points to a NUL-terminated string that outlives the value made.
    unsafe fn new(name: *const c_char) -> Self {
        Self(name, PhantomData)
    }
}

impl TableName for HookTable<'_> {
    /// Read up to the byte after `name`'s length at most: cheaper than measuring the name and
    /// comparing the two (most changes are of a table seen before).
    fn is(&self, name: &str) -> bool {
        let ptr = self.0 as *const u8;
        // SAFETY: the string is NUL-terminated and outlives `self` (see `new`); each byte is
        // read only after the ones before it matched `name`, none of which is the NUL (a
        // table's name holds none; if `name` did, the match stops there).
        unsafe {
            name.bytes()
                .enumerate()
                .all(|(i, byte)| byte != 0 && *ptr.add(i) == byte)
                && *ptr.add(name.len()) == 0
        }
    }

    fn to_bytes(&self) -> &[u8] {
        // SAFETY: as in `is`.
        unsafe { CStr::from_ptr(self.0) }.to_bytes()
    }
}

/// Whether the start SQLite reports under the handle of `stmt`, the running statement (its
/// end not traced), with the text `sql`, is the statement's own again rather than one of its
/// trigger or foreign-key action subprograms'. A statement stepped again after its last row
/// (as Diesel's row iterator does when asked past its end) is reset and runs again, a new
/// statement, reported with the statement's own text (a named trigger's start is reported
/// with a text of its own, a foreign-key action's with the statement's). A subprogram starts
/// inside the `sqlite3_step` call that started its statement (every change of a write is made
/// in its first step), before SQLite adds that call's operations to the statement's count of
/// steps, reset as the statement started; a run again starts in a later call. A statement
/// prepared again since it started (and run again in the same call, without a start: see
/// `on_trace`) keeps its count: its subprograms' starts are not runs again. Not told apart: a
/// statement that captures nothing keeps its count of re-preparations (see `on_trace`), and so
/// a run again of it may be taken for a subprogram (its rows nobody is given either way); and
/// a run again whose first step returned `SQLITE_BUSY` (the write lock not had within the busy
/// timeout) and that is stepped again resumes without a start, so that a foreign-key action
/// of its cascade is taken for a run again (the statement's rows before it are then told
/// missed: see `ConnObserver::statement_started`).
///
/// # Safety
/// `stmt` is a live statement, on the thread that holds its connection.
unsafe fn runs_again(stmt: usize, sql: *const c_char) -> bool {
    let stmt = stmt as *mut sqlite::sqlite3_stmt;
    // SAFETY: guaranteed by the caller. The counts are unsigned in SQLite, read as `int`.
    unsafe {
        ptr::eq(sql, sqlite::sqlite3_sql(stmt))
            && sqlite::sqlite3_stmt_status(stmt, sqlite::SQLITE_STMTSTATUS_VM_STEP, 0) != 0
            && sqlite::sqlite3_stmt_status(stmt, sqlite::SQLITE_STMTSTATUS_REPREPARE, 0) == 0
    }
}

/// Whether SQLite prepared the statement `stmt` again since its start, where a captured
/// statement's count of re-preparations is reset (see `on_trace`).
///
/// # Safety
/// `stmt` is a live statement, on the thread that holds its connection.
unsafe fn reprepared_since_start(stmt: usize) -> bool {
    // SAFETY: guaranteed by the caller.
    unsafe {
        sqlite::sqlite3_stmt_status(
            stmt as *mut sqlite::sqlite3_stmt,
            sqlite::SQLITE_STMTSTATUS_REPREPARE,
            0,
        ) > 0
    }
}

/// Whether `stmt` is a statement of `db` that is running: one SQLite lists (not finalized)
/// and finds busy.
///
/// # Safety
/// `db` is an open connection, on the thread that holds it. `stmt` is only compared, until
/// found listed.
unsafe fn statement_running(db: *mut sqlite::sqlite3, stmt: usize) -> bool {
    // SAFETY: guaranteed by the caller; the list is walked on the connection's thread, and no
    // statement is finalized meanwhile; a listed statement is live.
    unsafe {
        let mut next = sqlite::sqlite3_next_stmt(db, ptr::null_mut());
        while !next.is_null() {
            if next as usize == stmt {
                return sqlite::sqlite3_stmt_busy(next) != 0;
            }
            next = sqlite::sqlite3_next_stmt(db, next);
        }
    }
    false
}

/// Whether the database name `name` is `main` (read up to its sixth byte at most).
///
/// # Safety
/// `name` points to a NUL-terminated string.
#[cfg_attr(not(datastore_preupdate_hook), allow(dead_code))]
unsafe fn is_main(name: *const u8) -> bool {
    // SAFETY: guaranteed by the caller; each byte is read only after the ones before it
    // matched `main`, none of them the NUL.
    unsafe {
        b"main\0"
            .iter()
            .enumerate()
            .all(|(i, &byte)| *name.add(i) == byte)
    }
}

/// Copies a value SQLite owns into the row.
///
/// # Safety
/// `value` is a valid `sqlite3_value` for the duration of the call.
#[cfg_attr(not(datastore_preupdate_hook), allow(dead_code))]
#[inline(always)] // once per value captured, in the pre-update hook's loop
unsafe fn push_value(row: &mut Rows, value: *mut sqlite::sqlite3_value) {
    // SAFETY: guaranteed by the caller; text and blob pointers are valid for the byte lengths
    // SQLite reports, until the value changes, and are copied at once.
    unsafe {
        match sqlite::sqlite3_value_type(value) {
            sqlite::SQLITE_INTEGER => row.push_integer(sqlite::sqlite3_value_int64(value)),
            sqlite::SQLITE_FLOAT => row.push_real(sqlite::sqlite3_value_double(value)),
            // A UTF-8 text's bytes are read as a blob's: `sqlite3_value_text` would first copy
            // a text SQLite holds without its terminating NUL (as a record's are) to add one.
            // The values a pre-update hook reads are the caller's to convert (SQLite hands out
            // copies), and text to blob converts nothing but the value's type flags.
            sqlite::SQLITE_TEXT if sqlite::sqlite3_value_encoding(value) == sqlite::SQLITE_UTF8 => {
                let bytes = sqlite::sqlite3_value_blob(value) as *const u8;
                let len = sqlite::sqlite3_value_bytes(value) as usize;
                row.push_text(if bytes.is_null() {
                    &[]
                } else {
                    std::slice::from_raw_parts(bytes, len)
                });
            }
            sqlite::SQLITE_TEXT => {
                let text = sqlite::sqlite3_value_text(value);
                let len = sqlite::sqlite3_value_bytes(value) as usize;
                row.push_text(if text.is_null() {
                    &[]
                } else {
                    std::slice::from_raw_parts(text, len)
                });
            }
            sqlite::SQLITE_BLOB => {
                let blob = sqlite::sqlite3_value_blob(value) as *const u8;
                let len = sqlite::sqlite3_value_bytes(value) as usize;
                row.push_blob(if blob.is_null() {
                    &[]
                } else {
                    std::slice::from_raw_parts(blob, len)
                });
            }
            _ => row.push_null(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Command;
    use std::ffi::CStr;

    fn command(sql: &CStr) -> Command {
        // SAFETY: a `CStr` is NUL-terminated.
        unsafe { super::command(super::past_blanks(sql.as_ptr() as *const u8)) }
    }

    fn first_word_is_savepoint_command(sql: &CStr) -> bool {
        command(sql) == Command::Savepoint
    }

    #[test]
    fn schema_commands_are_told_by_their_first_word() {
        let is = |sql: &CStr| command(sql) == Command::Schema;
        for sql in [
            c"ALTER TABLE t DROP COLUMN x",
            c"  create index i on t(a)",
            c"Drop TABLE t",
            c"-- why\n  DROP TABLE t",
            c"/* a */ /* b */ALTER TABLE t ADD COLUMN c",
        ] {
            assert!(is(sql), "{sql:?}");
        }
        for sql in [
            c"INSERT INTO alter_log VALUES (1)",
            c"",
            c"CREATED",
            c"ALTERATION",
            c"SELECT 1",
            c"-- DROP TABLE t",
            c"/* DROP TABLE t",
            c"/* DROP */ SELECT 1",
        ] {
            assert!(!is(sql), "{sql:?}");
        }
    }

    #[test]
    fn a_hook_table_is_only_its_own_name() {
        use crate::observe::sqlite::TableName;
        // SAFETY: a `CStr` literal is NUL-terminated and static.
        let table = unsafe { super::HookTable::new(c"posts".as_ptr()) };
        assert!(table.is("posts"));
        for other in ["post", "postss", "", "Posts", "posts\0", "comments"] {
            assert!(!table.is(other), "{other:?}");
        }
        // SAFETY: as above.
        assert!(unsafe { super::HookTable::new(c"".as_ptr()) }.is(""));
        assert_eq!(table.to_bytes(), b"posts");
    }

    #[test]
    fn only_main_is_main() {
        // SAFETY: a `CStr` is NUL-terminated.
        let is = |name: &CStr| unsafe { super::is_main(name.as_ptr() as *const u8) };
        assert!(is(c"main"));
        for other in [c"temp", c"aux", c"mainly", c"mai", c"", c"MAIN"] {
            assert!(!is(other), "{other:?}");
        }
    }

    #[test]
    fn only_savepoint_commands_are_read_whole() {
        for sql in [
            c"SAVEPOINT diesel_savepoint_1",
            c"  release savepoint a",
            c"RollBack TO b",
            c"ROLLBACK",
            c"\tsavepoint c",
            c"/* undo */ ROLLBACK TO a",
            c"-- keep\nRELEASE a",
        ] {
            assert!(first_word_is_savepoint_command(sql), "{sql:?}");
        }
        for sql in [
            c"SELECT * FROM posts",
            c"",
            c"   ",
            c"SAVEPOINTS",
            c"SAVE POINT a",
            c"REPLACE INTO t VALUES (1)",
            c"ROLL",
            c"S",
            c" sa",
            c"SELECT 'SAVEPOINT'",
        ] {
            assert!(!first_word_is_savepoint_command(sql), "{sql:?}");
        }
    }
}
