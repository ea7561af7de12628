//! The values of captured rows: how a connection keeps them as it captures a transaction's
//! changes, and how subscribers read them.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::OnceLock;

use super::{RawValue, RawValueRef};

/// The values of many rows, as a connection captures them during a transaction: their bytes
/// in one buffer and their cells in another, so that capturing a row allocates nothing.
/// Values become [`RawValueRef`]s on the subscriber's side.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    /// The bytes of the text and blob values, one after the other. Only ever appended to,
    /// but by [`Rows::truncate`] and [`Rows::clear`], which forget `utf8` (the fields are
    /// private to this module, which keeps that rule: [`Rows::text`] relies on it).
    bytes: Vec<u8>,
    cells: Vec<Cell>,
    /// How many of `bytes`, from the first, are UTF-8 (all of them in the common case, no
    /// blob): checked once and whole, by the first subscriber to read a text value (see
    /// [`Rows::text`]), rather than value by value as each subscriber reads it (a fifth of
    /// decoding a row), or by the writer as it commits (whose time the capture costs).
    utf8: OnceLock<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    /// A text value's bytes in [`Rows::bytes`]: `len` fits in 32 bits, as SQLite's longest
    /// value (2^31 - 1 bytes at most) and PostgreSQL's (1 GiB) do; a cell takes 16 bytes.
    Text {
        start: usize,
        len: u32,
    },
    Blob {
        start: usize,
        len: u32,
    },
}

// Cells are written for every value captured: kept small.
const _: () = assert!(size_of::<Cell>() <= 16);

impl Cell {
    /// The length of a value of `len` bytes, as a cell holds it.
    fn len(len: usize) -> u32 {
        u32::try_from(len)
            .expect("a value is shorter than 4 GiB (SQLite's and PostgreSQL's limits)")
    }
}

/// A position in [`Rows`], to go back to.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Mark {
    bytes: usize,
    cells: usize,
}

impl Rows {
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            bytes: self.bytes.len(),
            cells: self.cells.len(),
        }
    }

    /// Forgets everything captured since `mark`.
    pub(crate) fn truncate(&mut self, mark: Mark) {
        self.bytes.truncate(mark.bytes);
        self.cells.truncate(mark.cells);
        self.utf8.take(); // bytes captured again after may differ
    }

    /// The cells captured since `mark`.
    pub(crate) fn since(&self, mark: Mark) -> Range<usize> {
        mark.cells..self.cells.len()
    }

    /// Empty, with room for a transaction like the one `previous` captured (up to a bound):
    /// a run of like transactions then does not grow its buffers again and again.
    pub(crate) fn sized_like(previous: &Rows) -> Rows {
        /// About 1.5 MiB of cells and 1 MiB of text reserved at most.
        const MOST_CELLS: usize = 1 << 16;
        const MOST_BYTES: usize = 1 << 20;
        Rows {
            bytes: Vec::with_capacity(previous.bytes.len().min(MOST_BYTES)),
            cells: Vec::with_capacity(previous.cells.len().min(MOST_CELLS)),
            utf8: OnceLock::new(),
        }
    }

    /// Gives back the room reserved by [`Rows::sized_like`] that a smaller transaction left
    /// unused, before its rows wait in subscribers' queues.
    pub(crate) fn shrink(&mut self) {
        if self.bytes.capacity() > 2 * self.bytes.len() {
            self.bytes.shrink_to_fit();
        }
        if self.cells.capacity() > 2 * self.cells.len() {
            self.cells.shrink_to_fit();
        }
    }

    /// Empty, keeping its room.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.cells.clear();
        self.utf8.take();
    }

    /// The room it holds, in bytes.
    pub(crate) fn allocated(&self) -> usize {
        self.bytes.capacity() + self.cells.capacity() * size_of::<Cell>()
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
        let (start, len) = (self.bytes.len(), Cell::len(utf8.len()));
        self.bytes.extend_from_slice(utf8);
        self.cells.push(Cell::Text { start, len });
    }

    pub(crate) fn push_blob(&mut self, bytes: &[u8]) {
        let (start, len) = (self.bytes.len(), Cell::len(bytes.len()));
        self.bytes.extend_from_slice(bytes);
        self.cells.push(Cell::Blob { start, len });
    }

    /// Appends the cells at `cells` of `from` (with their bytes), and says where they are.
    pub(crate) fn copy_from(&mut self, from: &Rows, cells: Range<usize>) -> Range<usize> {
        let start = self.cells.len();
        for &cell in &from.cells[cells] {
            match cell {
                Cell::Text { start, len } => self.push_text(from.slice(start, len)),
                Cell::Blob { start, len } => self.push_blob(from.slice(start, len)),
                other => self.cells.push(other),
            }
        }
        start..self.cells.len()
    }

    /// The captured row at `cells`.
    pub(crate) fn row(&self, cells: Range<usize>) -> RowRef<'_> {
        RowRef { rows: self, cells }
    }

    /// Whether two captured rows hold the same values.
    pub(crate) fn same(&self, a: &Range<usize>, b: &Range<usize>) -> bool {
        a.len() == b.len()
            && a.clone()
                .zip(b.clone())
                .all(|(x, y)| self.bytes_of(x) == self.bytes_of(y))
    }

    /// A cell's value as comparable bytes (its kind, then its content).
    fn bytes_of(&self, cell: usize) -> (u8, &[u8], u64) {
        match self.cells[cell] {
            Cell::Null => (0, &[], 0),
            Cell::Integer(v) => (1, &[], v as u64),
            Cell::Real(v) => (2, &[], v.to_bits()),
            Cell::Text { start, len } => (3, self.slice(start, len), 0),
            Cell::Blob { start, len } => (4, self.slice(start, len), 0),
        }
    }

    fn value(&self, cell: usize) -> RawValueRef<'_> {
        match self.cells[cell] {
            Cell::Null => RawValueRef::Null,
            Cell::Integer(v) => RawValueRef::Integer(v),
            Cell::Real(v) => RawValueRef::Real(v),
            Cell::Text { start, len } => RawValueRef::Text(self.text(start, len)),
            Cell::Blob { start, len } => RawValueRef::Blob(self.slice(start, len)),
        }
    }

    /// The bytes of the value at `start`, `len` long.
    fn slice(&self, start: usize, len: u32) -> &[u8] {
        &self.bytes[start..start + len as usize]
    }

    /// The text value at `start`, `len` long: borrowed where its bytes are UTF-8, with each
    /// bad sequence replaced otherwise.
    fn text(&self, start: usize, len: u32) -> Cow<'_, str> {
        let range = start..start + len as usize;
        let checked = *self
            .utf8
            .get_or_init(|| match std::str::from_utf8(&self.bytes) {
                Ok(_) => self.bytes.len(),
                Err(error) => error.valid_up_to(),
            });
        if range.end <= checked {
            // SAFETY: the first `checked` bytes were found UTF-8, and have not changed since:
            // bytes are only appended after them (`truncate` and `clear` forget the check).
            // The crate's only `unsafe` outside `ffi`: checking each value instead cost a fifth
            // of decoding a row. The fields are private to this module, which keeps the rule.
            #[allow(unsafe_code)]
            let text = unsafe { std::str::from_utf8_unchecked(&self.bytes[..checked]) };
            // `None` only where the range splits a character: a value's own bytes are not
            // UTF-8, and its neighbours' complete them.
            if let Some(text) = text.get(range.clone()) {
                return Cow::Borrowed(text);
            }
        }
        let bytes = &self.bytes[range];
        // `from_utf8` checks much faster than `from_utf8_lossy` reads valid text.
        match std::str::from_utf8(bytes) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(bytes),
        }
    }
}

/// One captured row.
pub(crate) struct RowRef<'a> {
    rows: &'a Rows,
    cells: Range<usize>,
}

impl<'a> RowRef<'a> {
    /// The value of column `i` (`Null` past the end).
    pub(crate) fn value(&self, i: usize) -> RawValueRef<'a> {
        if i < self.cells.len() {
            self.rows.value(self.cells.start + i)
        } else {
            RawValueRef::Null
        }
    }

    /// How many values the row has.
    pub(crate) fn len(&self) -> usize {
        self.cells.len()
    }

    /// Every value, in column order.
    pub(crate) fn values(&self) -> Vec<RawValue> {
        self.cells
            .clone()
            .map(|cell| self.rows.value(cell).into())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(rows: &Rows) -> Vec<RawValueRef<'_>> {
        (0..rows.cells.len()).map(|cell| rows.value(cell)).collect()
    }

    #[test]
    fn rows_read_their_text_checked_once_and_their_blobs_as_bytes() {
        let mut rows = Rows::default();
        rows.push_text("café".as_bytes());
        // "€" is E2 82 AC: half in a text value, the rest in the blob after it.
        rows.push_text(b"\xe2");
        rows.push_blob(b"\x82\xac");
        assert_eq!(rows.utf8.get(), None, "checked only when read");
        assert_eq!(
            texts(&rows),
            [
                RawValueRef::Text("café".into()),
                RawValueRef::Text("\u{FFFD}".into()),
                RawValueRef::Blob(b"\x82\xac"),
            ]
        );
        assert_eq!(rows.utf8.get(), Some(&8), "all UTF-8 taken whole");
        // Captured into after a read: the bytes after those checked are checked as read.
        rows.push_blob(b"\xff");
        rows.push_text(b"ok");
        assert_eq!(texts(&rows)[4], RawValueRef::Text("ok".into()));
        assert_eq!(texts(&rows)[1], RawValueRef::Text("\u{FFFD}".into()));
        // Cut back and captured into again: the check is made again.
        rows.truncate(Mark { bytes: 5, cells: 1 });
        assert_eq!(rows.utf8.get(), None, "forgotten as the bytes were cut");
        rows.push_text(b"\xff\xfe");
        rows.push_text("été".as_bytes());
        assert_eq!(
            texts(&rows),
            [
                RawValueRef::Text("café".into()),
                RawValueRef::Text("\u{FFFD}\u{FFFD}".into()),
                RawValueRef::Text("été".into()),
            ]
        );
        assert_eq!(rows.utf8.get(), Some(&5), "UTF-8 up to the first bad byte");
    }
}
