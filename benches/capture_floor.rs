//! What SQLite's own interfaces cost any capture of the rows a transaction writes, measured
//! without the store: the observe profile's writes (transactions of 1,000 single-row inserts of
//! a post) through rusqlite, with no hook, and with the hooks a capture cannot do without,
//! doing nothing a capture could leave out.
//!
//! - The statement hooks (`sqlite3_trace_v2`, each statement's start and end), returning at
//!   once: a capture needs each statement's boundaries to drop the rows of a statement that
//!   fails inside a transaction that goes on (SQLite undoes them and says nothing to the
//!   pre-update hook).
//! - The pre-update hook, reading each new value (`sqlite3_preupdate_new`, its type and its
//!   bytes): the only interface that hands over every changed row's values, whoever wrote it
//!   (raw SQL, triggers and cascades included). With [`Floor::Copy`], each text and blob value's
//!   bytes are also copied into one buffer: a value lives only as long as the hook's call, so a
//!   subscriber on another thread can only ever read a copy.
//!
//! Nothing else is done: no table looked up, no value's place recorded, no statement's rows
//! kept or dropped, nothing handed over at commit. What the store does costs more; the
//! difference between these runs per row is a floor under observe's cost that no code of the
//! store can go below.
//!
//! This reaches SQLite's C API directly, as the store's `ffi::sqlite` does; it is a
//! measurement, and nothing of it is in the library.

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::hint::black_box;

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
}

/// `n` transactions of 1,000 single-row inserts into `posts` of the database at `url`, with
/// the hooks `floor` names.
pub fn run(url: &str, floor: Floor, n: u32) {
    let conn = rusqlite::Connection::open_with_flags(
        url,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap();
    // Where the copies go, owned by the hook while it is installed (emptied by it before it
    // would grow, as the store reuses its buffers), freed after.
    let copies = match floor {
        Floor::Copy => Box::into_raw(Box::new(Vec::<u8>::with_capacity(1 << 21))),
        _ => std::ptr::null_mut(),
    };
    if floor != Floor::NoHooks {
        // SAFETY: `conn` is open and used on this thread only; the hooks are removed below,
        // before `copies` (their context) is freed; they have the signatures SQLite expects.
        unsafe {
            let db = conn.handle();
            ffi::sqlite3_trace_v2(
                db,
                (ffi::SQLITE_TRACE_STMT | ffi::SQLITE_TRACE_PROFILE) as c_uint,
                Some(statement_event),
                std::ptr::null_mut(),
            );
            ffi::sqlite3_preupdate_hook(db, Some(read_new_values), copies as *mut c_void);
        }
    }
    for _ in 0..n {
        insert_posts(&conn, 1_000);
    }
    if floor != Floor::NoHooks {
        // SAFETY: as above.
        unsafe {
            let db = conn.handle();
            ffi::sqlite3_trace_v2(db, 0, None, std::ptr::null_mut());
            ffi::sqlite3_preupdate_hook(db, None, std::ptr::null_mut());
        }
    }
    if !copies.is_null() {
        // SAFETY: made by `Box::into_raw` above; the hook that used it is gone.
        drop(unsafe { Box::from_raw(copies) });
    }
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
    // valid; `ctx` is null or the `Vec<u8>` `run` made for this hook alone, alive while it is
    // installed; a value's bytes are valid for the length SQLite reports until the value
    // changes, and are copied at once.
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
