//! A logical replication connection, through libpq (the library Diesel's PostgreSQL backend is
//! built on, bundled): Diesel does not speak the replication protocol, so the change feed
//! reaches libpq's C API here, and only here.
//!
//! The connection runs a few commands (`SET`, `CREATE_REPLICATION_SLOT`), then
//! `START_REPLICATION`, after which it exchanges `CopyData` messages both ways: the server's
//! WAL data and keepalives, and this side's status updates.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::ptr::NonNull;
use std::time::Duration;

use pq_sys::{
    ConnStatusType, ExecStatusType, PGconn, PGresult, PQcancelBlocking, PQcancelCreate,
    PQcancelFinish, PQclear, PQconnectdb, PQconsumeInput, PQerrorMessage, PQexec, PQfinish,
    PQflush, PQfreemem, PQgetCopyData, PQgetCurrentTimeUSec, PQgetResult, PQgetisnull, PQgetvalue,
    PQisBusy, PQnfields, PQntuples, PQputCopyData, PQresultErrorMessage, PQresultStatus,
    PQsendQuery, PQsocket, PQsocketPoll, PQstatus,
};

/// Why a command with a time limit failed: the server did not answer in time (the command
/// was cancelled), or the connection or the command failed.
#[derive(Debug)]
pub(crate) enum Timed {
    Late,
    Failed(Failure),
}

/// Why the connection cannot go on: libpq's message.
pub(crate) type Failure = String;

/// A connection opened with `replication=database`.
pub(crate) struct ReplicationConn {
    conn: NonNull<PGconn>,
}

// SAFETY: a PGconn may be used from any thread, one at a time; `&mut self` on every method
// that touches it makes sure of that.
unsafe impl Send for ReplicationConn {}

impl ReplicationConn {
    /// Connects with a libpq connection string or URL (which must ask for
    /// `replication=database`).
    pub fn connect(conninfo: &str) -> Result<Self, Failure> {
        let conninfo = CString::new(conninfo).map_err(|_| "the URL holds a NUL byte".to_owned())?;
        // SAFETY: `conninfo` is a valid C string for the duration of the call; libpq returns a
        // connection object (possibly a failed one) or NULL when out of memory.
        let raw = unsafe { PQconnectdb(conninfo.as_ptr()) };
        let conn = NonNull::new(raw).ok_or_else(|| "libpq is out of memory".to_owned())?;
        let this = Self { conn };
        // SAFETY: `this.conn` is the live connection libpq just returned.
        if unsafe { PQstatus(this.conn.as_ptr()) } != ConnStatusType::CONNECTION_OK {
            return Err(this.error());
        }
        Ok(this)
    }

    /// libpq's last error on this connection.
    fn error(&self) -> Failure {
        // SAFETY: the connection is live; libpq returns a NUL-terminated string it owns, valid
        // until the next call on the connection, copied here at once.
        let message = unsafe { CStr::from_ptr(PQerrorMessage(self.conn.as_ptr())) };
        message.to_string_lossy().trim_end().to_owned()
    }

    /// Runs one command and returns its rows (each value as text, NULL as `None`); an error
    /// unless it ends with `expect`.
    fn exec_expecting(
        &mut self,
        sql: &str,
        expect: ExecStatusType,
    ) -> Result<Vec<Vec<Option<String>>>, Failure> {
        let sql = CString::new(sql).map_err(|_| "a command holds a NUL byte".to_owned())?;
        // SAFETY: the connection is live and `sql` a valid C string; the result is owned by
        // `OwnedResult`, which clears it.
        let result = OwnedResult(NonNull::new(unsafe {
            PQexec(self.conn.as_ptr(), sql.as_ptr())
        }));
        let Some(raw) = result.0 else {
            return Err(self.error());
        };
        rows_of(raw, expect)
    }

    /// Runs one command that returns rows, waiting at most `timeout` for the server's answer:
    /// past it, the command is cancelled (and the connection is to be dropped).
    pub fn query_within(
        &mut self,
        sql: &str,
        timeout: Duration,
    ) -> Result<Vec<Vec<Option<String>>>, Timed> {
        let sql = CString::new(sql)
            .map_err(|_| Timed::Failed("a command holds a NUL byte".to_owned()))?;
        let conn = self.conn.as_ptr();
        // SAFETY: the connection is live and `sql` a valid C string for the call.
        if unsafe { PQsendQuery(conn, sql.as_ptr()) } == 0 {
            return Err(Timed::Failed(self.error()));
        }
        // SAFETY: PQgetCurrentTimeUSec takes no argument and only reads the clock.
        let deadline = unsafe { PQgetCurrentTimeUSec() }
            .saturating_add(i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX));
        loop {
            // SAFETY: the connection is live; PQsocketPoll only waits on its descriptor.
            unsafe {
                if PQconsumeInput(conn) == 0 {
                    return Err(Timed::Failed(self.error()));
                }
                if PQisBusy(conn) == 0 {
                    break;
                }
                match PQsocketPoll(PQsocket(conn), 1, 0, deadline) {
                    0 => {
                        self.cancel();
                        return Err(Timed::Late);
                    }
                    ready if ready < 0 => {
                        return Err(Timed::Failed(
                            "waiting on the replication connection's socket failed".into(),
                        ));
                    }
                    _ => {}
                }
            }
        }
        // SAFETY: the connection is live and not busy: its results are read whole, each
        // owned by `OwnedResult`, until libpq returns NULL (ready for the next command).
        let first = OwnedResult(NonNull::new(unsafe { PQgetResult(conn) }));
        // SAFETY: as above; each further result is freed at once.
        while let Some(rest) = NonNull::new(unsafe { PQgetResult(conn) }) {
            drop(OwnedResult(Some(rest)));
        }
        let Some(raw) = first.0 else {
            return Err(Timed::Failed(self.error()));
        };
        rows_of(raw, ExecStatusType::PGRES_TUPLES_OK).map_err(Timed::Failed)
    }

    /// Asks the server to cancel the command running on this connection (waiting for its
    /// acknowledgment, not for the command to end).
    fn cancel(&mut self) {
        // SAFETY: the connection is live; the cancel connection is made from it, used, and
        // freed here.
        unsafe {
            let cancel = PQcancelCreate(self.conn.as_ptr());
            if !cancel.is_null() {
                PQcancelBlocking(cancel);
                PQcancelFinish(cancel);
            }
        }
    }

    /// Runs a command that returns no rows (`SET ..`).
    pub fn execute(&mut self, sql: &str) -> Result<(), Failure> {
        self.exec_expecting(sql, ExecStatusType::PGRES_COMMAND_OK)
            .map(drop)
    }

    /// Sends `START_REPLICATION ..`: from now on the connection only exchanges copy data.
    pub fn start_replication(&mut self, sql: &str) -> Result<(), Failure> {
        self.exec_expecting(sql, ExecStatusType::PGRES_COPY_BOTH)
            .map(drop)
    }

    /// The next message from the server, waiting at most `timeout` for one to arrive.
    /// `Ok(None)`: none arrived in time.
    pub fn receive(&mut self, timeout: Duration) -> Result<Option<CopyData>, Failure> {
        if let Some(data) = self.take_buffered()? {
            return Ok(Some(data));
        }
        // SAFETY: the connection is live; PQsocketPoll only waits on the descriptor.
        let ready = unsafe {
            let deadline = PQgetCurrentTimeUSec()
                .saturating_add(i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX));
            PQsocketPoll(PQsocket(self.conn.as_ptr()), 1, 0, deadline)
        };
        if ready < 0 {
            return Err("waiting on the replication connection's socket failed".into());
        }
        if ready == 0 {
            return Ok(None);
        }
        // SAFETY: the connection is live.
        if unsafe { PQconsumeInput(self.conn.as_ptr()) } == 0 {
            return Err(self.error());
        }
        self.take_buffered()
    }

    /// A message libpq has read whole already, without waiting.
    fn take_buffered(&mut self) -> Result<Option<CopyData>, Failure> {
        let mut buffer: *mut c_char = std::ptr::null_mut();
        // SAFETY: the connection is live; in asynchronous mode (1) libpq returns at once, and
        // on a positive length hands over a buffer of that many bytes, freed by `CopyData`.
        let len = unsafe { PQgetCopyData(self.conn.as_ptr(), &mut buffer, 1) };
        match len {
            0 => Ok(None),
            -1 => Err("the server ended the replication stream".into()),
            n if n < 0 => Err(self.error()),
            n => Ok(NonNull::new(buffer.cast::<u8>()).map(|ptr| CopyData {
                ptr,
                len: n as usize,
            })),
        }
    }

    /// Sends one copy-data message (a status update) and flushes it.
    pub fn send(&mut self, message: &[u8]) -> Result<(), Failure> {
        let len = c_int::try_from(message.len()).map_err(|_| "message too long".to_owned())?;
        // SAFETY: the connection is live and `message` valid for `len` bytes during the call.
        let sent = unsafe { PQputCopyData(self.conn.as_ptr(), message.as_ptr().cast(), len) };
        // SAFETY: the connection is live.
        if sent != 1 || unsafe { PQflush(self.conn.as_ptr()) } != 0 {
            return Err(self.error());
        }
        Ok(())
    }
}

/// A command's rows (each value as text, NULL as `None`); an error unless its status is
/// `expect`.
fn rows_of(
    raw: NonNull<PGresult>,
    expect: ExecStatusType,
) -> Result<Vec<Vec<Option<String>>>, Failure> {
    // SAFETY: `raw` is a live result, owned by the caller until after this returns.
    let status = unsafe { PQresultStatus(raw.as_ptr()) };
    if status != expect {
        // SAFETY: as above; the message is copied before the result is cleared.
        let message = unsafe { CStr::from_ptr(PQresultErrorMessage(raw.as_ptr())) };
        let message = message.to_string_lossy().trim_end().to_owned();
        return Err(if message.is_empty() {
            format!("the server answered {status:?}")
        } else {
            message
        });
    }
    // SAFETY: row and field numbers are within the counts libpq reports; each value is a
    // NUL-terminated string owned by the result, copied before it is cleared.
    let rows = unsafe {
        let (rows, fields) = (PQntuples(raw.as_ptr()), PQnfields(raw.as_ptr()));
        (0..rows)
            .map(|r| {
                (0..fields)
                    .map(|f| {
                        (PQgetisnull(raw.as_ptr(), r, f) == 0).then(|| {
                            CStr::from_ptr(PQgetvalue(raw.as_ptr(), r, f))
                                .to_string_lossy()
                                .into_owned()
                        })
                    })
                    .collect()
            })
            .collect()
    };
    Ok(rows)
}

impl Drop for ReplicationConn {
    fn drop(&mut self) {
        // SAFETY: the connection is live and not used after this.
        unsafe { PQfinish(self.conn.as_ptr()) }
    }
}

/// A command's result, cleared when dropped.
struct OwnedResult(Option<NonNull<PGresult>>);

impl Drop for OwnedResult {
    fn drop(&mut self) {
        if let Some(raw) = self.0 {
            // SAFETY: the result is live and cleared once.
            unsafe { PQclear(raw.as_ptr()) }
        }
    }
}

/// One copy-data message from the server, in libpq's buffer (freed when dropped).
pub(crate) struct CopyData {
    ptr: NonNull<u8>,
    len: usize,
}

impl std::ops::Deref for CopyData {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: libpq handed over a buffer of `len` bytes, alive until `drop`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for CopyData {
    fn drop(&mut self) {
        // SAFETY: the buffer came from PQgetCopyData and is freed once.
        unsafe { PQfreemem(self.ptr.as_ptr().cast()) }
    }
}
