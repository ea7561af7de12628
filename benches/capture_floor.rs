//! What SQLite's own interfaces cost the store's way of capturing the rows a transaction
//! writes, measured without the store: the observe profile's writes (transactions of 1,000
//! single-row inserts of a post) through rusqlite, with no hook, and with the hooks the store's
//! capture installs, each doing only what SQLite makes it do ([`run`], for `profile`); and
//! the same hooks on a plain Diesel connection ([`diesel_with_floor`], timed by `observe.rs`).
//!
//! - The statement hooks (`sqlite3_trace_v2`), returning at once: the store follows each
//!   statement's start (to keep or drop the rows of the statement before it) and, where
//!   Diesel's query events do not tell it (not the case in these benchmarks: hence
//!   [`Floor::CopyStarts`]), its end (SQLite times a statement whose end is traced, two reads
//!   of the clock).
//! - The pre-update hook, reading each new value through `sqlite3_preupdate_new` (the only
//!   interface that hands over every changed row's values, whoever wrote it: raw SQL, triggers
//!   and cascades included) and its type, and a text or blob value's pointer and length. With
//!   [`Floor::Copy`], each text and blob value's bytes are also copied into one buffer: a value
//!   lives only as long as the hook's call, so a subscriber on another thread can only ever
//!   read a copy.
//!
//! Nothing else is done: no table looked up, no value's type or place recorded, no integer
//! copied, no statement's rows kept or dropped, nothing handed over at commit. The difference
//! between these runs per row is what SQLite's interfaces cost such a capture before it does
//! any of that.
//!
//! This reaches SQLite's C API directly, as the store's `ffi::sqlite` does (and links only
//! where SQLite is compiled with the pre-update hook, as this repository's
//! `.cargo/config.toml` has it); it is a measurement, and nothing of it is in the library.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_uint, c_void};
use std::hint::black_box;

use datastore::diesel::{Connection, SqliteConnection};

use datastore::prelude::*;
use rusqlite::ffi;

/// Which hooks a run installs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    /// None: rusqlite's inserts alone.
    NoHooks,
    /// The statement hooks and the pre-update hook, reading each new value.
    Read,
    /// As [`Floor::Read`], and each text and blob value's bytes copied into one buffer.
    Copy,
    /// As [`Floor::Copy`], with only the statements' starts traced.
    CopyStarts,
}

/// `n` transactions of 1,000 single-row inserts into `posts` of the database at `url`, with
/// the hooks `floor` names.
pub fn run(url: &str, floor: Floor, n: u32) {
    let conn = rusqlite::Connection::open_with_flags(
        url,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap();
    // SAFETY: `conn` is open, used on this thread only, and outlives the hooks (dropped first).
    let hooks = unsafe { Hooks::install(conn.handle(), floor) };
    for _ in 0..n {
        insert_posts(&conn, 1_000);
    }
    drop(hooks);
}

/// The hooks a [`Floor`] names, installed on one connection; removed, and their buffer freed,
/// when dropped.
struct Hooks {
    db: *mut ffi::sqlite3,
    /// Where the copies go: reached only through the pre-update hook while it is installed,
    /// emptied by it before it would grow (no reallocation is timed). Null where nothing is
    /// copied.
    copies: *mut Vec<u8>,
}

impl Hooks {
    /// Installs on `db` the hooks `floor` names (none for [`Floor::NoHooks`]).
    ///
    /// # Safety
    /// `db` is an open connection, used on one thread at a time, that stays open until the
    /// value made is dropped (or forever, if it is forgotten); no other trace or pre-update
    /// hook is installed on it meanwhile.
    unsafe fn install(db: *mut ffi::sqlite3, floor: Floor) -> Self {
        let copies = match floor {
            Floor::Copy | Floor::CopyStarts => {
                Box::into_raw(Box::new(Vec::<u8>::with_capacity(1 << 21)))
            }
            Floor::NoHooks | Floor::Read => std::ptr::null_mut(),
        };
        let events = match floor {
            Floor::CopyStarts => ffi::SQLITE_TRACE_STMT,
            _ => ffi::SQLITE_TRACE_STMT | ffi::SQLITE_TRACE_PROFILE,
        };
        if floor != Floor::NoHooks {
            // SAFETY: guaranteed by the caller; the hooks are removed in `drop`, before
            // `copies` (the pre-update hook's context; the statement hook has none) is freed;
            // they have the signatures SQLite expects.
            unsafe {
                ffi::sqlite3_trace_v2(
                    db,
                    events as c_uint,
                    Some(statement_event),
                    std::ptr::null_mut(),
                );
                ffi::sqlite3_preupdate_hook(db, Some(read_new_values), copies as *mut c_void);
            }
        }
        Self { db, copies }
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        // SAFETY: `db` is still open (see `install`); removing hooks that were never installed
        // changes nothing. `copies` was made by `Box::into_raw`, and the hook that used it is
        // gone.
        unsafe {
            ffi::sqlite3_trace_v2(self.db, 0, None, std::ptr::null_mut());
            ffi::sqlite3_preupdate_hook(self.db, None, std::ptr::null_mut());
            if !self.copies.is_null() {
                drop(Box::from_raw(self.copies));
            }
        }
    }
}

thread_local! {
    /// The handle of the connection SQLite opened last on this thread, while
    /// [`diesel_with_floor`] watches, and how many it opened meanwhile.
    static OPENED: Cell<(*mut ffi::sqlite3, usize)> = const { Cell::new((std::ptr::null_mut(), 0)) };
}

unsafe extern "C" fn remember_opened(
    db: *mut ffi::sqlite3,
    _error: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    OPENED.with(|opened| opened.set((db, opened.get().1 + 1)));
    ffi::SQLITE_OK
}

/// [`remember_opened`] registered for SQLite's opens while it lives.
struct Watching;

impl Watching {
    fn start() -> Self {
        OPENED.with(|opened| opened.set((std::ptr::null_mut(), 0)));
        // SAFETY: `remember_opened` has the signature SQLite expects of an auto-extension entry
        // point, and is a plain function that lives as long as the process.
        unsafe { ffi::sqlite3_auto_extension(Some(remember_opened)) };
        Watching
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        // SAFETY: as in `start`.
        unsafe { ffi::sqlite3_cancel_auto_extension(Some(remember_opened)) };
    }
}

/// A plain Diesel connection to `url` with the hooks `floor` names, for its whole life: what
/// SQLite's interfaces cost Diesel's own writes, to time beside the store's
/// (`benches/observe.rs`). Its handle is taken as SQLite opens it (Diesel does not lend it).
/// The hooks go with the connection, and the pre-update hook's buffer (2 MiB) is never freed,
/// so that nothing the caller does with the connection can leave a hook with a freed one.
pub fn diesel_with_floor(url: &str, floor: Floor) -> SqliteConnection {
    let conn = {
        let _watching = Watching::start();
        SqliteConnection::establish(url).unwrap()
    };
    let (db, opens) = OPENED.with(|opened| opened.replace((std::ptr::null_mut(), 0)));
    // Diesel's establish opens one connection, but its instrumentation (a process-wide default
    // may be set) could open another meanwhile: then which handle is `conn`'s is unknown.
    assert_eq!(
        opens, 1,
        "SQLite opened {opens} connections as Diesel's one was established"
    );
    // SAFETY: `db` is `conn`'s handle (the one connection opened meanwhile on this thread),
    // open, used on one thread at a time, and no other hook of these kinds is installed on it
    // (a plain Diesel connection installs none); the hooks are never removed (`forget`), and
    // their buffer is never freed, so they stay valid for as long as SQLite may call them:
    // until the connection closes.
    std::mem::forget(unsafe { Hooks::install(db, floor) });
    conn
}

/// `count` new posts inserted in one transaction as the rusqlite peer of the benchmarks
/// writes them: one cached single-row `INSERT` each, binding keys and instants as text.
pub fn insert_posts(conn: &rusqlite::Connection, count: usize) {
    let rows: Vec<[String; 5]> = (0..count)
        .map(|_| {
            let now = Timestamp::now().to_string();
            [
                Id::new().to_string(),
                String::new(),
                "Active".into(),
                now.clone(),
                now,
            ]
        })
        .collect();
    let tx = conn.unchecked_transaction().unwrap();
    {
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO posts (id, title, rating, status, body, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .unwrap();
        for [id, title, status, created, updated] in &rows {
            stmt.execute(rusqlite::params![
                id,
                title,
                0,
                status,
                Option::<String>::None,
                created,
                updated
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

unsafe extern "C" fn statement_event(
    _event: c_uint,
    _ctx: *mut c_void,
    _stmt: *mut c_void,
    _detail: *mut c_void,
) -> c_int {
    0
}

unsafe extern "C" fn read_new_values(
    ctx: *mut c_void,
    db: *mut ffi::sqlite3,
    _op: c_int,
    _database: *const c_char,
    _table: *const c_char,
    _old_rowid: ffi::sqlite3_int64,
    _new_rowid: ffi::sqlite3_int64,
) {
    // SAFETY: SQLite calls this during a change of `db`, when the pre-update accessors are
    // valid, and never again before it returns (the accessors call no hook). `ctx` is null or
    // the `Vec<u8>` `Hooks::install` made for this hook: alive while the hook is installed,
    // and reached by nothing else meanwhile, so the one reference made here is the only one. A value's bytes
    // are valid for the length SQLite reports until the value changes, and are copied at once.
    unsafe {
        let mut copies = (ctx as *mut Vec<u8>).as_mut();
        for i in 0..ffi::sqlite3_preupdate_count(db) {
            let mut value = std::ptr::null_mut();
            if ffi::sqlite3_preupdate_new(db, i, &mut value) != ffi::SQLITE_OK {
                continue;
            }
            match ffi::sqlite3_value_type(value) {
                ffi::SQLITE_TEXT | ffi::SQLITE_BLOB => {
                    let bytes = ffi::sqlite3_value_blob(value) as *const u8;
                    let len = ffi::sqlite3_value_bytes(value) as usize;
                    match copies.as_deref_mut() {
                        Some(copies) if !bytes.is_null() => {
                            if copies.len() + len > copies.capacity() {
                                copies.clear();
                            }
                            copies.extend_from_slice(std::slice::from_raw_parts(bytes, len));
                        }
                        _ => {
                            black_box((bytes, len));
                        }
                    }
                }
                ffi::SQLITE_INTEGER => {
                    black_box(ffi::sqlite3_value_int64(value));
                }
                ffi::SQLITE_FLOAT => {
                    black_box(ffi::sqlite3_value_double(value));
                }
                _ => {}
            }
        }
    }
}
