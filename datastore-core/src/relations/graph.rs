//! `save_graph`'s steps for each loaded relation field, written once for every relation: the
//! derive's `save_graph` calls these, one per field, inside one transaction.
//!
//! A graph can reach one row more than once: loaded both ways, a user's posts hold copies of
//! their editors, the user among them, copied before the caller changed it. Each row is saved
//! once a graph, as first reached (the root first, then its relation fields in order, each
//! row's own before the rows after it): a later copy of a row already saved is not saved
//! again, nor its relations, and is answered with the row as stored. So a stale copy deep in
//! the graph never undoes the caller's changes to the row they passed.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};

use diesel::connection::Connection;

use super::load::link;
use super::{BelongsTo, ChildOf};
use crate::__private::SaveGraph;
use crate::error::Error;
use crate::model::Model;
use crate::persist::Persist;
use crate::{KeyValue, Result};

/// The rows one `save_graph` saved so far, by model and key.
#[derive(Default)]
pub struct Saved(HashMap<TypeId, Box<dyn Any>>);

impl Saved {
    /// The keys of `M`'s rows saved so far.
    fn keys<M: Model>(&mut self) -> &mut HashSet<M::Key> {
        self.0
            .entry(TypeId::of::<M>())
            .or_insert_with(|| Box::new(HashSet::<M::Key>::new()))
            .downcast_mut()
            .expect("the set under a model's type holds its keys")
    }
}

/// Saves `row` with its graph, unless the graph saved it already: then it is answered with the
/// row as stored (see the module's doc). What [`Persist::save_graph`] and
/// [`Persist::save_graph_within`] run.
pub(crate) fn save_once<M, C>(row: M, conn: &mut C, saved: &mut Saved) -> Result<M>
where
    M: SaveGraph<C> + Persist<C>,
    C: Connection,
{
    if !row.has_unassigned_key() {
        let key = row.key();
        if saved.keys::<M>().contains(&key) {
            return M::find(conn, &key)?
                .ok_or_else(|| Error::not_found(M::TABLE_NAME, key.describe()));
        }
        // Before its relations: a copy of it among them is then found saved.
        saved.keys::<M>().insert(key);
    }
    let stored = <M as SaveGraph<C>>::save_graph(row, conn, saved)?;
    saved.keys::<M>().insert(stored.key());
    Ok(stored)
}

/// Saves a parent's loaded children (a `has_many`'s list, a `has_one`'s option), each pointed
/// at the parent and saved with its own graph; returns them as stored.
pub fn save_children<P, Ch, const FK: u64, C>(
    conn: &mut C,
    saved: &mut Saved,
    parent: P::Key,
    children: impl IntoIterator<Item = Ch>,
) -> Result<Vec<Ch>>
where
    P: Model,
    Ch: BelongsTo<P, FK> + Persist<C>,
    C: Connection,
{
    children
        .into_iter()
        .map(|mut child| {
            child.set_parent_key(parent.clone());
            child.save_graph_within(conn, saved)
        })
        .collect()
}

/// Saves the rows of a loaded many-to-many field, each with its own graph, and links each to
/// the parent unless a link exists; returns them as stored.
pub fn save_linked<P, J, T, const FK_P: u64, const FK_T: u64, C>(
    conn: &mut C,
    saved: &mut Saved,
    parent: P::Key,
    others: Vec<T>,
) -> Result<Vec<T>>
where
    P: Model,
    T: Persist<C>,
    J: ChildOf<P, FK_P, C> + ChildOf<T, FK_T, C> + Default,
    C: Connection,
{
    others
        .into_iter()
        .map(|other| {
            let other = other.save_graph_within(conn, saved)?;
            link::<P, J, T, FK_P, FK_T, C>(conn, &parent, &other.key())?;
            Ok(other)
        })
        .collect()
}
