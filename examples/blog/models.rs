//! The blog's models: the schema of the seed document, in Rust.
//!
//! `migrations/sqlite` is generated from [`schema`]; `tests/migrations.rs` fails when the two
//! drift apart.

use datastore::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(DbEnum, Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PostStatus {
    #[default]
    Active,
    Inactive,
}

#[derive(Model, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Post {
    #[primary_key]
    pub id: Id,
    pub title: String,
    pub rating: i32,
    pub status: PostStatus,
    pub body: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[has_many(Comment)]
    pub comments: HasMany<Comment>,
    #[many_to_many(User, through = PostEditor)]
    pub editors: ManyToMany<User>,
    #[has_many(Reaction)]
    pub reactions: HasMany<Reaction>,
}

/// A reader's reaction to a post, keyed by an integer the database assigns.
#[derive(Model, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Reaction {
    #[primary_key]
    pub id: i64,
    #[belongs_to(Post)]
    pub post_id: Id,
    pub emoji: String,
}

#[derive(Model, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Comment {
    #[primary_key]
    pub id: Id,
    pub content: Option<String>,
    #[belongs_to(Post)]
    pub post_id: Id,
    pub created_at: Timestamp,
    /// The comment this one replies to: a thread of comments.
    #[belongs_to(Comment)]
    pub parent_id: Option<Id>,
    #[has_many(Comment, foreign_key = parent_id)]
    pub replies: HasMany<Comment>,
    /// Who wrote it: a comment outlives its author's account.
    #[belongs_to(User, on_delete = set_null)]
    pub author_id: Option<Id>,
}

/// The join model of posts and their editors.
#[derive(Model, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PostEditor {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Post)]
    pub post_id: Id,
    #[belongs_to(User)]
    pub editor_id: Id,
}

#[derive(Model, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct User {
    #[primary_key]
    pub id: Id,
    #[unique]
    pub username: String,
    #[has_one(Profile)]
    pub profile: HasOne<Profile>,
    #[has_many(Comment, foreign_key = author_id)]
    pub comments: HasMany<Comment>,
    #[many_to_many(Post, through = PostEditor)]
    pub posts: ManyToMany<Post>,
}

#[derive(Model, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Profile {
    #[primary_key]
    pub id: Id,
    #[belongs_to(User)]
    pub user_id: Id,
    pub bio: Option<String>,
    pub avatar: Option<Vec<u8>>,
    pub settings: Json<Settings>,
    pub extra: serde_json::Value,
    pub verified: bool,
    pub karma: i64,
    pub score: f64,
    pub level: i16,
    pub ratio: f32,
}

/// A typed JSON document stored in one column.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Settings {
    pub theme: String,
    pub notifications: bool,
}

/// Every model of the blog: what its migrations are generated from (by `tests/migrations.rs`).
#[allow(dead_code)]
pub fn schema() -> Schema {
    Schema::new()
        .model::<Post>()
        .model::<Comment>()
        .model::<User>()
        .model::<PostEditor>()
        .model::<Profile>()
        .model::<Reaction>()
}
