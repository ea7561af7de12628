//! Comparing two schemas, and rendering the difference as a migration.

use std::fmt;

use super::{Migration, Schema};
use crate::schema::ddl::{self, Dialect};
use crate::schema::{Column, Index, Table};

/// One change between the schema the migrations produce and the models.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new table, with its indexes.
    CreateTable(Table),
    /// A table whose model is gone.
    DropTable(Table),
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
    /// A change SQLite cannot make in place (a column's type, nullability, uniqueness, check
    /// or foreign key; the primary key): the table is rebuilt, keeping its rows.
    RebuildTable {
        /// The table as the migrations left it.
        old: Table,
        /// The table as the models describe it.
        new: Table,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CreateTable(t) => write!(f, "+ table {}", t.name),
            Self::DropTable(t) => write!(f, "- table {}", t.name),
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

/// The changes that turn `old` into `new`.
pub(super) fn diff(old: &Schema, new: &Schema, dialect: Dialect) -> Vec<Change> {
    let mut changes = Vec::new();
    // Drop children before parents.
    for table in old.tables().into_iter().rev() {
        if new.get(&table.name).is_none() {
            changes.push(Change::DropTable(table.clone()));
        }
    }
    for table in new.tables() {
        match old.get(&table.name) {
            None => changes.push(Change::CreateTable(table.clone())),
            Some(before) if before != table => changes.extend(diff_table(before, table, dialect)),
            Some(_) => {}
        }
    }
    changes
}

fn diff_table(old: &Table, new: &Table, dialect: Dialect) -> Vec<Change> {
    if !dialect.rebuilds_tables() {
        // Everything is altered in place: one change for the whole table.
        return vec![Change::RebuildTable {
            old: old.clone(),
            new: new.clone(),
        }];
    }
    let needs_rebuild = old.primary_key != new.primary_key
        || new.columns.iter().any(|c| match old.column(&c.name) {
            Some(was) => was != c || old.foreign_key(&c.name) != new.foreign_key(&c.name),
            // SQLite adds neither a UNIQUE column nor a NOT NULL foreign key in place.
            None => c.unique || (new.foreign_key(&c.name).is_some() && !c.nullable),
        })
        || old.columns.iter().any(|c| {
            new.column(&c.name).is_none() && (c.unique || old.foreign_key(&c.name).is_some())
        });
    if needs_rebuild {
        return vec![Change::RebuildTable {
            old: old.clone(),
            new: new.clone(),
        }];
    }

    let mut changes = Vec::new();
    let (old_indexes, new_indexes) = (old.all_indexes(), new.all_indexes());
    // Indexes go before their columns do.
    for index in old_indexes.iter().filter(|i| !new_indexes.contains(i)) {
        changes.push(Change::DropIndex {
            table: old.name.to_string(),
            index: index.clone(),
        });
    }
    for column in old.columns.iter().filter(|c| new.column(&c.name).is_none()) {
        changes.push(Change::DropColumn {
            table: old.clone(),
            column: column.clone(),
        });
    }
    for column in new.columns.iter().filter(|c| old.column(&c.name).is_none()) {
        changes.push(Change::AddColumn {
            table: new.clone(),
            column: column.clone(),
        });
    }
    for index in new_indexes.iter().filter(|i| !old_indexes.contains(i)) {
        changes.push(Change::CreateIndex {
            table: new.name.to_string(),
            index: index.clone(),
        });
    }
    changes
}

/// The SQL of each change, and of its undoing.
fn statements(change: &Change, dialect: Dialect) -> (Vec<String>, Vec<String>) {
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
        Change::CreateTable(t) => (create(t), vec![ddl::drop_table(&t.name, dialect)]),
        Change::DropTable(t) => (vec![ddl::drop_table(&t.name, dialect)], create(t)),
        Change::AddColumn { table, column } => (
            vec![ddl::add_column(table, column, dialect)],
            vec![ddl::drop_column(&table.name, &column.name, dialect)],
        ),
        Change::DropColumn { table, column } => (
            vec![ddl::drop_column(&table.name, &column.name, dialect)],
            vec![ddl::add_column(table, column, dialect)],
        ),
        Change::CreateIndex { table, index } => (
            vec![ddl::create_index(table, index, dialect)],
            vec![ddl::drop_index(index, dialect)],
        ),
        Change::DropIndex { table, index } => (
            vec![ddl::drop_index(index, dialect)],
            vec![ddl::create_index(table, index, dialect)],
        ),
        Change::RebuildTable { old, new } if !dialect.rebuilds_tables() => (
            ddl::alter_table(old, new, dialect),
            ddl::alter_table(new, old, dialect),
        ),
        Change::RebuildTable { old, new } => (
            ddl::rebuild_table(old, new, dialect),
            ddl::rebuild_table(new, old, dialect),
        ),
    }
}

/// Renders the changes as a migration. A rebuild runs with foreign-key enforcement off, which
/// SQLite only allows outside a transaction, so such a migration opens its own and checks the
/// foreign keys before it commits.
pub(super) fn render(changes: &[Change], dialect: Dialect) -> Migration {
    let mut up = Vec::new();
    let mut down = Vec::new();
    for change in changes {
        let (u, d) = statements(change, dialect);
        up.extend(u);
        down.splice(0..0, d);
    }
    let outside_transaction = dialect.rebuilds_tables()
        && changes
            .iter()
            .any(|c| matches!(c, Change::RebuildTable { .. }));
    let wrap = |statements: Vec<String>| {
        let body = statements.join("\n");
        if outside_transaction {
            format!(
                "-- Rebuilds a table: foreign keys are off so that dropping the old table does not\n\
                 -- cascade; they are checked before commit.\n\
                 PRAGMA foreign_keys = OFF;\nBEGIN IMMEDIATE;\n{body}\n\
                 CREATE TEMP TABLE __datastore_check (foreign_key_violations INTEGER \
                 CHECK (foreign_key_violations = 0));\n\
                 INSERT INTO __datastore_check SELECT count(*) FROM pragma_foreign_key_check;\n\
                 DROP TABLE __datastore_check;\n\
                 COMMIT;\nPRAGMA foreign_keys = ON;\n"
            )
        } else {
            format!("{body}\n")
        }
    };
    Migration {
        changes: changes.to_vec(),
        up: wrap(up),
        down: wrap(down),
        outside_transaction,
    }
}
