//! Observe: every committed change to a model, as a typed stream.
//!
//! ```
//! use std::time::Duration;
//! use datastore::observe::{Observed, Op};
//! use datastore::prelude::*;
//!
//! #[derive(Model, Debug, Clone, PartialEq, Default)]
//! pub struct Note {
//!     #[primary_key]
//!     pub id: Id,
//!     pub text: String,
//! }
//!
//! # fn main() -> datastore::Result<()> {
//! let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
//! let notes = store.observe::<Note>()?;
//! let note = store.save(Note { text: "hello".into(), ..Note::default() })?;
//! match notes.recv_timeout(Duration::from_secs(5)) {
//!     Some(Observed::Change(change)) => {
//!         assert_eq!(change.op, Op::Insert);
//!         assert_eq!(change.element, note);
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Only committed work is delivered: a rolled-back transaction, a rolled-back savepoint and
//! the undone rows of a failed statement deliver nothing. Every element is the whole row as
//! committed (the deleted row for a delete), and a cascade delivers one delete per removed
//! child, children before their parent. Changes through any connection of the store's pool
//! reach every subscriber, in commit order. A subscriber's buffer is bounded: a slow one
//! never blocks writers, and is told how many changes it missed.
//!
//! A subscription sees the transactions that commit after it was made; of one already in
//! progress when it was made, it may see only the rows written after that moment (nothing is
//! captured while nobody observes, which keeps an unobserved store as fast as plain Diesel).
//!
//! Built on SQLite's pre-update hook, which needs SQLite compiled with
//! `SQLITE_ENABLE_PREUPDATE_HOOK` (see [`AVAILABLE`]).

pub(crate) mod connection;
pub(crate) mod ffi;
pub(crate) mod hub;
mod query;

pub use query::QuerySubscription;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::model::Model;

/// Whether observe works in this build: SQLite was compiled with the pre-update hook, because
/// the final build set `LIBSQLITE3_FLAGS=-DSQLITE_ENABLE_PREUPDATE_HOOK` (as this repository's
/// `.cargo/config.toml` does). Without it, [`Store::observe`](crate::Store::observe) returns
/// [`Error::Unsupported`](crate::Error::Unsupported) and everything else works as before.
pub const AVAILABLE: bool = ffi::PREUPDATE_HOOK;

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// The row was inserted.
    Insert,
    /// The row was updated (and some value changed).
    Update,
    /// The row was deleted, by a statement or by a cascade.
    Delete,
}

/// A column's value as SQLite stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// `NULL`.
    Null,
    /// An integer (also booleans).
    Integer(i64),
    /// A float.
    Real(f64),
    /// Text (also ids, timestamps, JSON and enums).
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl RawValue {
    /// A short name of the value's storage class, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Null => "NULL",
            Self::Integer(_) => "integer",
            Self::Real(_) => "real",
            Self::Text(_) => "text",
            Self::Blob(_) => "blob",
        }
    }
}

/// A committed change of a row, as captured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawChange {
    pub table: Arc<str>,
    pub op: Op,
    pub old: Option<RawRow>,
    pub new: Option<RawRow>,
    /// 0 for the statement's own rows, 1 and more for rows changed by a cascade.
    pub depth: i32,
}

impl RawChange {
    /// The row as it is after the change (before it, for a delete).
    fn row(&self) -> &RawRow {
        self.new
            .as_ref()
            .or(self.old.as_ref())
            .expect("a change has a row")
    }
}

/// A row as the writer captures it, in the table's column order: the values' bytes in one
/// buffer, so that capturing a row costs two allocations whatever its width. Values become
/// [`RawValue`]s on the subscriber's side.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RawRow {
    bytes: Vec<u8>,
    cells: Vec<Cell>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text { start: usize, len: usize },
    Blob { start: usize, len: usize },
}

impl RawRow {
    pub(crate) fn with_columns(columns: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(columns * 24),
            cells: Vec::with_capacity(columns),
        }
    }

    pub(crate) fn push_null(&mut self) {
        self.cells.push(Cell::Null);
    }

    pub(crate) fn push_integer(&mut self, value: i64) {
        self.cells.push(Cell::Integer(value));
    }

    pub(crate) fn push_real(&mut self, value: f64) {
        self.cells.push(Cell::Real(value));
    }

    pub(crate) fn push_text(&mut self, utf8: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(utf8);
        self.cells.push(Cell::Text {
            start,
            len: utf8.len(),
        });
    }

    pub(crate) fn push_blob(&mut self, bytes: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        self.cells.push(Cell::Blob {
            start,
            len: bytes.len(),
        });
    }

    /// The value of column `i` (`Null` past the end).
    pub(crate) fn value(&self, i: usize) -> RawValue {
        match self.cells.get(i) {
            None | Some(Cell::Null) => RawValue::Null,
            Some(Cell::Integer(v)) => RawValue::Integer(*v),
            Some(Cell::Real(v)) => RawValue::Real(*v),
            Some(Cell::Text { start, len }) => RawValue::Text(
                String::from_utf8_lossy(&self.bytes[*start..start + len]).into_owned(),
            ),
            Some(Cell::Blob { start, len }) => {
                RawValue::Blob(self.bytes[*start..start + len].to_vec())
            }
        }
    }

    /// Every value, in column order.
    pub(crate) fn values(&self) -> Vec<RawValue> {
        (0..self.cells.len()).map(|i| self.value(i)).collect()
    }
}

/// One committed change of a model's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Change<M> {
    /// The model's name.
    pub model: &'static str,
    /// What happened.
    pub op: Op,
    /// The row as committed (the deleted row, for a delete).
    pub element: M,
}

/// What a subscription yields: a [`Change`] (or [`RowChange`] when observing every table).
#[derive(Debug, Clone, PartialEq)]
pub enum Observed<T> {
    /// A committed change.
    Change(T),
    /// The subscriber's buffer was full: this many changes were dropped here.
    Missed(u64),
}

/// One committed change of any table's row, from [`Store::observe_all`](crate::Store::observe_all).
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    /// The table.
    pub table: String,
    /// What happened.
    pub op: Op,
    /// The row as committed (the deleted row, for a delete), in the table's column order.
    pub values: Vec<RawValue>,
}

/// A stream of every table's committed changes; dropping it unsubscribes.
pub struct AllSubscription {
    queue: Arc<hub::Queue>,
}

impl fmt::Debug for AllSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllSubscription").finish_non_exhaustive()
    }
}

impl AllSubscription {
    pub(crate) fn new(queue: Arc<hub::Queue>) -> Self {
        Self { queue }
    }

    /// The next change, waiting at most `timeout`; `None` if none came.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Observed<RowChange>> {
        self.queue.next(Some(timeout)).map(Self::accept)
    }

    /// The next change, waiting for it.
    pub fn recv(&self) -> Observed<RowChange> {
        loop {
            if let Some(item) = self.queue.next(None) {
                return Self::accept(item);
            }
        }
    }

    fn accept(item: hub::Item) -> Observed<RowChange> {
        match item {
            hub::Item::Missed(count) => Observed::Missed(count),
            hub::Item::Change(change) => Observed::Change(RowChange {
                table: change.table.to_string(),
                op: change.op,
                values: change.row().values(),
            }),
        }
    }
}

impl Iterator for AllSubscription {
    type Item = Observed<RowChange>;

    /// Blocks until the next change; never ends.
    fn next(&mut self) -> Option<Observed<RowChange>> {
        Some(self.recv())
    }
}

/// A subscriber's condition on the rows it receives.
pub(crate) type Filter<M> = Box<dyn Fn(&M) -> bool + Send + Sync>;

/// A stream of committed changes. Iterate it (blocking), or poll it with
/// [`recv_timeout`](Self::recv_timeout); dropping it unsubscribes.
pub struct Subscription<M> {
    queue: Arc<hub::Queue>,
    decoder: Decoder,
    filter: Option<Filter<M>>,
    _model: PhantomData<fn() -> M>,
}

impl<M> fmt::Debug for Subscription<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("table", &self.decoder.table)
            .finish_non_exhaustive()
    }
}

/// Maps a table's column order to the model's.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Decoder {
    table: String,
    /// For each model column, its position in the table.
    positions: Vec<usize>,
}

impl Decoder {
    pub(crate) fn new(
        table: &str,
        model_columns: &[&str],
        table_columns: &[String],
    ) -> Result<Self, String> {
        let positions = model_columns
            .iter()
            .map(|name| {
                table_columns.iter().position(|c| c == name).ok_or_else(|| {
                    format!("table {table} has no column {name}: run the migrations")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            table: table.to_owned(),
            positions,
        })
    }

    fn decode<M: Model>(&self, row: &RawRow) -> Result<M, String> {
        M::from_raw_row(self.positions.iter().map(|&i| row.value(i)).collect())
    }
}

impl<M: Model> Subscription<M> {
    pub(crate) fn new(queue: Arc<hub::Queue>, decoder: Decoder, filter: Option<Filter<M>>) -> Self {
        Self {
            queue,
            decoder,
            filter,
            _model: PhantomData,
        }
    }

    /// The next change, waiting for it.
    pub fn recv(&self) -> Observed<Change<M>> {
        loop {
            if let Some(observed) = self.next(None) {
                return observed;
            }
        }
    }

    /// The next change, waiting at most `timeout`; `None` if none came.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Observed<Change<M>>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            match self.queue.next(Some(left)) {
                None => return None,
                Some(item) => {
                    if let Some(observed) = self.accept(item) {
                        return Some(observed);
                    }
                }
            }
        }
    }

    /// The next change if one is waiting now.
    pub fn try_recv(&self) -> Option<Observed<Change<M>>> {
        self.recv_timeout(Duration::ZERO)
    }

    fn next(&self, timeout: Option<Duration>) -> Option<Observed<Change<M>>> {
        self.queue.next(timeout).and_then(|item| self.accept(item))
    }

    /// Decodes a change and applies the filter (to the row before or after the change).
    fn accept(&self, item: hub::Item) -> Option<Observed<Change<M>>> {
        let change = match item {
            hub::Item::Missed(count) => return Some(Observed::Missed(count)),
            hub::Item::Change(change) => change,
        };
        // A row that no longer decodes (the schema changed under the store) is skipped.
        let element: M = self.decoder.decode(change.row()).ok()?;
        if let Some(filter) = &self.filter {
            let before_matches = change.op == Op::Update
                && change
                    .old
                    .as_ref()
                    .and_then(|old| self.decoder.decode::<M>(old).ok())
                    .is_some_and(|old| filter(&old));
            if !filter(&element) && !before_matches {
                return None;
            }
        }
        Some(Observed::Change(Change {
            model: M::NAME,
            op: change.op,
            element,
        }))
    }
}

impl<M: Model> Iterator for Subscription<M> {
    type Item = Observed<Change<M>>;

    /// Blocks until the next change; never ends.
    fn next(&mut self) -> Option<Observed<Change<M>>> {
        Some(self.recv())
    }
}
