//! The blog: the seed document's walk through saving, querying and deleting related models,
//! on an embedded SQLite file, or on a PostgreSQL server given its URL.
//!
//! Run it with `cargo run --example blog`, or
//! `cargo run --example blog -- postgres://root@127.0.0.1:5432/test` (it works in a schema
//! `datastore_blog` of its own, created afresh).

mod models;

use datastore::observe::{Observed, Snapshot};
use datastore::prelude::*;
use models::{comments, posts, Comment, Post, PostEditor, PostStatus, Reaction, User};

fn main() -> datastore::Result<()> {
    // The backend follows from the URL; everything below is the same on both.
    let store = match std::env::args().nth(1) {
        Some(server) => {
            fresh_postgres_schema(&server)?;
            Store::builder(&server)
                .postgres_schema("datastore_blog")
                .migrations(datastore::embed_migrations!())
                .open()?
        }
        None => Store::open(fresh_sqlite_file(), datastore::embed_migrations!())?,
    };
    println!("opened {} and ran its migrations\n", store.url());
    let mut conn = store.conn()?;

    section("Saving relations");
    let post = store.save(Post {
        title: "My Post with comments".into(),
        rating: 10,
        status: PostStatus::Active,
        ..Post::default()
    })?;
    let comment = store.save(
        Comment {
            content: Some("Loving Amplify DataStore!".into()),
            ..Comment::default()
        }
        .with_post(&post),
    )?;
    println!("saved {}", json(&post));
    println!("saved {}", json(&comment));
    let reaction = store.save(
        Reaction {
            emoji: "👍".into(),
            ..Reaction::default()
        }
        .with_post(&post),
    )?;
    println!(
        "saved {} (its key {} assigned by the database)",
        json(&reaction),
        reaction.id
    );

    section("Saving many-to-many relations");
    let first = store.save(Post {
        title: "My first post".into(),
        ..Post::default()
    })?;
    let nadia = store.save(User {
        username: "Nadia".into(),
        ..User::default()
    })?;
    let link = store.save(PostEditor {
        post_id: first.id,
        editor_id: nadia.id,
        ..PostEditor::default()
    })?;
    println!("Nadia edits \"{}\" (join row {})", first.title, link.id);
    first.link_editors(
        &mut conn,
        &store.save(User {
            username: "Omar".into(),
            ..User::default()
        })?,
    )?;
    let editors: Vec<String> = first
        .editors(&mut conn)?
        .into_iter()
        .map(|u| u.username)
        .collect();
    println!("editors of \"{}\": {editors:?}", first.title);

    section("Querying relations");
    store.save(
        Comment {
            content: Some("Second!".into()),
            ..Comment::default()
        }
        .with_post(&post),
    )?;
    let by_post: Vec<Comment> =
        store.query::<Comment>(|q| q.filter(comments::post_id.eq(post.id)))?;
    println!(
        "comments whose post is {} (a SQL filter): {}",
        post.id,
        contents(&by_post)
    );
    println!(
        "lazily, post.comments(): {}",
        contents(&post.comments(&mut conn)?)
    );
    // Eagerly: one query for the posts, one for all their comments, two for all their editors.
    let mut all_posts: Vec<Post> = store.all()?;
    Post::load_comments(&mut conn, &mut all_posts)?;
    Post::load_editors(&mut conn, &mut all_posts)?;
    for p in &all_posts {
        let editors: Vec<&str> = p
            .editors
            .get()
            .unwrap_or_default()
            .iter()
            .map(|u| u.username.as_str())
            .collect();
        println!(
            "eagerly, \"{}\": comments {}, editors {editors:?}",
            p.title,
            contents(p.comments.get().unwrap_or_default())
        );
    }
    let top: Vec<Post> = Post::query()
        .filter(posts::rating.gt(4))
        .order(posts::rating.desc())
        .load(&mut conn)?;
    println!(
        "posts rated above 4: {:?}",
        top.iter().map(|p| &p.title).collect::<Vec<_>>()
    );

    section("Threads, and comments that outlive their authors");
    let omar = store
        .query::<User>(|q| q.filter(models::users::username.eq("Omar")))?
        .remove(0);
    let opening = store.save(Comment {
        content: Some("Which database do you use?".into()),
        post_id: first.id,
        author_id: Some(omar.id),
        ..Comment::default()
    })?;
    let answer = store.save(Comment {
        content: Some("SQLite, embedded".into()),
        post_id: first.id,
        parent_id: Some(opening.id),
        author_id: Some(nadia.id),
        ..Comment::default()
    })?;
    store.save(Comment {
        content: Some("And PostgreSQL on the server".into()),
        post_id: first.id,
        parent_id: Some(answer.id),
        ..Comment::default()
    })?;
    // The whole thread, one statement per level.
    let mut thread = vec![opening.clone()];
    Comment::load_replies_tree(&mut conn, &mut thread)?;
    print_thread(&thread, 0);
    let effects = store.preview_delete::<User>(&omar.id)?;
    println!("deleting Omar's account {effects}");
    // Omar still edits "My first post": his link refuses the delete until it is unlinked.
    first.unlink_editors(&mut conn, &omar)?;
    store.delete(&omar)?;
    let kept = store.get::<Comment>(&opening.id)?;
    println!(
        "his comment stays, by no one: {:?} (author {:?})",
        kept.content.as_deref().unwrap_or_default(),
        kept.author_id
    );

    section("Observing relations");
    let post_123 = store.save(Post {
        title: "123".into(),
        ..Post::default()
    })?;
    let elsewhere = store.save(Post {
        title: "another post".into(),
        ..Post::default()
    })?;
    let id_123 = post_123.id;
    let comments_of_123 = store.observe_where::<Comment>(move |c| c.post_id == id_123)?;
    for (post, text) in [
        (&post_123, "first on 123"),
        (&elsewhere, "not on 123"),
        (&post_123, "second on 123"),
    ] {
        store.save(
            Comment {
                content: Some(text.into()),
                ..Comment::default()
            }
            .with_post(post),
        )?;
    }
    store.delete(&post_123)?; // cascades to its comments
    while let Some(Observed::Change(msg)) =
        comments_of_123.recv_timeout(std::time::Duration::from_millis(200))
    {
        println!(
            "{} {:?} {:?}",
            msg.model,
            msg.op,
            msg.element.content.as_deref().unwrap_or_default()
        );
    }

    section("A live view of posts, with their comments, replies, authors and editors");
    // One subscription: it watches posts, comments, users and post_editors, and after each
    // commit reads again only the posts the commit touched (see BENCHMARKS.md for costs). A
    // comment's author (a `belongs_to`) is held by the snapshot, once per user.
    let mut view = store
        .live::<Post>()
        .query(|q| q.order(posts::title.asc()))
        .load(Post::COMMENTS.then(Comment::REPLIES))
        .load(Post::COMMENTS.then(Comment::AUTHOR))
        .load(Post::EDITORS)
        .subscribe()?;
    show("now", view.recv()?);
    store.save(
        Comment {
            content: Some("Live!".into()),
            ..Comment::default()
        }
        .with_post(&post)
        .with_author(&nadia),
    )?;
    show("a comment by Nadia saved", next(&mut view)?);
    post.link_editors(&mut conn, &nadia)?;
    show("Nadia linked as an editor", next(&mut view)?);
    post.unlink_editors(&mut conn, &nadia)?;
    show("Nadia unlinked", next(&mut view)?);

    section("Deleting relations");
    store.delete(&post)?;
    show("after the delete", next(&mut view)?);
    let left = store.query::<Comment>(|q| q.filter(comments::post_id.eq(post.id)))?;
    println!(
        "deleted \"{}\"; its comments went with it (ON DELETE CASCADE): {} of them left",
        post.title,
        left.len()
    );
    println!(
        "deleting \"{}\" {}",
        first.title,
        store.preview_delete::<Post>(&first.id)?
    );
    match store.delete(&first) {
        Err(e) => println!(
            "deleting \"{}\" while editors link to it fails:\n  {e}",
            first.title
        ),
        Ok(()) => unreachable!("join rows restrict the delete"),
    }
    for editor in first.editors(&mut conn)? {
        first.unlink_editors(&mut conn, &editor)?;
    }
    store.delete(&first)?;
    show("after the unlinks and the delete", next(&mut view)?);
    let users: Vec<String> = store
        .all::<User>()?
        .into_iter()
        .map(|u| u.username)
        .collect();
    println!("after unlinking, the delete succeeds; the users remain: {users:?}");
    Ok(())
}

/// The live view's next snapshot (it comes once the commit before it is read).
fn next(
    view: &mut datastore::observe::LiveSubscription<Post>,
) -> datastore::Result<Snapshot<Post>> {
    view.recv_timeout(std::time::Duration::from_secs(30))
        .expect("a snapshot after a commit that changed the view")
}

/// Prints a snapshot of the live view: each post, its comments (with their author and
/// replies), its editors.
fn show(after: &str, posts: Snapshot<Post>) {
    println!("live view, {after}:");
    for post in &posts {
        let editors: Vec<&str> = post
            .editors
            .get()
            .unwrap_or_default()
            .iter()
            .map(|u| u.username.as_str())
            .collect();
        println!("  \"{}\" (editors {editors:?})", post.title);
        for comment in post.comments.get().unwrap_or_default() {
            let replies: Vec<&str> = comment
                .replies
                .get()
                .unwrap_or_default()
                .iter()
                .filter_map(|r| r.content.as_deref())
                .collect();
            let replies = if replies.is_empty() {
                String::new()
            } else {
                format!(" <- replies {replies:?}")
            };
            let author = match posts.parent(comment, Comment::AUTHOR) {
                Some(user) => format!(" (by {})", user.username),
                None => String::new(),
            };
            println!(
                "    - {}{author}{replies}",
                comment.content.as_deref().unwrap_or_default()
            );
        }
    }
}

/// Prints comments and, indented, the replies loaded under them.
fn print_thread(comments: &[Comment], depth: usize) {
    for comment in comments {
        println!(
            "{:indent$}- {}",
            "",
            comment.content.as_deref().unwrap_or_default(),
            indent = depth * 2
        );
        print_thread(comment.replies.get().unwrap_or_default(), depth + 1);
    }
}

fn section(title: &str) {
    println!("\n== {title}");
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("models serialize")
}

fn contents(comments: &[Comment]) -> String {
    let texts: Vec<&str> = comments
        .iter()
        .filter_map(|c| c.content.as_deref())
        .collect();
    format!("{texts:?}")
}

/// A new SQLite file in the temporary directory.
fn fresh_sqlite_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join("datastore-blog.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
    path
}

/// A new schema `datastore_blog` on the server.
fn fresh_postgres_schema(server: &str) -> datastore::Result<()> {
    use datastore::diesel::connection::SimpleConnection;

    let admin = Store::builder(server).pool_size(1).open()?;
    admin.conn()?.batch_execute(
        "DROP SCHEMA IF EXISTS datastore_blog CASCADE; CREATE SCHEMA datastore_blog",
    )?;
    Ok(())
}
