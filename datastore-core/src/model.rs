//! What `#[derive(Model)]` implements: the model's declaration and the access to its fields
//! ([`Model`]), and the conditions its queries take ([`Predicate`]).

use diesel::connection::Connection;
use diesel::expression::BoxableExpression;
use diesel::sql_types::Bool;

use crate::schema::{ModelDeclaration, Table};
use crate::types::{Key, KeyValue};
use crate::Timestamp;

/// A struct stored as the rows of one table.
///
/// Derive it; the derive also writes the Diesel `table!` module, Diesel's `Queryable`,
/// `Selectable`, `Insertable` and `AsChangeset`, and the typed statements that make the model
/// [`Persist`](crate::Persist) on every backend.
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
/// assert_eq!(Note::table().name, "notes");
/// assert_eq!(Note::NAME, "Note");
/// let note = Note::default();
/// assert_eq!(note.key(), note.id);
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
    /// The table's name (also `table().name`, usable where a `&'static str` is needed).
    const TABLE_NAME: &'static str;
    /// The primary key's type: one column's ([`Id`](crate::Id), `i64`, `String`, ..), or a
    /// tuple of them for a composite key.
    type Key: Key;

    /// What the model declares: its columns, keys and relations, as data.
    fn declaration() -> &'static ModelDeclaration;

    /// The model's table: its columns, key, foreign keys (with what a delete does) and
    /// indexes, as the relation rules resolve them from the declarations.
    fn table() -> &'static Table {
        Self::declaration().table()
    }

    /// The row's primary key (for a key the database assigns, `0` until the row is saved).
    fn key(&self) -> Self::Key;

    /// Whether the row's key is one the database has yet to assign (an integer key of `0`, on
    /// a model whose database assigns its keys).
    #[doc(hidden)]
    fn has_unassigned_key(&self) -> bool;

    /// Gives the row the key the database assigned it.
    #[doc(hidden)]
    fn assign_key(&mut self, key: Self::Key);

    /// The key the `i`-th `belongs_to` field (in declaration order) points at.
    #[doc(hidden)]
    fn foreign_key(&self, i: usize) -> Option<&dyn KeyValue>;

    /// Sets the timestamps (`created_at`, `updated_at`) a row is written with.
    #[doc(hidden)]
    fn touch(&mut self, now: Timestamp);

    /// The row from values SQLite reported to a hook, in the order of `table().columns`.
    fn from_raw_row<'a>(
        values: impl Iterator<Item = crate::observe::RawValueRef<'a>>,
    ) -> std::result::Result<Self, String>;
}

/// A boxed `WHERE` predicate over a model's table, as [`Persist::delete_where`](crate::Persist::delete_where) takes it.
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
