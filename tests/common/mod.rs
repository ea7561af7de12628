//! What the integration tests share: the blog's models and stores to run them on.

#![allow(dead_code)]

#[path = "../../examples/blog/models.rs"]
pub mod models;

use datastore::Store;
use models::{Comment, Post, User};

/// A store on a fresh in-memory database, migrated like the blog's.
pub fn memory_store() -> Store {
    Store::open(":memory:", datastore::embed_migrations!()).expect("open store")
}

/// A store on a fresh database file (WAL), migrated like the blog's; the directory keeps it.
pub fn file_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("blog.db");
    let store = Store::open(path.display().to_string(), datastore::embed_migrations!())
        .expect("open store");
    (dir, store)
}

/// A post to save.
pub fn post(title: &str, rating: i32) -> Post {
    Post {
        title: title.into(),
        rating,
        ..Post::default()
    }
}

/// A comment to save for a post.
pub fn comment(post: &Post, text: &str) -> Comment {
    Comment {
        content: Some(text.into()),
        ..Comment::default()
    }
    .with_post(post)
}

/// A user to save.
pub fn user(name: &str) -> User {
    User {
        username: name.into(),
        ..User::default()
    }
}
