//! What `#[derive(Model)]` implements: the model's declaration and the access to its fields
//! ([`Model`]), and the conditions its queries take ([`Predicate`]).

use diesel::connection::Connection;
use diesel::expression::BoxableExpression;
use diesel::sql_types::Bool;

use crate::Timestamp;
use crate::schema::{ModelDeclaration, Table};
use crate::types::{Key, KeyValue};

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
    /// The Diesel table type (`notes::table`), for Diesel's DSL; the table as data is
    /// [`table`](Self::table).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let table = <Note as Model>::Table::default(); // `notes::table`
    /// let count: i64 = table.count().get_result(&mut store.conn()?)?;
    /// assert_eq!(count, 0);
    /// # Ok(())
    /// # }
    /// ```
    type Table: diesel::Table + Default + Copy;
    /// The struct's name.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// assert_eq!(Note::NAME, "Note");
    /// ```
    const NAME: &'static str;
    /// The table's name (also `table().name`, usable where a `&'static str` is needed).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// const NOTES: &str = Note::TABLE_NAME;
    /// assert_eq!(NOTES, Note::table().name);
    /// ```
    const TABLE_NAME: &'static str;
    /// The primary key's type: one column's ([`Id`](crate::Id), `i64`, `String`, ..), or a
    /// tuple of them for a composite key.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// let key: <Note as Model>::Key = Id::new();
    /// let note = Note { id: key, ..Note::default() };
    /// assert_eq!(note.key(), key);
    /// ```
    type Key: Key;

    /// What the model declares: its columns, keys and relations, as data.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// assert_eq!(Note::declaration().name(), "Note");
    /// assert_eq!(Note::declaration().table_name(), "notes");
    /// ```
    fn declaration() -> &'static ModelDeclaration;

    /// The model's table: its columns, key, foreign keys (with what a delete does) and
    /// indexes, as the relation rules resolve them from the declarations.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// let table = Note::table();
    /// assert_eq!(table.name, "notes");
    /// assert_eq!(table.primary_key.as_ref(), ["id"]);
    /// ```
    fn table() -> &'static Table {
        Self::declaration().table()
    }

    /// The row's primary key (for a key the database assigns, `0` until the row is saved).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// let note = Note::default();
    /// assert_eq!(note.key(), note.id);
    /// ```
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

    /// Takes from `other`, a copy of the same row, each relation it has loaded that this one
    /// has not (a live query reaching one parent on two paths, each loading other relations
    /// of it). None without relation fields.
    #[doc(hidden)]
    fn fill_loaded(&mut self, other: Self) {
        let _ = other;
    }

    /// The row from values SQLite reported to a hook, in the order of `table().columns`.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::observe::RawValueRef;
    ///
    /// let id = Id::new();
    /// let text = RawValueRef::Text("hi".into());
    /// let values = [RawValueRef::Text(id.to_string().into()), text, RawValueRef::Null];
    /// let note = Note::from_raw_row(values.into_iter()).unwrap();
    /// assert_eq!(note, Note { id, text: "hi".into(), tag: None });
    /// assert!(Note::from_raw_row([RawValueRef::Integer(1)].into_iter()).is_err());
    /// ```
    fn from_raw_row<'a>(
        values: impl Iterator<Item = crate::observe::RawValueRef<'a>>,
    ) -> std::result::Result<Self, String>;
}

/// A boxed `WHERE` predicate over a model's table, as [`Persist::delete_where`](crate::Persist::delete_where) takes it.
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// use datastore::{AnyConnection, Persist, Predicate};
///
/// fn with_text(text: &str) -> Predicate<Note, AnyConnection> {
///     Box::new(notes::text.eq(text.to_owned()))
/// }
///
/// store.save(Note { text: "hi".into(), ..Note::default() })?;
/// store.save(Note::default())?;
/// let mut conn = store.conn()?;
/// assert_eq!(Note::load_where(&mut *conn, with_text("hi"))?.len(), 1);
/// # Ok(())
/// # }
/// ```
pub type Predicate<M, C> =
    Box<dyn BoxableExpression<<M as Model>::Table, <C as Connection>::Backend, SqlType = Bool>>;

/// A `WHERE` condition, `Bool` or nullable (`content.like(..)` on a nullable column): in a
/// `WHERE` clause `NULL` is false, so both filter alike. The marker `M` tells the two apart.
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// use datastore::{AnyBackend, IntoPredicate};
///
/// /// Deletes the notes matching a condition, `Bool` or nullable alike.
/// fn purge<C>(store: &Store, condition: impl IntoPredicate<notes::table, AnyBackend, C>) -> usize {
///     store.delete_where::<Note, C>(condition).unwrap()
/// }
///
/// store.save(Note { text: "a".into(), tag: Some("old".into()), ..Note::default() })?;
/// store.save(Note { text: "b".into(), ..Note::default() })?;
/// assert_eq!(purge(&store, notes::tag.eq("old")), 1); // nullable: `NULL` is false
/// assert_eq!(purge(&store, notes::text.eq("b")), 1); // `Bool`
/// assert_eq!(store.count::<Note>()?, 0);
/// # Ok(())
/// # }
/// ```
pub trait IntoPredicate<T, DB: diesel::backend::Backend, M> {
    /// The condition, boxed.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// use datastore::{AnyBackend, IntoPredicate, NullableCondition};
    ///
    /// let condition = IntoPredicate::<notes::table, AnyBackend, NullableCondition>::into_predicate(
    ///     notes::tag.like("r%"),
    /// );
    /// store.save(Note { tag: Some("rust".into()), ..Note::default() })?;
    /// let found = store.query::<Note>(|q| q.filter(condition))?;
    /// assert_eq!(found.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    fn into_predicate(self) -> Box<dyn BoxableExpression<T, DB, SqlType = Bool>>;
}

/// [`IntoPredicate`]'s marker for a `Bool` condition.
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// use datastore::diesel::dsl::Eq;
/// use datastore::{AnyBackend, IntoPredicate, NotNullCondition};
///
/// fn is_bool_condition<E: IntoPredicate<notes::table, AnyBackend, NotNullCondition>>(_: &E) {}
/// let condition: Eq<notes::text, &str> = notes::text.eq("hi"); // `text` is `NOT NULL`
/// is_bool_condition(&condition);
/// assert_eq!(store.delete_where::<Note, NotNullCondition>(condition)?, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub enum NotNullCondition {}

/// [`IntoPredicate`]'s marker for a `Nullable<Bool>` condition.
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// use datastore::{AnyBackend, IntoPredicate, NullableCondition};
///
/// fn is_nullable_condition<E: IntoPredicate<notes::table, AnyBackend, NullableCondition>>(_: &E) {}
/// let condition = notes::tag.eq("rust"); // `tag` is nullable: so is the condition
/// is_nullable_condition(&condition);
/// assert_eq!(store.delete_where::<Note, NullableCondition>(condition)?, 0);
/// # Ok(())
/// # }
/// ```
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
