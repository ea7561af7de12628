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
use crate::schema::ddl::{Dialect, quote_ident};
use crate::schema::{ForeignKey, ModelDeclaration, OnDelete};
use crate::{Error, Key, KeyValue, NativeConnection};

/// How many tables deep a cascade is followed (a table may come back, as a self-referencing
/// one does, level after level), and how many paths down to a refusing foreign key are
/// counted at most. A refusal further down is reported as the database's own error.
const MAX_DEPTH: usize = 16;
const MAX_PATHS: usize = 64;

/// Whether `error` is a write refused by a foreign key.
pub(crate) fn refused(error: &Error) -> bool {
    matches!(error, Error::Constraint(c) if c.kind == ConstraintKind::ForeignKey)
}

/// The error of a delete of `roots` (keys of `deleted`'s table) that failed with `error`:
/// [`Error::DeleteRestricted`] naming the first refused row (in key order), the table whose
/// rows refuse it and how many of them link to it or to the rows its delete would cascade to;
/// `error` itself when it is not a foreign key's refusal or the links cannot be found (the
/// catalog unreadable, or the links gone meanwhile).
///
/// The catalog is read in a statement scope of its own, so that a failure here never aborts
/// an enclosing PostgreSQL transaction.
pub(crate) fn explain<C: NativeConnection, K: Key>(
    conn: &mut C,
    deleted: &ModelDeclaration,
    error: Error,
    mut roots: Vec<K>,
) -> Error {
    // Rows keyed by several columns: no single-column foreign key references them.
    if !refused(&error) || deleted.primary_key().len() != 1 {
        return error;
    }
    roots.sort_unstable();
    roots.dedup();
    match conn.scoped(|conn| first_refused(conn, deleted, &roots)) {
        Ok(Some(refusal)) => Error::DeleteRestricted {
            table: deleted.table_name().to_owned(),
            key: refusal.key,
            join_table: refusal.join_table,
            via: refusal.via,
            count: refusal.links,
        },
        Ok(None) | Err(_) => error,
    }
}

/// The first refused root, and what refuses it.
struct Refusal {
    key: String,
    join_table: String,
    via: Option<String>,
    links: usize,
}

/// The first root with links, the table whose rows link, and how many.
fn first_refused<C: NativeConnection, K: Key>(
    conn: &mut C,
    deleted: &ModelDeclaration,
    roots: &[K],
) -> diesel::QueryResult<Option<Refusal>> {
    let foreign_keys = conn.catalog_foreign_keys()?;
    let paths = refusing_paths(
        &foreign_keys,
        deleted.table_name(),
        deleted.primary_key()[0],
    );
    let dialect = conn.dialect();
    // Few enough binds per statement for every backend.
    for chunk in roots.chunks(crate::backend::CHUNK) {
        let bound: Vec<&dyn KeyValue> = chunk.iter().map(|root| root as &dyn KeyValue).collect();
        // Per root (by its position, in key order), the first refusal found (paths go from
        // the shortest).
        let mut found: BTreeMap<i64, Refusal> = BTreeMap::new();
        for path in &paths {
            let sql = path.count_sql(chunk.len(), dialect);
            for (root, links) in conn.count_by_root(&sql, &bound)? {
                let Some(key) = usize::try_from(root).ok().and_then(|i| chunk.get(i)) else {
                    continue;
                };
                if let Ok(links @ 1..) = usize::try_from(links) {
                    found.entry(root).or_insert_with(|| Refusal {
                        key: key.describe(),
                        join_table: path.refusing_table().to_owned(),
                        via: path.via().map(str::to_owned),
                        links,
                    });
                }
            }
        }
        if let Some((_, refusal)) = found.into_iter().next() {
            return Ok(Some(refusal));
        }
    }
    Ok(None)
}

/// A chain of foreign keys from the deleted table down to one that refuses: each step's table
/// references the one before it, every step but the last cascades.
#[derive(Debug, Clone)]
struct Path<'a> {
    steps: Vec<(&'a str, &'a ForeignKey)>,
    /// The refusing table's other foreign keys to the same rows as the last step's, where it
    /// is the only step (a join model linking a model with itself has two): a row refuses
    /// once, whichever of them reach it (a member following itself is one follow). Below a
    /// cascade each key is a path of its own, counted apart.
    also: Vec<&'a ForeignKey>,
}

impl Path<'_> {
    /// The table whose rows refuse.
    fn refusing_table(&self) -> &str {
        self.steps
            .last()
            .map(|(table, _)| *table)
            .unwrap_or_default()
    }

    /// The table whose rows the refusing ones reference, when it is not the deleted table
    /// itself: the rows the delete would cascade to.
    fn via(&self) -> Option<&str> {
        let n = self.steps.len();
        (n > 1).then(|| self.steps[n - 2].0)
    }

    /// `SELECT root, COUNT(*)` of the refusing table's rows, joined up the path to the
    /// deleted table's keys, which are the statement's `roots` parameters; `root` is a key's
    /// position among them.
    fn count_sql(&self, roots: usize, dialect: Dialect) -> String {
        let alias = |i: usize| format!("t{i}");
        let last = self.steps.len() - 1;
        // Step `i`'s rows referencing the rows `referenced` names: by its foreign key, or, the
        // refusing step, by any of its keys to them.
        let refers = |i: usize, referenced: &dyn Fn(&ForeignKey) -> String| {
            let also = if i == last { &self.also[..] } else { &[] };
            let conditions: Vec<String> = std::iter::once(self.steps[i].1)
                .chain(also.iter().copied())
                .map(|fk| {
                    let column = quote_ident(&fk.column);
                    format!("{}.{column} = {}", alias(i), referenced(fk))
                })
                .collect();
            match conditions.as_slice() {
                [one] => one.clone(),
                several => format!("({})", several.join(" OR ")),
            }
        };
        let mut from = format!("{} AS {}", quote_ident(self.steps[last].0), alias(last));
        for i in (0..last).rev() {
            let (table, _) = self.steps[i];
            let parent =
                |fk: &ForeignKey| format!("{}.{}", alias(i), quote_ident(&fk.referenced_column));
            from.push_str(&format!(
                " JOIN {} AS {} ON {}",
                quote_ident(table),
                alias(i),
                refers(i + 1, &parent),
            ));
        }
        let to_roots = refers(0, &|_| "roots.key".to_owned());
        let roots: Vec<String> = (0..roots)
            .map(|i| match dialect {
                Dialect::Sqlite => format!("(?, {i})"),
                Dialect::Postgres => format!("(${}, {i})", i + 1),
            })
            .collect();
        format!(
            "WITH roots (key, position) AS (VALUES {}) \
             SELECT CAST(roots.position AS BIGINT) AS root, COUNT(*) AS links \
             FROM {from} JOIN roots ON {to_roots} GROUP BY roots.position",
            roots.join(", ")
        )
    }
}

/// The paths from `table` (its rows found by `key`) to a foreign key that refuses a delete,
/// following the cascades, shortest first; at most [`MAX_PATHS`], none deeper than
/// [`MAX_DEPTH`]. Foreign keys of one table to the same rows, reached by the same steps, end
/// one path.
fn refusing_paths<'a>(
    foreign_keys: &'a [(String, ForeignKey)],
    table: &str,
    key: &str,
) -> Vec<Path<'a>> {
    let mut paths = Vec::new();
    // Breadth first: each level's paths are one step longer than the last's.
    let mut level = vec![Path {
        steps: Vec::new(),
        also: Vec::new(),
    }];
    while !level.is_empty() && paths.len() < MAX_PATHS {
        let mut next = Vec::new();
        for path in &level {
            let (parent, parent_key) = match path.steps.last() {
                None => (table, Some(key)),
                Some((child, _)) => (*child, None),
            };
            for (child, fk) in foreign_keys {
                if fk.references != parent
                    || parent_key.is_some_and(|key| fk.referenced_column != key)
                {
                    continue;
                }
                let mut steps = path.steps.clone();
                steps.push((child.as_str(), fk));
                match fk.on_delete {
                    // Merged only where the refusing table references the deleted rows
                    // themselves: joined by any of its keys to the rows of a cascade's table
                    // instead, a row whose keys reach two of them would be counted twice.
                    OnDelete::Restrict => match paths.iter_mut().find(|other: &&mut Path| {
                        steps.len() == 1
                            && other.steps.len() == 1
                            && other.steps[..steps.len() - 1] == path.steps[..]
                            && other.refusing_table() == child
                            && other.steps[steps.len() - 1].1.referenced_column
                                == fk.referenced_column
                    }) {
                        Some(same_rows) => same_rows.also.push(fk),
                        None => paths.push(Path {
                            steps,
                            also: Vec::new(),
                        }),
                    },
                    OnDelete::Cascade if steps.len() < MAX_DEPTH => next.push(Path {
                        steps,
                        also: Vec::new(),
                    }),
                    OnDelete::Cascade | OnDelete::SetNull => {}
                }
            }
        }
        level = next;
    }
    paths.truncate(MAX_PATHS);
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
            on_update_cascade: false,
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
        assert_eq!(paths[0].refusing_table(), "task_tags");
        assert_eq!(paths[0].via(), Some("tasks"));
        assert_eq!(
            paths[0].count_sql(2, Dialect::Postgres),
            r#"WITH roots (key, position) AS (VALUES ($1, 0), ($2, 1)) SELECT CAST(roots.position AS BIGINT) AS root, COUNT(*) AS links FROM "task_tags" AS t1 JOIN "tasks" AS t0 ON t1."task_id" = t0."id" JOIN roots ON t0."project_id" = roots.key GROUP BY roots.position"#
        );
        assert_eq!(refusing_paths(&keys, "tags", "id")[0].via(), None);
        assert!(refusing_paths(&keys, "notes", "id").is_empty());
    }

    #[test]
    fn a_tables_keys_to_the_deleted_rows_end_one_path_and_below_a_cascade_one_each() {
        let keys = vec![
            (
                "follows".to_owned(),
                fk("follower_id", "members", OnDelete::Restrict),
            ),
            (
                "follows".to_owned(),
                fk("followee_id", "members", OnDelete::Restrict),
            ),
            (
                "topics".to_owned(),
                fk("author_id", "members", OnDelete::Cascade),
            ),
            (
                "pins".to_owned(),
                fk("topic_id", "topics", OnDelete::Restrict),
            ),
            (
                "pins".to_owned(),
                fk("pinned_topic_id", "topics", OnDelete::Restrict),
            ),
        ];
        let paths = refusing_paths(&keys, "members", "id");
        // The pins below the cascade: a path for each key (joined by both, a pin of two
        // topics of one author would count twice).
        assert_eq!(paths.len(), 3);
        assert_eq!(
            paths[0].count_sql(1, Dialect::Sqlite),
            r#"WITH roots (key, position) AS (VALUES (?, 0)) SELECT CAST(roots.position AS BIGINT) AS root, COUNT(*) AS links FROM "follows" AS t0 JOIN roots ON (t0."follower_id" = roots.key OR t0."followee_id" = roots.key) GROUP BY roots.position"#
        );
        assert_eq!(paths[1].via(), Some("topics"));
        assert_eq!(
            paths[1].count_sql(1, Dialect::Sqlite),
            r#"WITH roots (key, position) AS (VALUES (?, 0)) SELECT CAST(roots.position AS BIGINT) AS root, COUNT(*) AS links FROM "pins" AS t1 JOIN "topics" AS t0 ON t1."topic_id" = t0."id" JOIN roots ON t0."author_id" = roots.key GROUP BY roots.position"#
        );
        assert!(
            paths[2]
                .count_sql(1, Dialect::Sqlite)
                .contains(r#"t1."pinned_topic_id" = t0."id""#)
        );
    }

    #[test]
    fn a_self_referencing_cascade_is_followed_level_by_level() {
        let keys = vec![
            (
                "nodes".to_owned(),
                fk("parent_id", "nodes", OnDelete::Cascade),
            ),
            (
                "labels".to_owned(),
                fk("node_id", "nodes", OnDelete::Restrict),
            ),
        ];
        let paths = refusing_paths(&keys, "nodes", "id");
        assert_eq!(paths.len(), MAX_DEPTH);
        assert_eq!(paths[0].steps.len(), 1);
        assert_eq!(paths[2].via(), Some("nodes"));
        assert_eq!(paths[MAX_DEPTH - 1].steps.len(), MAX_DEPTH);
    }
}
