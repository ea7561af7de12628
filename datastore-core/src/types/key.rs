//! Primary keys: the types a model can be keyed by.
//!
//! A model's key ([`Model::Key`](crate::Model::Key)) is one column ([`KeyColumn`]: [`Id`],
//! `String`, `i16`, `i32`, `i64`, [`Timestamp`] or `Vec<u8>`) or, for a composite key, a tuple
//! of two to four of them.

use std::fmt;
use std::hash::Hash;

use diesel::query_builder::{BoxedSqlQuery, SqlQuery};

use super::{FieldType, Id, Timestamp, sql_types};

/// A raw query on SQLite, with bound values borrowed for `'a`.
#[doc(hidden)]
pub type SqliteQuery<'a> = BoxedSqlQuery<'a, diesel::sqlite::Sqlite, SqlQuery>;

/// A raw query on PostgreSQL, with bound values borrowed for `'a`.
#[doc(hidden)]
pub type PgQuery<'a> = BoxedSqlQuery<'a, diesel::pg::Pg, SqlQuery>;

/// A key's value, whatever its type: what the store needs of a key it does not know
/// statically (a parent's, named by a foreign key). Implemented by every [`Key`].
///
/// ```
/// use datastore::{Id, KeyValue};
///
/// /// A log line for any key, whatever its type.
/// fn deleted(table: &str, key: &dyn KeyValue) -> String {
///     format!("deleted {table} {}", key.describe())
/// }
///
/// assert_eq!(deleted("orders", &(3_i64, 7_i32)), "deleted orders (3, 7)");
/// assert_eq!(deleted("users", &42_i64), "deleted users 42");
/// let id = Id::new();
/// assert!(deleted("notes", &id).contains(&id.to_string()));
/// ```
pub trait KeyValue: Send + Sync {
    /// The key as text, for messages (`posts '0190..'`, `orders '(3, 7)'`).
    ///
    /// ```
    /// use datastore::KeyValue;
    ///
    /// assert_eq!(7_i64.describe(), "7");
    /// assert_eq!(("fr".to_owned(), 2_i32).describe(), "(fr, 2)");
    /// ```
    fn describe(&self) -> String;

    /// Binds the key's columns to a raw query, in order.
    #[doc(hidden)]
    fn bind_sqlite<'a>(&'a self, query: SqliteQuery<'a>) -> SqliteQuery<'a>;

    /// Binds the key's columns to a raw query, in order.
    #[doc(hidden)]
    fn bind_pg<'a>(&'a self, query: PgQuery<'a>) -> PgQuery<'a>;
}

/// A model's primary key: one [`KeyColumn`], or a tuple of two to four of them (a composite
/// key, declared with `#[model(primary_key(a, b))]`).
///
/// ```
/// use datastore::prelude::*;
/// use datastore::{Key, KeyValue};
///
/// fn keyed_by<M: Model<Key = K>, K: Key>() {}
///
/// #[derive(Model, Debug, Clone, Default)]
/// #[model(primary_key(order_id, line))]
/// pub struct OrderLine {
///     pub order_id: i64,
///     pub line: i32,
///     pub sku: String,
/// }
///
/// keyed_by::<OrderLine, (i64, i32)>();
/// let line = OrderLine { order_id: 3, line: 7, ..Default::default() };
/// assert_eq!(line.key(), (3, 7));
/// assert_eq!(line.key().describe(), "(3, 7)");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a primary key",
    label = "not a key type",
    note = "a key is Id, String, i16, i32, i64, Timestamp or Vec<u8>, or a tuple of them for a \
            composite key: not a float, JSON, an enum or an Option"
)]
pub trait Key: KeyValue + Clone + Eq + Ord + Hash + fmt::Debug + 'static {}

/// A type one key column can have: a model's whole key, one part of a composite key, or a
/// foreign key to a model keyed by it.
///
/// ```
/// use datastore::prelude::*;
/// use datastore::KeyColumn;
///
/// /// The key column of any model keyed by a single column.
/// fn key_column<M: Model>() -> &'static str
/// where
///     M::Key: KeyColumn,
/// {
///     M::table().primary_key[0].as_ref()
/// }
///
/// #[derive(Model, Debug, Clone, Default)]
/// pub struct Country {
///     #[primary_key]
///     pub code: String,
/// }
///
/// assert_eq!(key_column::<Country>(), "code");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a key column",
    label = "not a key type",
    note = "a key column is Id, String, i16, i32, i64, Timestamp or Vec<u8>: not a float, JSON, \
            an enum or an Option"
)]
pub trait KeyColumn: Key + FieldType {
    /// Whether a value of this type marks a row whose key the database has not assigned yet
    /// (`0`, for the integer keys the database assigns).
    #[doc(hidden)]
    fn is_unassigned(&self) -> bool {
        false
    }
}

macro_rules! key_columns {
    ($($rust:ty => $sql:ty, |$v:ident| $describe:expr, $unassigned:expr;)*) => {$(
        impl KeyValue for $rust {
            fn describe(&self) -> String {
                let $v = self;
                $describe
            }

            fn bind_sqlite<'a>(&'a self, query: SqliteQuery<'a>) -> SqliteQuery<'a> {
                query.bind::<$sql, _>(self)
            }

            fn bind_pg<'a>(&'a self, query: PgQuery<'a>) -> PgQuery<'a> {
                query.bind::<$sql, _>(self)
            }
        }

        impl Key for $rust {}

        impl KeyColumn for $rust {
            fn is_unassigned(&self) -> bool {
                let unassigned: fn(&Self) -> bool = $unassigned;
                unassigned(self)
            }
        }
    )*};
}

key_columns! {
    Id => sql_types::Uuid, |v| v.to_string(), |_| false;
    String => diesel::sql_types::Text, |v| v.clone(), |_| false;
    i16 => diesel::sql_types::SmallInt, |v| v.to_string(), |v| *v == 0;
    i32 => diesel::sql_types::Integer, |v| v.to_string(), |v| *v == 0;
    i64 => diesel::sql_types::BigInt, |v| v.to_string(), |v| *v == 0;
    Timestamp => sql_types::TimestampUtc, |v| v.to_string(), |_| false;
    Vec<u8> => diesel::sql_types::Binary, |v| format!("{v:02x?}"), |_| false;
}

macro_rules! composite_keys {
    ($(($($part:ident $index:tt),+))*) => {$(
        impl<$($part: KeyColumn),+> KeyValue for ($($part,)+) {
            fn describe(&self) -> String {
                let parts = [$(self.$index.describe()),+];
                format!("({})", parts.join(", "))
            }

            fn bind_sqlite<'a>(&'a self, query: SqliteQuery<'a>) -> SqliteQuery<'a> {
                $(let query = self.$index.bind_sqlite(query);)+
                query
            }

            fn bind_pg<'a>(&'a self, query: PgQuery<'a>) -> PgQuery<'a> {
                $(let query = self.$index.bind_pg(query);)+
                query
            }
        }

        impl<$($part: KeyColumn),+> Key for ($($part,)+) {}
    )*};
}

composite_keys! {
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
}
