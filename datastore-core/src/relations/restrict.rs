//! Explaining a delete that links refused: which join table's rows still link to the rows
//! being deleted, directly or through the children the delete would cascade to.
//!
//! The database decides (a foreign key `ON DELETE RESTRICT` refuses the whole statement, and
//! nothing is deleted); the store then reads the foreign keys from the catalog, as the
//! database applied them, and counts the links along each cascade path that ends in a refusing
//! foreign key, per row being deleted. Nothing of this runs unless a delete failed on a foreign
//! key.

use std::collections::BTreeMap;

use crate::error::ConstraintKind;
use crate::schema::ddl::{quote_ident, Dialect};
use crate::schema::{ForeignKey, ModelDeclaration, OnDelete};
use crate::{Error, Id, NativeConnection};

/// How many tables deep a cascade is followed.
const MAX_DEPTH: usize = 16;

/// Whether `error` is a write refused by a foreign key.
pub(crate) fn refused(error: &Error) -> bool {
    matches!(error, Error::Constraint(c) if c.kind == ConstraintKind::ForeignKey)
}

/// The error of a delete of `roots` (keys of `deleted`'s table) that failed with `error`:
/// [`Error::DeleteRestricted`] naming the first refused row (in key order), the join table
/// that refuses it and how many of its rows link to it; `error` itself when it is not a
/// foreign key's refusal or the links cannot be found (the catalog unreadable, or the links
/// gone meanwhile).
pub(crate) fn explain<C: NativeConnection>(
    conn: &mut C,
    deleted: &ModelDeclaration,
    error: Error,
    mut roots: Vec<Id>,
) -> Error {
    if !refused(&error) {
        return error;
    }
    roots.sort_unstable();
    roots.dedup();
    match first_refused(conn, deleted, &roots) {
        Ok(Some((key, join_table, count))) => Error::DeleteRestricted {
            table: deleted.table_name().to_owned(),
            key: key.to_string(),
            join_table,
            count,
        },
        Ok(None) | Err(_) => error,
    }
}

/// The first root with links, the join table and how many of its rows link to it.
fn first_refused<C: NativeConnection>(
    conn: &mut C,
    deleted: &ModelDeclaration,
    roots: &[Id],
) -> diesel::QueryResult<Option<(Id, String, i64)>> {
    let foreign_keys = conn.catalog_foreign_keys()?;
    let paths = refusing_paths(&foreign_keys, deleted.table_name(), deleted.primary_key());
    let dialect = conn.dialect();
    // Few enough binds per statement for every backend.
    for chunk in roots.chunks(crate::backend::CHUNK) {
        // Per root: the first refusing join table found (paths are in a fixed order) and its
        // links.
        let mut found: BTreeMap<Id, (String, i64)> = BTreeMap::new();
        for path in &paths {
            let sql = path.count_sql(chunk.len(), dialect);
            for (root, links) in conn.count_by_root(&sql, chunk)? {
                if links > 0 {
                    found
                        .entry(root)
                        .or_insert_with(|| (path.join_table().to_owned(), links));
                }
            }
        }
        if let Some((root, (join_table, links))) = found.into_iter().next() {
            return Ok(Some((root, join_table, links)));
        }
    }
    Ok(None)
}

/// A chain of foreign keys from the deleted table down to one that refuses: each step's table
/// references the one before it, every step but the last cascades.
#[derive(Debug)]
struct Path<'a> {
    steps: Vec<(&'a str, &'a ForeignKey)>,
}

impl Path<'_> {
    fn join_table(&self) -> &str {
        self.steps
            .last()
            .map(|(table, _)| *table)
            .unwrap_or_default()
    }

    /// `SELECT root, COUNT(*)` of the refusing table's rows, joined up the path to the
    /// deleted table's keys, which are the statement's `roots` parameters.
    fn count_sql(&self, roots: usize, dialect: Dialect) -> String {
        let alias = |i: usize| format!("t{i}");
        let last = self.steps.len() - 1;
        let mut from = format!("{} AS {}", quote_ident(self.steps[last].0), alias(last));
        for i in (0..last).rev() {
            let (table, _) = self.steps[i];
            let (_, below) = self.steps[i + 1];
            from.push_str(&format!(
                " JOIN {} AS {} ON {}.{} = {}.{}",
                quote_ident(table),
                alias(i),
                alias(i + 1),
                quote_ident(&below.column),
                alias(i),
                quote_ident(&below.referenced_column),
            ));
        }
        let root = format!("{}.{}", alias(0), quote_ident(&self.steps[0].1.column));
        let placeholders: Vec<String> = (1..=roots)
            .map(|i| match dialect {
                Dialect::Sqlite => "?".to_owned(),
                Dialect::Postgres => format!("${i}"),
            })
            .collect();
        format!(
            "SELECT {root} AS root, COUNT(*) AS links FROM {from} WHERE {root} IN ({}) GROUP BY {root}",
            placeholders.join(", ")
        )
    }
}

/// Every path from `table` (its rows found by `key`) to a foreign key that refuses a delete,
/// following the cascades, in a fixed order.
fn refusing_paths<'a>(
    foreign_keys: &'a [(String, ForeignKey)],
    table: &str,
    key: &str,
) -> Vec<Path<'a>> {
    let mut paths = Vec::new();
    let mut walk = vec![Path { steps: Vec::new() }];
    while let Some(path) = walk.pop() {
        let (parent, parent_key) = match path.steps.last() {
            None => (table, key),
            Some((child, _)) => (*child, ""),
        };
        if path.steps.len() == MAX_DEPTH {
            continue;
        }
        for (child, fk) in foreign_keys {
            let references_parent = fk.references == parent
                && (parent_key.is_empty() || fk.referenced_column == parent_key);
            let on_the_path = child == table || path.steps.iter().any(|(t, _)| *t == child);
            if !references_parent {
                continue;
            }
            let mut steps = path.steps.clone();
            steps.push((child.as_str(), fk));
            match fk.on_delete {
                OnDelete::Restrict => paths.push(Path { steps }),
                // A table already on the path cascades into itself: its rows are counted
                // where the path first reached it.
                OnDelete::Cascade if !on_the_path => walk.push(Path { steps }),
                OnDelete::Cascade | OnDelete::SetNull => {}
            }
        }
    }
    paths.sort_by_key(|path| path.steps.len());
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fk(column: &str, references: &str, on_delete: OnDelete) -> ForeignKey {
        ForeignKey {
            column: column.to_owned().into(),
            references: references.to_owned().into(),
            referenced_column: "id".into(),
            on_delete,
        }
    }

    #[test]
    fn paths_follow_cascades_down_to_refusing_keys() {
        let keys = vec![
            (
                "tasks".to_owned(),
                fk("project_id", "projects", OnDelete::Cascade),
            ),
            (
                "task_tags".to_owned(),
                fk("task_id", "tasks", OnDelete::Restrict),
            ),
            (
                "task_tags".to_owned(),
                fk("tag_id", "tags", OnDelete::Restrict),
            ),
            (
                "notes".to_owned(),
                fk("project_id", "projects", OnDelete::SetNull),
            ),
        ];
        let paths = refusing_paths(&keys, "projects", "id");
        assert_eq!(paths.len(), 1);
        assert_eq!(paths[0].join_table(), "task_tags");
        assert_eq!(
            paths[0].count_sql(2, Dialect::Postgres),
            r#"SELECT t0."project_id" AS root, COUNT(*) AS links FROM "task_tags" AS t1 JOIN "tasks" AS t0 ON t1."task_id" = t0."id" WHERE t0."project_id" IN ($1, $2) GROUP BY t0."project_id""#
        );
        assert!(refusing_paths(&keys, "tags", "id")[0].steps.len() == 1);
        assert!(refusing_paths(&keys, "notes", "id").is_empty());
    }
}
