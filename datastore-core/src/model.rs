//! What `#[derive(Model)]` implements: the model's description ([`Model`]) and its data
//! access on a backend's connection ([`Persist`]).

use diesel::connection::Connection;
use diesel::expression::BoxableExpression;
use diesel::sql_types::Bool;

use crate::relations::Relation;
use crate::schema::Table;
use crate::{Id, Result};

/// A struct stored as the rows of one table.
///
/// Derive it; the derive also writes the Diesel `table!` module, Diesel's `Queryable`,
/// `Selectable`, `Insertable` and `AsChangeset`, and [`Persist`] for each backend.
///
/// ```
/// use datastore::prelude::*;
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Note {
///     #[primary_key]
///     pub id: Id,
///     pub text: String,
/// }
///
/// assert_eq!(Note::TABLE.name, "notes");
/// assert_eq!(Note::NAME, "Note");
/// let note = Note::default();
/// assert_eq!(note.id(), &note.id);
/// ```
pub trait Model: Sized + Send + 'static {
    /// The Diesel table type (`posts::table`).
    type Table: diesel::Table + Default + Copy;
    /// The struct's name.
    const NAME: &'static str;
    /// The table's name (also `TABLE.name`, usable where a `&'static str` is needed).
    const TABLE_NAME: &'static str;
    /// The primary-key column's name.
    const PRIMARY_KEY: &'static str;
    /// The table's description: columns, keys, foreign keys, indexes.
    const TABLE: Table;
    /// The relation fields, as declared.
    const RELATIONS: &'static [Relation];

    /// The primary key.
    fn id(&self) -> &Id;
}

/// A boxed `WHERE` predicate over a model's table, as [`Persist::delete_where`] takes it.
pub type Predicate<M, C> =
    Box<dyn BoxableExpression<<M as Model>::Table, <C as Connection>::Backend, SqlType = Bool>>;

/// A model's typed data access on one backend's connection `C`.
///
/// Implemented by `#[derive(Model)]`. Call it through [`Repo`](crate::Repo) on a connection,
/// or through a [`Store`](crate::Store); both translate errors into [`Error`](crate::Error).
pub trait Persist<C: Connection>: Model {
    /// The model's query, boxed so that it can be refined in a closure (`posts::BoxedQuery`).
    type Query;

    /// The query selecting every row, ready to be filtered and ordered.
    fn query() -> Self::Query;

    /// Runs a query built from [`Persist::query`].
    fn load(conn: &mut C, query: Self::Query) -> Result<Vec<Self>>;

    /// Inserts the row, or updates the row with the same primary key, and returns it as stored.
    fn save(self, conn: &mut C) -> Result<Self>;

    /// The row with this primary key.
    fn find(conn: &mut C, id: &Id) -> Result<Option<Self>>;

    /// The number of rows.
    fn count(conn: &mut C) -> Result<i64>;

    /// Deletes the row with this primary key; returns whether there was one.
    fn delete_by_id(conn: &mut C, id: &Id) -> Result<bool>;

    /// Deletes the rows matching the predicate; returns how many.
    fn delete_where(conn: &mut C, predicate: Predicate<Self, C>) -> Result<usize>;
}
