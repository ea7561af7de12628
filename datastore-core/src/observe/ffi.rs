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

/// Installs the hooks that feed `observer`, which lives until the connection closes.
pub(crate) fn install(handle: Handle, observer: Box<ConnObserver>) {
    let db = handle.0;
    let ctx = Box::into_raw(observer) as *mut c_void;
    // SAFETY: `db` is an open connection (just opened on this thread, not yet shared). `ctx`
    // stays valid until SQLite calls `release` when the connection closes, after which no hook
    // runs. The callbacks match the signatures SQLite expects.
    unsafe {
        let name = c"__datastore_observer";
        let rc = sqlite::sqlite3_create_function_v2(
            db,
            name.as_ptr(),
            0,
            sqlite::SQLITE_UTF8,
            ctx,
            Some(noop),
            None,
            None,
            Some(release),
        );
        if rc != sqlite::SQLITE_OK {
            // SQLite already called `release` on failure; nothing is installed.
            return;
        }
        sqlite::sqlite3_commit_hook(db, Some(on_commit), ctx);
        sqlite::sqlite3_rollback_hook(db, Some(on_rollback), ctx);
        sqlite::sqlite3_trace_v2(
            db,
            sqlite::SQLITE_TRACE_STMT | sqlite::SQLITE_TRACE_PROFILE,
            Some(on_trace),
            ctx,
        );
        sqlite::sqlite3_wal_hook(db, Some(on_wal_commit), ctx);
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

/// Runs a hook body; a panic must not unwind into SQLite (it would abort the process).
fn guarded(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}

/// # Safety
/// `ctx` is the pointer `install` passed to SQLite, valid until `release`.
unsafe fn observer<'a>(ctx: *mut c_void) -> &'a ConnObserver {
    // SAFETY: guaranteed by the caller.
    unsafe { &*(ctx as *const ConnObserver) }
}

unsafe extern "C" fn noop(
    _ctx: *mut sqlite::sqlite3_context,
    _argc: c_int,
    _argv: *mut *mut sqlite::sqlite3_value,
) {
}

unsafe extern "C" fn release(ctx: *mut c_void) {
    // SAFETY: `ctx` came from `Box::into_raw` in `install`; SQLite calls this exactly once.
    guarded(|| drop(unsafe { Box::from_raw(ctx as *mut ConnObserver) }));
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
            if !observer.active() {
                return; // nobody observes: statements need no bookkeeping
            }
            if event == sqlite::SQLITE_TRACE_STMT {
                let db = sqlite::sqlite3_db_handle(stmt as *mut sqlite::sqlite3_stmt);
                // Only a statement's first words matter (savepoint commands): reading the
                // whole text of every statement would cost more than the rest of the hook.
                let sql = detail as *const u8;
                let mut len = 0;
                while len < 64 && *sql.add(len) != 0 {
                    len += 1;
                }
                let head = std::slice::from_raw_parts(sql, len);
                let head = match std::str::from_utf8(head) {
                    Ok(head) => head,
                    Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
                };
                observer.statement_started(
                    stmt as usize,
                    head,
                    sqlite::sqlite3_total_changes64(db),
                );
            } else if event == sqlite::SQLITE_TRACE_PROFILE {
                observer.statement_ended(stmt as usize);
            }
        }
    });
    0
}

/// Frames in the WAL past which a commit checkpoints, as SQLite's own WAL hook does (which
/// this one replaces).
const AUTO_CHECKPOINT_FRAMES: c_int = 1000;

unsafe extern "C" fn on_wal_commit(
    ctx: *mut c_void,
    db: *mut sqlite::sqlite3,
    database: *const c_char,
    frames: c_int,
) -> c_int {
    // SAFETY: as in `on_commit`.
    guarded(|| unsafe { observer(ctx) }.wal_committed());
    if frames >= AUTO_CHECKPOINT_FRAMES {
        // SAFETY: SQLite allows a WAL hook to checkpoint (its default hook does just that);
        // `database` is the name SQLite passed in.
        unsafe {
            sqlite::sqlite3_wal_checkpoint_v2(
                db,
                database,
                sqlite::SQLITE_CHECKPOINT_PASSIVE,
                ptr::null_mut(),
                ptr::null_mut(),
            );
        }
    }
    sqlite::SQLITE_OK
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
