//! What the integration tests share: the blog's models and stores to run them on.

#![allow(dead_code)]

#[path = "../../examples/blog/models.rs"]
pub mod models;

use datastore::Store;

/// A store on a fresh in-memory database, migrated like the blog's.
pub fn memory_store() -> Store {
    Store::open(
        ":memory:",
        datastore::embed_migrations!("migrations/sqlite"),
    )
    .expect("open store")
}

/// A store on a fresh database file (WAL), migrated like the blog's; the directory keeps it.
pub fn file_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("blog.db");
    let store = Store::open(
        path.display().to_string(),
        datastore::embed_migrations!("migrations/sqlite"),
    )
    .expect("open store");
    (dir, store)
}
