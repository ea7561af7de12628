//! `save_graph`'s steps for each loaded relation field, written once for every relation: the
//! derive's `save_graph` calls these, one per field, inside one transaction.

use diesel::connection::Connection;

use super::load::link;
use super::{BelongsTo, ChildOf};
use crate::Result;
use crate::model::Model;
use crate::persist::Persist;

/// Saves a parent's loaded children (a `has_many`'s list, a `has_one`'s option), each pointed at the parent and saved with its own graph;
/// returns them as stored.
pub fn save_children<P, Ch, const FK: u64, C>(
    conn: &mut C,
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
            child.save_graph(conn)
        })
        .collect()
}

/// Saves the rows of a loaded many-to-many field, each with its own graph, and links each to
/// the parent unless a link exists; returns them as stored.
pub fn save_linked<P, J, T, const FK_P: u64, const FK_T: u64, C>(
    conn: &mut C,
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
            let other = other.save_graph(conn)?;
            link::<P, J, T, FK_P, FK_T, C>(conn, &parent, &other.key())?;
            Ok(other)
        })
        .collect()
}
