use std::collections::HashMap;
use std::collections::hash_map::Entry;

use diesel::connection::Connection;
use serde::{Deserialize, Serialize};

use crate::migrate::MigrationFailure;
use crate::model::Model;
use crate::schema::ddl::{self, Dialect, HasDialect};
use crate::schema::{ColumnDefault, ColumnType, ModelRef, Table};
use crate::{Error, Result};

/// The set of models an application stores: what its migrations are generated from.
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
/// let schema = Schema::new().model::<Note>();
/// assert_eq!(schema.tables()[0].name, "notes");
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Schema {
    tables: Vec<Table>,
    /// The model each table of a model came from, to tell two models that claim one table
    /// apart from the same model added twice.
    #[serde(skip)]
    models: Vec<(String, ModelRef)>,
    /// Tables two different models claim: reported by [`Schema::validate`].
    #[serde(skip)]
    conflicts: Vec<SchemaProblem>,
    /// The tables and columns that had other names: not part of the schema (a recorded schema
    /// does not keep them), only a guide for the next migration.
    #[serde(skip)]
    renames: Vec<Rename>,
}

/// What makes models no schema, or a recorded schema's table not one its migrations can be written
/// from, or the renames the models declare none a migration can make from it: the data of
/// [`MigrationFailure::InvalidSchema`] (boxed there).
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Post, posts, Comment, comments};
/// use datastore::migrate::MigrationFailure;
/// use datastore::schema::SchemaProblem;
/// use datastore::Error;
///
/// match Schema::new().model::<Comment>().validate() {
///     Err(Error::Migration { failure: MigrationFailure::InvalidSchema(problem), .. }) => {
///         match *problem {
///             SchemaProblem::UnknownTable { references, .. } => assert_eq!(references, "posts"),
///             other => panic!("{other:?}"),
///         }
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaProblem {
    /// Two models are stored in one table.
    #[error(
        "{} and {} are both stored in table {table}: give one of them `#[model(table = \"..\")]`",
        models[0],
        models[1]
    )]
    SharedTable {
        /// The table.
        table: String,
        /// The two models' type names, the one added first first.
        models: [String; 2],
    },
    /// A column's default is not a value of its type (or, for a number, not a finite one
    /// written as a number literal).
    #[error(
        "{table}.{column}: the default {default} is not a value of a column of type {column_type:?}"
    )]
    UnfitDefault {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The default declared.
        default: ColumnDefault,
        /// The column's type.
        column_type: ColumnType,
    },
    /// A foreign key references a table no model of the schema has.
    #[error(
        "{table}.{column} references table {references}, which is not in the schema: add its model"
    )]
    UnknownTable {
        /// The table of the foreign key.
        table: String,
        /// The foreign-key column.
        column: String,
        /// The table it references.
        references: String,
    },
    /// A model's rows would be both a many-to-many's links and another model's children, by
    /// one foreign key: a `many_to_many` goes through it, and a `has_many` or `has_one` of the
    /// foreign key's parent answers it. A link's foreign keys restrict (a linked row's delete
    /// is refused until it is unlinked) and a pair is linked once; a child's cascade. Give the
    /// many-to-many a join model of its own.
    #[error(
        "{table}.{column} is a many-to-many's link to {parent} and the foreign key of {parent}'s \
         children: a link restricts its parent's delete, a child is deleted with it; give the \
         many-to-many a join model of its own"
    )]
    LinkAndChild {
        /// The model's table.
        table: String,
        /// The foreign-key column.
        column: String,
        /// The parent model's type name.
        parent: String,
    },
    /// Two indexes would have one name: the same, or the same in their first 63 bytes, which
    /// is all of a name PostgreSQL keeps (index names are the schema's, not a table's). The
    /// store names an index after its table and columns (`idx_<table>_<column>`,
    /// `uq_<table>_<a>_<b>`), so long table and column names can make one name of two.
    #[error(
        "the indexes {} (on {}) and {} (on {}) would have one name on PostgreSQL, which keeps the \
         first 63 bytes of a name: shorten a table or column name",
        indexes[0],
        tables[0],
        indexes[1],
        tables[1]
    )]
    IndexNamesCollide {
        /// The two indexes' names, as the store makes them up.
        indexes: [String; 2],
        /// Their tables, in the same order.
        tables: [String; 2],
    },
    /// Renames the models declare (`#[model(renamed_from = "..")]`,
    /// `#[column(renamed_from = "..")]`) that no order makes one by one from the tables the
    /// migrations left, and that those tables cannot tell from renames made already: two names
    /// swapped (or a longer cycle), or two renames from one name. Nothing is planned from them.
    #[error(
        "the renames {} of {} cannot be made one by one from what the migrations left, nor told \
         from renames made already: make them in migrations of their own (through a name \
         neither has, for a swap)",
        renames
            .iter()
            .map(|(from, to)| format!("{from} -> {to}"))
            .collect::<Vec<_>>()
            .join(", "),
        table
            .as_ref()
            .map_or("tables".to_owned(), |table| format!("columns of {table}"))
    )]
    UnclearRenames {
        /// The table whose columns they rename (by its name now); `None` for renames of
        /// tables.
        table: Option<String>,
        /// Each rename, `(previous name, name now)`, in the order the models declare them.
        renames: Vec<(String, String)>,
    },
}

/// A table or a column that had another name (`#[model(renamed_from = "..")]`,
/// `#[column(renamed_from = "..")]`): the migration generator renames it, keeping its data,
/// rather than dropping it and creating another.
///
/// ```
/// use datastore::prelude::*;
/// use datastore::schema::Rename;
///
/// #[derive(Model, Debug, Clone, Default)]
/// #[model(renamed_from = "todos")]
/// pub struct Task {
///     #[primary_key]
///     pub id: Id,
/// }
///
/// let schema = Schema::new().model::<Task>();
/// let renamed = Rename::Table { from: "todos".into(), to: "tasks".into() };
/// assert_eq!(schema.renames(), [renamed]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rename {
    /// A table, renamed `from` → `to`.
    Table {
        /// The previous name.
        from: String,
        /// The name now.
        to: String,
    },
    /// A column of `table` (its name now), renamed `from` → `to`.
    Column {
        /// The table, by its name now.
        table: String,
        /// The previous name.
        from: String,
        /// The name now.
        to: String,
    },
}

/// Schemas are equal when their tables are.
impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.tables == other.tables
    }
}

impl Schema {
    /// An empty schema.
    ///
    /// ```
    /// use datastore::Schema;
    ///
    /// assert!(Schema::new().tables().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a model's table (once; adding it again changes nothing). Two different models
    /// whose tables have the same name make the schema invalid ([`Schema::validate`]).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// let schema = Schema::new().model::<Comment>().model::<Post>().model::<Post>();
    /// let names: Vec<&str> = schema.tables().iter().map(|t| t.name.as_ref()).collect();
    /// assert_eq!(names, ["posts", "comments"]); // once each, parents first
    /// ```
    pub fn model<M: Model>(mut self) -> Self {
        let model = ModelRef::of::<M>();
        let table = M::table();
        match self.models.iter().find(|(name, _)| *name == table.name) {
            Some((_, known)) if *known == model => {}
            Some((_, other)) => {
                self.conflicts.push(SchemaProblem::SharedTable {
                    table: table.name.to_string(),
                    models: [other.type_name().to_owned(), model.type_name().to_owned()],
                });
            }
            None => {
                self.models.push((table.name.to_string(), model));
                self = self.table(table.clone());
                let renames = M::declaration().renames();
                if let Some(from) = renames.table {
                    self = self.renamed_table(from, &table.name);
                }
                for (column, from) in renames.columns {
                    self = self.renamed_column(&table.name, from, column);
                }
            }
        }
        self
    }

    /// Records that table `to` was called `from` (what `#[model(renamed_from = "..")]` says).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::schema::Rename;
    ///
    /// let schema = Schema::new().model::<Note>().renamed_table("memos", "notes");
    /// assert_eq!(schema.renames(), [Rename::Table { from: "memos".into(), to: "notes".into() }]);
    /// ```
    pub fn renamed_table(mut self, from: &str, to: &str) -> Self {
        self.renames.push(Rename::Table {
            from: from.to_owned(),
            to: to.to_owned(),
        });
        self
    }

    /// Records that column `to` of `table` was called `from` (what
    /// `#[column(renamed_from = "..")]` says).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::schema::Rename;
    ///
    /// let schema = Schema::new().model::<Note>().renamed_column("notes", "body", "text");
    /// let rename = Rename::Column { table: "notes".into(), from: "body".into(), to: "text".into() };
    /// assert_eq!(schema.renames(), [rename]);
    /// ```
    pub fn renamed_column(mut self, table: &str, from: &str, to: &str) -> Self {
        self.renames.push(Rename::Column {
            table: table.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
        });
        self
    }

    /// The tables and columns that had other names.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// assert!(Schema::new().model::<Note>().renames().is_empty());
    /// ```
    pub fn renames(&self) -> &[Rename] {
        &self.renames
    }

    /// Adds a table description.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// let mut memos = Note::table().clone();
    /// memos.name = "memos".into();
    /// let schema = Schema::new().model::<Note>().table(memos);
    /// assert_eq!(schema.tables().len(), 2);
    /// assert_eq!(schema.get("memos").unwrap().columns, Note::table().columns);
    /// ```
    pub fn table(mut self, table: Table) -> Self {
        if !self.tables.iter().any(|t| t.name == table.name) {
            self.tables.push(table);
        }
        self
    }

    /// The tables, each after the tables it references.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// let schema = Schema::new().model::<Comment>().model::<Post>();
    /// assert_eq!(schema.tables()[0].name, "posts"); // `comments` references it
    /// ```
    pub fn tables(&self) -> Vec<&Table> {
        let mut ordered: Vec<&Table> = Vec::with_capacity(self.tables.len());
        let mut pending: Vec<&Table> = self.tables.iter().collect();
        while !pending.is_empty() {
            let before = pending.len();
            pending.retain(|t| {
                let ready = t.foreign_keys.iter().all(|fk| {
                    fk.references == t.name
                        || ordered.iter().any(|o| o.name == fk.references)
                        || !self.tables.iter().any(|x| x.name == fk.references)
                });
                if ready {
                    ordered.push(t);
                }
                !ready
            });
            if pending.len() == before {
                // A cycle of foreign keys: SQLite accepts forward references, keep the order.
                ordered.append(&mut pending);
            }
        }
        ordered
    }

    /// The table with this name.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// let schema = Schema::new().model::<Note>();
    /// assert_eq!(schema.get("notes").unwrap().primary_key[0], "id");
    /// assert!(schema.get("posts").is_none());
    /// ```
    pub fn get(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Why a column's default cannot be written into a migration, if one cannot: it does not
    /// fit the column's type, or it is a real number that is not a finite number literal
    /// (which would be written into the SQL as it is).
    pub(crate) fn invalid_default(&self) -> Option<SchemaProblem> {
        self.tables.iter().find_map(|table| {
            table.columns.iter().find_map(|column| {
                let default = column.default.as_ref()?;
                let unfit = !default.fits(&column.ty) || !default.is_finite_literal_of(&column.ty);
                unfit.then(|| SchemaProblem::UnfitDefault {
                    table: table.name.to_string(),
                    column: column.name.to_string(),
                    default: default.clone(),
                    column_type: column.ty.clone(),
                })
            })
        })
    }

    /// Two indexes of the schema whose names PostgreSQL would take for one.
    fn colliding_indexes(&self) -> Option<SchemaProblem> {
        // Each name as PostgreSQL keeps it: the index's whole name, and its table.
        let mut seen: HashMap<String, (String, String)> = HashMap::new();
        for table in &self.tables {
            for index in table.all_indexes() {
                let this = (index.name.to_string(), table.name.to_string());
                match seen.entry(super::postgres_kept(&index.name).to_owned()) {
                    Entry::Occupied(first) => {
                        let (name, table) = first.get().clone();
                        return Some(SchemaProblem::IndexNamesCollide {
                            indexes: [name, this.0],
                            tables: [table, this.1],
                        });
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(this);
                    }
                }
            }
        }
        None
    }

    /// Checks that no two models claim one table, that every foreign key references a table
    /// of the schema, that every default fits its column, that no two index names are one
    /// on PostgreSQL, and that no model's rows are both links and children.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// assert!(Schema::new().model::<Post>().model::<Comment>().validate().is_ok());
    /// // `comments.post_id` references `posts`, which is missing.
    /// assert!(Schema::new().model::<Comment>().validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        let invalid = |problem| {
            Err(Error::migration(
                None,
                MigrationFailure::InvalidSchema(Box::new(problem)),
            ))
        };
        if let Some(conflict) = self.conflicts.first() {
            return invalid(conflict.clone());
        }
        if let Some(unfit) = self.invalid_default() {
            return invalid(unfit);
        }
        if let Some(collision) = self.colliding_indexes() {
            return invalid(collision);
        }
        for (table, model) in &self.models {
            if let Some((fk, parent)) = super::rules::link_and_child(*model) {
                return invalid(SchemaProblem::LinkAndChild {
                    table: table.clone(),
                    column: fk.column.to_owned(),
                    parent: parent.type_name().to_owned(),
                });
            }
        }
        for table in &self.tables {
            for fk in table.foreign_keys.iter() {
                if self.get(&fk.references).is_none() {
                    return invalid(SchemaProblem::UnknownTable {
                        table: table.name.to_string(),
                        column: fk.column.to_string(),
                        references: fk.references.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The DDL creating every table and index, in dependency order.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// let sql = Schema::new().model::<Note>().create_sql(Dialect::Postgres);
    /// assert!(sql.starts_with(r#"CREATE TABLE "notes""#));
    /// assert!(sql.contains("UUID"));
    /// ```
    pub fn create_sql(&self, dialect: Dialect) -> String {
        self.creation(dialect, false)
    }

    /// The DDL creating every table and index, in dependency order (as statements that do
    /// nothing for what exists, if asked). On PostgreSQL a foreign key referencing a table
    /// created after its own (a cycle) is added once every table is there.
    fn creation(&self, dialect: Dialect, if_not_exists: bool) -> String {
        let maybe = |statement: String| match if_not_exists {
            true => ddl::if_not_exists(&statement),
            false => statement,
        };
        let tables = self.tables();
        let names: Vec<&str> = tables.iter().map(|t| &*t.name).collect();
        let mut sql = String::new();
        let mut deferred = Vec::new();
        for (i, table) in tables.iter().enumerate() {
            let (now, later) = ddl::before_tables(table, &names[i + 1..], dialect);
            sql.push_str(&maybe(ddl::create_table(&now, dialect)));
            sql.push('\n');
            for index in now.all_indexes() {
                sql.push_str(&maybe(ddl::create_index(&table.name, &index, dialect)));
                sql.push('\n');
            }
            deferred.extend(later.into_iter().map(|fk| match if_not_exists {
                true => ddl::add_foreign_key_if_absent(&table.name, fk),
                false => ddl::add_foreign_key(&table.name, fk),
            }));
        }
        for statement in deferred {
            sql.push_str(&statement);
            sql.push('\n');
        }
        sql
    }

    /// Creates the tables (and their indexes) that do not exist yet, in one transaction, on a
    /// connection of either backend. For tests and prototypes; applications run migrations.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::diesel::{Connection, SqliteConnection};
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let mut conn = SqliteConnection::establish(":memory:").unwrap();
    /// let schema = Schema::new().model::<Note>();
    /// schema.create_all(&mut conn)?;
    /// schema.create_all(&mut conn)?; // the tables exist: nothing to do
    /// assert_eq!(conn.count::<Note>()?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn create_all<C: Connection + HasDialect>(&self, conn: &mut C) -> Result<()> {
        self.validate()?;
        let sql = self.creation(conn.dialect(), true);
        conn.transaction(|conn| conn.batch_execute(&sql))?;
        Ok(())
    }
}

impl Schema {
    /// The schema as a [Mermaid](https://mermaid.js.org) ER diagram: each table with its
    /// columns (`PK`, `FK`, `UK`), and each foreign key as a relationship labelled with its
    /// column and its `ON DELETE` rule; a unique foreign key (a `has_one`) is one-to-one, a
    /// nullable one an optional parent.
    ///
    /// ```
    /// use datastore::prelude::*;
    ///
    /// #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// pub struct Post {
    ///     #[primary_key]
    ///     pub id: Id,
    ///     #[has_many(Comment)]
    ///     pub comments: HasMany<Comment>,
    /// }
    ///
    /// #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// pub struct Comment {
    ///     #[primary_key]
    ///     pub id: Id,
    ///     #[belongs_to(Post)]
    ///     pub post_id: Id,
    /// }
    ///
    /// let diagram = Schema::new().model::<Post>().model::<Comment>().mermaid();
    /// assert!(diagram.starts_with("erDiagram\n"));
    /// assert!(diagram.contains(r#"posts ||--o{ comments : "post_id, on delete cascade""#));
    /// ```
    pub fn mermaid(&self) -> String {
        use std::fmt::Write;

        use crate::schema::{ColumnType, OnDelete};

        let mut out = String::from("erDiagram\n");
        for table in self.tables() {
            let _ = writeln!(out, "    {} {{", table.name);
            for column in table.columns.iter() {
                let ty = match &column.ty {
                    ColumnType::Text => "text",
                    ColumnType::SmallInt => "smallint",
                    ColumnType::Integer => "integer",
                    ColumnType::BigInt => "bigint",
                    ColumnType::Float => "real",
                    ColumnType::Double => "double",
                    ColumnType::Bool => "bool",
                    ColumnType::Blob => "bytes",
                    ColumnType::Uuid => "uuid",
                    ColumnType::Timestamp => "timestamp",
                    ColumnType::Json => "json",
                    ColumnType::Enum(_) => "enum",
                };
                let mut keys = Vec::new();
                if table.is_key(&column.name) {
                    keys.push("PK");
                }
                if table.foreign_key(&column.name).is_some() {
                    keys.push("FK");
                }
                if column.unique && !table.is_whole_key(&column.name) {
                    keys.push("UK");
                }
                let mut notes = Vec::new();
                if column.nullable {
                    notes.push("nullable".to_owned());
                }
                if let ColumnType::Enum(variants) = &column.ty {
                    notes.push(variants.join(" | "));
                }
                let _ = write!(out, "        {ty} {}", column.name);
                if !keys.is_empty() {
                    let _ = write!(out, " {}", keys.join(", "));
                }
                if !notes.is_empty() {
                    let _ = write!(out, " \"{}\"", notes.join("; "));
                }
                out.push('\n');
            }
            out.push_str("    }\n");
        }
        for table in self.tables() {
            for fk in table.foreign_keys.iter() {
                let column = table.column(&fk.column);
                let parent = if column.is_some_and(|c| c.nullable) {
                    "|o"
                } else {
                    "||"
                };
                let child = if column.is_some_and(|c| c.unique) {
                    "o|"
                } else {
                    "o{"
                };
                let rule = match fk.on_delete {
                    OnDelete::Cascade => "cascade",
                    OnDelete::Restrict => "restrict",
                    OnDelete::SetNull => "set null",
                };
                let _ = writeln!(
                    out,
                    "    {} {parent}--{child} {} : \"{}, on delete {rule}\"",
                    fk.references, table.name, fk.column
                );
            }
        }
        out
    }
}
