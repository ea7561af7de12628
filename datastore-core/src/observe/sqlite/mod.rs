//! Where SQLite's changes are captured: one connection's view of its changes, reported by the
//! hooks `ffi/sqlite.rs` installs, kept per transaction (the running statement's once it is over),
//! cut back by savepoint rollbacks and failed statements, and handed to the hub once committed.
//!
//! SQLite's hooks alone over-report: a `ROLLBACK TO SAVEPOINT` is invisible to them, and the
//! rows of a statement that fails half-way were reported before they were undone. So:
//! - a statement's changes are kept only if it completed, which the change counters tell: the
//!   total advances when a statement succeeds, never when one is undone, but for its triggers'
//!   rows, counted as they are written; the statement's own count (`sqlite3_changes64`) is
//!   set only once it succeeded. This is checked when the next statement starts (the counters
//!   are final by then) or when the statement commits. A statement that changed no row of its
//!   own, only its triggers did, looks the same to the counters whether it succeeded or
//!   failed: the query's error tells (see [`ConnObserver::query_failed`]);
//! - savepoints are followed from the statements themselves (`SAVEPOINT`, `RELEASE`,
//!   `ROLLBACK TO`), whoever runs them, observed or not;
//! - a commit takes a sequence number inside the commit hook (SQLite commits one at a time, so
//!   numbers follow commit order), and is published once the committing statement is over:
//!   as the next statement starts, or Diesel's query ends (Diesel resets a statement before it
//!   reports the end of its query), after the commit: other connections see the data by then,
//!   and a commit that failed has rolled back (the rollback hook voids it) instead;
//! - statements' ends are told by those events: SQLite's own (its profile event) costs every
//!   statement two reads of the clock, and is traced only where they are not enough (a
//!   connection whose instrumentation its user replaced gets no query events; slow-statement
//!   reports time statements). Where it is, a commit is published at that event, once the
//!   statement finished in `sqlite3_step`; one made while a statement is reset before its end
//!   (an autocommit `RETURNING` statement read only in part) comes after the event, and is
//!   published at Diesel's end of the query, or at the commit hook on a connection without
//!   query events or where the reset comes after the query's end;
//! - a statement SQLite prepares again as it runs (another connection changed the schema)
//!   opens a new schema epoch before its first row (see the schema watch below).
//!
//! In WAL mode (the store's file databases), where ends are not traced, a commit made as a
//! statement finishes in `sqlite3_step` with no transaction open is published as SQLite calls
//! its WAL hook, right after, once the commit is written ([`ConnObserver::commit_visible`]):
//! also one whose statement a caller steps to its end through a cursor (Diesel's `load_iter`)
//! and then keeps, whose end is told only as the cursor is dropped.
//!
//! Where ends are not traced, a statement SQLite runs again within its query (a Diesel
//! iterator asked for a row after its last, which makes SQLite reset and run the statement
//! again) is told from its first run by the statement's count of steps (`runs_again` in
//! `ffi::sqlite`), with the cases it cannot tell documented in RELIABILITY.md; and without the
//! WAL hook (not in WAL mode), the commit of a statement stepped to its end through a kept
//! cursor is published when the cursor is dropped (Diesel's end of the query), holding back
//! later commits of the store until then (not covered, RELIABILITY.md). A statement run from
//! inside the running one (SQLite reports it as `-- ` and its text: a
//! table-valued pragma's, a virtual table's, a function's own SQL) takes the running one's
//! place as it starts; the running one's re-preparation is asked then (it is alive, and was
//! prepared again before it ran anything).
//!
//! While nobody observes, the statement hooks are off between queries (see `ffi::sqlite`), and
//! what they would have counted for a subscription that starts mid-transaction is kept
//! without them ([`Dormant`]).

pub(crate) mod catalog;

use std::cell::{Cell, RefCell, RefMut};
use std::ffi::CStr;
use std::sync::Arc;

use crate::observe::hub::{self, Hub};
use crate::observe::spare::Spares;
use crate::observe::{Batch, Mark, Op, RawChange, Rows, Shape};

pub(crate) struct ConnObserver {
    hub: Arc<Hub>,
    /// The buffers its published batches give back.
    spares: Spares,
    /// Only the hooks of the one connection touch it, never two at a time: a `RefCell`.
    state: RefCell<State>,
    /// A statement that changes the schema was prepared while the statement hooks were off
    /// (set by the authorizer, which runs as SQLite prepares a statement).
    schema_prepared: Cell<bool>,
    /// SQLite prepared a statement since the running one started (set by the authorizer): the
    /// running statement again, having found the schema changed by another connection, or one
    /// run from inside it.
    prepared_since_start: Cell<bool>,
    /// The statement hooks report each statement's end (SQLite's profile event), where a
    /// statement's re-preparation is counted ([`ConnObserver::statement_ended`]); otherwise
    /// the authorizer's `prepared_since_start` tells it (see [`State::shape`]).
    ends_traced: Cell<bool>,
    /// Changes of the open transaction the capture failed to take (it panicked: see
    /// [`ConnObserver::change_lost`]), told to every subscriber as missed at its commit.
    lost: Cell<u64>,
}

/// A statement handle, running or ended (see [`ConnObserver::running_or_ended`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Statement {
    Running(usize),
    Ended(usize),
}

/// What the observer reads of its connection's state when a statement starts (all but the
/// total only when it needs to).
pub(crate) trait Counters {
    /// The rows all statements changed so far (`sqlite3_total_changes64`).
    fn total_changes(&self) -> i64;
    /// The rows the last statement that completed changed itself (`sqlite3_changes64`).
    fn changes(&self) -> i64;
    /// Whether no transaction is open (`sqlite3_get_autocommit`).
    fn autocommit(&self) -> bool;
}

/// The name of a changed row's table, as the hook is given it: compared with the names seen
/// before as it is, without measuring it first (SQLite passes a C string, and most changes are
/// of a table seen before).
pub(crate) trait TableName {
    /// Whether it is `name`.
    fn is(&self, name: &str) -> bool;
    /// The name's bytes.
    fn to_bytes(&self) -> &[u8];
}

impl TableName for CStr {
    fn is(&self, name: &str) -> bool {
        self.to_bytes() == name.as_bytes()
    }

    fn to_bytes(&self) -> &[u8] {
        CStr::to_bytes(self)
    }
}

/// Which row of a change a hook reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The row before the change.
    Old,
    /// The row after the change.
    New,
}

#[derive(Default)]
struct State {
    /// The values of the open transaction's captured rows.
    rows: Rows,
    /// Where the running statement's rows start.
    statement_rows: Mark,
    /// Tables seen, by name: whether anyone observes them, and their shared name. Valid while
    /// the hub's subscriptions are those of `seen_generation`.
    /// (As the hook reports the name; the same, shared by the table's changes, if anyone
    /// observes it.)
    seen: Vec<(Box<str>, Option<Arc<str>>)>,
    seen_generation: u64,
    /// The handle of the running statement (where statements' ends are not traced: of the
    /// statement that started last, until the next starts or Diesel's query ends).
    running: Option<usize>,
    /// The handle of the statement that ended last: in the running query, on a connection whose
    /// query events reach the observer (see [`ConnObserver::running_or_ended`]).
    ended: Option<usize>,
    /// A statement is being reset or finalized: a commit now happens outside `sqlite3_step`.
    resetting: bool,
    /// A query of Diesel's runs: its end will be told ([`ConnObserver::query_finished`]).
    query_running: bool,
    /// Where the running statement's changes, not yet known to stick, start in
    /// `transaction` (they are captured there, and cut off if they do not stick).
    statement_changes: usize,
    /// The running statement changed a row itself (not through a trigger or a cascade).
    statement_wrote: bool,
    /// The running statement deleted a row through a cascade or a trigger: its changes are
    /// put in delivery order once it sticks (see [`put_in_delivery_order`]).
    statement_deleted_below: bool,
    /// A statement started during the running query (see [`ConnObserver::query_failed`]).
    query_ran_statement: bool,
    /// The statement that ran last is taken to have failed, inside a transaction that goes on.
    last_statement_failed: bool,
    /// Captured rows of the open transaction that failed statements' triggers wrote, which
    /// SQLite undid with them or kept (see [`ConnObserver::statement_started`]): told to every
    /// subscriber as missed when it commits (rows of tables nobody observed are counted as
    /// unseen, see [`Unseen`]).
    doubtful: u64,
    /// The total change counter when the running statement started.
    started_at: i64,
    /// Changes of completed statements of the open transaction.
    transaction: Vec<RawChange>,
    /// Open savepoints.
    savepoints: Vec<Savepoint>,
    /// A `RELEASE` of the savepoint that began the transaction ran: it commits, or fails (a
    /// deferred foreign key still violated) and leaves every savepoint in place. Which, the
    /// next statement's start tells (see [`State::savepoint_command`]).
    releasing_transaction: bool,
    /// A commit awaiting the end of its statement.
    committed: Option<(u64, Batch)>,
    /// A statement of the open transaction (or the running one) changes the schema: the
    /// columns of rows captured until it settles are not known.
    schema_changing: bool,
    /// The running statement's re-preparation was already counted as a schema change.
    reload_counted: bool,
    /// The running statement captured a row (see [`State::shape`]).
    statement_captured_row: bool,
    /// Whether the running statement is captured (someone observed as it started), and the
    /// hub's subscription generation then.
    running_captured: bool,
    running_generation: u64,
    /// Rows the open transaction wrote that no subscriber was given (see [`Unseen`]).
    unseen: Option<Unseen>,
    /// The waiting commit was made by a statement not captured, whose rows are counted into
    /// its gap when it ends.
    commit_awaits_rows: bool,
    /// The open transaction committed or rolled back: rows counted from now until the next
    /// statement starts are the running statement's, and belong to no open transaction.
    transaction_over: bool,
    /// What the connection wrote while its statement hooks were off (see [`Dormant`]).
    dormant: Dormant,
}

/// While nobody observes, the store turns a connection's statement hooks off (`ffi::sqlite`):
/// no statement is captured then, and the hooks' only work would be counting the rows a
/// transaction writes and following its savepoints, for a subscription that starts before it
/// commits. Both are kept here instead, from the change counter as the connection's queries
/// start and from the transaction and savepoint commands SQLite's authorizer is asked about as
/// each is prepared (right before it runs: Diesel keeps no such statement prepared); when the
/// hooks come back on inside the transaction, or it commits with someone observing, its rows
/// are told missed.
#[derive(Default)]
struct Dormant {
    /// The change counter as the open transaction (or the query, outside one) began.
    began_at: i64,
    /// Rows written since and undone by a rollback to a savepoint.
    undone: i64,
    /// The open savepoints.
    savepoints: Vec<DormantSavepoint>,
    /// The change counter as the running query began.
    query_began_at: i64,
    /// The query committed while someone observed: the rows written since this change count
    /// (the earliest start of the query or of a transaction it committed) are told missed once
    /// it has finished (see [`ConnObserver::dormant_query_finished`]).
    commit_seen: Option<i64>,
}

/// A savepoint taken while the statement hooks were off.
struct DormantSavepoint {
    name: String,
    /// The change counter, and [`Dormant::undone`], as it was taken.
    taken_at: i64,
    undone: i64,
    /// Taken outside a transaction: it began one.
    began_transaction: bool,
}

impl Dormant {
    /// The rows the open transaction wrote that stuck, by the change counter now at `total`.
    fn rows(&self, total: i64) -> u64 {
        (total - self.began_at - self.undone).max(0) as u64
    }

    /// A transaction begins, the change counter at `total`.
    fn begin(&mut self, total: i64) {
        self.began_at = total;
        self.undone = 0;
        self.savepoints.clear();
    }
}

/// An open savepoint, with where the transaction's changes and rows stood when it was taken.
struct Savepoint {
    name: String,
    changes: usize,
    rows: Mark,
    /// The rows no subscriber was given when it was taken: those written after it are undone
    /// with it.
    unseen: Option<Unseen>,
    /// [`State::doubtful`] when it was taken.
    doubtful: u64,
    /// Taken outside a transaction: it began one, which its `RELEASE` commits.
    began_transaction: bool,
}

/// Rows a transaction wrote that no subscriber was given: written by a statement that started
/// while nobody observed, or to a table nobody observed at the time. They matter only to a
/// subscription that started after they were written and before the transaction committed:
/// it sees the commit, but not those rows, so it is told it missed them (a live query then
/// reads its result again). Told only if the subscriptions changed since the first of them
/// (the hub's generation), so that writes to tables nobody observes cost nobody a refresh.
#[derive(Debug, Clone, Copy)]
struct Unseen {
    rows: u64,
    /// The generation when the first of them was written.
    since: u64,
}

impl ConnObserver {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            spares: Spares::default(),
            state: RefCell::new(State::default()),
            schema_prepared: Cell::new(false),
            prepared_since_start: Cell::new(false),
            ends_traced: Cell::new(false),
            lost: Cell::new(0),
        }
    }

    fn state(&self) -> RefMut<'_, State> {
        self.state.borrow_mut()
    }

    /// The store whose connection this is (see `Store::id`).
    pub fn store_id(&self) -> usize {
        Arc::as_ptr(&self.hub) as usize
    }

    /// Whether any subscriber of the store observes any table: when none does, no change is
    /// captured (read without a lock).
    pub fn anyone_observes(&self) -> bool {
        self.hub.active()
    }

    /// The handle of the statement running on the connection, if one is.
    pub fn running_statement(&self) -> Option<usize> {
        self.state.try_borrow().ok()?.running
    }

    /// The handle of the running statement, or else of the statement that ended last: a
    /// statement SQLite prepares again as it runs (the schema changed) ends, and runs again
    /// without a new start.
    pub fn running_or_ended(&self) -> Option<Statement> {
        let state = self.state.try_borrow().ok()?;
        match (state.running, state.ended) {
            (Some(running), _) => Some(Statement::Running(running)),
            (None, Some(ended)) => Some(Statement::Ended(ended)),
            (None, None) => None,
        }
    }

    /// A query of the connection starts (with the statement hooks on). No statement that
    /// starts from now on is one that ended before, run again: SQLite runs a statement again
    /// after preparing it again (see [`Self::running_or_ended`]) within the same call of
    /// `sqlite3_step`, and so within its query.
    pub fn query_started(&self) {
        let mut state = self.state();
        state.query_ran_statement = false;
        state.ended = None;
        state.query_running = true;
    }

    /// The query that started last finished (with the statement hooks on): Diesel reports it
    /// once its statement was reset (a query that succeeded; a failed `execute` is reported
    /// before, its statement halted already), or no more query events will come (the
    /// connection's instrumentation was replaced). `counters` reads the change counter and
    /// whether no transaction is open, asked only if a commit waits. With none open, the
    /// commit succeeded (one that failed after its hook was voided by the rollback hook, which
    /// runs before the transaction closes) and other connections can read it; the rows its
    /// statement wrote uncaptured are counted into its gap first (a commit made as a statement
    /// is reset comes after the statement's end event). A commit that failed busy leaves its
    /// transaction open, and waits. A last statement that captured no row is asked whether
    /// SQLite prepared it again ([`ConnObserver::prepared_again`]).
    #[inline] // at the end of every query while the hooks are on: a check, most often
    pub fn query_finished(&self, counters: impl FnOnce() -> (i64, bool)) {
        let mut state = self.state();
        state.query_running = false;
        // Its last statement is over (where its end is traced, it was told already). One
        // that captured no row was not asked whether SQLite prepared it again (see
        // `State::shape`): asked now. (A statement of a batch followed by another is not: the
        // next one's preparation cannot be told from its own again.)
        let last = state.running.take();
        let reloaded = last.is_some()
            && state.running_captured
            && !state.statement_captured_row
            && !state.reload_counted
            && self.prepared_again()
            && state.count_reload();
        if state.committed.is_none() && !state.schema_changing {
            drop(state);
            if reloaded {
                self.hub.schema_changed();
            }
            return;
        }
        let (total_changes, autocommit) = counters();
        let schema_changed = state.schema_watch_over(|| autocommit) || reloaded;
        let committed = if autocommit {
            state.settle_commit(|| total_changes)
        } else {
            None
        };
        drop(state);
        if let Some((seq, batch)) = committed {
            self.deliver(seq, batch);
        }
        if schema_changed {
            self.hub.schema_changed();
        }
    }

    /// A commit is written and other connections can read it (SQLite's WAL hook, called as a
    /// statement finishes in `sqlite3_step` with no transaction open): one waiting for its
    /// statement's end is published now, the rows its statement wrote uncaptured counted into
    /// its gap first (`total_changes` reads the change counter, final by then).
    pub fn commit_visible(&self, total_changes: impl FnOnce() -> i64) {
        let mut state = self.state();
        if state.committed.is_none() {
            return;
        }
        let committed = state.settle_commit(total_changes);
        drop(state);
        if let Some((seq, batch)) = committed {
            self.deliver(seq, batch);
        }
    }

    /// The query that ran last failed (Diesel's error), inside a transaction that goes on: if
    /// a statement of it started, the last that did is taken to have failed. SQLite's counters
    /// cannot tell a statement that failed having changed no row of its own (only its triggers
    /// did) from one that succeeded without changing one (an `INSERT OR IGNORE` of a row
    /// already there); the query's error does, but for one case: a batch whose next statement
    /// failed to prepare has the last statement that ran taken to have failed, and that
    /// statement's trigger rows are told missed rather than delivered (see
    /// [`State::doubtful`]).
    pub fn query_failed(&self) {
        let mut state = self.state();
        // Cleared only as the next statement starts (a query that fails before running any
        // statement leaves it as it is).
        state.last_statement_failed |= state.query_ran_statement;
    }

    /// A row changes: `read` copies its old and new values (as the operation has them). The
    /// statement's first captured row asks whether SQLite prepared it again since it started
    /// (see [`State::shape`]).
    #[inline] // called from one place, the pre-update hook, once a row
    pub fn changed(
        &self,
        table: &(impl TableName + ?Sized),
        depth: i32,
        (has_old, has_new): (bool, bool),
        mut read: impl FnMut(&mut Rows, Side),
    ) {
        let mut state = self.state();
        state.statement_wrote |= depth == 0;
        let Some(name) = state.observed(table, &self.hub) else {
            if !hub::internal_table(table.to_bytes()) {
                let generation = state.seen_generation;
                state.unseen(1, generation);
            }
            return;
        };
        let shape = state.shape(&self.hub, || self.prepared_again());
        let mark = state.rows.mark();
        let old = has_old.then(|| {
            read(&mut state.rows, Side::Old);
            state.rows.since(mark)
        });
        let after_old = state.rows.mark();
        let new = has_new.then(|| {
            read(&mut state.rows, Side::New);
            state.rows.since(after_old)
        });
        let op = match (&old, &new) {
            (None, Some(_)) => Op::Insert,
            (Some(_), None) => Op::Delete,
            (Some(old), Some(new)) if state.rows.same(old, new) => {
                state.rows.truncate(mark); // an update that changed nothing
                return;
            }
            _ => Op::Update,
        };
        state.statement_deleted_below |= depth > 0 && op == Op::Delete;
        state.transaction.push(RawChange {
            table: name,
            op,
            old,
            new,
            depth,
            shape,
        });
    }

    /// The capture of a changed row failed (a panic, caught: it must not unwind into SQLite):
    /// every subscriber is told it missed a change when the transaction commits, rather than
    /// nothing. Counted apart from the state, which the panic may have left borrowed.
    pub fn change_lost(&self) {
        self.lost.set(self.lost.get() + 1);
    }

    /// A row of a table outside `main` changes (in an attached database, or in `temp`): not
    /// captured, and counted as a row no subscriber was given.
    pub fn changed_elsewhere(&self, depth: i32) {
        let mut state = self.state();
        state.statement_wrote |= depth == 0;
        let generation = self.hub.generation();
        state.unseen(1, generation);
    }

    /// A statement starts running (not a trigger or foreign-key action subprogram of the
    /// running statement, which SQLite reports under the same handle: the hook leaves those
    /// out). `sql` is the statement's text when it may be a savepoint command, and empty
    /// otherwise.
    /// `connection` reads the connection's counters. `schema_command` if the statement changes
    /// the schema (see the schema watch below). `captured` if someone observes as it starts
    /// (its rows are captured). `run_again` if it started under the running statement's handle
    /// and with its text, taken for that statement run again (stepped after its last row, as
    /// Diesel's row iterator does when asked past its end): a run again that returned
    /// `SQLITE_BUSY` and is stepped again resumes without a start, and a foreign-key action of
    /// its cascade then starts with the statement's text too, which nothing tells from a run
    /// again; the rows the statement wrote before it, which SQLite has not counted yet, are
    /// then told missed rather than delivered, in case they stick.
    #[inline] // called from one place, the start event, once a statement
    pub fn statement_started(
        &self,
        statement: usize,
        sql: &str,
        connection: &impl Counters,
        schema_command: bool,
        captured: bool,
        run_again: bool,
    ) {
        let total_changes = connection.total_changes();
        let autocommit = || connection.autocommit();
        self.prepared_since_start.set(false);
        let mut state = self.state();
        // The previous statement's own schema change, settled if its end was not traced.
        let schema_changed = state.schema_watch_over(autocommit);
        state.schema_watch_started(schema_command);
        state.running = Some(statement);
        state.resetting = false;
        // The previous statement's rows, if it was not captured and they were not counted at
        // its end.
        let rows = state.uncaptured_rows(total_changes);
        state.count_uncaptured(rows);
        // A commit that no rollback followed has succeeded.
        let committed = state.take_committed();
        state.running_captured = captured;
        if !captured {
            state.running_generation = self.hub.generation();
        }
        // The previous statement is over: its counters, and whether its query failed, tell
        // whether it stuck; if it did not, its changes are cut off the transaction's. Its
        // triggers' rows advance the total as they are written, also when the statement is
        // undone after; SQLite counts a statement's own rows (`sqlite3_changes64`) only once it
        // succeeded.
        let wrote = std::mem::take(&mut state.statement_wrote);
        let failed = std::mem::take(&mut state.last_statement_failed);
        state.query_ran_statement = true;
        let wrote_rows = total_changes > state.started_at;
        if wrote_rows && !wrote && failed {
            // Only its triggers wrote, and it failed: SQLite undid their rows with it, unless
            // it failed under `FAIL` conflict resolution (`INSERT OR FAIL`, a constraint's
            // `ON CONFLICT FAIL`, `RAISE(FAIL)`), which keeps them. Nothing tells which: the
            // captured rows are not delivered, and every subscriber is told it may have missed
            // them (those of tables nobody observed are counted as unseen already).
            state.doubtful += state.statement().len() as u64;
        }
        let reorder = std::mem::take(&mut state.statement_deleted_below);
        if wrote_rows && (!wrote && !failed || wrote && connection.changes() > 0) {
            if reorder {
                put_in_delivery_order(state.statement());
            }
        } else {
            if run_again {
                // Perhaps a foreign-key action's start, not a run again's (see above).
                state.doubtful += state.statement().len() as u64;
            }
            let (changes, rows) = (state.statement_changes, state.statement_rows);
            state.transaction.truncate(changes);
            state.rows.truncate(rows);
        }
        state.started_at = total_changes;
        state.statement_changes = state.transaction.len();
        state.statement_rows = state.rows.mark();
        if std::mem::take(&mut state.releasing_transaction) && autocommit() {
            state.savepoints.clear();
        }
        // Empty for most statements (see above).
        if !sql.is_empty() {
            if let Some(command) = SavepointCommand::parse(sql.trim_start()) {
                state.savepoint_command(command, autocommit);
            }
        }
        drop(state);
        if let Some((seq, batch)) = committed {
            self.deliver(seq, batch);
        }
        if schema_changed {
            self.hub.schema_changed();
        }
    }

    /// A statement finished in `sqlite3_step` (after its commit, if it committed), or is being
    /// reset or finalized before it finished (`reset`: its commit, if it makes one, comes
    /// after); `autocommit` if no transaction is open after it, `reprepared` if SQLite prepared
    /// it again while it ran (see the schema watch below); `total_changes` reads the
    /// connection's change counter, asked only for a commit that waits for the count of the
    /// statement's uncaptured rows. A statement that ends in `sqlite3_step` because SQLite
    /// found it out of date runs again, and ends again: its commit waits for that end.
    #[inline] // called from one place, the end event, once a statement
    pub fn statement_ended(
        &self,
        statement: usize,
        autocommit: bool,
        reprepared: bool,
        reset: bool,
        total_changes: impl FnOnce() -> i64,
    ) {
        let mut state = self.state();
        if state.running == Some(statement) {
            state.running = None;
            state.resetting = reset;
        } else if reset && state.ended == Some(statement) {
            // Run again after SQLite found it out of date (no start reported), and now reset
            // before its end: a commit it makes comes after this event.
            state.resetting = true;
        }
        state.ended = Some(statement);
        if state.commit_awaits_rows {
            let rows = state.uncaptured_rows(total_changes());
            state.count_uncaptured(rows);
        }
        let committed = if autocommit {
            state.take_committed()
        } else {
            None
        };
        let schema_changed = state.schema_watch_ended(reprepared, autocommit);
        drop(state);
        if let Some((seq, batch)) = committed {
            self.deliver(seq, batch);
        }
        if schema_changed {
            self.hub.schema_changed();
        }
    }

    pub fn committed(&self) {
        let mut state = self.state();
        // The committing statement succeeded: an autocommit statement commits only then.
        if std::mem::take(&mut state.statement_deleted_below) {
            put_in_delivery_order(state.statement());
        }
        let mut changes = std::mem::take(&mut state.transaction);
        state.savepoints.clear();
        state.releasing_transaction = false;
        state.statement_changes = 0;
        state.statement_rows = Mark::default();
        let earlier = state.take_committed();
        // Rows no subscriber was given, told to the subscriptions that started since they were
        // written; the committing statement's own, if it was not captured, are counted at its
        // end (SQLite adds them to the change counter after the commit).
        let generation = self.hub.generation();
        let gap = state
            .unseen
            .take()
            .filter(|unseen| unseen.since != generation)
            .map_or(0, |unseen| unseen.rows)
            + std::mem::take(&mut state.doubtful)
            + self.lost.take();
        state.commit_awaits_rows =
            !state.running_captured && state.running_generation != generation;
        state.transaction_over = true;
        let now = if changes.is_empty() && gap == 0 && !state.commit_awaits_rows {
            // Sized by what it holds, which nothing kept: the room of a large transaction
            // undone by a `ROLLBACK TO` is not kept (nor is that of its changes).
            state.rows = Rows::sized_like(&state.rows);
            None
        } else {
            // The rows go out with the batch; the next transaction captures into the buffers
            // an earlier batch gave back, once its subscribers were done with it.
            let (rows, transaction) = self.spares.take(&state.rows, changes.len());
            let mut rows = std::mem::replace(&mut state.rows, rows);
            state.transaction = transaction;
            rows.shrink();
            // Queued until every subscriber read it: not with the room of a larger one before.
            if changes.capacity() > 2 * changes.len() {
                changes.shrink_to_fit();
            }
            let batch = Batch {
                rows,
                changes,
                gap,
                shared: Default::default(),
                spares: Some(self.spares.clone()),
            };
            let seq = self.hub.next_seq();
            if state.resetting && !state.query_running {
                Some((seq, batch)) // no later event will come
            } else {
                state.committed = Some((seq, batch));
                None
            }
        };
        drop(state);
        for (seq, batch) in earlier.into_iter().chain(now) {
            self.deliver(seq, batch);
        }
    }

    /// Hands a commit to the hub, or skips its number if it turned out to hold nothing.
    fn deliver(&self, seq: u64, batch: Batch) {
        if batch.holds_nothing() {
            self.hub.void(seq);
        } else {
            self.hub.publish(seq, batch);
        }
    }

    pub fn rolled_back(&self) {
        self.lost.set(0);
        let mut state = self.state();
        state.transaction.clear();
        state.statement_changes = 0;
        state.statement_deleted_below = false;
        state.rows = Rows::default();
        state.statement_rows = Mark::default();
        state.savepoints.clear();
        state.releasing_transaction = false;
        state.unseen = None;
        state.doubtful = 0;
        state.transaction_over = true;
        let committed = state.take_committed();
        drop(state);
        if let Some((seq, _)) = committed {
            self.hub.void(seq); // the commit failed after its hook
        }
    }
}

/// The connection's statement hooks go off while nobody observes, and come back on when
/// someone does (see `ffi::sqlite`): what the observer keeps meanwhile ([`Dormant`]).
impl ConnObserver {
    /// The hooks go off, with no transaction open and no statement running; the change counter
    /// is at `total`. The last statement they saw is over: its rows are counted, its commit
    /// delivered.
    pub fn hooks_off(&self, total: i64) {
        let mut state = self.state();
        let rows = state.uncaptured_rows(total);
        state.count_uncaptured(rows);
        let committed = state.take_committed();
        let dormant = std::mem::take(&mut state.dormant);
        *state = State {
            rows: std::mem::take(&mut state.rows),
            transaction: std::mem::take(&mut state.transaction),
            seen: std::mem::take(&mut state.seen),
            seen_generation: state.seen_generation,
            dormant,
            ..State::default()
        };
        state.transaction.clear();
        state.rows.truncate(Mark::default());
        drop(state);
        self.dormant_query(total, true);
        if let Some((seq, batch)) = committed {
            self.deliver(seq, batch);
        }
    }

    /// The hooks come back on (between two queries), the change counter at `total`;
    /// `in_transaction` if a transaction is open, whose rows written so far no subscriber was
    /// given (nobody observed as they were written: they are told missed when it commits), and
    /// which may have changed the schema.
    pub fn hooks_on(&self, total: i64, in_transaction: bool) {
        self.dormant_query_finished(|| (total, !in_transaction));
        let mut state = self.state();
        let dormant = std::mem::take(&mut state.dormant);
        state.started_at = total;
        state.running = None;
        state.ended = None;
        state.running_captured = false;
        state.transaction_over = false;
        if in_transaction {
            // Before every generation a subscriber now has: told to all of them.
            let before = self.hub.generation().wrapping_sub(1);
            let unseen = |rows: i64| {
                (rows > 0).then_some(Unseen {
                    rows: rows as u64,
                    since: before,
                })
            };
            let rows = dormant.rows(total) as i64;
            for savepoint in dormant.savepoints {
                let rows_before = savepoint.taken_at - dormant.began_at - savepoint.undone;
                state.savepoints.push(Savepoint {
                    name: savepoint.name,
                    changes: 0,
                    rows: Mark::default(),
                    unseen: unseen(rows_before),
                    doubtful: 0,
                    began_transaction: savepoint.began_transaction,
                });
            }
            state.unseen = unseen(rows);
            state.schema_changing |= self.schema_prepared.get();
        }
        drop(state);
        self.schema_prepared.set(false);
    }

    /// A query starts with the hooks off, the change counter at `total`; `autocommit` if no
    /// transaction is open (one it begins begins there).
    #[inline] // at the start of every query while the hooks are off
    pub fn dormant_query(&self, total: i64, autocommit: bool) {
        let mut state = self.state();
        state.dormant.query_began_at = total;
        if autocommit {
            state.dormant.begin(total);
            self.schema_prepared.set(false);
        }
    }

    /// A `BEGIN` (`None`) or savepoint `command` (names as [`SavepointCommand::parse`] gives
    /// them) is about to run with the hooks off, the change counter at `total`; `autocommit`
    /// if no transaction is open.
    pub fn dormant_command(&self, command: Option<SavepointCommand>, total: i64, autocommit: bool) {
        let mut state = self.state();
        let dormant = &mut state.dormant;
        let find = |savepoints: &[DormantSavepoint], name: &str| {
            savepoints
                .iter()
                .rposition(|savepoint| savepoint.name == name)
        };
        match command {
            None => {
                if autocommit {
                    dormant.begin(total);
                }
            }
            Some(SavepointCommand::Savepoint(name)) => {
                if autocommit {
                    dormant.begin(total);
                }
                let undone = dormant.undone;
                dormant.savepoints.push(DormantSavepoint {
                    name,
                    taken_at: total,
                    undone,
                    began_transaction: autocommit,
                });
            }
            Some(SavepointCommand::Release(name)) => {
                if let Some(i) = find(&dormant.savepoints, &name) {
                    // The savepoint that began the transaction stays until it commits (its
                    // release may fail), as the hooks keep it (see `savepoint_command`).
                    if !dormant.savepoints[i].began_transaction {
                        dormant.savepoints.truncate(i);
                    }
                }
            }
            Some(SavepointCommand::RollbackTo(name)) => {
                if let Some(i) = find(&dormant.savepoints, &name) {
                    // Everything written since it was taken is undone.
                    let savepoint = &dormant.savepoints[i];
                    dormant.undone = savepoint.undone + (total - savepoint.taken_at);
                    dormant.savepoints.truncate(i + 1);
                }
            }
        }
    }

    /// A statement that changes the schema is being prepared (told by the authorizer).
    pub fn schema_statement_prepared(&self) {
        self.schema_prepared.set(true);
    }

    /// The running statement was prepared again since it started (asked as a statement run
    /// from inside it starts, where statements' ends are not traced): a new schema epoch,
    /// once per statement.
    pub fn statement_reprepared(&self) {
        let first = self.state().count_reload();
        if first {
            self.hub.schema_changed();
        }
    }

    /// A statement is being prepared (told by the authorizer; see
    /// [`ConnObserver::prepared_again`]).
    #[inline]
    pub fn statement_prepared(&self) {
        self.prepared_since_start.set(true);
    }

    /// Whether SQLite prepared a statement since the running one started, where statements'
    /// ends are not traced: taken as the running statement prepared again (see
    /// [`State::shape`]); a statement run from inside it makes it count once too many (a new
    /// schema epoch for nothing). Where ends are traced, the end counts it.
    fn prepared_again(&self) -> bool {
        !self.ends_traced.get() && self.prepared_since_start.get()
    }

    /// Whether the statement hooks report statements' ends.
    pub fn ends_traced(&self) -> bool {
        self.ends_traced.get()
    }

    /// The statement hooks report statements' ends from now on, or not (set between two
    /// statements).
    pub fn trace_ends(&self, traced: bool) {
        self.ends_traced.set(traced);
    }

    /// A transaction commits with the hooks off. If someone observes by now, a subscription
    /// started during the transaction or its last query, and is told its rows as missed once
    /// the query has finished ([`Self::dormant_query_finished`]): only then is the commit
    /// visible to its readers. Told as a gap with a number of its own, at that time, rather
    /// than in this commit's place among the store's commits: a number taken now would hold
    /// back every later commit until the query finished.
    pub fn dormant_committed(&self) {
        if self.schema_prepared.get() {
            // The schema it committed is not the one subscriptions began with.
            self.hub.schema_changed();
        }
        if self.hub.active() {
            let mut state = self.state();
            let dormant = &mut state.dormant;
            // The transaction may have begun in an earlier query (a `COMMIT` of its own).
            let from = dormant.query_began_at.min(dormant.began_at);
            dormant.commit_seen = Some(dormant.commit_seen.map_or(from, |seen| seen.min(from)));
        }
    }

    /// A query finished (or the hooks come on after it), with the hooks off. The rows of a
    /// commit it made while someone observed are told missed: counted from the start of the
    /// query or of the transaction it committed, whichever came first, they may also hold rows
    /// written and then rolled back, and those of a transaction the query began and left open
    /// (told again when that transaction commits). A commit that failed after SQLite's commit
    /// hook is told too: a subscriber reads again for nothing. Told with a sequence number
    /// taken now, after the commits numbered meanwhile: a live query that waited for those
    /// (`Store::fence`) reads again when this arrives.
    /// `counters` reads the change counter and whether no transaction is open, only if a
    /// commit awaits its query's end.
    #[inline] // at the end of every query while the hooks are off: a check, most often
    pub fn dormant_query_finished(&self, counters: impl FnOnce() -> (i64, bool)) {
        let from = self.state().dormant.commit_seen.take();
        if let Some(from) = from {
            let (total, autocommit) = counters();
            self.tell_dormant_commit(from, total, autocommit);
        }
    }

    /// Tells the rows written since the change count `from` missed, the counter now at `total`
    /// (see [`Self::dormant_query_finished`]).
    #[cold]
    fn tell_dormant_commit(&self, from: i64, total: i64, autocommit: bool) {
        let rows = (total - from).max(0) as u64;
        if autocommit {
            self.state().dormant.begin(total);
        }
        if rows > 0 {
            let seq = self.hub.next_seq();
            self.deliver(
                seq,
                Batch {
                    rows: Rows::default(),
                    changes: Vec::new(),
                    gap: rows,
                    shared: Default::default(),
                    spares: None,
                },
            );
        }
    }
}

impl State {
    /// The running statement's changes.
    fn statement(&mut self) -> &mut [RawChange] {
        let start = self.statement_changes.min(self.transaction.len());
        &mut self.transaction[start..]
    }

    /// `rows` written that no subscriber was given, in subscription `generation`.
    fn unseen(&mut self, rows: u64, generation: u64) {
        match &mut self.unseen {
            Some(unseen) => unseen.rows += rows,
            None => {
                self.unseen = Some(Unseen {
                    rows,
                    since: generation,
                })
            }
        }
    }

    /// The running statement ended, having changed the change counter to `total_changes`: if
    /// it was not captured, its rows are unseen; a commit it made waits for that count.
    fn uncaptured_rows(&mut self, total_changes: i64) -> u64 {
        if self.running_captured || total_changes <= self.started_at {
            return 0;
        }
        let rows = (total_changes - self.started_at) as u64;
        self.started_at = total_changes;
        rows
    }

    /// Counts `rows` the running (or last) statement wrote uncaptured: into the gap of the
    /// commit it made, if that waits for them, else as unseen rows of the open transaction,
    /// unless its transaction is over.
    fn count_uncaptured(&mut self, rows: u64) {
        let over = std::mem::take(&mut self.transaction_over);
        if std::mem::take(&mut self.commit_awaits_rows) {
            if let Some((_, batch)) = &mut self.committed {
                batch.gap += rows;
                return;
            }
        }
        if rows > 0 && !over {
            let generation = self.running_generation;
            self.unseen(rows, generation);
        }
    }

    /// The commit waiting for the end of its statement, taken once that end is known with no
    /// transaction open: the rows the statement wrote uncaptured are counted into its gap first
    /// (`total_changes` reads the change counter, final by then, asked only if they are).
    /// Shared by the two places that know it: Diesel's end of the query and SQLite's WAL hook.
    fn settle_commit(&mut self, total_changes: impl FnOnce() -> i64) -> Option<(u64, Batch)> {
        if self.commit_awaits_rows {
            let rows = self.uncaptured_rows(total_changes());
            self.count_uncaptured(rows);
        }
        self.take_committed()
    }

    /// A commit waiting for the end of its statement, taken (the common case, none, without
    /// moving the batch's place in memory).
    fn take_committed(&mut self) -> Option<(u64, Batch)> {
        if self.committed.is_some() {
            self.committed.take()
        } else {
            None
        }
    }

    /// A savepoint command starts: the changes captured since a savepoint it rolls back to
    /// are forgotten, and the rows nobody was given since are no longer counted.
    /// `autocommit` tells whether no transaction is open (before the command runs). Only
    /// the `RELEASE` of the savepoint that began the transaction can fail with the savepoint in
    /// place: it is applied once the next statement starts, if the transaction is over by then
    /// (a commit that wrote clears the savepoints at once).
    fn savepoint_command(&mut self, command: SavepointCommand, autocommit: impl Fn() -> bool) {
        let find = |savepoints: &[Savepoint], name: &str| {
            savepoints
                .iter()
                .rposition(|savepoint| savepoint.name == name)
        };
        match command {
            SavepointCommand::Savepoint(name) => {
                self.savepoints.push(Savepoint {
                    name,
                    changes: self.transaction.len(),
                    rows: self.rows.mark(),
                    unseen: self.unseen,
                    doubtful: self.doubtful,
                    began_transaction: autocommit(),
                });
            }
            SavepointCommand::Release(name) => {
                if let Some(i) = find(&self.savepoints, &name) {
                    if self.savepoints[i].began_transaction {
                        self.releasing_transaction = true;
                    } else {
                        self.savepoints.truncate(i);
                    }
                }
            }
            SavepointCommand::RollbackTo(name) => {
                if let Some(i) = find(&self.savepoints, &name) {
                    let Savepoint {
                        changes,
                        rows,
                        unseen,
                        doubtful,
                        ..
                    } = self.savepoints[i];
                    self.transaction.truncate(changes);
                    self.statement_changes = changes;
                    self.unseen = unseen;
                    self.doubtful = doubtful;
                    self.rows.truncate(rows);
                    self.statement_rows = rows;
                    self.savepoints.truncate(i + 1);
                }
            }
        }
    }
}

/// Schema changes: the rows a connection captures are in the table's columns as the connection
/// knows them, which change when it runs `CREATE`, `ALTER` or `DROP` itself, or when SQLite
/// finds the schema changed by another connection and re-prepares a statement. Each such
/// change opens a new schema epoch of the hub, and rows are stamped with the epoch they were
/// captured in, so that a subscriber reads them by the columns of that epoch or not at all.
/// Re-preparations are watched in captured statements only: while nobody observes, no row needs
/// an epoch, and each subscription begins a new one (`Hub::subscribe`). Where statements' ends
/// are traced, SQLite's count of the statement's re-preparations is read at its end; where
/// they are not, a preparation SQLite's authorizer is asked about after the statement started
/// counts (at its first captured row, or, for a statement that captured none, as its query
/// ends). Not counted there: a statement of a batch that captured no row and is followed by
/// another (whose preparation cannot be told from its own again). A batch statement is
/// prepared right before it runs: it is prepared again only if another connection changes the
/// schema in between, and not once its transaction has read (its snapshot hides the change).
impl State {
    /// A statement starts; `schema_command` if it changes the schema.
    fn schema_watch_started(&mut self, schema_command: bool) {
        self.reload_counted = false;
        self.statement_captured_row = false;
        self.schema_changing |= schema_command;
    }

    /// The statement that ran last is over, where its end is not traced (told as the next one
    /// starts, or the query ends), with no transaction open after it if `autocommit`: whether
    /// a new schema epoch begins (a schema change of this connection's own, settled). Where
    /// ends are traced, [`Self::schema_watch_ended`] settled it already.
    /// `autocommit` is asked only if a schema change awaits settling.
    fn schema_watch_over(&mut self, autocommit: impl FnOnce() -> bool) -> bool {
        self.schema_changing && autocommit() && std::mem::take(&mut self.schema_changing)
    }

    /// Counts the running statement's re-preparation as a schema change: whether this is the
    /// first time (a new schema epoch begins), at most once a statement.
    fn count_reload(&mut self) -> bool {
        !std::mem::replace(&mut self.reload_counted, true)
    }

    /// A statement ended; `reprepared` if SQLite prepared it again while it ran, the schema
    /// having changed; `autocommit` if no transaction is open after it. Whether a new schema
    /// epoch begins.
    fn schema_watch_ended(&mut self, reprepared: bool, autocommit: bool) -> bool {
        let counted = std::mem::take(&mut self.reload_counted);
        // A schema change of this connection's own counts once it committed or rolled back.
        let settled = autocommit && std::mem::take(&mut self.schema_changing);
        (reprepared && !counted) || settled
    }
}

impl State {
    /// The columns a row captured now is in. `reprepared` (see
    /// [`ConnObserver::prepared_again`]) is asked at the running statement's first captured
    /// row: SQLite prepares a statement again
    /// (having found the schema changed by another connection) before it writes a row, as its
    /// transaction starts, so a statement that captures rows was prepared again before its
    /// first, or not at all.
    fn shape(&mut self, hub: &Hub, reprepared: impl FnOnce() -> bool) -> Shape {
        if !std::mem::replace(&mut self.statement_captured_row, true)
            && !self.reload_counted
            && self.running.is_some()
            && reprepared()
            && self.count_reload()
        {
            hub.schema_changed();
        }
        if self.schema_changing {
            return Shape::Unsettled;
        }
        // A row captured with no statement started: the running statement found the schema
        // changed by another connection, was prepared again, and runs again (SQLite reports
        // no new start). This connection reads the new columns from now on.
        if self.running.is_none() && self.count_reload() {
            hub.schema_changed();
        }
        Shape::Epoch(hub.schema_epoch())
    }
}

impl Drop for ConnObserver {
    fn drop(&mut self) {
        // Never left waiting, which would hold back every later commit's delivery. No rollback
        // followed the commit: it succeeded.
        let committed = self.state().take_committed();
        if let Some((seq, batch)) = committed {
            self.deliver(seq, batch);
        }
    }
}

impl State {
    /// The shared name of a table if anyone observes it (asked of the hub once per table and
    /// change of subscriptions): the name as the hook reports it, which is the schema's,
    /// whoever subscribes and however they spell it (see [`Hub::observes_sqlite_table`]).
    #[inline] // called from one place, once a row
    fn observed(&mut self, table: &(impl TableName + ?Sized), hub: &Hub) -> Option<Arc<str>> {
        let generation = hub.generation();
        if generation != self.seen_generation {
            self.seen.retain(|_| false);
            self.seen_generation = generation;
        }
        if let Some((_, observed)) = self.seen.iter().find(|(reported, _)| table.is(reported)) {
            return observed.clone();
        }
        let name = std::str::from_utf8(table.to_bytes()).ok()?;
        let observed: Option<Arc<str>> = hub.observes_sqlite_table(name).then(|| name.into());
        self.seen.push((name.into(), observed.clone()));
        observed
    }
}

/// A cascade reports the parent before its children: deliver the rows a cascade deleted first,
/// deepest first, so that children come before their parent. Nothing else moves, and no
/// delete moves past an earlier change of its own table (which may be of the same row).
pub(crate) fn in_delivery_order(mut changes: Vec<RawChange>) -> Vec<RawChange> {
    put_in_delivery_order(&mut changes);
    changes
}

/// [`in_delivery_order`], in place.
fn put_in_delivery_order(changes: &mut [RawChange]) {
    if !changes.iter().any(|c| c.depth > 0 && c.op == Op::Delete) {
        return;
    }
    // A delete moves ahead of shallower changes (SQLite records a cascade's rows under each
    // parent's, PostgreSQL after all of the statement's), but not past an earlier change of
    // its own table, which may be of the same row (a trigger that updates a row and then
    // deletes it, or deletes and inserts it again).
    let mut seen: Vec<&str> = Vec::new();
    let keys: Vec<i32> = changes
        .iter()
        .map(|c| {
            let pinned = seen.contains(&&*c.table);
            if c.op != Op::Delete {
                if !pinned {
                    seen.push(&c.table);
                }
                0
            } else if pinned {
                0
            } else {
                -c.depth
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..changes.len()).collect();
    order.sort_by_key(|&i| keys[i]);
    let mut sorted: Vec<RawChange> = order.iter().map(|&i| changes[i].clone()).collect();
    changes.swap_with_slice(&mut sorted);
}

#[derive(Debug, PartialEq)]
pub(crate) enum SavepointCommand {
    Savepoint(String),
    Release(String),
    RollbackTo(String),
}

impl SavepointCommand {
    /// `SAVEPOINT a`, `RELEASE [SAVEPOINT] a`, `ROLLBACK [TRANSACTION] TO [SAVEPOINT] a`.
    fn parse(sql: &str) -> Option<Self> {
        // Most statements are none of these: decide from the first letter, without allocating.
        if !matches!(sql.as_bytes().first(), Some(b'S' | b's' | b'R' | b'r')) {
            return None;
        }
        let words = tokens(sql);
        let upper = |i: usize| words.get(i).map(|w| w.to_ascii_uppercase());
        let name = |i: usize| words.get(i).map(|w| w.to_ascii_lowercase());
        match upper(0)?.as_str() {
            "SAVEPOINT" => name(1).map(Self::Savepoint),
            "RELEASE" => {
                let i = if upper(1).as_deref() == Some("SAVEPOINT") {
                    2
                } else {
                    1
                };
                name(i).map(Self::Release)
            }
            "ROLLBACK" => {
                let mut i = 1;
                if upper(i).as_deref() == Some("TRANSACTION") {
                    i += 1;
                }
                if upper(i).as_deref() != Some("TO") {
                    return None;
                }
                i += 1;
                if upper(i).as_deref() == Some("SAVEPOINT") {
                    i += 1;
                }
                name(i).map(Self::RollbackTo)
            }
            _ => None,
        }
    }
}

/// The words of a statement up to its first `;`, each quoted identifier dequoted as SQLite
/// dequotes a name (`"a b"` is `a b`, `"a""b"` is `a"b`; also `'..'`, `` `..` `` and
/// `[..]`), so that names compare as the savepoints SQLite's authorizer names (savepoint names
/// compare case-insensitively: see [`SavepointCommand::parse`]).
fn tokens(sql: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ';' {
            break;
        }
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let close = match c {
            '"' | '\'' | '`' => Some(c),
            '[' => Some(']'),
            _ => None,
        };
        let mut word = String::new();
        if let Some(close) = close {
            chars.next();
            while let Some(c) = chars.next() {
                if c == close {
                    // A doubled quote is one quote character (not in `[..]`).
                    if close != ']' && chars.peek() == Some(&close) {
                        chars.next();
                    } else {
                        break;
                    }
                }
                word.push(c);
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == ';' {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::SavepointCommand::{self, *};

    #[test]
    fn savepoint_statements_are_recognized_in_every_form() {
        let parse = SavepointCommand::parse;
        assert_eq!(
            parse("SAVEPOINT diesel_savepoint_1"),
            Some(Savepoint("diesel_savepoint_1".into()))
        );
        assert_eq!(parse("release savepoint \"A\";"), Some(Release("a".into())));
        assert_eq!(parse("RELEASE a"), Some(Release("a".into())));
        assert_eq!(
            parse("ROLLBACK TO SAVEPOINT a"),
            Some(RollbackTo("a".into()))
        );
        assert_eq!(
            parse("rollback transaction to a"),
            Some(RollbackTo("a".into()))
        );
        assert_eq!(parse("ROLLBACK"), None);
        assert_eq!(parse("INSERT INTO savepoint VALUES (1)"), None);
        // Quoted names are read as SQLite reads them (its authorizer names them so).
        assert_eq!(
            parse("ROLLBACK TO \"My SP\""),
            Some(RollbackTo("my sp".into()))
        );
        assert_eq!(
            parse("SAVEPOINT \"a\"\"b\";"),
            Some(Savepoint("a\"b".into()))
        );
        assert_eq!(parse("RELEASE [x y]"), Some(Release("x y".into())));
        assert_eq!(parse("SAVEPOINT `q`"), Some(Savepoint("q".into())));
    }

    #[test]
    fn deletes_move_ahead_of_shallower_changes_but_not_past_their_tables_earlier_changes() {
        use super::{Op, RawChange, Shape, in_delivery_order};
        // The table names the rows; the depths are a cascade's (and triggers').
        let change = |table: &str, op: Op, depth: i32| RawChange {
            table: table.into(),
            op,
            old: None,
            new: None,
            depth,
            shape: Shape::Epoch(0),
        };
        let order = |captured: Vec<RawChange>| -> Vec<String> {
            in_delivery_order(captured)
                .iter()
                .map(|c| format!("{:?} {}", c.op, c.table))
                .collect()
        };
        // SQLite: each parent's cascade under it, a trigger's update among them.
        assert_eq!(
            order(vec![
                change("parent", Op::Delete, 0),
                change("child", Op::Delete, 1),
                change("tally", Op::Update, 2),
                change("grandchild", Op::Delete, 2),
                change("child", Op::Delete, 1),
            ]),
            [
                "Delete grandchild",
                "Delete child",
                "Delete child",
                "Delete parent",
                "Update tally"
            ]
        );
        // PostgreSQL: the statement's rows, then its cascade's.
        assert_eq!(
            order(vec![
                change("parent", Op::Delete, 0),
                change("parent", Op::Delete, 0),
                change("child", Op::Delete, 1),
                change("child", Op::Delete, 1),
            ]),
            [
                "Delete child",
                "Delete child",
                "Delete parent",
                "Delete parent"
            ]
        );
        // A trigger that updates a row and deletes it, or deletes a row and inserts it again.
        let kept = vec![
            change("remark", Op::Delete, 0),
            change("counter", Op::Update, 1),
            change("counter", Op::Delete, 1),
        ];
        assert_eq!(
            order(kept),
            ["Delete remark", "Update counter", "Delete counter"]
        );
        let kept = vec![
            change("setting", Op::Delete, 0),
            change("setting", Op::Insert, 1),
        ];
        assert_eq!(order(kept), ["Delete setting", "Insert setting"]);
    }

    /// Counters of a connection that wrote nothing, with no transaction open.
    struct Fresh;

    /// An observer whose statements' ends are traced, a subscription to every table of its
    /// hub, and a statement started (handle 1) that captures.
    fn observing_a_statement() -> (super::ConnObserver, std::sync::Arc<super::hub::Queue>) {
        let hub = std::sync::Arc::new(super::Hub::sqlite());
        let queue = hub.subscribe(None, 16);
        let observer = super::ConnObserver::new(hub);
        observer.trace_ends(true);
        observer.statement_started(1, "", &Fresh, false, true, false);
        (observer, queue)
    }

    impl super::Counters for Fresh {
        fn total_changes(&self) -> i64 {
            0
        }
        fn changes(&self) -> i64 {
            0
        }
        fn autocommit(&self) -> bool {
            true
        }
    }

    /// A change whose capture failed is told as missed at its transaction's commit (and
    /// forgotten with a rollback), rather than not at all.
    #[test]
    fn a_change_the_capture_failed_to_take_is_told_missed_at_the_commit() {
        use crate::observe::hub::Item;
        use std::time::Duration;

        let (observer, queue) = observing_a_statement();
        observer.change_lost();
        observer.rolled_back();
        observer.statement_ended(1, true, false, false, || 0);
        assert!(queue.next(Some(Duration::ZERO)).is_none(), "rolled back");
        observer.statement_started(1, "", &Fresh, false, true, false);
        observer.changed(c"notes", 0, (false, true), |rows, _| rows.push_integer(1));
        observer.change_lost();
        observer.committed();
        observer.statement_ended(1, true, false, false, || 2);
        let items: Vec<_> = std::iter::from_fn(|| queue.next(Some(Duration::ZERO)))
            .map(|item| match item {
                Item::Changes(_) => "changes".to_owned(),
                Item::Missed(n) => format!("missed {n}"),
                Item::Lost(_) => "lost".to_owned(),
            })
            .collect();
        assert_eq!(items, ["changes", "missed 1"]);
    }

    /// A statement SQLite found out of date ends in `sqlite3_step`, is prepared again and runs
    /// again without a new start: a commit it makes then is published at its next end, once
    /// other connections can see it, not in the commit hook.
    #[test]
    fn a_commit_of_a_statement_run_again_waits_for_its_end() {
        use std::time::Duration;

        let (observer, queue) = observing_a_statement();
        observer.statement_ended(1, true, false, false, || 0);
        observer.changed(c"notes", 0, (false, true), |rows, _| rows.push_integer(1));
        observer.committed();
        assert!(
            queue.next(Some(Duration::ZERO)).is_none(),
            "held until the statement ends"
        );
        observer.statement_ended(1, true, true, false, || 1);
        assert!(queue.next(Some(Duration::ZERO)).is_some(), "published");
    }

    /// Counters whose total the test advances.
    struct Total(std::cell::Cell<i64>);

    impl super::Counters for Total {
        fn total_changes(&self) -> i64 {
            self.0.get()
        }
        fn changes(&self) -> i64 {
            1
        }
        fn autocommit(&self) -> bool {
            true
        }
    }

    /// SQLite names tables without regard to ASCII case, and its hook reports a table's name
    /// as the schema holds it: the changes carry that name whoever subscribes (a subscription
    /// of every table reads the same name before and after a model's subscribes), and every
    /// subscription of a name that differs from it only in case receives them. Before, the
    /// changes took the first subscription's spelling, so the subscription of every table
    /// read `Memos`, then `memos`, and only one of `memos` and `MEMOS` received them.
    #[test]
    fn changes_carry_the_schema_s_name_to_every_subscription_whatever_its_case() {
        use crate::observe::hub::{Item, Queue};
        use std::sync::Arc;
        use std::time::Duration;

        let hub = Arc::new(super::Hub::sqlite());
        let all = hub.subscribe(None, 16);
        let observer = super::ConnObserver::new(hub.clone());
        observer.trace_ends(true);
        let total = Total(std::cell::Cell::new(0));
        let write = || {
            observer.statement_started(1, "", &total, false, true, false);
            observer.changed(c"Memos", 0, (false, true), |rows, _| rows.push_integer(1));
            total.0.set(total.0.get() + 1);
            observer.committed();
            observer.statement_ended(1, true, false, false, || total.0.get());
        };
        let tables = |queue: &Queue| -> Vec<String> {
            std::iter::from_fn(|| queue.next(Some(Duration::ZERO)))
                .flat_map(|item| match item {
                    Item::Changes(run) => run
                        .indices()
                        .map(|i| run.batch.changes[i].table.to_string())
                        .collect(),
                    Item::Missed(n) => vec![format!("missed {n}")],
                    Item::Lost(_) => vec!["lost".to_owned()],
                })
                .collect()
        };
        write();
        assert_eq!(tables(&all), ["Memos"], "only every table's subscription");
        let lower = hub.subscribe(Some(&["memos".to_owned()]), 16);
        write();
        assert_eq!(tables(&all), ["Memos"], "and a subscription of `memos`");
        assert_eq!(tables(&lower), ["Memos"]);
        let upper = hub.subscribe(Some(&["MEMOS".to_owned()]), 16);
        write();
        assert_eq!(tables(&all), ["Memos"], "and one of `MEMOS`");
        assert_eq!(tables(&lower), ["Memos"]);
        assert_eq!(tables(&upper), ["Memos"]);
    }
}
