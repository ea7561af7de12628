//! Relations between models: how they are declared and what they mean in the database.

mod fields;

pub use fields::{HasMany, HasOne, ManyToMany};

use crate::schema::OnDelete;

/// The kind of a relation field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelationKind {
    /// `#[has_one(T)]`: one child row whose unique foreign key references this row.
    HasOne,
    /// `#[has_many(T)]`: child rows whose foreign key references this row.
    HasMany,
    /// `#[many_to_many(T, through = J)]`: rows of `T` linked through rows of the join model `J`.
    ManyToMany,
}

/// A relation field as declared on a model (its entry in [`Model::RELATIONS`](crate::Model)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relation {
    /// The field's name.
    pub field: &'static str,
    /// The kind of relation.
    pub kind: RelationKind,
    /// The related model's name.
    pub target: &'static str,
    /// The join model of a many-to-many relation.
    pub through: Option<&'static str>,
    /// The child's foreign-key field, when the parent names it (`foreign_key = author_id`).
    pub foreign_key: Option<&'static str>,
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// What deleting a parent does to a child that `belongs_to` it, decided by how the parent
/// declares the relation: the link rows of a many-to-many (`through`) restrict the delete;
/// everything else (has_many, has_one, or no inverse at all) cascades.
///
/// Evaluated at compile time by the derive, over the parent's relations.
pub const fn on_delete_for(parent_relations: &[Relation], child: &str) -> OnDelete {
    let mut i = 0;
    while i < parent_relations.len() {
        if let Some(through) = parent_relations[i].through {
            if str_eq(through, child) {
                return OnDelete::Restrict;
            }
        }
        i += 1;
    }
    OnDelete::Cascade
}

/// Whether the parent declares `has_one` of the child, which makes the child's foreign key
/// unique. Evaluated at compile time by the derive.
pub const fn is_has_one(parent_relations: &[Relation], child: &str) -> bool {
    let mut i = 0;
    while i < parent_relations.len() {
        let r = &parent_relations[i];
        if matches!(r.kind, RelationKind::HasOne) && str_eq(r.target, child) {
            return true;
        }
        i += 1;
    }
    false
}
