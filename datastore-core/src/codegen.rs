//! What generated code goes through: the glue `#[derive(Model)]` implements for each model
//! (its typed statements, and `save_graph`'s walk over its relation fields) and the few items
//! its expansion names. Everything a model *does* is generic code elsewhere
//! ([`Persist`](crate::Persist), [`relations`](crate::relations)); this module is where
//! that code meets the types only the derive knows. Not public API.

pub use diesel;
pub use diesel_migrations;

/// What the facade's `prelude` gains with this crate's feature `async` (which the facade's
/// own feature `async` turns on; a feature of a dependency is not a `cfg` of the facade).
pub mod async_prelude {
    #[cfg(feature = "async")]
    pub use crate::async_store::{AsyncStore, AsyncTransaction};
}
pub use std::borrow::Cow;

// The public items generated code names, each under one name here, so that the derive's
// expansion reaches the crate through this module alone.
pub use crate::__field_type_by_ref as field_type_by_ref;
pub use crate::observe::RawValueRef;
pub use crate::observe::live::{BelongsToRel, HasManyRel, HasOneRel, ManyToManyRel};
pub use crate::relations::{BelongsTo, ChildOf, HasMany, HasOne, ManyToMany, fk_key};
pub use crate::types::sql_types;
pub use crate::{
    AsyncRepo, DbEnum, Error, FieldType, KeyColumn, KeyValue, Model, NotNullCondition,
    NullableCondition, Persist, Predicate, Result, Selection, Timestamp,
};

// What only generated code uses.
pub use crate::backend::transaction;
pub use crate::relations::belongs_to::ForeignKeysTo;
pub use crate::relations::subquery::{
    Having, LinkedWhere, ParentWhere, SelectForeignKeys, SelectKeys, having, linked_where,
    parent_where,
};
pub use crate::schema::ddl::HasDialect;
pub use crate::schema::declaration::Statement;
pub use crate::types::{PgQuery, SqliteQuery};

/// The relation loaders the generated methods call (`post.comments(conn)` is
/// [`load::children`]), written once for every relation.
pub mod load {
    pub use crate::relations::load::{
        children, eager_has_many, eager_has_many_tree, eager_has_one, eager_many_to_many, link,
        linked, unlink,
    };
}

/// `save_graph`'s steps for each loaded relation field.
pub mod graph {
    pub use crate::relations::graph::{Saved, save_children, save_linked};
}

/// The schema's declarations the derive writes for each model ([`Model::declaration`]).
pub mod schema {
    pub use crate::schema::{
        BelongsToField, Column, ColumnDefault, ColumnType, Index, KeyKind, ModelDeclaration,
        ModelRef, OnDelete, Relation, RelationKind, Renames, Timestamps,
    };
}

use std::marker::PhantomData;

use diesel::backend::Backend;
use diesel::connection::Connection;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::{QueryResult, RunQueryDsl};

use crate::schema::ddl::Dialect;

/// A model's fixed statements on a backend's own connection, each one typed Diesel statement
/// (prepared once per connection where Diesel caches it). The derive implements it once, for
/// every connection that can run them; what `save`, `insert_all`, `delete`.. do around them is
/// [`Persist`](crate::Persist)'s generic code.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a model",
    label = "not a model",
    note = "a relation's target and join model are structs with `#[derive(Model)]`"
)]
pub trait Statements<C: Connection>: Model {
    /// Every row, in key order.
    fn all(conn: &mut C) -> QueryResult<Vec<Self>>;
    /// The row with this key.
    fn find(conn: &mut C, key: &Self::Key) -> QueryResult<Option<Self>>;
    /// The rows with these keys, in key order (one `IN` list for a one-column key).
    fn find_in(conn: &mut C, keys: &[Self::Key]) -> QueryResult<Vec<Self>>;
    /// How many rows there are.
    fn count(conn: &mut C) -> QueryResult<i64>;
    /// Deletes the row with this key.
    fn delete_key(conn: &mut C, key: &Self::Key) -> QueryResult<usize>;
}

/// A model's statements that bind rows borrowed for `'a`: [`Statements`]' writes. The lifetime
/// is the trait's, so that the derive's bounds name the statements' types with it (Rust does
/// not normalize them under a `for<'a>` binder); [`Persist`](crate::Persist) asks for them
/// `for<'a>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a model",
    label = "not a model",
    note = "a relation's target and join model are structs with `#[derive(Model)]`"
)]
pub trait Writes<'a, C: Connection>: Model {
    /// `save`'s statement ([`Upsert`]): the row as stored, or `None` when nothing changed.
    fn upsert(&'a self, conn: &mut C) -> QueryResult<Option<Self>>;
    /// Inserts one row, with a statement of fixed shape (prepared once).
    fn insert_one(&'a self, conn: &mut C) -> QueryResult<usize>;
    /// Inserts rows with one multi-row `INSERT`.
    fn insert_many(rows: &'a [Self], conn: &mut C) -> QueryResult<usize>;
    /// Inserts a row whose key the database assigns ([`Unkeyed`]), and returns it with its key.
    fn insert_unkeyed(&'a self, conn: &mut C) -> QueryResult<Self>;
    /// Inserts rows whose keys the database assigns with one multi-row `INSERT`, and returns
    /// the keys it assigned (in no particular order).
    fn insert_many_unkeyed(rows: &'a [Self], conn: &mut C) -> QueryResult<Vec<Self::Key>>;
}

/// A model's queries built from a condition or by the caller, on any connection (the
/// multi-backend one included). Implemented by the derive once, for every connection.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a model",
    label = "not a model",
    note = "a relation's target and join model are structs with `#[derive(Model)]`"
)]
pub trait Queries<C: Connection>: Model {
    /// The model's boxed query (`posts::BoxedQuery`).
    type Query;
    /// Every row, in key order, as a query to refine.
    fn query() -> Self::Query;
    /// Runs a query built from [`Queries::query`].
    fn load(conn: &mut C, query: Self::Query) -> QueryResult<Vec<Self>>;
    /// The rows matching a condition, in key order.
    fn load_where(conn: &mut C, predicate: Predicate<Self, C>) -> QueryResult<Vec<Self>>;
    /// How many rows match a condition.
    fn count_where(conn: &mut C, predicate: Predicate<Self, C>) -> QueryResult<i64>;
    /// Deletes the rows matching a condition.
    fn delete_where(conn: &mut C, predicate: &Predicate<Self, C>) -> QueryResult<usize>;
    /// The keys of the rows matching a condition, in key order.
    fn keys_where(conn: &mut C, predicate: &Predicate<Self, C>) -> QueryResult<Vec<Self::Key>>;
}

/// `save_graph` on a backend's own connection: the row, then each loaded relation field, with
/// [`graph`]'s functions, in one transaction.
///
/// The derive implements it for each backend's connection rather than for every connection
/// at once: related models name each other (a post its editors, a user its posts), and the
/// bounds of one generic impl per model would form cycles the trait solver cannot prove.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a model",
    label = "not a model",
    note = "a relation's target and join model are structs with `#[derive(Model)]`"
)]
pub trait SaveGraph<C: Connection>: Model {
    /// See [`Persist::save_graph`](crate::Persist::save_graph): the row and its relations,
    /// where `saved` holds the rows of the graph saved before it (each row is saved once a
    /// graph: see `relations::graph`).
    fn save_graph(self, conn: &mut C, saved: &mut graph::Saved) -> Result<Self>;
}

/// The statement `save` runs: `INSERT INTO "table" (..) VALUES (..) ON CONFLICT ..`, around the
/// row's bound values `V`, which the derive walks one by one, separated by commas (see
/// `schema/ddl.rs`'s `upsert`). Its SQL is fixed per model and dialect, so
/// Diesel prepares it once per connection (Diesel never caches its own `ON CONFLICT` queries),
/// and binding a row costs one pass over its values.
pub type Upsert<M, V> = RowStatement<M, V, UpsertSql>;

/// The statement inserting a row whose key the database assigns: its values but the key
/// (`V`), returning the row with its key (see
/// `schema/ddl.rs`'s `insert_unkeyed`).
pub type Unkeyed<M, V> = RowStatement<M, V, UnkeyedSql>;

/// A statement of fixed SQL around one row's bound values, returning the row.
#[derive(Debug)]
pub struct RowStatement<M, V, S> {
    values: V,
    model: PhantomData<fn() -> (M, S)>,
}

impl<M: Model, V, S> RowStatement<M, V, S> {
    /// The statement with these values.
    pub fn new(values: V) -> Self {
        Self {
            values,
            model: PhantomData,
        }
    }
}

/// Which statement a [`RowStatement`] is: the SQL around its values.
pub trait RowSql: 'static {
    /// The SQL before and after the values of `M`'s row in `dialect`.
    #[doc(hidden)]
    fn sql<M: Model>(dialect: Dialect) -> &'static Statement;
}

/// [`Upsert`]'s SQL.
#[derive(Debug)]
pub enum UpsertSql {}

impl RowSql for UpsertSql {
    fn sql<M: Model>(dialect: Dialect) -> &'static Statement {
        M::declaration().upsert(dialect)
    }
}

/// [`Unkeyed`]'s SQL.
#[derive(Debug)]
pub enum UnkeyedSql {}

impl RowSql for UnkeyedSql {
    fn sql<M: Model>(dialect: Dialect) -> &'static Statement {
        M::declaration().insert_unkeyed(dialect)
    }
}

impl<M: Model, V, S: RowSql> QueryId for RowStatement<M, V, S> {
    /// One per model and statement: its SQL is fixed, so Diesel prepares it once.
    type QueryId = (M, S);
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<M: Model, V, S> Query for RowStatement<M, V, S> {
    type SqlType = <M::Table as diesel::query_builder::AsQuery>::SqlType;
}

impl<M, V, S, DB> QueryFragment<DB> for RowStatement<M, V, S>
where
    M: Model,
    V: QueryFragment<DB>,
    S: RowSql,
    DB: Backend + HasDialect,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let sql = S::sql::<M>(out.backend().dialect());
        out.push_sql(&sql.before);
        self.values.walk_ast(out.reborrow())?;
        out.push_sql(&sql.after);
        Ok(())
    }
}

impl<M, V, S, C: Connection> RunQueryDsl<C> for RowStatement<M, V, S> {}

/// An `INSERT` of `N` rows of `M` (their values `V`, each walked as [`Upsert`] walks one):
/// `INSERT INTO "table" (..) VALUES (..), (..)`. Its SQL is fixed per model and `N`, so Diesel
/// prepares it once per connection (Diesel's own multi-row insert is parsed and planned again
/// on every call: on SQLite, most of an insert's cost per row). On SQLite `insert_all` splits
/// its rows into statements of the sizes in [`INSERT_ROWS`]; on PostgreSQL, where each
/// statement is a round trip, into as few as the bind limit allows, an [`InsertAnyRows`]
/// where their number of rows is not one of those sizes.
///
/// `S` is [`WithKeys`] for rows that have their keys, or [`ReturningKeys<K>`] for rows whose
/// keys the database assigns (their values but the key, `RETURNING` the keys, of SQL type
/// `K`).
#[derive(Debug)]
pub struct InsertRows<M, V, const N: usize, S = WithKeys> {
    rows: Vec<V>,
    model: PhantomData<fn() -> (M, S)>,
}

/// The numbers of rows an [`InsertRows`] statement holds, largest first: any number of rows
/// goes in a few of them, each prepared once.
pub const INSERT_ROWS: [usize; 5] = [256, 64, 16, 4, 1];

impl<M: Model, V, const N: usize, S> InsertRows<M, V, N, S> {
    /// The statement inserting these rows' values, `N` of them.
    pub fn new(rows: Vec<V>) -> Self {
        debug_assert_eq!(rows.len(), N);
        Self {
            rows,
            model: PhantomData,
        }
    }
}

/// Which multi-row `INSERT` an [`InsertRows`] is: the SQL around its rows.
pub trait RowsSql: 'static {
    /// The SQL before, between and after the rows of `M`.
    #[doc(hidden)]
    fn sql<M: Model>() -> &'static [String; 3];
}

/// [`InsertRows`] of rows that have their keys: every column.
#[derive(Debug)]
pub enum WithKeys {}

impl RowsSql for WithKeys {
    fn sql<M: Model>() -> &'static [String; 3] {
        M::declaration().insert_rows()
    }
}

/// [`InsertRows`] of rows whose keys the database assigns, returning the keys (of SQL type
/// `K`).
#[derive(Debug)]
pub struct ReturningKeys<K>(PhantomData<fn() -> K>);

impl<K: 'static> RowsSql for ReturningKeys<K> {
    fn sql<M: Model>() -> &'static [String; 3] {
        M::declaration().insert_rows_unkeyed()
    }
}

/// [`InsertRows`]'s query id: the model's, the number of rows, and the statement.
#[derive(Debug)]
pub struct Rows<const N: usize>;

impl<M: Model, V, const N: usize, S: RowsSql> QueryId for InsertRows<M, V, N, S> {
    type QueryId = (M, Rows<N>, S);
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<M: Model, V, const N: usize, K: diesel::sql_types::SqlType + 'static> Query
    for InsertRows<M, V, N, ReturningKeys<K>>
{
    type SqlType = K;
}

impl<M, V, DB, const N: usize, S> QueryFragment<DB> for InsertRows<M, V, N, S>
where
    M: Model,
    V: QueryFragment<DB>,
    DB: Backend,
    S: RowsSql,
{
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        walk_rows::<M, V, DB, S>(&self.rows, out)
    }
}

impl<M, V, C: Connection, const N: usize, S> RunQueryDsl<C> for InsertRows<M, V, N, S> {}

/// The SQL of a multi-row `INSERT` of `rows` (see [`InsertRows`]).
fn walk_rows<'b, M, V, DB, S>(rows: &'b [V], mut out: AstPass<'_, 'b, DB>) -> QueryResult<()>
where
    M: Model,
    V: QueryFragment<DB>,
    DB: Backend,
    S: RowsSql,
{
    let [before, between, after] = S::sql::<M>();
    out.push_sql(before);
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push_sql(between);
        }
        row.walk_ast(out.reborrow())?;
    }
    out.push_sql(after);
    Ok(())
}

/// An [`InsertRows`] of any number of rows, known only at run time: on PostgreSQL,
/// `insert_all` sends a call's rows in as few statements as the bind limit allows (each a
/// round trip), each an [`InsertRows`] where its number of rows is one of [`INSERT_ROWS`] and
/// an `InsertAnyRows` otherwise.
///
/// Diesel keeps it prepared by its SQL, which is fixed per model and number of rows, so that
/// the server parses an insert of so many rows once per connection (and plans it as it plans
/// any prepared statement). Server times of an insert of 10 rows in a transaction (medians of
/// 300, `log_min_duration_statement`): unnamed, parse 24 us, bind 21 us, execute 34 us;
/// prepared, bind 10 us, execute 50 us, no parse. The first insert of a number of rows on a
/// connection takes a round trip more, to prepare it. Only up to [`CACHED_ROWS`] rows: each
/// number kept is a statement kept on both sides of the connection for as long as it lives,
/// about 2 x [`CACHED_ROWS`] of them a model at most (with its keys, and without, returning
/// them).
#[derive(Debug)]
pub struct InsertAnyRows<M, V, S = WithKeys> {
    rows: Vec<V>,
    model: PhantomData<fn() -> (M, S)>,
}

/// The most rows an [`InsertAnyRows`] is kept prepared for.
pub const CACHED_ROWS: usize = 16;

impl<M: Model, V, S> InsertAnyRows<M, V, S> {
    /// The statement inserting these rows' values.
    pub fn new(rows: Vec<V>) -> Self {
        Self {
            rows,
            model: PhantomData,
        }
    }
}

/// Not a type's: Diesel then keys its prepared statement by the SQL, which differs with the
/// number of rows.
impl<M, V, S> QueryId for InsertAnyRows<M, V, S> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<M: Model, V, K: diesel::sql_types::SqlType + 'static> Query
    for InsertAnyRows<M, V, ReturningKeys<K>>
{
    type SqlType = K;
}

impl<M, V, DB, S> QueryFragment<DB> for InsertAnyRows<M, V, S>
where
    M: Model,
    V: QueryFragment<DB>,
    DB: Backend,
    S: RowsSql,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        if self.rows.len() > CACHED_ROWS {
            out.unsafe_to_cache_prepared();
        }
        walk_rows::<M, V, DB, S>(&self.rows, out)
    }
}

impl<M, V, C: Connection, S> RunQueryDsl<C> for InsertAnyRows<M, V, S> {}

/// The error of a statement a model does not have (the insert of a row without a key, on a
/// model whose keys the database does not assign): never run, as the runtime asks the model
/// first.
pub fn no_such_statement<T>() -> QueryResult<T> {
    Err(diesel::result::Error::QueryBuilderError(
        "the database assigns no keys to this model".into(),
    ))
}

/// A key a `belongs_to` can point at: one column's. The derive asks it of each parent's key.
#[diagnostic::on_unimplemented(
    message = "a `belongs_to` cannot point at a model keyed by `{Self}`",
    label = "the parent's key has several columns",
    note = "a foreign key is one column: a model with a composite key cannot be a parent"
)]
pub trait ReferencedKey {}

impl<K: crate::KeyColumn> ReferencedKey for K {}

/// A `belongs_to` field's type, which must be its parent's key type `K`. The derive asks it of
/// each `belongs_to` field.
#[diagnostic::on_unimplemented(
    message = "a `belongs_to` field holds its parent's key: `{K}`, not `{Self}`",
    label = "not the parent's key type",
    note = "give the field the type of the parent's `#[primary_key]` field"
)]
pub trait KeyOfParent<K> {}

impl<K> KeyOfParent<K> for K {}

/// The SQL type of a field type `T` (`Self`, `<T as FieldType>::SqlType`), which must be the
/// SQL type `S` the derive gave the field's column in its `table!`. The derive asks it of each
/// column: it reads SQL types from the names of field types as written, and takes any name it
/// does not know for a `DbEnum`, stored as text.
#[diagnostic::on_unimplemented(
    message = "the field's type `{T}` is stored as `{Self}`, but the derive, reading the type as written, gave its column `{S}`",
    label = "not the type the derive took it for",
    note = "the derive tells a column's SQL type from the name of the field's type as written, \
            and takes a name it does not know for a `DbEnum` (stored as text)",
    note = "type aliases of datastore's field types are not recognised (`type UserId = Id;`, \
            `use serde_json::Value as JsonValue;`): write the type itself"
)]
pub trait ColumnSqlType<S, T> {}

impl<S, T> ColumnSqlType<S, T> for S {}

/// A column of field type `T` whose SQL type in the `table!` is `S`: a type that exists only
/// when both are supported and agree. The derive names it for each column.
pub struct ColumnOf<T: FieldType, S>(PhantomData<(T, S)>)
where
    T::SqlType: ColumnSqlType<S, T>;

/// Fails compilation, with a message naming the fields, when a relation's child has several
/// `belongs_to` fields to the parent and the relation does not say which one it uses.
/// Called by the derive in a constant.
pub const fn assert_unambiguous(count: usize, message: &'static str) {
    if count > 1 {
        panic!("{}", message);
    }
}

/// Fails compilation with `message` when a `many_to_many`'s two foreign keys (as
/// [`fk_key`](crate::relations::fk_key)s) are one field: a link needs one for each side.
/// Called by the derive in a constant.
pub const fn assert_distinct_keys(this: u64, other: u64, message: &'static str) {
    if this == other {
        panic!("{}", message);
    }
}

/// What `query!` matches on: a store's connection, reached by deref coercion from whatever
/// the caller passed (a pooled connection, a transaction's connection).
pub fn any_connection(conn: &mut crate::AnyConnection) -> &mut crate::AnyConnection {
    conn
}

/// A model's rows in key order as an unboxed query (`posts.select(Selection::<Post>::new())
/// .order(posts::id.asc())`, which the model's inherent `query()` returns): what `all` loads, what the boxed [`Queries::query`] starts from, and what `query!` hands the
/// caller's closure to refine. Implemented by the derive for every model.
pub trait Ordered: Model {
    /// `diesel::dsl::Order<diesel::dsl::Select<posts::table, Selection<Post>>,
    /// diesel::dsl::Asc<posts::id>>`: the model's [`Selection`], in key order.
    type Query;
    /// The query.
    fn ordered() -> Self::Query;
}

/// `query!`'s run on one backend's connection: the caller's refinement of the model's
/// [`Ordered`] query, loaded. Its type is the refinement's own, not a boxed query, so Diesel
/// prepares its SQL once per connection and finds it again by type, where a boxed query's SQL
/// is built and hashed on every call.
pub fn load_refined<'q, M, C, Q>(conn: &mut C, refine: impl FnOnce(M::Query) -> Q) -> Result<Vec<M>>
where
    M: Ordered,
    C: Connection,
    Q: diesel::query_dsl::LoadQuery<'q, C, M>,
{
    crate::trace::Operation::new(M::TABLE_NAME, "query")
        .run(|| Ok(refine(M::ordered()).load(conn)?), Vec::len)
}
