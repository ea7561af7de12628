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
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a model",
    label = "not a model",
    note = "a relation's target and join model are structs with `#[derive(Model)]`"
)]
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

    /// The row from values SQLite reported to a hook, in the order of `TABLE.columns`.
    fn from_raw_row(values: Vec<crate::observe::RawValue>) -> std::result::Result<Self, String>;
}

/// A boxed `WHERE` predicate over a model's table, as [`Persist::delete_where`] takes it.
pub type Predicate<M, C> =
    Box<dyn BoxableExpression<<M as Model>::Table, <C as Connection>::Backend, SqlType = Bool>>;

/// A `WHERE` condition, `Bool` or nullable (`content.like(..)` on a nullable column): in a
/// `WHERE` clause `NULL` is false, so both filter alike. The marker `M` tells the two apart.
pub trait IntoPredicate<T, DB: diesel::backend::Backend, M> {
    /// The condition, boxed.
    fn into_predicate(self) -> Box<dyn BoxableExpression<T, DB, SqlType = Bool>>;
}

/// [`IntoPredicate`]'s marker for a `Bool` condition.
#[derive(Debug)]
pub enum NotNullCondition {}

/// [`IntoPredicate`]'s marker for a `Nullable<Bool>` condition.
#[derive(Debug)]
pub enum NullableCondition {}

impl<E, T, DB> IntoPredicate<T, DB, NotNullCondition> for E
where
    DB: diesel::backend::Backend,
    E: BoxableExpression<T, DB, SqlType = Bool> + 'static,
{
    fn into_predicate(self) -> Box<dyn BoxableExpression<T, DB, SqlType = Bool>> {
        Box::new(self)
    }
}

impl<E, T, DB> IntoPredicate<T, DB, NullableCondition> for E
where
    DB: diesel::backend::Backend,
    E: BoxableExpression<T, DB, SqlType = diesel::sql_types::Nullable<Bool>> + 'static,
    diesel::dsl::AssumeNotNull<E>: BoxableExpression<T, DB, SqlType = Bool> + 'static,
{
    fn into_predicate(self) -> Box<dyn BoxableExpression<T, DB, SqlType = Bool>> {
        Box::new(diesel::NullableExpressionMethods::assume_not_null(self))
    }
}

/// The most values one statement binds on every backend: SQLite's limit (PostgreSQL allows
/// 65,535). [`Persist::insert_all`] splits its rows into statements that stay under it.
pub const MAX_BIND_PARAMS: usize = 32_766;

/// A model's typed data access on one backend's connection `C`.
///
/// Implemented by `#[derive(Model)]`. Call it through [`Repo`](crate::Repo) on a connection,
/// or through a [`Store`](crate::Store); both translate errors into [`Error`](crate::Error).
///
/// ```
/// use datastore::prelude::*;
/// use datastore::diesel::SqliteConnection;
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Note {
///     #[primary_key]
///     pub id: Id,
///     pub text: String,
/// }
///
/// # fn main() -> datastore::Result<()> {
/// let mut conn = SqliteConnection::establish(":memory:").unwrap();
/// Schema::new().model::<Note>().create_all(&mut conn)?;
/// let note = Note { text: "direct".into(), ..Note::default() }.save(&mut conn)?;
/// assert_eq!(<Note as Persist<SqliteConnection>>::count(&mut conn)?, 1);
/// assert!(Note::find(&mut conn, &note.id)?.is_some());
/// # Ok(())
/// # }
/// ```
pub trait Persist<C: Connection>: Model {
    /// The model's query, boxed so that it can be refined in a closure (`posts::BoxedQuery`).
    type Query;

    /// The query selecting every row, ready to be filtered and ordered.
    fn query() -> Self::Query;

    /// Runs a query built from [`Persist::query`].
    fn load(conn: &mut C, query: Self::Query) -> Result<Vec<Self>>;

    /// Every row, in key order.
    fn all(conn: &mut C) -> Result<Vec<Self>> {
        Self::load(conn, Self::query())
    }

    /// The rows matching a predicate, in key order.
    fn load_where(conn: &mut C, predicate: Predicate<Self, C>) -> Result<Vec<Self>>;

    /// Inserts the row, or updates the row with the same primary key, and returns it as stored.
    fn save(self, conn: &mut C) -> Result<Self>;

    /// Inserts new rows, with `created_at`/`updated_at` set to now, and returns them as
    /// written. Meant for bulk loads: one multi-row `INSERT` per [`MAX_BIND_PARAMS`] bound
    /// values, nothing read back, where [`save`](Persist::save) runs an upsert per row and
    /// returns it. A row whose key exists fails the whole call, as does any other violated
    /// constraint; rows spanning several statements are inserted in one transaction, so an
    /// error leaves none of them written. Unlike `save`'s, a foreign-key error does not name
    /// the row whose parent is missing.
    fn insert_all(rows: Vec<Self>, conn: &mut C) -> Result<Vec<Self>>;

    /// Saves the row and, in the same transaction, every loaded relation under it: children
    /// (pointed at it, recursively) and many-to-many rows (saved, and linked if they were not).
    /// Relations not loaded are left alone. An error anywhere leaves nothing written.
    fn save_graph(self, conn: &mut C) -> Result<Self>;

    /// The row with this primary key.
    fn find(conn: &mut C, id: &Id) -> Result<Option<Self>>;

    /// The rows with these keys, in key order: one statement per
    /// [`CHUNK`](crate::relations::CHUNK) keys.
    fn find_many(conn: &mut C, ids: &[Id]) -> Result<Vec<Self>>;

    /// The number of rows.
    fn count(conn: &mut C) -> Result<i64>;

    /// Deletes the row with this primary key; returns whether there was one.
    fn delete_by_id(conn: &mut C, id: &Id) -> Result<bool>;

    /// The number of rows matching the predicate.
    fn count_where(conn: &mut C, predicate: Predicate<Self, C>) -> Result<i64>;

    /// Deletes the rows matching the predicate; returns how many.
    fn delete_where(conn: &mut C, predicate: Predicate<Self, C>) -> Result<usize>;
}

/// A connection taken from a [`Store`](crate::Store)'s pool is a connection in its own right
/// (Diesel implements `Connection` for it): every model's methods work on it directly, as they
/// do on the [`AnyConnection`](crate::AnyConnection) inside.
impl<M: Persist<crate::AnyConnection>> Persist<crate::PooledConn> for M {
    type Query = <M as Persist<crate::AnyConnection>>::Query;

    fn query() -> Self::Query {
        <M as Persist<crate::AnyConnection>>::query()
    }

    fn load(conn: &mut crate::PooledConn, query: Self::Query) -> Result<Vec<Self>> {
        <M as Persist<crate::AnyConnection>>::load(conn, query)
    }

    fn all(conn: &mut crate::PooledConn) -> Result<Vec<Self>> {
        <M as Persist<crate::AnyConnection>>::all(conn)
    }

    fn load_where(
        conn: &mut crate::PooledConn,
        predicate: Predicate<Self, crate::PooledConn>,
    ) -> Result<Vec<Self>> {
        <M as Persist<crate::AnyConnection>>::load_where(conn, predicate)
    }

    fn save(self, conn: &mut crate::PooledConn) -> Result<Self> {
        <M as Persist<crate::AnyConnection>>::save(self, conn)
    }

    fn insert_all(rows: Vec<Self>, conn: &mut crate::PooledConn) -> Result<Vec<Self>> {
        <M as Persist<crate::AnyConnection>>::insert_all(rows, conn)
    }

    fn save_graph(self, conn: &mut crate::PooledConn) -> Result<Self> {
        <M as Persist<crate::AnyConnection>>::save_graph(self, conn)
    }

    fn find(conn: &mut crate::PooledConn, id: &Id) -> Result<Option<Self>> {
        <M as Persist<crate::AnyConnection>>::find(conn, id)
    }

    fn find_many(conn: &mut crate::PooledConn, ids: &[Id]) -> Result<Vec<Self>> {
        <M as Persist<crate::AnyConnection>>::find_many(conn, ids)
    }

    fn count(conn: &mut crate::PooledConn) -> Result<i64> {
        <M as Persist<crate::AnyConnection>>::count(conn)
    }

    fn delete_by_id(conn: &mut crate::PooledConn, id: &Id) -> Result<bool> {
        <M as Persist<crate::AnyConnection>>::delete_by_id(conn, id)
    }

    fn count_where(
        conn: &mut crate::PooledConn,
        predicate: Predicate<Self, crate::PooledConn>,
    ) -> Result<i64> {
        <M as Persist<crate::AnyConnection>>::count_where(conn, predicate)
    }

    fn delete_where(
        conn: &mut crate::PooledConn,
        predicate: Predicate<Self, crate::PooledConn>,
    ) -> Result<usize> {
        <M as Persist<crate::AnyConnection>>::delete_where(conn, predicate)
    }
}
