//! What a model declares, as data: its columns, its `belongs_to` foreign keys and its relation
//! fields, each related model referred to by its type.
//!
//! `#[derive(Model)]` writes one [`ModelDeclaration`] per model, in a `static`. It holds no
//! rule: which foreign key is unique and what a delete does follow from the declarations of the
//! models a foreign key joins, and are resolved once, by the relation rules (`schema/rules.rs`), into the
//! model's [`Table`].

use std::any::TypeId;
use std::fmt;
use std::sync::OnceLock;

use super::ddl::{self, Dialect};
use super::{Column, Index, OnDelete, Table};
use crate::model::Model;

/// A model, referred to by its type: what a declaration names a related model with. Two
/// references are equal when they name the same Rust type, whatever the model is called.
///
/// ```
/// use datastore::prelude::*;
/// use datastore::schema::ModelRef;
///
/// mod a {
///     use datastore::prelude::*;
///     #[derive(Model, Debug, Clone, Default)]
///     pub struct Note { #[primary_key] pub id: Id }
/// }
/// mod b {
///     use datastore::prelude::*;
///     #[derive(Model, Debug, Clone, Default)]
///     #[model(table = "other_notes")]
///     pub struct Note { #[primary_key] pub id: Id }
/// }
///
/// assert_eq!(ModelRef::of::<a::Note>(), ModelRef::of::<a::Note>());
/// assert_ne!(ModelRef::of::<a::Note>(), ModelRef::of::<b::Note>());
/// assert_eq!(ModelRef::of::<b::Note>().declaration().table_name(), "other_notes");
/// ```
#[derive(Clone, Copy)]
pub struct ModelRef {
    type_id: fn() -> TypeId,
    type_name: fn() -> &'static str,
    declaration: fn() -> &'static ModelDeclaration,
}

impl ModelRef {
    /// The reference to `M`.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::schema::ModelRef;
    ///
    /// assert_eq!(ModelRef::of::<Note>().declaration().name(), "Note");
    /// ```
    pub const fn of<M: Model>() -> Self {
        Self {
            type_id: TypeId::of::<M>,
            type_name: std::any::type_name::<M>,
            declaration: M::declaration,
        }
    }

    /// The model's Rust type, with its path (for messages that must tell same-named models
    /// apart).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::schema::ModelRef;
    ///
    /// assert!(ModelRef::of::<Note>().type_name().ends_with("::Note"));
    /// ```
    pub fn type_name(self) -> &'static str {
        (self.type_name)()
    }

    /// The model's declaration.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::schema::ModelRef;
    ///
    /// assert_eq!(ModelRef::of::<Note>().declaration().table_name(), "notes");
    /// ```
    pub fn declaration(self) -> &'static ModelDeclaration {
        (self.declaration)()
    }

    /// Whether this is a reference to `M`.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// use datastore::schema::ModelRef;
    ///
    /// assert!(ModelRef::of::<Post>().is::<Post>());
    /// assert!(!ModelRef::of::<Post>().is::<Comment>());
    /// ```
    pub fn is<M: Model>(self) -> bool {
        (self.type_id)() == TypeId::of::<M>()
    }
}

impl PartialEq for ModelRef {
    fn eq(&self, other: &Self) -> bool {
        (self.type_id)() == (other.type_id)()
    }
}

impl Eq for ModelRef {}

impl fmt::Debug for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.declaration().name())
    }
}

/// The kind of a relation field.
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Post, posts, Comment, comments};
/// use datastore::schema::RelationKind;
///
/// assert_eq!(Post::declaration().relations()[0].kind, RelationKind::HasMany);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelationKind {
    /// `#[has_one(T)]`: one child row whose foreign key references this row.
    HasOne,
    /// `#[has_many(T)]`: child rows whose foreign key references this row.
    HasMany,
    /// `#[many_to_many(T, through = J)]`: rows of `T` linked through rows of the join model `J`.
    ManyToMany,
}

/// A `#[belongs_to(Parent)]` field: a foreign-key column to the parent's key.
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Post, posts, Comment, comments};
/// use datastore::schema::ModelRef;
///
/// let fk = Comment::declaration().belongs_to()[0];
/// assert_eq!(fk.column, "post_id");
/// assert_eq!(fk.parent, ModelRef::of::<Post>());
/// assert_eq!((fk.on_delete, fk.optional), (None, false)); // the rules decide: cascade
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BelongsToField {
    /// The foreign-key column (the field's name).
    pub column: &'static str,
    /// The parent model.
    pub parent: ModelRef,
    /// What deleting the parent does, when the field says (`on_delete = ..`); otherwise the
    /// rules decide (`schema/rules.rs`'s `on_delete`).
    pub on_delete: Option<OnDelete>,
    /// Whether the parent is optional (the field is an `Option`, the column nullable).
    pub optional: bool,
}

/// A relation field: `#[has_many(T)]`, `#[has_one(T)]` or `#[many_to_many(T, through = J)]`.
///
/// ```
/// # use datastore::prelude::*;
/// # #[derive(Model, Debug, Clone, Default)]
/// # pub struct User {
/// #     #[primary_key] pub id: Id,
/// #     #[has_many(Comment, foreign_key = author_id)] pub comments: HasMany<Comment>,
/// # }
/// # #[derive(Model, Debug, Clone, Default)]
/// # pub struct Comment { #[primary_key] pub id: Id, #[belongs_to(User)] pub author_id: Id }
/// use datastore::schema::RelationKind;
///
/// // `#[has_many(Comment, foreign_key = author_id)] comments: HasMany<Comment>` on `User`:
/// let relation = User::declaration().relations()[0];
/// assert_eq!(relation.field, "comments");
/// assert_eq!(relation.kind, RelationKind::HasMany);
/// assert!(relation.target.is::<Comment>());
/// assert_eq!((relation.through, relation.foreign_key), (None, Some("author_id")));
/// assert_eq!(relation.other_key, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relation {
    /// The field's name.
    pub field: &'static str,
    /// The kind of relation.
    pub kind: RelationKind,
    /// The related model: the child of a `has_many`/`has_one`, the other side of a
    /// `many_to_many`.
    pub target: ModelRef,
    /// The join model of a `many_to_many`.
    pub through: Option<ModelRef>,
    /// The foreign-key column pointing at this model's row, when the relation names it
    /// (`foreign_key = author_id`): the child's, or a `many_to_many`'s join model's.
    pub foreign_key: Option<&'static str>,
    /// A `many_to_many`'s join model's column pointing at the linked row, when the relation
    /// names it (`other_key = followee_id`).
    pub other_key: Option<&'static str>,
}

/// Everything a model declares, as `#[derive(Model)]` writes it. Obtained from
/// [`Model::declaration`]; the table it resolves to is [`Model::table`].
///
/// ```
/// use datastore::prelude::*;
/// use datastore::schema::{ModelRef, RelationKind};
///
/// #[derive(Model, Debug, Clone, Default)]
/// pub struct Post {
///     #[primary_key]
///     pub id: Id,
///     #[has_many(Comment)]
///     pub comments: HasMany<Comment>,
/// }
///
/// #[derive(Model, Debug, Clone, Default)]
/// pub struct Comment {
///     #[primary_key]
///     pub id: Id,
///     #[belongs_to(Post)]
///     pub post_id: Id,
/// }
///
/// let post = Post::declaration();
/// assert_eq!(post.relations()[0].kind, RelationKind::HasMany);
/// assert!(post.relations()[0].target.is::<Comment>());
/// assert_eq!(Comment::declaration().belongs_to()[0].parent, ModelRef::of::<Post>());
/// ```
pub struct ModelDeclaration {
    model: ModelRef,
    name: &'static str,
    table_name: &'static str,
    primary_key: &'static [&'static str],
    key_kind: KeyKind,
    columns: &'static [Column],
    indexes: &'static [Index],
    timestamps: Timestamps,
    belongs_to: &'static [BelongsToField],
    relations: &'static [Relation],
    renames: Renames,
    /// Resolved on first use.
    table: OnceLock<Table>,
    upsert: PerDialect<Statement>,
    /// Qualified by the table's name, and not.
    selection: [PerDialect<String>; 2],
    insert_unkeyed: PerDialect<Statement>,
    insert_rows: OnceLock<[String; 3]>,
    insert_rows_unkeyed: OnceLock<[String; 3]>,
}

/// The names a model's table and columns had before: `#[model(renamed_from = "todos")]` on
/// the struct, `#[column(renamed_from = "owner")]` on a field. The migration generator renames
/// what it finds under an old name, keeping the data; once that migration is written, the
/// attributes change nothing more.
///
/// ```
/// use datastore::prelude::*;
///
/// #[derive(Model, Debug, Clone, Default)]
/// #[model(renamed_from = "todos")]
/// pub struct Task {
///     #[primary_key]
///     pub id: Id,
///     #[column(renamed_from = "text")]
///     pub title: String,
/// }
///
/// let renames = Task::declaration().renames();
/// assert_eq!(renames.table, Some("todos"));
/// assert_eq!(renames.columns, [("title", "text")]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Renames {
    /// The table's previous name.
    pub table: Option<&'static str>,
    /// `(column, previous name)` of each renamed column.
    pub columns: &'static [(&'static str, &'static str)],
}

/// Where a model's keys come from.
///
/// ```
/// use datastore::prelude::*;
/// use datastore::schema::KeyKind;
///
/// #[derive(Model, Debug, Clone, Default)]
/// pub struct Note { #[primary_key] pub id: Id }
///
/// #[derive(Model, Debug, Clone, Default)]
/// pub struct Reaction { #[primary_key] pub id: i64 }
///
/// #[derive(Model, Debug, Clone, Default)]
/// pub struct Country { #[primary_key] pub code: String }
///
/// assert_eq!(Note::declaration().key_kind(), KeyKind::Uuid);
/// assert_eq!(Reaction::declaration().key_kind(), KeyKind::Assigned);
/// assert_eq!(Country::declaration().key_kind(), KeyKind::Natural);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// An [`Id`](crate::Id): a UUID the application makes (`Id::new()`, or `Default`).
    Uuid,
    /// An integer the database assigns when a row is first saved (`#[primary_key]` on an
    /// `i32`/`i64`): SQLite's rowid, PostgreSQL's identity column.
    Assigned,
    /// A value the application gives and may change (`String`, a natural integer with
    /// `#[primary_key(natural)]`, a composite key): foreign keys to it follow its changes
    /// (`ON UPDATE CASCADE`).
    Natural,
}

/// The columns a model keeps its timestamps in: set when a row is inserted (`created_at`) and
/// whenever it changes (`updated_at`).
///
/// ```
/// use datastore::prelude::*;
///
/// #[derive(Model, Debug, Clone, Default)]
/// pub struct Note {
///     #[primary_key]
///     pub id: Id,
///     pub created_at: Timestamp,
/// }
///
/// let timestamps = Note::declaration().timestamps();
/// assert_eq!(timestamps.created_at, Some("created_at"));
/// assert_eq!(timestamps.updated_at, None);
/// assert!(timestamps.any());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timestamps {
    /// The `created_at` column.
    pub created_at: Option<&'static str>,
    /// The `updated_at` column.
    pub updated_at: Option<&'static str>,
}

impl Timestamps {
    /// Whether the model has either.
    ///
    /// ```
    /// use datastore::schema::Timestamps;
    ///
    /// assert!(!Timestamps::default().any());
    /// assert!(Timestamps { updated_at: Some("updated_at"), ..Timestamps::default() }.any());
    /// ```
    pub const fn any(self) -> bool {
        self.created_at.is_some() || self.updated_at.is_some()
    }
}

/// A statement of fixed SQL around a row's bound values: the SQL before them and after them.
#[doc(hidden)]
#[derive(Debug)]
pub struct Statement {
    pub(crate) before: String,
    pub(crate) after: String,
}

impl From<[String; 2]> for Statement {
    fn from([before, after]: [String; 2]) -> Self {
        Self { before, after }
    }
}

impl ModelDeclaration {
    /// A declaration, as the derive writes it (in a `static`).
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub const fn new(
        model: ModelRef,
        name: &'static str,
        table_name: &'static str,
        primary_key: &'static [&'static str],
        key_kind: KeyKind,
        columns: &'static [Column],
        indexes: &'static [Index],
        timestamps: Timestamps,
        belongs_to: &'static [BelongsToField],
        relations: &'static [Relation],
        renames: Renames,
    ) -> Self {
        Self {
            model,
            name,
            table_name,
            primary_key,
            key_kind,
            columns,
            indexes,
            timestamps,
            belongs_to,
            relations,
            renames,
            table: OnceLock::new(),
            upsert: PerDialect::new(),
            selection: [PerDialect::new(), PerDialect::new()],
            insert_unkeyed: PerDialect::new(),
            insert_rows: OnceLock::new(),
            insert_rows_unkeyed: OnceLock::new(),
        }
    }

    /// The model declared.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// assert!(Note::declaration().model().is::<Note>());
    /// ```
    pub fn model(&self) -> ModelRef {
        self.model
    }

    /// The struct's name.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// assert_eq!(Note::declaration().name(), "Note");
    /// ```
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The table's name.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// assert_eq!(Note::declaration().table_name(), "notes");
    /// ```
    pub fn table_name(&self) -> &'static str {
        self.table_name
    }

    /// The primary key's columns (several for a composite key).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// #[derive(Model, Debug, Clone, Default)]
    /// #[model(primary_key(order_id, line))]
    /// pub struct OrderLine {
    ///     pub order_id: i64,
    ///     pub line: i32,
    /// }
    ///
    /// assert_eq!(OrderLine::declaration().primary_key(), ["order_id", "line"]);
    /// ```
    pub fn primary_key(&self) -> &'static [&'static str] {
        self.primary_key
    }

    /// Where the model's keys come from.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::schema::KeyKind;
    ///
    /// assert_eq!(Note::declaration().key_kind(), KeyKind::Uuid);
    /// ```
    pub fn key_kind(&self) -> KeyKind {
        self.key_kind
    }

    /// The columns, in declaration order, each unique only if declared `#[unique]`.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// let names: Vec<&str> = Note::declaration().columns().iter().map(|c| c.name.as_ref()).collect();
    /// assert_eq!(names, ["id", "text", "tag"]);
    /// ```
    pub fn columns(&self) -> &'static [Column] {
        self.columns
    }

    /// The indexes declared with `#[index]`.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// #[derive(Model, Debug, Clone, Default)]
    /// pub struct Note {
    ///     #[primary_key]
    ///     pub id: Id,
    ///     #[index]
    ///     pub text: String,
    /// }
    ///
    /// let indexes = Note::declaration().indexes();
    /// assert_eq!(indexes.len(), 1);
    /// assert_eq!(indexes[0].columns[0], "text");
    /// ```
    pub fn indexes(&self) -> &'static [Index] {
        self.indexes
    }

    /// The timestamp columns.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// assert!(!Note::declaration().timestamps().any()); // no `created_at`, no `updated_at`
    /// ```
    pub fn timestamps(&self) -> Timestamps {
        self.timestamps
    }

    /// The `belongs_to` fields, in declaration order.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// assert_eq!(Comment::declaration().belongs_to()[0].column, "post_id");
    /// assert!(Post::declaration().belongs_to().is_empty());
    /// ```
    pub fn belongs_to(&self) -> &'static [BelongsToField] {
        self.belongs_to
    }

    /// The relation fields, in declaration order.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// assert_eq!(Post::declaration().relations()[0].field, "comments");
    /// assert!(Comment::declaration().relations().is_empty());
    /// ```
    pub fn relations(&self) -> &'static [Relation] {
        self.relations
    }

    /// The names the table and its columns had before.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::schema::Renames;
    ///
    /// assert_eq!(Note::declaration().renames(), Renames::default()); // nothing renamed
    /// ```
    pub fn renames(&self) -> Renames {
        self.renames
    }

    /// The table this declaration resolves to, with the rules that follow from it and from
    /// the related models' declarations: see the relation rules (`schema/rules.rs`).
    /// Resolved on first use.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// use datastore::schema::OnDelete;
    ///
    /// let table = Comment::declaration().table(); // the same as `Comment::table()`
    /// assert_eq!(table.foreign_key("post_id").unwrap().on_delete, OnDelete::Cascade);
    /// ```
    pub fn table(&'static self) -> &'static Table {
        self.table.get_or_init(|| super::rules::resolve(self))
    }

    /// `save`'s statement in `dialect` ([`ddl::upsert`]), rendered on first use.
    pub(crate) fn upsert(&'static self, dialect: Dialect) -> &'static Statement {
        self.upsert.get_or_init(dialect, || {
            ddl::upsert(self.table(), self.timestamps, dialect).into()
        })
    }

    /// The columns the model's rows are read from in `dialect` ([`Selection`](crate::Selection),
    /// [`ddl::read_columns`]), qualified by the table's name if `qualified`, rendered on first
    /// use.
    pub(crate) fn selection(&'static self, dialect: Dialect, qualified: bool) -> &'static str {
        self.selection[usize::from(qualified)].get_or_init(dialect, || {
            let table = self.table();
            ddl::read_columns(table, dialect, qualified.then_some(&*table.name))
        })
    }

    /// The multi-row `INSERT` of every column ([`ddl::insert_rows`]), rendered on first use.
    pub(crate) fn insert_rows(&'static self) -> &'static [String; 3] {
        self.insert_rows
            .get_or_init(|| ddl::insert_rows(self.table()))
    }

    /// The multi-row `INSERT` of rows whose key the database assigns, returning their keys
    /// ([`ddl::insert_rows_unkeyed`]), rendered on first use.
    pub(crate) fn insert_rows_unkeyed(&'static self) -> &'static [String; 3] {
        self.insert_rows_unkeyed
            .get_or_init(|| ddl::insert_rows_unkeyed(self.table()))
    }

    /// The statement inserting a row whose key the database assigns
    /// ([`ddl::insert_unkeyed`]), rendered on first use.
    pub(crate) fn insert_unkeyed(&'static self, dialect: Dialect) -> &'static Statement {
        self.insert_unkeyed.get_or_init(dialect, || {
            ddl::insert_unkeyed(self.table(), dialect).into()
        })
    }
}

impl fmt::Debug for ModelDeclaration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelDeclaration")
            .field("name", &self.name)
            .field("table_name", &self.table_name)
            .field("primary_key", &self.primary_key)
            .field("key_kind", &self.key_kind)
            .field("columns", &self.columns)
            .field("indexes", &self.indexes)
            .field("timestamps", &self.timestamps)
            .field("belongs_to", &self.belongs_to)
            .field("relations", &self.relations)
            .field("renames", &self.renames)
            .finish()
    }
}

/// A value rendered for each dialect on first use (a statement's SQL).
#[derive(Debug)]
struct PerDialect<T>([OnceLock<T>; 2]);

impl<T> PerDialect<T> {
    const fn new() -> Self {
        Self([OnceLock::new(), OnceLock::new()])
    }

    fn get_or_init(&self, dialect: Dialect, render: impl FnOnce() -> T) -> &T {
        let cell = match dialect {
            Dialect::Sqlite => &self.0[0],
            Dialect::Postgres => &self.0[1],
        };
        cell.get_or_init(render)
    }
}
