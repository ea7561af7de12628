//! What a live query yields: the rows, and the `belongs_to` parents loaded with them, each
//! stored once.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;

use crate::model::Model;

use super::path::ParentOf;

/// One result of a live query: its rows (a `Snapshot` derefs to `[M]`: index it, iterate it,
/// or take the rows with [`into_vec`](Self::into_vec)), with the relations loaded in them,
/// and the `belongs_to` parents it loaded ([`LiveQuery::load`](super::LiveQuery::load) with
/// `Comment::POST`, at the root or after `then`), which a row has no field to hold: ask for a
/// row's with [`parent`](Self::parent). Each parent is stored once per relation, however
/// many rows point at it.
///
/// ```
/// use datastore::prelude::*;
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Post {
///     #[primary_key]
///     pub id: Id,
///     pub title: String,
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
/// # fn main() -> datastore::Result<()> {
/// let store = Store::builder(":memory:")
///     .schema(Schema::new().model::<Post>().model::<Comment>())
///     .open()?;
/// let post = store.save(Post { title: "hello".into(), ..Post::default() })?;
/// store.save(Comment { post_id: post.id, ..Comment::default() })?;
/// let mut comments = store.live::<Comment>().load(Comment::POST).subscribe()?;
/// let snapshot = comments.recv()?;
/// let first = &snapshot[0];
/// assert_eq!(snapshot.parent(first, Comment::POST).unwrap().title, "hello");
/// let rows: Vec<Comment> = snapshot.into_vec();
/// assert_eq!(rows.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, PartialEq)]
pub struct Snapshot<M> {
    rows: Vec<M>,
    parents: Parents,
}

impl<M> Snapshot<M> {
    pub(super) fn new(rows: Vec<M>, parents: Parents) -> Self {
        Self { rows, parents }
    }

    /// The rows.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Post>().model::<Comment>())
    /// #     .open()?;
    /// store.save(Post { title: "hello".into(), ..Post::default() })?;
    /// let mut posts = store.live::<Post>().subscribe()?;
    /// let rows: Vec<Post> = posts.recv()?.into_vec();
    /// assert_eq!(rows[0].title, "hello");
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_vec(self) -> Vec<M> {
        self.rows
    }

    /// The parent `row` points at through `relation` (`Comment::POST`), as loaded with this
    /// snapshot: `None` if the live query does not load that relation, if the row's foreign
    /// key is `NULL`, or if the row was not one it loaded the relation for.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Post>().model::<Comment>())
    /// #     .open()?;
    /// let post = store.save(Post { title: "hello".into(), ..Post::default() })?;
    /// store.save(Comment { post_id: post.id, ..Comment::default() })?;
    /// let with_posts = store.live::<Comment>().load(Comment::POST).subscribe()?.recv()?;
    /// assert_eq!(with_posts.parent(&with_posts[0], Comment::POST), Some(&post));
    /// let without = store.live::<Comment>().subscribe()?.recv()?;
    /// assert_eq!(without.parent(&without[0], Comment::POST), None); // not loaded
    /// # Ok(())
    /// # }
    /// ```
    pub fn parent<C, R: ParentOf<C>>(&self, row: &C, relation: R) -> Option<&R::Parent> {
        let _ = relation;
        self.parents.of::<R, R::Parent>()?.get(&R::parent_key(row)?)
    }
}

impl<M> Deref for Snapshot<M> {
    type Target = [M];

    fn deref(&self) -> &[M] {
        &self.rows
    }
}

impl<M> AsRef<[M]> for Snapshot<M> {
    fn as_ref(&self) -> &[M] {
        &self.rows
    }
}

impl<M> From<Snapshot<M>> for Vec<M> {
    fn from(snapshot: Snapshot<M>) -> Self {
        snapshot.rows
    }
}

impl<M> IntoIterator for Snapshot<M> {
    type Item = M;
    type IntoIter = std::vec::IntoIter<M>;

    fn into_iter(self) -> Self::IntoIter {
        self.rows.into_iter()
    }
}

impl<'a, M> IntoIterator for &'a Snapshot<M> {
    type Item = &'a M;
    type IntoIter = std::slice::Iter<'a, M>;

    fn into_iter(self) -> Self::IntoIter {
        self.rows.iter()
    }
}

/// The rows alone (not the parents).
impl<M: PartialEq> PartialEq<Vec<M>> for Snapshot<M> {
    fn eq(&self, other: &Vec<M>) -> bool {
        self.rows == *other
    }
}

/// The rows alone (not the parents).
impl<M: PartialEq> PartialEq<[M]> for Snapshot<M> {
    fn eq(&self, other: &[M]) -> bool {
        self.rows == other
    }
}

/// The rows alone (not the parents).
impl<M: PartialEq> PartialEq<Snapshot<M>> for Vec<M> {
    fn eq(&self, other: &Snapshot<M>) -> bool {
        *self == other.rows
    }
}

impl<M: fmt::Debug> fmt::Debug for Snapshot<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parents.by_relation.is_empty() {
            return self.rows.fmt(f);
        }
        f.debug_struct("Snapshot")
            .field("rows", &self.rows)
            .field("parents", &self.parents)
            .finish()
    }
}

/// The loaded parents, by relation (the type of its constant), then by key.
/// Public (the steps' trait takes it) in a private module: nothing outside the crate names it.
#[derive(Clone, Default, PartialEq)]
pub struct Parents {
    by_relation: HashMap<TypeId, Box<dyn AnyParents>>,
}

impl Parents {
    /// Adds a relation's parents. A parent there already under the same key (a relation
    /// loaded on two paths) takes the relations this copy loaded that it did not.
    pub(super) fn add<R: 'static, P: Model + Clone + PartialEq + Sync>(
        &mut self,
        name: (&'static str, &'static str),
        rows: &HashMap<P::Key, P>,
    ) {
        let entry = self
            .by_relation
            .entry(TypeId::of::<R>())
            .or_insert_with(|| {
                Box::new(ParentsOf::<P> {
                    name,
                    rows: HashMap::new(),
                })
            });
        if let Some(mine) = entry.as_any_mut().downcast_mut::<ParentsOf<P>>() {
            for (key, row) in rows {
                mine.rows
                    .entry(key.clone())
                    .and_modify(|there| there.fill_loaded(row.clone()))
                    .or_insert_with(|| row.clone());
            }
        }
    }

    fn of<R: 'static, P: Model>(&self) -> Option<&HashMap<P::Key, P>> {
        self.by_relation
            .get(&TypeId::of::<R>())?
            .as_any()
            .downcast_ref::<ParentsOf<P>>()
            .map(|p| &p.rows)
    }
}

impl fmt::Debug for Parents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut relations: Vec<&dyn AnyParents> = self.by_relation.values().map(|b| &**b).collect();
        relations.sort_by_key(|p| p.name());
        let mut map = f.debug_map();
        for parents in relations {
            let (model, relation) = parents.name();
            map.entry(&format_args!("{model}.{relation}"), &parents.keys());
        }
        map.finish()
    }
}

/// One relation's parents, by key, its type erased.
trait AnyParents: Send + Sync {
    /// The model and the relation (`("Comment", "post")`).
    fn name(&self) -> (&'static str, &'static str);
    fn keys(&self) -> Vec<String>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn clone_box(&self) -> Box<dyn AnyParents>;
    fn eq_dyn(&self, other: &dyn AnyParents) -> bool;
}

struct ParentsOf<P: Model> {
    name: (&'static str, &'static str),
    rows: HashMap<P::Key, P>,
}

impl<P: Model + Clone + PartialEq + Sync> AnyParents for ParentsOf<P> {
    fn name(&self) -> (&'static str, &'static str) {
        self.name
    }

    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<&P::Key> = self.rows.keys().collect();
        keys.sort();
        keys.into_iter().map(crate::KeyValue::describe).collect()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn clone_box(&self) -> Box<dyn AnyParents> {
        Box::new(Self {
            name: self.name,
            rows: self.rows.clone(),
        })
    }

    fn eq_dyn(&self, other: &dyn AnyParents) -> bool {
        other
            .as_any()
            .downcast_ref::<Self>()
            .is_some_and(|other| other.rows == self.rows)
    }
}

impl Clone for Box<dyn AnyParents> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

impl PartialEq for dyn AnyParents {
    fn eq(&self, other: &Self) -> bool {
        self.eq_dyn(other)
    }
}
