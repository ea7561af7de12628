//! How the store selects a model's columns to read its rows: [`Selection`].

use std::marker::PhantomData;

use diesel::QueryResult;
use diesel::Table;
use diesel::backend::Backend;
use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};

use crate::Model;
use crate::schema::ddl::HasDialect;

/// Every column of model `M`'s table, as the store selects them to read a row: the model's
/// Diesel `Selectable` selection, and what `all`, `find`, `query!`, relation loads and live
/// queries select (and `save` returns). Its SQL type is the table's columns'.
///
/// On SQLite a key ([`Id`](crate::Id)) or an instant ([`Timestamp`](crate::Timestamp)) column
/// is selected as `CAST(column AS BLOB) AS column`: SQLite hands over a text's bytes as they are
/// stored, and Diesel reads a blob as it is, where its text read asks SQLite for the value twice
/// and checks its UTF-8 twice (Diesel 2.3's `SqliteValue::read_text`) before the key or the
/// instant parses the ASCII text anyway. A database created in UTF-16 keeps its text so, and
/// hands over those bytes: the reads take the ASCII text from them. On PostgreSQL, whose keys
/// and instants are `uuid` and `timestamptz`, every column is selected as it is.
///
/// Its SQL is written once per model and dialect, from the model's declaration, and Diesel
/// walks it as one piece on every run (where a tuple of columns is walked column by column).
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// use datastore::diesel::debug_query;
/// use datastore::diesel::sqlite::Sqlite;
///
/// # let mut conn = store.conn()?;
/// let note = conn.save(Note { text: "kept".into(), ..Note::default() })?;
/// // Diesel's `as_select` reads a model through the same selection.
/// let sql = debug_query::<Sqlite, _>(&notes::table.select(Note::as_select())).to_string();
/// assert!(sql.starts_with(r#"SELECT CAST("notes"."id" AS BLOB) AS "id", "notes"."text""#));
/// let read: Vec<Note> = notes::table.select(Note::as_select()).load(&mut conn)?;
/// assert_eq!(read, vec![note]);
/// # Ok(())
/// # }
/// ```
pub struct Selection<M>(PhantomData<fn() -> M>);

impl<M> Selection<M> {
    /// The selection of `M`'s columns.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// use datastore::Selection;
    ///
    /// # let mut conn = store.conn()?;
    /// conn.save(Note::default())?;
    /// let notes: Vec<Note> = notes::table.select(Selection::<Note>::new()).load(&mut conn)?;
    /// assert_eq!(notes.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<M> Default for Selection<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> Clone for Selection<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M> Copy for Selection<M> {}

impl<M> std::fmt::Debug for Selection<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Selection<{}>", std::any::type_name::<M>())
    }
}

/// The table's columns, which the selection stands for.
type Columns<M> = <<M as Model>::Table as Table>::AllColumns;

impl<M: Model> Expression for Selection<M> {
    type SqlType = <Columns<M> as Expression>::SqlType;
}

impl<M: Model> QueryId for Selection<M> {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<M: Model, G> ValidGrouping<G> for Selection<M>
where
    Columns<M>: ValidGrouping<G>,
{
    type IsAggregate = <Columns<M> as ValidGrouping<G>>::IsAggregate;
}

impl<M: Model, QS> AppearsOnTable<QS> for Selection<M> where Columns<M>: AppearsOnTable<QS> {}

impl<M: Model, QS> SelectableExpression<QS> for Selection<M> where
    Columns<M>: SelectableExpression<QS>
{
}

impl<M: Model, DB: Backend + HasDialect> QueryFragment<DB> for Selection<M> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let dialect = out.backend().dialect();
        out.push_sql(M::declaration().selection(dialect));
        Ok(())
    }
}

/// The ASCII text held by `bytes`, a text value's bytes as a UTF-16 database keeps them (and a
/// blob read hands them over, see [`Selection`]): each character a byte and a zero, in either byte
/// order. `None` where the bytes are not ASCII in UTF-16: the reads then take them as they are.
///
/// Asked only of bytes that did not read as the ASCII form itself: in a UTF-8 database those
/// hold no zero byte, where every ASCII character in UTF-16 has one.
pub(crate) fn ascii_in_utf16(bytes: &[u8]) -> Option<Vec<u8>> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    // The byte order, from the first character (a character's zero byte is its high one).
    let low = match bytes.get(..2)? {
        [0, 0] => return None,
        [_, 0] => 0,
        [0, _] => 1,
        _ => return None,
    };
    let pairs = bytes.chunks_exact(2);
    let ascii = |pair: &[u8]| pair[1 - low] == 0 && pair[low] != 0 && pair[low].is_ascii();
    pairs
        .clone()
        .all(ascii)
        .then(|| pairs.map(|pair| pair[low]).collect())
}

#[cfg(test)]
mod tests {
    use super::ascii_in_utf16;

    #[test]
    fn ascii_is_taken_from_utf16_in_either_byte_order_and_nothing_else() {
        let text = "2024-02-29T23:59:59.999999Z";
        let le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(ascii_in_utf16(&le).as_deref(), Some(text.as_bytes()));
        assert_eq!(ascii_in_utf16(&be).as_deref(), Some(text.as_bytes()));
        // Not UTF-16 of ASCII: UTF-8 (no zero byte), an odd length, a character beyond ASCII,
        // a NUL character, nothing.
        assert_eq!(ascii_in_utf16(text.as_bytes()), None);
        assert_eq!(ascii_in_utf16(&le[..le.len() - 1]), None);
        let wide: Vec<u8> = "2024-é".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(ascii_in_utf16(&wide), None);
        assert_eq!(ascii_in_utf16(&[b'a', 0, 0, 0]), None);
        assert_eq!(ascii_in_utf16(&[]), None);
    }
}
