//! The blog: the seed document's walk through saving, querying and deleting related models,
//! on an embedded SQLite file.
//!
//! Run it with `cargo run --example blog`.

mod models;

use datastore::prelude::*;
use models::{posts, Post, PostStatus};

fn main() -> datastore::Result<()> {
    let path = std::env::temp_dir().join("datastore-blog.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = Store::open(
        path.display().to_string(),
        datastore::embed_migrations!("migrations/sqlite"),
    )?;
    println!("opened {} (migrations run)", path.display());

    let post = store.save(Post {
        title: "My Post".into(),
        rating: 10,
        status: PostStatus::Active,
        ..Post::default()
    })?;
    store.save(Post {
        title: "Another post".into(),
        rating: 3,
        ..Post::default()
    })?;
    println!("saved {}", serde_json::to_string_pretty(&post).unwrap());

    let again: Option<Post> = store.find::<Post>(&post.id)?;
    println!("found again: {:?}", again.map(|p| p.title));

    let top: Vec<Post> = Post::query()
        .filter(posts::rating.gt(4))
        .order(posts::rating.desc())
        .limit(10)
        .load(&mut store.conn()?)?;
    println!(
        "posts rated above 4: {:?}",
        top.iter().map(|p| &p.title).collect::<Vec<_>>()
    );

    store.delete(&post)?;
    println!("deleted; {} post(s) left", store.count::<Post>()?);
    Ok(())
}
