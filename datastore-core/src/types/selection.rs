//! How the store selects a model's columns to read its rows: [`Selection`].

use std::marker::PhantomData;

use diesel::QueryResult;
use diesel::Table;
use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sqlite::Sqlite;

use crate::schema::ddl::Dialect;
use crate::{AnyBackend, Model};

/// Every column of model `M`'s table, as the store selects them to read a row: the model's
/// Diesel `Selectable` selection, and what `all`, `find`, `query!`, relation loads and live
/// queries select (and `save` returns). Its SQL type is the table's columns'.
///
/// On SQLite a key ([`Id`](crate::Id)) or an instant ([`Timestamp`](crate::Timestamp)) column
/// is selected as `CAST(column AS BLOB)`: SQLite hands over a text's bytes as they are stored,
/// and Diesel reads a blob as it is, where its text read asks SQLite for the value twice and
/// checks its UTF-8 twice (Diesel 2.3's `SqliteValue::read_text`) before the key or the instant
/// parses the ASCII text anyway. A database created in UTF-16 keeps its text so, and hands over
/// those bytes: the reads take the ASCII text from them. On PostgreSQL, whose keys and instants
/// are `uuid` and `timestamptz`, every column is selected as it is. No column is renamed (an
/// `ORDER BY` the caller writes by a column's bare name still means the column).
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
/// assert!(sql.starts_with(r#"SELECT CAST("notes"."id" AS BLOB), "notes"."text""#));
/// let read: Vec<Note> = notes::table.select(Note::as_select()).load(&mut conn)?;
/// assert_eq!(read, vec![note.clone()]);
/// // And as a statement's `RETURNING` (on the backend's own connection, as Diesel's
/// // `as_returning` asks).
/// let datastore::AnyConnection::Sqlite(sqlite) = &mut *conn else { unreachable!() };
/// let edited: Note = datastore::diesel::update(notes::table.find(note.id))
///     .set(notes::text.eq("edited"))
///     .returning(Note::as_returning())
///     .get_result(sqlite)?;
/// assert_eq!(edited, Note { text: "edited".into(), ..note });
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

impl<M: Model> Selection<M> {
    /// Writes the columns in `dialect`: qualified by the table's name, but where Diesel leaves
    /// the table out (SQLite's `RETURNING`, which names no other table).
    fn walk<DB: diesel::backend::Backend>(mut out: AstPass<'_, '_, DB>, dialect: Dialect) {
        out.push_sql(M::declaration().selection(dialect, !out.should_skip_from()));
    }
}

impl<M: Model> QueryFragment<Sqlite> for Selection<M> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        Self::walk(out, Dialect::Sqlite);
        Ok(())
    }
}

impl<M: Model> QueryFragment<Pg> for Selection<M> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        Self::walk(out, Dialect::Postgres);
        Ok(())
    }
}

impl<M: Model> QueryFragment<AnyBackend> for Selection<M> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, AnyBackend>) -> QueryResult<()> {
        AnyBackend::walk_variant_ast(self, pass)
    }
}

/// The column a result column of a [`Selection`] reads, by the name SQLite gives it: a key or
/// an instant selected as `CAST("table"."column" AS BLOB)` reads `column`; any other name is
/// the column's own.
pub(crate) fn selected_column(name: &str) -> &str {
    match name
        .strip_prefix("CAST(")
        .and_then(|cast| cast.strip_suffix(" AS BLOB)"))
    {
        Some(column) => column
            .rsplit_once("\".\"")
            .map_or(column, |(_, column)| column)
            .trim_matches('"'),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::selected_column;

    #[test]
    fn a_cast_column_is_named_by_the_column_it_reads() {
        assert_eq!(selected_column(r#"CAST("posts"."id" AS BLOB)"#), "id");
        assert_eq!(
            selected_column(r#"CAST("created_at" AS BLOB)"#),
            "created_at"
        );
        assert_eq!(selected_column("title"), "title");
    }
}
