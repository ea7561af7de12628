//! The one place that calls SQLite's C API: finding a new connection's handle, and installing
//! the hooks observe is built on. Every `unsafe` block of the crate is here.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Once;

use libsqlite3_sys as sqlite;

use super::connection::ConnObserver;
use super::connection::Side;
use super::Rows;

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

/// The handle of the connection just opened on this thread (call right after opening it, as
/// r2d2's `on_acquire` does), if [`register`] ran before it opened.
pub(crate) fn take_opened() -> Option<Handle> {
    let db = OPENED.with(|opened| opened.replace(ptr::null_mut()));
    (!db.is_null()).then_some(Handle(db))
}

/// Whether SQLite was compiled with the pre-update hook.
pub(crate) const PREUPDATE_HOOK: bool = cfg!(datastore_preupdate_hook);

/// What the hooks' context pointer points at: the observer, and the connection it observes.
struct Installed {
    db: *mut sqlite::sqlite3,
    observer: ConnObserver,
}

/// The key of the observer in the connection's client data (which SQL cannot reach or
/// replace, unlike a function or a module).
const CLIENT_DATA: &CStr = c"datastore::observe";

/// Installs the hooks that feed `observer`, which lives until the connection closes.
pub(crate) fn install(handle: Handle, observer: ConnObserver) {
    let db = handle.0;
    let ctx = Box::into_raw(Box::new(Installed { db, observer })) as *mut c_void;
    // SAFETY: `db` is an open connection (just opened on this thread, not yet shared). `ctx`
    // stays valid until SQLite calls `release` as the connection closes; `release` removes
    // every hook before it frees `ctx`, so no hook can run after. The callbacks match the
    // signatures SQLite expects.
    unsafe {
        if sqlite::sqlite3_set_clientdata(db, CLIENT_DATA.as_ptr(), ctx, Some(release))
            != sqlite::SQLITE_OK
        {
            return; // out of memory: SQLite already called `release`; nothing is installed
        }
        sqlite::sqlite3_commit_hook(db, Some(on_commit), ctx);
        sqlite::sqlite3_rollback_hook(db, Some(on_rollback), ctx);
        sqlite::sqlite3_trace_v2(
            db,
            sqlite::SQLITE_TRACE_STMT | sqlite::SQLITE_TRACE_PROFILE,
            Some(on_trace),
            ctx,
        );
        install_preupdate(db, ctx);
    }
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

/// SQLite frees a connection's client data early in `sqlite3_close`, before it rolls back an
/// open transaction (which runs the rollback hook): the hooks go first, then the observer.
unsafe extern "C" fn release(ctx: *mut c_void) {
    // SAFETY: `ctx` came from `Box::into_raw` in `install`, and SQLite calls this exactly once,
    // on the thread closing the connection, which still holds a valid `db`.
    unsafe {
        let installed = Box::from_raw(ctx as *mut Installed);
        let db = installed.db;
        sqlite::sqlite3_commit_hook(db, None, ptr::null_mut());
        sqlite::sqlite3_rollback_hook(db, None, ptr::null_mut());
        sqlite::sqlite3_trace_v2(db, 0, None, ptr::null_mut());
        uninstall_preupdate(db);
        guarded(move || drop(installed));
    }
}

unsafe extern "C" fn on_commit(ctx: *mut c_void) -> c_int {
    // SAFETY: hooks run only while the connection (and so `ctx`) is alive.
    guarded(|| unsafe { observer(ctx) }.committed());
    0
}

unsafe extern "C" fn on_rollback(ctx: *mut c_void) {
    // SAFETY: as in `on_commit`.
    guarded(|| unsafe { observer(ctx) }.rolled_back());
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
            let observer = observer(ctx);
            let db = sqlite::sqlite3_db_handle(stmt as *mut sqlite::sqlite3_stmt);
            if event == sqlite::SQLITE_TRACE_STMT {
                let sql = detail as *const c_char;
                // Only savepoint commands are read whole: reading the text of every statement
                // would cost more than the rest of the hook.
                let text = if is_savepoint_command(sql as *const u8) {
                    CStr::from_ptr(sql).to_str().unwrap_or_default()
                } else {
                    ""
                };
                observer.statement_started(
                    stmt as usize,
                    text,
                    sqlite::sqlite3_total_changes64(db),
                );
                watch_schema_at_start(observer, stmt as *mut sqlite::sqlite3_stmt, sql);
            } else if event == sqlite::SQLITE_TRACE_PROFILE {
                let autocommit = sqlite::sqlite3_get_autocommit(db) != 0;
                observer.statement_ended(stmt as usize, autocommit);
                watch_schema_at_end(observer, stmt as *mut sqlite::sqlite3_stmt, autocommit);
            }
        }
    });
    0
}

/// A statement starts: whether it changes the schema (its first word), and a fresh count of
/// its re-preparations. A statement SQLite re-prepares before it starts was expired by a
/// schema change this connection already knows of: not a new one.
///
/// # Safety
/// `stmt` is the running statement; `sql` its NUL-terminated text.
unsafe fn watch_schema_at_start(
    observer: &ConnObserver,
    stmt: *mut sqlite::sqlite3_stmt,
    sql: *const c_char,
) {
    // SAFETY: guaranteed by the caller; resetting a statement's counter touches nothing else.
    let schema_command = unsafe {
        sqlite::sqlite3_stmt_status(stmt, sqlite::SQLITE_STMTSTATUS_REPREPARE, 1);
        is_schema_command(sql as *const u8)
    };
    observer.schema_watch_started(schema_command);
}

/// A statement ended (or failed, or is reset): whether SQLite re-prepared it while it ran,
/// having found the schema changed by another connection (the connection then knows the new
/// columns; the statement is run again without a new start).
///
/// # Safety
/// `stmt` is the statement that ended.
unsafe fn watch_schema_at_end(
    observer: &ConnObserver,
    stmt: *mut sqlite::sqlite3_stmt,
    autocommit: bool,
) {
    // SAFETY: guaranteed by the caller.
    let reprepared =
        unsafe { sqlite::sqlite3_stmt_status(stmt, sqlite::SQLITE_STMTSTATUS_REPREPARE, 1) } > 0;
    observer.schema_watch_ended(reprepared, autocommit);
}

/// Whether the statement's first word is `CREATE`, `ALTER` or `DROP` (in any case).
///
/// # Safety
/// `sql` points to a NUL-terminated string.
unsafe fn is_schema_command(sql: *const u8) -> bool {
    // SAFETY: guaranteed by the caller.
    let (word, len) = unsafe { first_word(sql) };
    matches!(&word[..len], b"CREATE" | b"ALTER" | b"DROP")
}

/// The first word of a statement, upper-cased, if it is at most nine letters long (longer
/// words are no command this module looks for); read from at most its first few bytes.
///
/// # Safety
/// `sql` points to a NUL-terminated string.
unsafe fn first_word(sql: *const u8) -> ([u8; 9], usize) {
    let mut word = [0u8; 9];
    let mut len = 0;
    // SAFETY: guaranteed by the caller; reading stops at the NUL, which is not a letter.
    unsafe {
        let mut p = sql;
        while (*p).is_ascii_whitespace() {
            p = p.add(1);
        }
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

/// Whether the statement's first word is `SAVEPOINT`, `RELEASE` or `ROLLBACK` (in any case),
/// read from at most the first few bytes of its text.
///
/// # Safety
/// `sql` points to a NUL-terminated string.
unsafe fn is_savepoint_command(sql: *const u8) -> bool {
    const LONGEST: usize = "SAVEPOINT".len();
    let mut word = [0u8; LONGEST];
    let mut len = 0;
    // SAFETY: guaranteed by the caller; reading stops at the NUL, which is not a letter.
    unsafe {
        let mut p = sql;
        while (*p).is_ascii_whitespace() {
            p = p.add(1);
        }
        while (*p).is_ascii_alphabetic() {
            if len == LONGEST {
                return false;
            }
            word[len] = (*p).to_ascii_uppercase();
            len += 1;
            p = p.add(1);
        }
    }
    matches!(&word[..len], b"SAVEPOINT" | b"RELEASE" | b"ROLLBACK")
}

#[cfg(datastore_preupdate_hook)]
unsafe extern "C" fn on_preupdate(
    ctx: *mut c_void,
    db: *mut sqlite::sqlite3,
    op: c_int,
    _database: *const c_char,
    table: *const c_char,
    _old_rowid: sqlite::sqlite3_int64,
    _new_rowid: sqlite::sqlite3_int64,
) {
    guarded(|| {
        // SAFETY: as in `on_commit`; SQLite passes the table's NUL-terminated name, and the
        // preupdate accessors are valid for the duration of this callback.
        unsafe {
            let observer = observer(ctx);
            let table = CStr::from_ptr(table);
            let count = sqlite::sqlite3_preupdate_count(db);
            let depth = sqlite::sqlite3_preupdate_depth(db);
            let sides = (op != sqlite::SQLITE_INSERT, op != sqlite::SQLITE_DELETE);
            observer.changed(table, depth, sides, |rows, side| {
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
    });
}

/// Copies a value SQLite owns into the row.
///
/// # Safety
/// `value` is a valid `sqlite3_value` for the duration of the call.
#[cfg_attr(not(datastore_preupdate_hook), allow(dead_code))]
unsafe fn push_value(row: &mut Rows, value: *mut sqlite::sqlite3_value) {
    // SAFETY: guaranteed by the caller; text and blob pointers are valid for the byte lengths
    // SQLite reports, until the value changes, and are copied at once.
    unsafe {
        match sqlite::sqlite3_value_type(value) {
            sqlite::SQLITE_INTEGER => row.push_integer(sqlite::sqlite3_value_int64(value)),
            sqlite::SQLITE_FLOAT => row.push_real(sqlite::sqlite3_value_double(value)),
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
    use super::is_savepoint_command;
    use std::ffi::CStr;

    fn first_word_is_savepoint_command(sql: &CStr) -> bool {
        // SAFETY: a `CStr` is NUL-terminated.
        unsafe { is_savepoint_command(sql.as_ptr() as *const u8) }
    }

    #[test]
    fn schema_commands_are_told_by_their_first_word() {
        let is = |sql: &CStr| {
            // SAFETY: a `CStr` is NUL-terminated.
            unsafe { super::is_schema_command(sql.as_ptr() as *const u8) }
        };
        for sql in [
            c"ALTER TABLE t DROP COLUMN x",
            c"  create index i on t(a)",
            c"Drop TABLE t",
        ] {
            assert!(is(sql), "{sql:?}");
        }
        for sql in [
            c"INSERT INTO alter_log VALUES (1)",
            c"",
            c"CREATED",
            c"ALTERATION",
            c"SELECT 1",
        ] {
            assert!(!is(sql), "{sql:?}");
        }
    }

    #[test]
    fn only_savepoint_commands_are_read_whole() {
        for sql in [
            c"SAVEPOINT diesel_savepoint_1",
            c"  release savepoint a",
            c"RollBack TO b",
            c"ROLLBACK",
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
        ] {
            assert!(!first_word_is_savepoint_command(sql), "{sql:?}");
        }
    }
}
