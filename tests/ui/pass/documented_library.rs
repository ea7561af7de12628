//! A library that denies missing docs can derive its models: everything the derives make
//! public is documented.
#![deny(missing_docs)]

use datastore::prelude::*;

/// Whether a post shows.
#[derive(DbEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// Shown.
    #[default]
    Active,
    /// Hidden.
    Inactive,
}

/// A post.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Post {
    /// Its key.
    #[primary_key]
    pub id: Id,
    /// Its title.
    pub title: String,
    /// Whether it shows.
    pub status: Status,
    /// Its comments.
    #[has_many(Comment)]
    pub comments: HasMany<Comment>,
}

/// A comment on a post.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Comment {
    /// Its key.
    #[primary_key]
    pub id: Id,
    /// The post it is on.
    #[belongs_to(Post)]
    pub post_id: Id,
}

fn main() {}
