//! The schema as data: every model describes its table, and DDL is rendered from that.
//!
//! `#[derive(Model)]` writes what each model declares ([`ModelDeclaration`]); the relation
//! rules (`schema/rules.rs`, the one place that decides what a relation means in the
//! database) resolve it into the model's [`Table`] ([`Model::table`](crate::Model::table)).
//! The same description renders the `CREATE TABLE` statements of migrations (in each
//! [`Dialect`]), and is what the migration generator compares with the state the existing
//! migrations produce.
//!
//! ```
//! # use datastore::prelude::*;
//! # use datastore_doc_models::{Post, posts, Comment, comments};
//! use datastore::schema::{Dialect, OnDelete};
//!
//! let table = Comment::table();
//! let post_id = table.foreign_key("post_id").unwrap();
//! assert_eq!((&*post_id.references, post_id.on_delete), ("posts", OnDelete::Cascade));
//! let schema = Schema::new().model::<Post>().model::<Comment>();
//! assert!(schema.create_sql(Dialect::Sqlite).contains(r#"CREATE TABLE "comments""#));
//! ```

pub(crate) mod ddl;
pub(crate) mod declaration;
pub(crate) mod rules;
mod set;

pub use ddl::Dialect;
pub use set::{Rename, Schema, SchemaProblem};

pub use declaration::{
    BelongsToField, KeyKind, ModelDeclaration, ModelRef, Relation, RelationKind, Renames,
    Timestamps,
};

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// A string that is `&'static` in generated constants and owned when read from a recorded schema.
///
/// ```
/// use datastore::schema::Name;
///
/// const GENERATED: Name = Name::Borrowed("notes");
/// let read: Name = Name::Owned(String::from("notes"));
/// assert_eq!(GENERATED, read);
/// ```
pub type Name = Cow<'static, str>;
/// A list that is `&'static` in generated constants and owned when read from a recorded schema.
///
/// ```
/// use datastore::schema::{List, Name};
///
/// const GENERATED: List<Name> = List::Borrowed(&[Name::Borrowed("id")]);
/// let read: List<Name> = vec![Name::from("id")].into();
/// assert_eq!(GENERATED, read);
/// ```
pub type List<T> = Cow<'static, [T]>;

/// A table: its columns, primary key, foreign keys and indexes.
///
/// ```
/// use datastore::schema::{Column, ColumnType, Table};
/// use std::borrow::Cow;
///
/// const NOTES: Table = Table {
///     name: Cow::Borrowed("notes"),
///     primary_key: Cow::Borrowed(&[Cow::Borrowed("id")]),
///     columns: Cow::Borrowed(&[
///         Column::new("id", ColumnType::Uuid, false),
///         Column::new("text", ColumnType::Text, true),
///     ]),
///     foreign_keys: Cow::Borrowed(&[]),
///     indexes: Cow::Borrowed(&[]),
/// };
/// assert_eq!(NOTES.column("text").unwrap().nullable, true);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// The table's name in the database.
    pub name: Name,
    /// The primary key's columns: one, or several for a composite key.
    #[serde(with = "key_columns")]
    pub primary_key: List<Name>,
    /// The columns, in declaration order.
    pub columns: List<Column>,
    /// Foreign keys, one per `belongs_to` field.
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    pub foreign_keys: List<ForeignKey>,
    /// Secondary indexes (foreign-key columns are always indexed).
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    pub indexes: List<Index>,
}

impl Table {
    /// Whether `column` is part of the primary key.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # #[derive(Model, Debug, Clone, Default)]
    /// # pub struct Post { #[primary_key] pub id: Id, #[has_many(Comment)] pub comments: HasMany<Comment> }
    /// # #[derive(Model, Debug, Clone, Default)]
    /// # pub struct Comment { #[primary_key] pub id: Id, #[belongs_to(Post)] pub post_id: Id, pub text: Option<String> }
    /// assert!(Comment::table().is_key("id"));
    /// assert!(!Comment::table().is_key("post_id"));
    /// ```
    pub fn is_key(&self, column: &str) -> bool {
        self.primary_key.iter().any(|k| k == column)
    }

    /// Whether `column` is the whole primary key, which makes it unique without a constraint of
    /// its own (a column of a composite key is not).
    pub(crate) fn is_whole_key(&self, column: &str) -> bool {
        matches!(&*self.primary_key, [key] if key == column)
    }

    /// The column with this name.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # #[derive(Model, Debug, Clone, Default)]
    /// # pub struct Post { #[primary_key] pub id: Id, #[has_many(Comment)] pub comments: HasMany<Comment> }
    /// # #[derive(Model, Debug, Clone, Default)]
    /// # pub struct Comment { #[primary_key] pub id: Id, #[belongs_to(Post)] pub post_id: Id, pub text: Option<String> }
    /// assert!(Comment::table().column("text").unwrap().nullable);
    /// assert!(Comment::table().column("missing").is_none());
    /// ```
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The foreign key declared on this column.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # #[derive(Model, Debug, Clone, Default)]
    /// # pub struct Post { #[primary_key] pub id: Id, #[has_many(Comment)] pub comments: HasMany<Comment> }
    /// # #[derive(Model, Debug, Clone, Default)]
    /// # pub struct Comment { #[primary_key] pub id: Id, #[belongs_to(Post)] pub post_id: Id, pub text: Option<String> }
    /// assert_eq!(Comment::table().foreign_key("post_id").unwrap().references, "posts");
    /// assert!(Comment::table().foreign_key("text").is_none());
    /// ```
    pub fn foreign_key(&self, column: &str) -> Option<&ForeignKey> {
        self.foreign_keys.iter().find(|f| f.column == column)
    }

    /// Every index of the table: the declared ones, then one per foreign-key column that is not
    /// already unique (a unique column is indexed by its constraint), named
    /// `idx_<table>_<column>`. Deletes of a parent look up its children through these.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # #[derive(Model, Debug, Clone, Default)]
    /// # pub struct Post { #[primary_key] pub id: Id, #[has_many(Comment)] pub comments: HasMany<Comment> }
    /// # #[derive(Model, Debug, Clone, Default)]
    /// # pub struct Comment { #[primary_key] pub id: Id, #[belongs_to(Post)] pub post_id: Id, pub text: Option<String> }
    /// let indexes = Comment::table().all_indexes();
    /// assert_eq!(indexes[0].name, "idx_comments_post_id"); // the foreign key's, never declared
    /// assert!(Comment::table().indexes.is_empty());
    /// ```
    pub fn all_indexes(&self) -> Vec<Index> {
        let mut indexes = self.indexes.to_vec();
        for fk in self.foreign_keys.iter() {
            let unique = self.column(&fk.column).is_some_and(|c| c.unique);
            let covered = indexes
                .iter()
                .any(|i| i.columns.first() == Some(&fk.column));
            if !unique && !covered {
                indexes.push(Index {
                    name: format!("idx_{}_{}", self.name, fk.column).into(),
                    columns: vec![fk.column.clone()].into(),
                    unique: false,
                });
            }
        }
        indexes
    }

    /// The table without the foreign keys `drop` picks, keeping the indexes they imply (see
    /// [`all_indexes`](Self::all_indexes)): a table whose foreign keys are added later.
    pub(crate) fn without_foreign_keys(&self, drop: impl Fn(&ForeignKey) -> bool) -> Table {
        Table {
            indexes: self.all_indexes().into(),
            foreign_keys: self
                .foreign_keys
                .iter()
                .filter(|fk| !drop(fk))
                .cloned()
                .collect::<Vec<_>>()
                .into(),
            ..self.clone()
        }
    }
}

/// The longest name PostgreSQL keeps whole (`NAMEDATALEN` - 1 bytes): it cuts a longer one
/// there without an error. `#[derive(Model)]` refuses longer table and column names, and
/// [`Schema::validate`] index names that would be cut into one.
pub(crate) const LONGEST_NAME: usize = 63;

/// `name` as PostgreSQL keeps it: its first [`LONGEST_NAME`] bytes, cut at a character
/// boundary (a character is kept whole or not at all). Two names alike there are one name to
/// PostgreSQL.
pub(crate) fn postgres_kept(name: &str) -> &str {
    cut_name(name, LONGEST_NAME)
}

/// `name` cut to at most `bytes` bytes, at a character boundary, as PostgreSQL cuts names.
pub(crate) fn cut_name(name: &str, bytes: usize) -> &str {
    let mut len = bytes.min(name.len());
    while !name.is_char_boundary(len) {
        len -= 1;
    }
    &name[..len]
}

/// One column of a table.
///
/// ```
/// # use datastore::prelude::*;
/// # #[derive(Model, Debug, Clone, Default)]
/// # pub struct Post { #[primary_key] pub id: Id, #[has_many(Comment)] pub comments: HasMany<Comment> }
/// # #[derive(Model, Debug, Clone, Default)]
/// # pub struct Comment { #[primary_key] pub id: Id, #[belongs_to(Post)] pub post_id: Id, pub text: Option<String> }
/// use datastore::schema::ColumnType;
///
/// let text = Comment::table().column("text").unwrap();
/// assert_eq!((text.ty.clone(), text.nullable, text.unique), (ColumnType::Text, true, false));
/// assert!(Comment::table().column("id").unwrap().default.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// The column's name in the database.
    pub name: Name,
    /// What it stores.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Whether it accepts `NULL`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nullable: bool,
    /// Whether its values are unique across the table.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unique: bool,
    /// Whether the database assigns its values (an integer key: SQLite's rowid, PostgreSQL's
    /// identity column).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub generated: bool,
    /// The value the column takes when a row gives none (`#[column(default = ..)]`): its
    /// `DEFAULT`, and what the rows a table already holds take when a migration adds the
    /// column `NOT NULL` or makes it `NOT NULL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<ColumnDefault>,
}

impl Column {
    /// A column that is not unique.
    ///
    /// ```
    /// use datastore::schema::{Column, ColumnType};
    ///
    /// const BIO: Column = Column::new("bio", ColumnType::Text, true);
    /// assert!(BIO.nullable && !BIO.unique);
    /// ```
    pub const fn new(name: &'static str, ty: ColumnType, nullable: bool) -> Self {
        Self {
            name: Cow::Borrowed(name),
            ty,
            nullable,
            unique: false,
            generated: false,
            default: None,
        }
    }

    /// The same column with a `UNIQUE` constraint.
    ///
    /// ```
    /// use datastore::schema::{Column, ColumnType};
    ///
    /// const USERNAME: Column = Column::new("username", ColumnType::Text, false).unique();
    /// assert!(USERNAME.unique);
    /// ```
    pub const fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    /// The `CHECK` this column carries in `dialect`, if any (enum columns allow only their
    /// variants).
    ///
    /// ```
    /// use datastore::schema::{Column, ColumnType, Dialect, List, Name};
    ///
    /// let variants: List<Name> = vec![Name::from("active"), Name::from(r"in\active")].into();
    /// let status = Column::new("status", ColumnType::Enum(variants), false);
    /// assert_eq!(
    ///     status.check(Dialect::Sqlite).unwrap(),
    ///     r#""status" IN ('active', 'in\active')"#
    /// );
    /// // Escaped, to mean the same whatever `standard_conforming_strings` says.
    /// assert_eq!(
    ///     status.check(Dialect::Postgres).unwrap(),
    ///     r#""status" IN ('active', E'in\\active')"#
    /// );
    /// let title = Column::new("title", ColumnType::Text, false);
    /// assert_eq!(title.check(Dialect::Sqlite), None);
    /// ```
    pub fn check(&self, dialect: ddl::Dialect) -> Option<String> {
        match &self.ty {
            ColumnType::Enum(variants) => {
                let list: Vec<String> = variants
                    .iter()
                    .map(|v| ddl::quote_literal(v, dialect))
                    .collect();
                Some(format!(
                    "{} IN ({})",
                    ddl::quote_ident(&self.name),
                    list.join(", ")
                ))
            }
            _ => None,
        }
    }
}

/// A column's declared default, a literal (`#[column(default = 0)]`, `= "draft"`, `= false`,
/// `= 0.5`).
///
/// ```
/// use datastore::schema::{ColumnDefault, ColumnType};
/// use datastore::schema::Dialect;
///
/// let draft = ColumnDefault::Text("draft".into());
/// assert!(draft.fits(&ColumnType::Text));
/// assert!(!draft.fits(&ColumnType::Integer));
/// assert_eq!(ColumnDefault::Bool(true).sql(Dialect::Postgres), "TRUE");
/// assert_eq!(ColumnDefault::Bool(true).sql(Dialect::Sqlite), "1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnDefault {
    /// An integer, for an integer column (or a float one).
    Integer(i64),
    /// A float, as written (kept as text, so that schemas compare exactly).
    Real(Cow<'static, str>),
    /// A boolean.
    Bool(bool),
    /// Text, for a text column, or a variant's name for an enum column.
    Text(Cow<'static, str>),
}

impl ColumnDefault {
    /// Whether a column of type `ty` can hold the default (an enum column: one of its
    /// variants). A `const fn`, so that `#[derive(Model)]` checks it at compile time.
    ///
    /// ```
    /// use datastore::schema::{ColumnDefault, ColumnType};
    ///
    /// assert!(ColumnDefault::Integer(300).fits(&ColumnType::Integer));
    /// assert!(!ColumnDefault::Integer(70_000).fits(&ColumnType::SmallInt)); // out of range
    /// assert!(ColumnDefault::Real("0.5".into()).fits(&ColumnType::Double));
    /// ```
    pub const fn fits(&self, ty: &ColumnType) -> bool {
        match (self, ty) {
            (Self::Integer(n), ColumnType::SmallInt | ColumnType::Integer | ColumnType::BigInt) => {
                match ty {
                    ColumnType::SmallInt => *n >= i16::MIN as i64 && *n <= i16::MAX as i64,
                    ColumnType::Integer => *n >= i32::MIN as i64 && *n <= i32::MAX as i64,
                    _ => true,
                }
            }
            (Self::Integer(_) | Self::Real(_), ColumnType::Float | ColumnType::Double) => true,
            (Self::Bool(_), ColumnType::Bool) => true,
            (Self::Text(_), ColumnType::Text) => true,
            (Self::Text(text), ColumnType::Enum(variants)) => {
                let variants: &[Name] = match variants {
                    Cow::Borrowed(variants) => variants,
                    Cow::Owned(variants) => variants.as_slice(),
                };
                let mut i = 0;
                while i < variants.len() {
                    if const_str_eq(const_str(&variants[i]), const_str(text)) {
                        return true;
                    }
                    i += 1;
                }
                false
            }
            _ => false,
        }
    }

    /// Whether a real default is a finite number that a column of type `ty` holds, written as a
    /// number literal (digits, a sign, a point, an exponent): it goes into the SQL as it is.
    /// Other defaults are written as their own literals.
    pub(crate) fn is_finite_literal_of(&self, ty: &ColumnType) -> bool {
        let Self::Real(text) = self else {
            return true;
        };
        let literal = text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
        let largest = match ty {
            ColumnType::Float => f64::from(f32::MAX),
            _ => f64::MAX,
        };
        literal && text.parse::<f64>().is_ok_and(|v| v.abs() <= largest)
    }

    /// The default as an SQL literal of `dialect` (on PostgreSQL, one that means the same
    /// whatever `standard_conforming_strings` says).
    ///
    /// ```
    /// use datastore::schema::{ColumnDefault, Dialect};
    ///
    /// assert_eq!(ColumnDefault::Text("it's".into()).sql(Dialect::Sqlite), "'it''s'");
    /// assert_eq!(ColumnDefault::Text(r"C:\".into()).sql(Dialect::Sqlite), r"'C:\'");
    /// assert_eq!(ColumnDefault::Text(r"C:\".into()).sql(Dialect::Postgres), r"E'C:\\'");
    /// assert_eq!(ColumnDefault::Integer(-1).sql(Dialect::Postgres), "-1");
    /// ```
    pub fn sql(&self, dialect: ddl::Dialect) -> String {
        match (self, dialect) {
            (Self::Integer(n), _) => n.to_string(),
            (Self::Real(text), _) => text.to_string(),
            (Self::Bool(b), ddl::Dialect::Postgres) => (if *b { "TRUE" } else { "FALSE" }).into(),
            (Self::Bool(b), ddl::Dialect::Sqlite) => (if *b { "1" } else { "0" }).into(),
            (Self::Text(text), _) => ddl::quote_literal(text, dialect),
        }
    }
}

impl std::fmt::Display for ColumnDefault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Integer(n) => write!(f, "{n}"),
            Self::Real(text) => f.write_str(text),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Text(text) => write!(f, "{text:?}"),
        }
    }
}

/// A name's text, in a `const fn`.
const fn const_str(name: &Name) -> &str {
    match name {
        Cow::Borrowed(text) => text,
        Cow::Owned(text) => text.as_str(),
    }
}

/// `a == b` for a `const fn`.
const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// What a column stores, independent of the backend.
///
/// ```
/// use datastore::prelude::*;
/// use datastore::schema::ColumnType;
///
/// #[derive(Model, Debug, Clone, Default)]
/// pub struct Profile {
///     #[primary_key]
///     pub id: Id,
///     pub karma: i64,
///     pub bio: Option<String>,
///     pub settings: serde_json::Value,
/// }
///
/// let types: Vec<ColumnType> = Profile::table().columns.iter().map(|c| c.ty.clone()).collect();
/// assert_eq!(types, [ColumnType::Uuid, ColumnType::BigInt, ColumnType::Text, ColumnType::Json]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ColumnType {
    /// UTF-8 text.
    Text,
    /// A 16-bit integer.
    SmallInt,
    /// A 32-bit integer.
    Integer,
    /// A 64-bit integer.
    BigInt,
    /// A 32-bit float.
    Float,
    /// A 64-bit float.
    Double,
    /// A boolean.
    Bool,
    /// Bytes.
    Blob,
    /// A UUID ([`Id`](crate::Id)).
    Uuid,
    /// A UTC timestamp ([`Timestamp`](crate::Timestamp)).
    Timestamp,
    /// A JSON document.
    Json,
    /// One of a fixed set of names (a `DbEnum`), stored as text and constrained by a `CHECK`.
    Enum(List<Name>),
}

impl ColumnType {
    /// An integer or a floating-point number.
    pub(crate) fn is_number(&self) -> bool {
        use ColumnType::*;
        matches!(self, SmallInt | Integer | BigInt | Float | Double)
    }
}

/// What happens to a referencing row when the row it references is deleted.
///
/// ```
/// use datastore::prelude::*;
/// use datastore::schema::OnDelete;
///
/// #[derive(Model, Debug, Clone, Default)]
/// pub struct User { #[primary_key] pub id: Id }
///
/// #[derive(Model, Debug, Clone, Default)]
/// pub struct Comment {
///     #[primary_key]
///     pub id: Id,
///     #[belongs_to(User)]
///     pub user_id: Id,
///     #[belongs_to(User, on_delete = set_null)]
///     pub editor_id: Option<Id>,
/// }
///
/// assert_eq!(Comment::table().foreign_key("user_id").unwrap().on_delete, OnDelete::Cascade);
/// assert_eq!(Comment::table().foreign_key("editor_id").unwrap().on_delete, OnDelete::SetNull);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    /// Delete the referencing rows with it (one-to-many and one-to-one children).
    Cascade,
    /// Refuse the delete while referencing rows exist (many-to-many join rows).
    Restrict,
    /// Set the referencing column to `NULL`.
    SetNull,
}

/// A foreign key from one column to another table's primary key.
///
/// ```
/// # use datastore::prelude::*;
/// # #[derive(Model, Debug, Clone, Default)]
/// # pub struct Post { #[primary_key] pub id: Id, #[has_many(Comment)] pub comments: HasMany<Comment> }
/// # #[derive(Model, Debug, Clone, Default)]
/// # pub struct Comment { #[primary_key] pub id: Id, #[belongs_to(Post)] pub post_id: Id, pub text: Option<String> }
/// use datastore::schema::OnDelete;
///
/// let fk = Comment::table().foreign_key("post_id").unwrap();
/// assert_eq!((fk.references.as_ref(), fk.referenced_column.as_ref()), ("posts", "id"));
/// assert_eq!(fk.on_delete, OnDelete::Cascade);
/// assert!(!fk.on_update_cascade); // an `Id` never changes
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKey {
    /// The referencing column of this table.
    pub column: Name,
    /// The referenced table.
    pub references: Name,
    /// The referenced column (the primary key of that table).
    pub referenced_column: Name,
    /// What a delete of the referenced row does.
    pub on_delete: OnDelete,
    /// Whether a change of the referenced key is carried to this column (`ON UPDATE
    /// CASCADE`): for references to natural keys, which may change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_update_cascade: bool,
}

/// A primary key's columns in a recorded schema: one column's name, or a list for a composite key.
mod key_columns {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{List, Name};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Form {
        One(Name),
        Many(Vec<Name>),
    }

    pub fn serialize<S: Serializer>(
        columns: &List<Name>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match &**columns {
            [one] => Form::One(one.clone()),
            many => Form::Many(many.to_vec()),
        }
        .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<List<Name>, D::Error> {
        Ok(match Form::deserialize(deserializer)? {
            Form::One(one) => vec![one].into(),
            Form::Many(many) => many.into(),
        })
    }
}

/// A secondary index.
///
/// ```
/// use datastore::prelude::*;
///
/// #[derive(Model, Debug, Clone, Default)]
/// pub struct Note {
///     #[primary_key]
///     pub id: Id,
///     #[index]
///     pub text: String,
/// }
///
/// let index = &Note::table().indexes[0];
/// assert_eq!(index.columns.as_ref(), ["text"]);
/// assert!(!index.unique);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// The index's name.
    pub name: Name,
    /// The indexed columns, in order.
    pub columns: List<Name>,
    /// Whether it enforces uniqueness.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unique: bool,
}
