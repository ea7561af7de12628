//! Loading relations: lazily for one row, or eagerly for many rows at once with one statement
//! per relation level (per [`CHUNK`] parents), whatever the number of parents.
//!
//! The derive generates a typed method per relation field (`post.comments(conn)`,
//! `Post::load_comments(conn, &mut posts)`) that calls these.

use std::collections::{HashMap, HashSet};

use diesel::connection::Connection;

use super::{CHUNK, ChildOf, HasMany, HasOne, ManyToMany};
use crate::backend::in_transaction;
use crate::model::Model;
use crate::persist::Persist;
use crate::{ConstraintKind, Error, Key, Result};

/// The children of one parent, in key order.
pub fn children<P, Ch, const FK: u64, C>(conn: &mut C, parent: &P::Key) -> Result<Vec<Ch>>
where
    P: Model,
    Ch: ChildOf<P, FK, C>,
    C: Connection,
{
    Ch::children_of_one(conn, parent.clone())
}

/// The children of many parents, grouped by parent key: one statement per [`CHUNK`] parents.
pub fn children_by_parent<P, Ch, const FK: u64, C>(
    conn: &mut C,
    parents: &[P::Key],
) -> Result<HashMap<P::Key, Vec<Ch>>>
where
    P: Model,
    Ch: ChildOf<P, FK, C>,
    C: Connection,
{
    let mut groups: HashMap<P::Key, Vec<Ch>> = HashMap::with_capacity(parents.len());
    for chunk in distinct(parents).chunks(CHUNK) {
        for child in Ch::children_of(conn, chunk)? {
            if let Some(parent) = child.parent_key() {
                groups.entry(parent).or_default().push(child);
            }
        }
    }
    Ok(groups)
}

/// Fills a `has_many` field of every parent. Parents without children get an empty, loaded
/// list.
pub fn eager_has_many<'p, P, Ch, const FK: u64, C>(
    conn: &mut C,
    parents: impl IntoIterator<Item = &'p mut P>,
    field: fn(&mut P) -> &mut HasMany<Ch>,
) -> Result<()>
where
    P: Model,
    Ch: ChildOf<P, FK, C> + Clone,
    C: Connection,
{
    fill(
        parents,
        |ids| children_by_parent::<P, Ch, FK, C>(conn, ids),
        |parent, children| *field(parent) = HasMany::loaded(children),
    )
}

/// Fills a self-referencing `has_many` field (a reply's replies) of every row given, then of
/// their children, level after level, until a level has none: one statement per level (per
/// [`CHUNK`] rows), so a tree of depth `d` takes `d + 1`.
///
/// Rows whose parent keys form a cycle (a reply that answers itself, or an answer to its own
/// answer: the database accepts both) would make the tree endless: a row met again below
/// itself is left with its field unloaded.
pub fn eager_has_many_tree<'p, P, const FK: u64, C>(
    conn: &mut C,
    roots: impl IntoIterator<Item = &'p mut P>,
    field: fn(&mut P) -> &mut HasMany<P>,
) -> Result<()>
where
    P: ChildOf<P, FK, C> + Clone,
    C: Connection,
{
    // Every row expanded so far: its key, and where its parent is in here.
    let mut expanded: Vec<(P::Key, Option<usize>)> = Vec::new();
    let mut level: Vec<(&'p mut P, Option<usize>)> =
        roots.into_iter().map(|row| (row, None)).collect();
    while !level.is_empty() {
        level.retain(|(row, parent)| {
            let key = row.key();
            std::iter::successors(*parent, |&at| expanded[at].1).all(|at| expanded[at].0 != key)
        });
        let first = expanded.len();
        expanded.extend(level.iter().map(|(row, parent)| (row.key(), *parent)));
        eager_has_many::<P, P, FK, C>(conn, level.iter_mut().map(|(row, _)| &mut **row), field)?;
        level = level
            .into_iter()
            .enumerate()
            .flat_map(|(i, (row, _))| {
                field(row).get_mut().map(|children| {
                    children
                        .iter_mut()
                        .map(move |child| (child, Some(first + i)))
                })
            })
            .flatten()
            .collect();
    }
    Ok(())
}

/// Fills a `has_one` field of every parent (`None` where there is no child).
pub fn eager_has_one<'p, P, Ch, const FK: u64, C>(
    conn: &mut C,
    parents: impl IntoIterator<Item = &'p mut P>,
    field: fn(&mut P) -> &mut HasOne<Ch>,
) -> Result<()>
where
    P: Model,
    Ch: ChildOf<P, FK, C> + Clone,
    C: Connection,
{
    fill(
        parents,
        |ids| children_by_parent::<P, Ch, FK, C>(conn, ids),
        |parent, children| *field(parent) = HasOne::loaded(children.into_iter().next()),
    )
}

/// The rows linked to one row through a join model, in the join rows' key (link) order.
pub fn linked<P, J, T, const FK_P: u64, const FK_T: u64, C>(
    conn: &mut C,
    parent: &P::Key,
) -> Result<Vec<T>>
where
    P: Model,
    T: Persist<C> + Clone,
    J: ChildOf<P, FK_P, C> + ChildOf<T, FK_T, C>,
    C: Connection,
{
    let mut by_parent =
        linked_by_parent::<P, J, T, FK_P, FK_T, C>(conn, std::slice::from_ref(parent))?;
    Ok(by_parent.remove(parent).unwrap_or_default())
}

/// The rows linked to many rows through a join model: two statements (join rows, then the
/// linked rows) per [`CHUNK`] keys.
pub fn linked_by_parent<P, J, T, const FK_P: u64, const FK_T: u64, C>(
    conn: &mut C,
    parents: &[P::Key],
) -> Result<HashMap<P::Key, Vec<T>>>
where
    P: Model,
    T: Persist<C> + Clone,
    J: ChildOf<P, FK_P, C> + ChildOf<T, FK_T, C>,
    C: Connection,
{
    let links = children_by_parent::<P, J, FK_P, C>(conn, parents)?;
    let linked_keys: Vec<T::Key> = links
        .values()
        .flatten()
        .filter_map(<J as super::BelongsTo<T, FK_T>>::parent_key)
        .collect();
    // Each linked row once, however many parents link to it.
    let target_keys = distinct(&linked_keys);
    let targets: HashMap<T::Key, T> = T::find_many(conn, &target_keys)?
        .into_iter()
        .map(|t| (t.key(), t))
        .collect();
    Ok(links
        .into_iter()
        .map(|(parent, links)| {
            let linked = links
                .iter()
                .filter_map(<J as super::BelongsTo<T, FK_T>>::parent_key)
                .filter_map(|key| targets.get(&key).cloned())
                .collect();
            (parent, linked)
        })
        .collect())
}

/// Fills a `many_to_many` field of every parent.
pub fn eager_many_to_many<'p, P, J, T, const FK_P: u64, const FK_T: u64, C>(
    conn: &mut C,
    parents: impl IntoIterator<Item = &'p mut P>,
    field: fn(&mut P) -> &mut ManyToMany<T>,
) -> Result<()>
where
    P: Model,
    T: Persist<C> + Clone,
    J: ChildOf<P, FK_P, C> + ChildOf<T, FK_T, C>,
    C: Connection,
{
    fill(
        parents,
        |ids| linked_by_parent::<P, J, T, FK_P, FK_T, C>(conn, ids),
        |parent, linked| *field(parent) = ManyToMany::loaded(linked),
    )
}

/// Loads the related rows of every parent at once and hands each parent its group (a parent
/// listed twice gets a copy).
fn fill<'p, P: Model + 'p, T: Clone>(
    parents: impl IntoIterator<Item = &'p mut P>,
    load: impl FnOnce(&[P::Key]) -> Result<HashMap<P::Key, Vec<T>>>,
    mut assign: impl FnMut(&mut P, Vec<T>),
) -> Result<()> {
    let parents: Vec<&mut P> = parents.into_iter().collect();
    let keys: Vec<P::Key> = parents.iter().map(|p| p.key()).collect();
    let mut groups = load(&keys)?;
    let shared = has_duplicates(&keys);
    for (parent, key) in parents.into_iter().zip(&keys) {
        let group = take(&mut groups, key, shared);
        assign(parent, group);
    }
    Ok(())
}

/// Links two rows: the join row linking them, saved if there was none (linking twice keeps
/// one link, and so do two connections linking the same pair at once: the pair is unique in
/// the database, and the one whose insert loses to the other's returns that row).
pub fn link<P, J, T, const FK_P: u64, const FK_T: u64, C>(
    conn: &mut C,
    parent: &P::Key,
    target: &T::Key,
) -> Result<J>
where
    P: Model,
    T: Model,
    J: ChildOf<P, FK_P, C> + ChildOf<T, FK_T, C> + Default,
    C: Connection,
{
    let existing = |conn: &mut C| -> Result<Option<J>> {
        let both = <J as ChildOf<P, FK_P, C>>::parent_is_and(
            parent.clone(),
            <J as ChildOf<T, FK_T, C>>::parent_is(target.clone()),
        );
        Ok(J::load_where(conn, both)?.into_iter().next())
    };
    if let Some(existing) = existing(conn)? {
        return Ok(existing);
    }
    let mut join = J::default();
    <J as super::BelongsTo<P, FK_P>>::set_parent_key(&mut join, parent.clone());
    <J as super::BelongsTo<T, FK_T>>::set_parent_key(&mut join, target.clone());
    // Inserted, not saved: an upsert by the join row's key would take over another link's
    // row if that key is not fresh. Inside a transaction, in a savepoint: losing the race
    // must leave it usable.
    let saved = if in_transaction(conn) {
        crate::backend::transaction(conn, |conn| join.insert(conn))
    } else {
        join.insert(conn)
    };
    match saved {
        Err(Error::Constraint(violation)) if violation.kind == ConstraintKind::Unique => {
            existing(conn)?.ok_or(Error::Constraint(violation))
        }
        saved => saved,
    }
}

/// Unlinks two rows: deletes the join rows pointing at both; returns how many.
pub fn unlink<P, J, T, const FK_P: u64, const FK_T: u64, C>(
    conn: &mut C,
    parent: &P::Key,
    target: &T::Key,
) -> Result<usize>
where
    P: Model,
    T: Model,
    J: ChildOf<P, FK_P, C> + ChildOf<T, FK_T, C>,
    C: Connection,
{
    let both = <J as ChildOf<P, FK_P, C>>::parent_is_and(
        parent.clone(),
        <J as ChildOf<T, FK_T, C>>::parent_is(target.clone()),
    );
    J::delete_where(conn, both)
}

fn distinct<K: Key>(keys: &[K]) -> Vec<K> {
    let mut seen = HashSet::with_capacity(keys.len());
    keys.iter()
        .filter(|key| seen.insert(*key))
        .cloned()
        .collect()
}

fn has_duplicates<K: Key>(keys: &[K]) -> bool {
    let mut seen = HashSet::with_capacity(keys.len());
    !keys.iter().all(|key| seen.insert(key))
}

/// A parent's group: moved out, unless the same parent appears twice in the list.
fn take<K: Key, T: Clone>(groups: &mut HashMap<K, Vec<T>>, key: &K, shared: bool) -> Vec<T> {
    if shared {
        groups.get(key).cloned().unwrap_or_default()
    } else {
        groups.remove(key).unwrap_or_default()
    }
}
