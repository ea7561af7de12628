//! The blog's posts and comments keyed by integers the database assigns (`#[primary_key] pub
//! id: i64`): the same columns as the blog's, so that their rows set beside the blog's show what
//! the kind of key costs. They live in a database of their own (their table names are the
//! blog's).

use datastore::prelude::*;

use crate::models::PostStatus;

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Post {
    #[primary_key]
    pub id: i64,
    pub title: String,
    pub rating: i32,
    pub status: PostStatus,
    pub body: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[has_many(Comment)]
    pub comments: HasMany<Comment>,
}

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Comment {
    #[primary_key]
    pub id: i64,
    pub content: Option<String>,
    #[belongs_to(Post)]
    pub post_id: i64,
    pub created_at: Timestamp,
}

pub fn schema() -> Schema {
    Schema::new().model::<Post>().model::<Comment>()
}

/// The `i`th post of a seed or an insert: the blog's, without a key (`0`: the database assigns
/// one).
pub fn post(i: usize) -> Post {
    let post = crate::db::post(i);
    Post {
        title: post.title,
        rating: post.rating,
        body: post.body,
        ..Post::default()
    }
}
