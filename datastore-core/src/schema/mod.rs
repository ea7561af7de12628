//! The schema as data: every model describes its table, and DDL is rendered from that.
//!
//! `#[derive(Model)]` writes what each model declares ([`ModelDeclaration`]); the relation
//! [`rules`] resolve it into the model's [`Table`] ([`Model::table`](crate::Model::table)). The
//! same description renders the `CREATE TABLE` statements of migrations ([`ddl`]), and is what
//! the migration generator compares with the state the existing migrations produce.

pub mod ddl;
mod declaration;
pub mod rules;

pub use declaration::{
    BelongsTo, KeyKind, ModelDeclaration, ModelRef, Relation, RelationKind, Statement, Timestamps,
};

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// A string that is `&'static` in generated constants and owned when read from a snapshot.
pub type Name = Cow<'static, str>;
/// A list that is `&'static` in generated constants and owned when read from a snapshot.
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
    pub fn is_key(&self, column: &str) -> bool {
        self.primary_key.iter().any(|k| k == column)
    }

    /// The column with this name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The foreign key declared on this column.
    pub fn foreign_key(&self, column: &str) -> Option<&ForeignKey> {
        self.foreign_keys.iter().find(|f| f.column == column)
    }

    /// Every index of the table: the declared ones, then one per foreign-key column that is not
    /// already unique (a unique column is indexed by its constraint), named
    /// `idx_<table>_<column>`. Deletes of a parent look up its children through these.
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
}

/// One column of a table.
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
}

impl Column {
    /// A column that is not unique.
    pub const fn new(name: &'static str, ty: ColumnType, nullable: bool) -> Self {
        Self {
            name: Cow::Borrowed(name),
            ty,
            nullable,
            unique: false,
            generated: false,
        }
    }

    /// The same column with a `UNIQUE` constraint.
    pub const fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    /// The `CHECK` this column carries, if any (enum columns allow only their variants).
    pub fn check(&self) -> Option<String> {
        match &self.ty {
            ColumnType::Enum(variants) => {
                let list: Vec<String> = variants.iter().map(|v| ddl::quote_literal(v)).collect();
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

/// What a column stores, independent of the backend.
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

/// What happens to a referencing row when the row it references is deleted.
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

/// A primary key's columns in a snapshot: one column's name, or a list for a composite key.
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
