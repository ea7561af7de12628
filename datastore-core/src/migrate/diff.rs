//! Comparing two schemas, and rendering the difference as a migration.

use std::fmt;

use super::Migration;
use crate::schema::ddl::{self, Dialect};
use crate::schema::{Column, ColumnType, ForeignKey, Index, Name, OnDelete, Table};
use crate::schema::{Rename, Schema, SchemaProblem};

/// One change between the schema the migrations produce and the models: what a planned
/// [`Migration`] consists of.
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// use datastore::migrate::{Migrations, SchemaChange};
///
/// # fn main() -> datastore::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let plan = Migrations::new(dir.path(), Dialect::Sqlite)
///     .plan(&Schema::new().model::<Note>())?
///     .expect("a migration is needed");
/// assert!(matches!(&plan.changes[..], [SchemaChange::CreateTable(t)] if t.name == "notes"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaChange {
    /// A new table, with its indexes.
    CreateTable(Table),
    /// A table whose model is gone.
    DropTable(Table),
    /// A table renamed (`#[model(renamed_from = "..")]`), with its rows, indexes and foreign
    /// keys; on PostgreSQL its constraints named after it are renamed too.
    RenameTable {
        /// The table as the migrations left it, under its previous name.
        table: Table,
        /// Its name now.
        to: String,
    },
    /// A column renamed (`#[column(renamed_from = "..")]`), with its values.
    RenameColumn {
        /// The table as the migrations left it (under its name now).
        table: Table,
        /// The column's previous name.
        from: String,
        /// Its name now.
        to: String,
    },
    /// A new column of an existing table (`table` is the new definition).
    AddColumn {
        /// The table, as the models describe it.
        table: Table,
        /// The added column.
        column: Column,
    },
    /// A column whose field is gone (`table` is the old definition).
    DropColumn {
        /// The table, as the migrations left it.
        table: Table,
        /// The dropped column.
        column: Column,
    },
    /// A new index on an existing table.
    CreateIndex {
        /// The table's name.
        table: String,
        /// The index.
        index: Index,
    },
    /// An index that is no longer declared.
    DropIndex {
        /// The table's name.
        table: String,
        /// The index.
        index: Index,
    },
    /// An index that is the same but for its name (its table or column was renamed).
    RenameIndex {
        /// The table's name.
        table: String,
        /// The index under its previous name.
        from: Index,
        /// The index under its name now.
        to: Index,
    },
    /// A change SQLite cannot make in place (a column's type, nullability, uniqueness, check
    /// or foreign key; the primary key): the table is rebuilt, keeping its rows.
    RebuildTable {
        /// The table as the migrations left it.
        old: Table,
        /// The table as the models describe it.
        new: Table,
    },
}

impl fmt::Display for SchemaChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CreateTable(t) => write!(f, "+ table {}", t.name),
            Self::DropTable(t) => write!(f, "- table {}", t.name),
            Self::RenameTable { table, to } => write!(f, "~ table {} -> {to}", table.name),
            Self::RenameColumn { table, from, to } => {
                write!(f, "~ column {}.{from} -> {to}", table.name)
            }
            Self::RenameIndex { table, from, to } => {
                write!(f, "~ index {} -> {} on {table}", from.name, to.name)
            }
            Self::AddColumn { table, column } => {
                write!(
                    f,
                    "+ column {}.{} ({:?})",
                    table.name, column.name, column.ty
                )
            }
            Self::DropColumn { table, column } => {
                write!(f, "- column {}.{}", table.name, column.name)
            }
            Self::CreateIndex { table, index } => write!(f, "+ index {} on {table}", index.name),
            Self::DropIndex { table, index } => write!(f, "- index {} on {table}", index.name),
            Self::RebuildTable { old, new } => {
                write!(f, "~ table {}:", new.name)?;
                for column in new.columns.iter() {
                    match old.column(&column.name) {
                        None => write!(f, " +{}", column.name)?,
                        Some(was)
                            if was != column
                                || old.foreign_key(&column.name)
                                    != new.foreign_key(&column.name) =>
                        {
                            write!(f, " ~{}", column.name)?
                        }
                        Some(_) => {}
                    }
                }
                for column in old.columns.iter().filter(|c| new.column(&c.name).is_none()) {
                    write!(f, " -{}", column.name)?;
                }
                Ok(())
            }
        }
    }
}

impl SchemaChange {
    /// What the change may lose or refuse, one sentence each; empty for a lossless change
    /// (a new table, column or plain index, a rename, a widened type, a column becoming
    /// nullable, a new enum variant, a dropped index, a new default).
    ///
    /// ```
    /// use datastore::migrate::SchemaChange;
    /// use datastore::schema::{Column, ColumnType, Table};
    /// use std::borrow::Cow;
    ///
    /// let table = |ty| Table {
    ///     name: "scores".into(),
    ///     primary_key: vec!["id".into()].into(),
    ///     columns: vec![Column::new("id", ColumnType::Uuid, false), Column::new("points", ty, false)].into(),
    ///     foreign_keys: Cow::Borrowed(&[]),
    ///     indexes: Cow::Borrowed(&[]),
    /// };
    /// let widen = SchemaChange::RebuildTable { old: table(ColumnType::Integer), new: table(ColumnType::BigInt) };
    /// assert!(widen.losses().is_empty());
    /// let narrow = SchemaChange::RebuildTable { old: table(ColumnType::BigInt), new: table(ColumnType::Integer) };
    /// assert_eq!(narrow.losses().len(), 1);
    /// ```
    pub fn losses(&self) -> Vec<String> {
        match self {
            Self::DropTable(table) => {
                vec![format!("drops table {} and every row in it", table.name)]
            }
            Self::DropColumn { table, column } => vec![format!(
                "drops column {}.{} and its values",
                table.name, column.name
            )],
            Self::CreateIndex { table, index } if index.unique => {
                vec![unique_loss(table, &index.columns)]
            }
            Self::RebuildTable { old, new } => table_losses(old, new),
            Self::AddColumn { table, column } => added_losses(table, column).collect(),
            Self::CreateTable(_)
            | Self::RenameTable { .. }
            | Self::RenameColumn { .. }
            | Self::CreateIndex { .. }
            | Self::DropIndex { .. }
            | Self::RenameIndex { .. } => Vec::new(),
        }
    }

    /// The columns the change would fill with invented values: added `NOT NULL`, or made
    /// `NOT NULL`, to a table that may hold rows, with no default declared to give them.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::migrate::SchemaChange;
    /// use datastore::schema::{Column, ColumnDefault, ColumnType};
    ///
    /// # let table = Note::table().clone();
    /// let add = |column| SchemaChange::AddColumn { table: table.clone(), column };
    /// let rank = Column::new("rank", ColumnType::Integer, false);
    /// let unfilled = add(rank.clone()).missing_defaults(); // what would the rows hold?
    /// assert_eq!((unfilled[0].column.as_str(), unfilled[0].added), ("rank", true));
    /// let ranked = Column { default: Some(ColumnDefault::Integer(0)), ..rank };
    /// assert!(add(ranked).missing_defaults().is_empty());
    /// ```
    pub fn missing_defaults(&self) -> Vec<UnfilledColumn> {
        let needs = |table: &Table, column: &Column, added: bool| UnfilledColumn {
            table: table.name.to_string(),
            column: column.name.to_string(),
            added,
        };
        match self {
            Self::AddColumn { table, column } if !column.nullable && column.default.is_none() => {
                vec![needs(table, column, true)]
            }
            Self::RebuildTable { old, new } => new
                .columns
                .iter()
                .filter(|c| !c.nullable && c.default.is_none() && !c.generated)
                .filter_map(|c| match old.column(&c.name) {
                    None => Some(needs(new, c, true)),
                    Some(was) if was.nullable => Some(needs(new, c, false)),
                    Some(_) => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A column a migration would make `NOT NULL` in a table that may hold rows, with no default
/// declared to give them: see [`SchemaChange::missing_defaults`] and
/// [`Error::MissingDefault`](crate::Error::MissingDefault).
///
/// ```
/// use datastore::migrate::UnfilledColumn;
///
/// let rank = UnfilledColumn { table: "notes".into(), column: "rank".into(), added: true };
/// assert_eq!(
///     rank.to_string(),
///     "notes.rank is added NOT NULL and has no default for the rows the table holds"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfilledColumn {
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
    /// Whether the column is new (`false`: an existing nullable column made `NOT NULL`).
    pub added: bool,
}

impl std::fmt::Display for UnfilledColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.added { "added" } else { "made" };
        write!(
            f,
            "{}.{} is {how} NOT NULL and has no default for the rows the table holds",
            self.table, self.column
        )
    }
}

/// A unique index or constraint added over rows that may share values.
fn unique_loss(table: &str, columns: &[Name]) -> String {
    format!(
        "makes ({}) of {table} unique: stops, changing nothing, while rows share values there",
        columns.join(", ")
    )
}

/// What adding `column` (with its default) to `table` may stop on: every row takes the default.
fn added_losses(table: &Table, column: &Column) -> impl Iterator<Item = String> {
    added_unique_loss(table, column)
        .into_iter()
        .chain(added_reference_loss(table, column))
}

/// A column added unique with a default: every row the table holds takes the default, one
/// value, which only one row can hold.
fn added_unique_loss(table: &Table, column: &Column) -> Option<String> {
    let default = column.default.as_ref()?;
    (column.unique && !table.is_whole_key(&column.name)).then(|| {
        format!(
            "adds {}.{} unique, every row taking its default {default}: stops, changing \
             nothing, while the table holds 2 or more rows",
            table.name, column.name
        )
    })
}

/// A column added with a foreign key and a default: every row the table holds takes the
/// default, which must point at a row of the referenced table.
fn added_reference_loss(table: &Table, column: &Column) -> Option<String> {
    let default = column.default.as_ref()?;
    let fk = table.foreign_key(&column.name)?;
    Some(format!(
        "adds a foreign key {}.{} -> {}, every row taking its default {default}: stops, \
         changing nothing, while the table holds rows and the default points nowhere",
        table.name, column.name, fk.references
    ))
}

/// Whether every value of type `from` is a value of type `to`.
fn widens(from: &ColumnType, to: &ColumnType) -> bool {
    use ColumnType::*;
    match (from, to) {
        (SmallInt, Integer | BigInt | Double) | (Integer, BigInt | Double) | (Float, Double) => {
            true
        }
        (Enum(_), Text) => true,
        (Enum(was), Enum(now)) => was.iter().all(|v| now.contains(v)),
        _ => from == to,
    }
}

/// What changing a table from `old` to `new` in place (a rebuild, or PostgreSQL's `ALTER`s)
/// may lose or refuse.
fn table_losses(old: &Table, new: &Table) -> Vec<String> {
    let t = &new.name;
    let mut losses = Vec::new();
    // A key holding a column the change adds, which the database assigns, is one no two rows
    // share: each row gets its own value.
    let assigned_key = new
        .primary_key
        .iter()
        .any(|k| old.column(k).is_none() && new.column(k).is_some_and(|c| c.generated));
    if old.primary_key != new.primary_key && !assigned_key {
        losses.push(format!(
            "changes the primary key of {t} from ({}) to ({}): stops while rows share the new key",
            old.primary_key.join(", "),
            new.primary_key.join(", ")
        ));
    }
    for was in old.columns.iter() {
        let Some(now) = new.column(&was.name) else {
            losses.push(format!("drops column {t}.{} and its values", was.name));
            continue;
        };
        let c = &now.name;
        if !widens(&was.ty, &now.ty) {
            losses.push(match (&was.ty, &now.ty) {
                (ColumnType::Enum(was), ColumnType::Enum(now)) => format!(
                    "removes {} from the values of {t}.{c}: stops while rows hold them",
                    was.iter()
                        .filter(|v| !now.contains(v))
                        .map(|v| format!("{v:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (from, to) => format!(
                    "changes the type of {t}.{c} from {from:?} to {to:?}: a value the new type \
                     cannot hold stops the migration or changes"
                ),
            });
        }
        if was.nullable && !now.nullable {
            let fill = now
                .default
                .as_ref()
                .map_or("no default".to_owned(), ToString::to_string);
            losses.push(format!("makes {t}.{c} NOT NULL: its NULLs become {fill}"));
        }
        // A column that was the whole key was unique by it.
        if now.unique && !was.unique && !old.is_whole_key(c) && !new.is_whole_key(c) {
            losses.push(unique_loss(t, std::slice::from_ref(c)));
        }
        match (old.foreign_key(c), new.foreign_key(c)) {
            (None, Some(fk)) => losses.push(format!(
                "adds a foreign key {t}.{c} -> {}: stops while values point nowhere",
                fk.references
            )),
            (Some(before), Some(after)) if before.references != after.references => {
                losses.push(format!(
                    "points {t}.{c} at {} instead of {}: stops while values point nowhere",
                    after.references, before.references
                ))
            }
            (Some(before), Some(after)) if before.on_delete != after.on_delete => {
                losses.push(format!(
                    "changes what deleting a row of {} does to {t}: ON DELETE {:?} becomes {:?}",
                    after.references, before.on_delete, after.on_delete
                ))
            }
            _ => {}
        }
    }
    for now in new.columns.iter().filter(|c| old.column(&c.name).is_none()) {
        losses.extend(added_losses(new, now));
    }
    let old_indexes = old.all_indexes();
    for index in new.all_indexes().iter().filter(|i| i.unique) {
        let known = old_indexes
            .iter()
            .any(|i| i.unique && i.columns == index.columns);
        if !known {
            losses.push(unique_loss(t, &index.columns));
        }
    }
    losses
}

/// The changes that turn `old` into `new`: first the renames `new` declares (those `old` has
/// yet to make), then the rest, against `old` so renamed; or the renames that cannot be made.
pub(super) fn diff(
    old: &Schema,
    new: &Schema,
    dialect: Dialect,
) -> Result<Vec<SchemaChange>, SchemaProblem> {
    let mut tables: Vec<Table> = old.tables().into_iter().cloned().collect();
    let mut changes = renames(&mut tables, new)?;
    let renamed = tables.into_iter().fold(Schema::new(), Schema::table);
    changes.extend(diff_renamed(&renamed, new, dialect));
    Ok(changes)
}

/// The renames `new` declares that apply to `tables` (the old schema's), applied to them; or
/// those that cannot be made ([`in_order`]).
fn renames(tables: &mut [Table], new: &Schema) -> Result<Vec<SchemaChange>, SchemaProblem> {
    let mut changes = Vec::new();
    let position = |tables: &[Table], name: &str| tables.iter().position(|t| t.name == name);
    let table_renames = new.renames().iter().filter_map(|r| match r {
        Rename::Table { from, to } => Some((from.clone(), to.clone())),
        Rename::Column { .. } => None,
    });
    let names = tables.iter().map(|t| t.name.to_string()).collect();
    let table_renames = in_order(table_renames.collect(), names, |name| {
        new.get(name).is_some()
    })
    .map_err(|renames| SchemaProblem::UnclearRenames {
        table: None,
        renames,
    })?;
    for (from, to) in table_renames {
        let i = position(tables, &from).expect("a rename in order renames a table there");
        changes.push(SchemaChange::RenameTable {
            table: tables[i].clone(),
            to: to.clone(),
        });
        keep_index_names(&mut tables[i]);
        tables[i].name = to.clone().into();
        for table in tables.iter_mut() {
            let mut fks = table.foreign_keys.to_vec();
            for fk in fks.iter_mut().filter(|fk| fk.references == *from) {
                fk.references = to.clone().into();
            }
            table.foreign_keys = fks.into();
        }
    }
    let mut renamed_in: Vec<&str> = Vec::new();
    for rename in new.renames() {
        if let Rename::Column { table, .. } = rename {
            if !renamed_in.contains(&table.as_str()) {
                renamed_in.push(table);
            }
        }
    }
    for table_name in renamed_in {
        let Some(i) = position(tables, table_name) else {
            continue;
        };
        let declared = new.renames().iter().filter_map(|r| match r {
            Rename::Column { table, from, to } if table == table_name => {
                Some((from.clone(), to.clone()))
            }
            _ => None,
        });
        let columns = tables[i]
            .columns
            .iter()
            .map(|c| c.name.to_string())
            .collect();
        let now = new.get(table_name);
        let column_renames = in_order(declared.collect(), columns, |name| {
            now.is_some_and(|t| t.column(name).is_some())
        })
        .map_err(|renames| SchemaProblem::UnclearRenames {
            table: Some(table_name.to_owned()),
            renames,
        })?;
        for (from, to) in column_renames {
            changes.push(SchemaChange::RenameColumn {
                table: tables[i].clone(),
                from: from.clone(),
                to: to.clone(),
            });
            keep_index_names(&mut tables[i]);
            rename_column_in(tables, table_name, &from, &to);
        }
    }
    Ok(changes)
}

/// Renames, each `(previous name, name now)`.
type RenamePairs = Vec<(String, String)>;

/// The renames to make of those `declared` (previous name, name now), among the names `had`
/// (the tables', or a table's columns, as the migrations left them), in an order that makes
/// them one by one: a rename to a name `had` has waits for the rename that frees it.
///
/// A rename whose previous name `had` lacks, or whose name now the models lack (`has_now`),
/// is not made: it was made already (the declaration stays in the model after its migration
/// ran), or it names nothing there. Nor is one whose two names `had` has while no other rename
/// frees the name now: made already, its previous name taken again by a newer column or table
/// since, which the models keep or drop (a drop, of a column and its values, is a lossy change
/// the generation stops at until allowed). The renames no order makes are the error: two names
/// swapped (or a longer cycle), two renames from one name, and those waiting for them.
fn in_order(
    declared: RenamePairs,
    mut had: Vec<String>,
    has_now: impl Fn(&str) -> bool,
) -> Result<RenamePairs, RenamePairs> {
    let mut pending = declared;
    let mut ordered = Vec::new();
    loop {
        let before = pending.len();
        let mut i = 0;
        while i < pending.len() {
            let (from, to) = &pending[i];
            let there = |name: &str| had.iter().any(|n| n == name);
            let others = || pending.iter().enumerate().filter(|(j, _)| *j != i);
            if !there(from) || !has_now(to) {
                pending.remove(i);
            } else if others().any(|(_, (other, _))| other == from) {
                i += 1; // two renames from one name: which keeps its values is not said
            } else if !there(to) {
                let (from, to) = pending.remove(i);
                had.retain(|n| *n != from);
                had.push(to.clone());
                ordered.push((from, to));
            } else if others().any(|(_, (other, _))| other == to) {
                i += 1; // waits for the rename that frees its name now
            } else {
                pending.remove(i);
            }
        }
        if pending.is_empty() {
            return Ok(ordered);
        }
        if pending.len() == before {
            return Err(pending);
        }
    }
}

/// Renames column `from` of table `table_name` to `to` among `tables`: in that table's
/// columns, key, indexes and foreign keys, and in the foreign keys that reference it.
fn rename_column_in(tables: &mut [Table], table_name: &str, from: &str, to: &str) {
    let rename = |name: &mut Name| {
        if *name == *from {
            *name = to.to_owned().into();
        }
    };
    for table in tables.iter_mut() {
        if table.name == *table_name {
            let mut columns = table.columns.to_vec();
            columns.iter_mut().for_each(|c| rename(&mut c.name));
            table.columns = columns.into();
            let mut key = table.primary_key.to_vec();
            key.iter_mut().for_each(rename);
            table.primary_key = key.into();
            let mut indexes = table.indexes.to_vec();
            for index in indexes.iter_mut() {
                let mut columns = index.columns.to_vec();
                columns.iter_mut().for_each(rename);
                index.columns = columns.into();
            }
            table.indexes = indexes.into();
        }
        let own = table.name == *table_name;
        let mut fks = table.foreign_keys.to_vec();
        for fk in fks.iter_mut() {
            if own {
                rename(&mut fk.column);
            }
            if fk.references == *table_name {
                rename(&mut fk.referenced_column);
            }
        }
        table.foreign_keys = fks.into();
    }
}

/// Makes the indexes a table's foreign keys imply (`idx_<table>_<column>`) explicit, under
/// the names they have in the database, before the table or a column is renamed: the diff
/// then finds them renamed, rather than under the name the new one implies.
fn keep_index_names(table: &mut Table) {
    table.indexes = table.all_indexes().into();
}

/// The changes that turn `old` into `new`, by the tables' and columns' names.
fn diff_renamed(old: &Schema, new: &Schema, dialect: Dialect) -> Vec<SchemaChange> {
    // Tables dropped, children before parents. One that a table staying references (before
    // the change) is dropped after the tables' changes, which drop that reference first; the
    // others before them, which may change what they reference (PostgreSQL refuses to drop a
    // table, a column or a key another table's foreign key depends on).
    // Last: the dropped tables a staying table references, and (so that none is dropped
    // while another dropped table still references it) those they reference, and so on.
    let dropped: Vec<&Table> = old
        .tables()
        .into_iter()
        .rev()
        .filter(|table| new.get(&table.name).is_none())
        .collect();
    let mut referrers: Vec<&Table> = old
        .tables()
        .into_iter()
        .filter(|table| new.get(&table.name).is_some())
        .collect();
    let mut late: Vec<&str> = Vec::new();
    while let Some(referrer) = referrers.pop() {
        for table in &dropped {
            let name: &str = &table.name;
            if !late.contains(&name)
                && referrer
                    .foreign_keys
                    .iter()
                    .any(|fk| fk.references == *name)
            {
                late.push(name);
                referrers.push(table);
            }
        }
    }
    let (last, first): (Vec<&Table>, Vec<&Table>) = dropped
        .into_iter()
        .partition(|table| late.contains(&&*table.name));
    let drop = |tables: Vec<&Table>| -> Vec<SchemaChange> {
        tables
            .into_iter()
            .map(|table| SchemaChange::DropTable(table.clone()))
            .collect()
    };
    let mut changes = drop(first);
    for table in new.tables() {
        match old.get(&table.name) {
            None => changes.push(SchemaChange::CreateTable(table.clone())),
            Some(before) if !same_table(before, table) => {
                changes.extend(diff_table(before, table, dialect))
            }
            Some(_) => {}
        }
    }
    changes.extend(drop(last));
    changes
}

/// Whether `a` and `b` are the same table but perhaps for the order of their columns, foreign
/// keys and indexes (the order of a model's fields, which no database statement depends on:
/// the store names every column it reads and writes), and for whether a column that is the
/// whole primary key is marked unique (the key makes it so either way, and no statement
/// differs).
fn same_table(a: &Table, b: &Table) -> bool {
    fn sorted<T: Clone, K: Ord>(items: &[T], key: impl Fn(&T) -> K) -> Vec<T> {
        let mut items = items.to_vec();
        items.sort_by_key(key);
        items
    }
    let columns = |table: &Table| {
        let unique_beside_key = table.columns.iter().map(|c| crate::schema::Column {
            unique: c.unique && !table.is_whole_key(&c.name),
            ..c.clone()
        });
        sorted(&unique_beside_key.collect::<Vec<_>>(), |c| c.name.clone())
    };
    a.name == b.name
        && a.primary_key == b.primary_key
        && columns(a) == columns(b)
        && sorted(&a.foreign_keys, |fk| fk.column.clone())
            == sorted(&b.foreign_keys, |fk| fk.column.clone())
        && sorted(&a.indexes, |i| i.name.clone()) == sorted(&b.indexes, |i| i.name.clone())
}

fn diff_table(old: &Table, new: &Table, dialect: Dialect) -> Vec<SchemaChange> {
    if !dialect.rebuilds_tables() {
        // Everything is altered in place: one change for the whole table.
        return vec![SchemaChange::RebuildTable {
            old: old.clone(),
            new: new.clone(),
        }];
    }
    let needs_rebuild = old.primary_key != new.primary_key
        || new.columns.iter().any(|c| match old.column(&c.name) {
            Some(was) => was != c || old.foreign_key(&c.name) != new.foreign_key(&c.name),
            // SQLite adds neither a UNIQUE column nor a foreign key the rows take a value of
            // (NOT NULL, or with a default: "Cannot add a REFERENCES column with non-NULL
            // default value" to a table holding rows) in place.
            None => {
                c.unique
                    || (new.foreign_key(&c.name).is_some() && (!c.nullable || c.default.is_some()))
            }
        })
        || old.columns.iter().any(|c| {
            new.column(&c.name).is_none() && (c.unique || old.foreign_key(&c.name).is_some())
        });
    if needs_rebuild {
        return vec![SchemaChange::RebuildTable {
            old: old.clone(),
            new: new.clone(),
        }];
    }

    let mut changes = Vec::new();
    let (old_indexes, new_indexes) = (old.all_indexes(), new.all_indexes());
    let renamed = ddl::renamed_indexes(&old_indexes, &new_indexes);
    for (from, to) in &renamed {
        changes.push(SchemaChange::RenameIndex {
            table: new.name.to_string(),
            from: from.clone(),
            to: to.clone(),
        });
    }
    let old_indexes: Vec<Index> = old_indexes
        .into_iter()
        .filter(|i| !renamed.iter().any(|(from, _)| from == i))
        .collect();
    let new_indexes: Vec<Index> = new_indexes
        .into_iter()
        .filter(|i| !renamed.iter().any(|(_, to)| to == i))
        .collect();
    // Indexes go before their columns do.
    for index in old_indexes.iter().filter(|i| !new_indexes.contains(i)) {
        changes.push(SchemaChange::DropIndex {
            table: old.name.to_string(),
            index: index.clone(),
        });
    }
    for column in old.columns.iter().filter(|c| new.column(&c.name).is_none()) {
        changes.push(SchemaChange::DropColumn {
            table: old.clone(),
            column: column.clone(),
        });
    }
    for column in new.columns.iter().filter(|c| old.column(&c.name).is_none()) {
        changes.push(SchemaChange::AddColumn {
            table: new.clone(),
            column: column.clone(),
        });
    }
    for index in new_indexes.iter().filter(|i| !old_indexes.contains(i)) {
        changes.push(SchemaChange::CreateIndex {
            table: new.name.to_string(),
            index: index.clone(),
        });
    }
    changes
}

/// The SQL of each change, and of its undoing.
fn statements(change: &SchemaChange, dialect: Dialect) -> (Vec<String>, Vec<String>) {
    let create = |table: &Table| {
        let mut sql = vec![ddl::create_table(table, dialect)];
        sql.extend(
            table
                .all_indexes()
                .iter()
                .map(|i| ddl::create_index(&table.name, i, dialect)),
        );
        sql
    };
    match change {
        SchemaChange::CreateTable(t) => (create(t), vec![ddl::drop_table(&t.name, dialect)]),
        SchemaChange::RenameTable { table, to } => {
            let mut renamed = table.clone();
            renamed.name = to.clone().into();
            (
                ddl::rename_table(table, to, dialect),
                ddl::rename_table(&renamed, &table.name, dialect),
            )
        }
        SchemaChange::RenameColumn { table, from, to } => {
            let mut renamed = [table.clone()];
            rename_column_in(&mut renamed, &table.name, from, to);
            let [renamed] = renamed;
            (
                ddl::rename_column(table, from, to, dialect),
                ddl::rename_column(&renamed, to, from, dialect),
            )
        }
        SchemaChange::RenameIndex { table, from, to } => (
            ddl::rename_index(table, from, to, dialect),
            ddl::rename_index(table, to, from, dialect),
        ),
        SchemaChange::DropTable(t) => (vec![ddl::drop_table(&t.name, dialect)], create(t)),
        SchemaChange::AddColumn { table, column } => (
            ddl::add_column(table, column, dialect),
            vec![ddl::drop_column(&table.name, &column.name, dialect)],
        ),
        SchemaChange::DropColumn { table, column } => (
            vec![ddl::drop_column(&table.name, &column.name, dialect)],
            ddl::add_column(table, column, dialect),
        ),
        SchemaChange::CreateIndex { table, index } => (
            vec![ddl::create_index(table, index, dialect)],
            vec![ddl::drop_index(index, dialect)],
        ),
        SchemaChange::DropIndex { table, index } => (
            vec![ddl::drop_index(index, dialect)],
            vec![ddl::create_index(table, index, dialect)],
        ),
        SchemaChange::RebuildTable { old, new } if !dialect.rebuilds_tables() => (
            ddl::alter_table(old, new, dialect),
            ddl::alter_table(new, old, dialect),
        ),
        SchemaChange::RebuildTable { old, new } => (
            ddl::rebuild_table(old, new, dialect),
            ddl::rebuild_table(new, old, dialect),
        ),
    }
}

/// The names `pick` finds among `changes` (the tables they create, or drop).
fn names_of(changes: &[SchemaChange], pick: impl Fn(&SchemaChange) -> Option<&Name>) -> Vec<&str> {
    changes
        .iter()
        .filter_map(pick)
        .map(|name| &**name)
        .collect()
}

/// Whether dropping `tables` in one migration needs SQLite's foreign keys deferred to the
/// commit: SQLite deletes a dropped table's rows first, which rows not deleted yet may still
/// reference. One of them references another one of them, or itself with `ON DELETE RESTRICT`
/// (which refuses a referenced row's delete at once; another reference of a table to itself
/// is checked at the end of the statement, when the rows referencing it are gone too).
fn drops_need_deferred_keys(tables: &[&Table]) -> bool {
    tables.iter().any(|table| {
        table.foreign_keys.iter().any(|fk| {
            if fk.references == table.name {
                fk.on_delete == OnDelete::Restrict
            } else {
                tables.iter().any(|t| t.name == fk.references)
            }
        })
    })
}

/// A foreign key of a table, named by the table.
type TableForeignKey<'a> = (&'a Name, &'a ForeignKey);

/// The foreign keys a migration that alters tables in place (PostgreSQL) takes off while the
/// tables change: those pointing at a column whose table's change replaces what they depend
/// on ([`replaces_key_of`]). PostgreSQL refuses to drop or retype the column, or to drop the
/// constraint that makes it unique, while a foreign key depends on it ("cannot drop constraint
/// .. because other objects depend on it"), whichever order the tables change in: a child
/// may point at the parent's new key, which is not there before the parent's change.
#[derive(Default)]
struct Detached<'a> {
    /// As the migrations left them (of the tables that change, and those that stay as they
    /// are): dropped before the changes, once the renames are made; `down` adds them back last,
    /// before it undoes the renames.
    before: Vec<TableForeignKey<'a>>,
    /// As the models declare them: added after the changes; `down` drops them first.
    after: Vec<TableForeignKey<'a>>,
}

impl<'a> Detached<'a> {
    /// Those of the migration of `changes` to `models` (none where tables are rebuilt: SQLite
    /// rebuilds a table with foreign keys off).
    fn of(changes: &'a [SchemaChange], models: &'a Schema, dialect: Dialect) -> Self {
        if dialect.rebuilds_tables() {
            return Self::default();
        }
        let altered: Vec<(&Table, &Table)> = changes
            .iter()
            .filter_map(|change| match change {
                SchemaChange::RebuildTable { old, new } => Some((old, new)),
                _ => None,
            })
            .collect();
        let changed = |name: &str| {
            changes.iter().any(|change| match change {
                SchemaChange::CreateTable(t) | SchemaChange::RebuildTable { new: t, .. } => {
                    t.name == *name
                }
                _ => false,
            })
        };
        // Tables that stay as they are have the same foreign keys before and after.
        let same: Vec<&Table> = models
            .tables()
            .into_iter()
            .filter(|t| !changed(&t.name))
            .collect();
        // A rebuild in place keeps its table's name (a rename is a change of its own).
        let depending = |tables: &[&'a Table]| -> Vec<TableForeignKey<'a>> {
            tables
                .iter()
                .flat_map(|&table| table.foreign_keys.iter().map(move |fk| (&table.name, fk)))
                .filter(|(_, fk)| {
                    altered.iter().any(|&(old, new)| {
                        old.name == fk.references
                            && replaces_key_of(old, new, &fk.referenced_column, dialect)
                    })
                })
                .collect()
        };
        let (old, new): (Vec<&Table>, Vec<&Table>) = altered.iter().copied().unzip();
        let kept = depending(&same);
        Self {
            before: [depending(&old), kept.clone()].concat(),
            after: [depending(&new), kept].concat(),
        }
    }
}

/// Whether changing table `from` into `to` in place replaces what a foreign key to its
/// `column` depends on in PostgreSQL: the column (dropped, added, or retyped) or the
/// constraint that makes it unique (the primary key's, or its own). The same either way round.
fn replaces_key_of(from: &Table, to: &Table, column: &str, dialect: Dialect) -> bool {
    let (Some(was), Some(now)) = (from.column(column), to.column(column)) else {
        return true;
    };
    // Which constraint makes the column unique: the key's (true), its own (false), or none.
    let unique_by = |table: &Table, c: &Column| {
        if table.is_whole_key(column) {
            Some(true)
        } else {
            c.unique.then_some(false)
        }
    };
    dialect.column_type(&was.ty) != dialect.column_type(&now.ty)
        || unique_by(from, was) != unique_by(to, now)
}

/// `table` without those of `foreign_keys` that are its own, keeping the indexes they imply.
fn without(table: &Table, foreign_keys: &[TableForeignKey<'_>]) -> Table {
    table.without_foreign_keys(|fk| foreign_keys.contains(&(&table.name, fk)))
}

/// The temporary table in which a SQLite rebuild keeps how many rows of each table pointed
/// nowhere before it (see [`render`]).
const FK_BEFORE: &str = "__datastore_fk_before";

/// Renders the changes as a migration. A rebuild runs with foreign-key enforcement off, which
/// SQLite only allows outside a transaction, so such a migration opens its own and checks the
/// foreign keys before it commits: it stops if a table has more rows pointing nowhere than it
/// had before (a row another tool left pointing nowhere is not the migration's). `models` is
/// the schema the changes lead to.
pub(super) fn render(changes: &[SchemaChange], models: &Schema, dialect: Dialect) -> Migration {
    let mut up = Vec::new();
    let mut down = Vec::new();
    let mut lossy = Vec::new();
    let detached = Detached::of(changes, models, dialect);
    // A foreign key to a table this migration creates after the change (a new table's, or one
    // an altered table gains), or to a key an altered table gains, added once both are there;
    // `down` drops it first.
    let mut deferred = detached.after.clone();
    // A foreign key of a dropped table to one dropped before it, dropped first (PostgreSQL
    // refuses to drop a table referenced); `down`, which creates them in the opposite order,
    // adds it back last.
    let mut let_go = Vec::new();
    // The renames come first: the others name tables and columns as they are after them.
    let renames = changes
        .iter()
        .take_while(|c| {
            matches!(
                c,
                SchemaChange::RenameTable { .. } | SchemaChange::RenameColumn { .. }
            )
        })
        .count();
    for (i, change) in changes.iter().enumerate() {
        if i == renames {
            up.extend(
                detached
                    .before
                    .iter()
                    .map(|(table, fk)| ddl::drop_foreign_key(table, &fk.column)),
            );
            down.splice(
                0..0,
                detached
                    .before
                    .iter()
                    .map(|(table, fk)| ddl::add_foreign_key(table, fk)),
            );
        }
        let created_after = names_of(&changes[i + 1..], |c| match c {
            SchemaChange::CreateTable(t) => Some(&t.name),
            _ => None,
        });
        let (u, d) = match change {
            SchemaChange::CreateTable(table) => {
                let (now, later) = ddl::before_tables(table, &created_after, dialect);
                deferred.extend(later.into_iter().map(|fk| (&table.name, fk)));
                statements(&SchemaChange::CreateTable(now.into_owned()), dialect)
            }
            // A table that stays gains a foreign key to a table created later (one side of a
            // cycle that exists already): PostgreSQL alters the whole table in one change.
            // Its foreign keys that `detached` drops and adds are not its change's.
            SchemaChange::RebuildTable { old, new } if !dialect.rebuilds_tables() => {
                let (now, later) = ddl::before_tables(new, &created_after, dialect);
                deferred.extend(later.into_iter().map(|fk| (&new.name, fk)));
                statements(
                    &SchemaChange::RebuildTable {
                        old: without(old, &detached.before),
                        new: without(&now, &detached.after),
                    },
                    dialect,
                )
            }
            SchemaChange::DropTable(table) => {
                let dropped_before = names_of(&changes[..i], |c| match c {
                    SchemaChange::DropTable(t) => Some(&t.name),
                    _ => None,
                });
                let (then, earlier) = ddl::before_tables(table, &dropped_before, dialect);
                let_go.extend(earlier.into_iter().map(|fk| (&table.name, fk)));
                let (u, _) = statements(change, dialect);
                let (_, d) = statements(&SchemaChange::DropTable(then.into_owned()), dialect);
                (u, d)
            }
            _ => statements(change, dialect),
        };
        let losses = change.losses();
        up.extend(losses.iter().map(|loss| format!("-- LOSSY: {loss}")));
        up.extend(u);
        down.splice(0..0, d);
        lossy.extend(losses);
    }
    for (table, fk) in deferred {
        up.push(ddl::add_foreign_key(table, fk));
        down.insert(0, ddl::drop_foreign_key(table, &fk.column));
    }
    for (table, fk) in let_go {
        up.insert(0, ddl::drop_foreign_key(table, &fk.column));
        down.push(ddl::add_foreign_key(table, fk));
    }
    let missing_defaults = changes
        .iter()
        .flat_map(SchemaChange::missing_defaults)
        .collect();
    let outside_transaction = dialect.rebuilds_tables()
        && changes
            .iter()
            .any(|c| matches!(c, SchemaChange::RebuildTable { .. }));
    let wrap = |statements: Vec<String>, drops: Vec<&Table>| {
        let body = statements.join("\n");
        if !outside_transaction && dialect.rebuilds_tables() && drops_need_deferred_keys(&drops) {
            format!(
                "-- Drops tables whose rows reference each other: SQLite first deletes a \
                 dropped table's\n-- rows, which rows not deleted yet still reference; the \
                 foreign keys are checked\n-- at the commit.\n\
                 PRAGMA defer_foreign_keys = ON;\n{body}\n"
            )
        } else if outside_transaction {
            format!(
                "-- Rebuilds a table: foreign keys are off so that dropping the old table does not\n\
                 -- cascade; they are checked before commit, each table's rows pointing nowhere\n\
                 -- counted against those it had before (another tool may have left some).\n\
                 -- SQLite drops the table's triggers with it: the store creates them again,\n\
                 -- another tool running this does not.\n\
                 PRAGMA foreign_keys = OFF;\nBEGIN IMMEDIATE;\n\
                 CREATE TEMP TABLE {FK_BEFORE} AS \
                 SELECT \"table\" AS t, count(*) AS n FROM pragma_foreign_key_check GROUP BY 1;\n\
                 {body}\n\
                 CREATE TEMP TABLE __datastore_check (foreign_key_violations INTEGER \
                 CHECK (foreign_key_violations = 0));\n\
                 INSERT INTO __datastore_check \
                 SELECT coalesce(sum(max(0, a.n - coalesce(b.n, 0))), 0) \
                 FROM (SELECT \"table\" AS t, count(*) AS n FROM pragma_foreign_key_check \
                 GROUP BY 1) AS a LEFT JOIN temp.{FK_BEFORE} AS b ON b.t = a.t;\n\
                 DROP TABLE __datastore_check;\nDROP TABLE temp.{FK_BEFORE};\n\
                 COMMIT;\nPRAGMA foreign_keys = ON;\n"
            )
        } else {
            format!("{body}\n")
        }
    };
    let dropped =
        |pick: fn(&SchemaChange) -> Option<&Table>| changes.iter().filter_map(pick).collect();
    Migration {
        changes: changes.to_vec(),
        up: wrap(
            up,
            dropped(|c| match c {
                SchemaChange::DropTable(t) => Some(t),
                _ => None,
            }),
        ),
        down: wrap(
            down,
            dropped(|c| match c {
                SchemaChange::CreateTable(t) => Some(t),
                _ => None,
            }),
        ),
        outside_transaction,
        lossy,
        missing_defaults,
    }
}

#[cfg(test)]
mod tests {
    use super::{SchemaChange, diff_renamed};
    use crate::schema::ddl::Dialect;
    use crate::schema::{Column, ColumnType, ForeignKey, OnDelete, Schema, Table};

    /// A table keyed by `id`, with `columns`, referencing `parents` by `parent_id` if asked.
    fn table(name: &'static str, columns: &[&'static str], references_parents: bool) -> Table {
        let mut all = vec![Column::new("id", ColumnType::BigInt, false)];
        all.extend(
            columns
                .iter()
                .map(|c| Column::new(c, ColumnType::BigInt, true)),
        );
        let foreign_keys = if references_parents {
            vec![ForeignKey {
                column: "parent_id".into(),
                references: "parents".into(),
                referenced_column: "id".into(),
                on_delete: OnDelete::Cascade,
                on_update_cascade: false,
            }]
        } else {
            vec![]
        };
        Table {
            name: name.into(),
            primary_key: vec!["id".into()].into(),
            columns: all.into(),
            foreign_keys: foreign_keys.into(),
            indexes: vec![].into(),
        }
    }

    fn dropped_at(changes: &[SchemaChange], name: &str) -> usize {
        changes
            .iter()
            .position(|c| matches!(c, SchemaChange::DropTable(t) if t.name == name))
            .expect("dropped")
    }

    /// A dropped table goes before the other changes (which may change what it references),
    /// unless a table that stays referenced it (that table's change drops the reference
    /// first).
    #[test]
    fn a_dropped_table_goes_first_unless_a_table_staying_references_it() {
        let old = Schema::new()
            .table(table("parents", &["a"], false))
            .table(table("children", &["parent_id"], true));
        let parent_changed = Schema::new().table(table("parents", &["a", "b"], false));
        let changes = diff_renamed(&old, &parent_changed, Dialect::Postgres);
        assert_eq!(dropped_at(&changes, "children"), 0, "{changes:?}");
        assert!(changes.len() > 1);
        let child_stays = Schema::new().table(table("children", &["parent_id"], false));
        let changes = diff_renamed(&old, &child_stays, Dialect::Postgres);
        assert_eq!(
            dropped_at(&changes, "parents"),
            changes.len() - 1,
            "{changes:?}"
        );
        assert!(changes.len() > 1);
        // A dropped table that a dropped table a staying table referenced references goes
        // last too, after it.
        let mut middle = table("middles", &["parent_id"], true);
        middle.name = "middles".into();
        let mut bottom = table("bottoms", &["middle_id"], false);
        bottom.foreign_keys = vec![ForeignKey {
            column: "middle_id".into(),
            references: "middles".into(),
            referenced_column: "id".into(),
            on_delete: OnDelete::Cascade,
            on_update_cascade: false,
        }]
        .into();
        let old = Schema::new()
            .table(table("parents", &[], false))
            .table(middle)
            .table(bottom.clone());
        bottom.foreign_keys = vec![].into();
        let changes = diff_renamed(&old, &Schema::new().table(bottom), Dialect::Postgres);
        let (middles, parents) = (
            dropped_at(&changes, "middles"),
            dropped_at(&changes, "parents"),
        );
        assert!(middles > 0 && parents == middles + 1, "{changes:?}");
    }
}
