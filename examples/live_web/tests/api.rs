//! The server driven over HTTP: saves through the JSON API, and what the event stream says
//! after each, in order. On a SQLite file (and on PostgreSQL when `DATASTORE_POSTGRES_URL` is
//! set, in `tests/postgres.rs`).

mod support;

use serde_json::json;
use support::{call, comment_texts, serve, Events};

#[test]
fn every_committed_save_edit_and_delete_arrives_on_the_stream_in_order() {
    let served = serve();
    let base = served.running.url();
    let events = Events::open(&base);
    let first = events.next();
    assert_eq!(first.name, "posts");
    assert_eq!(first.data, json!([]), "a fresh store shows no posts");

    let post = call(
        &base,
        "POST",
        "/api/posts",
        Some(json!({ "title": "Hello", "rating": 4 })),
    );
    assert_eq!(post.status, 201, "{:?}", post.body);
    let id = post.body["id"].as_str().unwrap().to_owned();
    let view = events.next_posts();
    assert_eq!(view.len(), 1);
    assert_eq!(view[0]["title"], "Hello");
    assert_eq!(comment_texts(&view[0]), Vec::<String>::new());
    assert_eq!(view[0]["editors"], json!([]));

    let comment = call(
        &base,
        "POST",
        &format!("/api/posts/{id}/comments"),
        Some(json!({ "content": "first!" })),
    );
    assert_eq!(comment.status, 201, "{:?}", comment.body);
    let comment_id = comment.body["id"].as_str().unwrap().to_owned();
    assert_eq!(comment_texts(&events.next_posts()[0]), ["first!"]);

    let second = call(
        &base,
        "POST",
        &format!("/api/posts/{id}/comments"),
        Some(json!({ "content": "second" })),
    );
    assert_eq!(second.status, 201);
    assert_eq!(comment_texts(&events.next_posts()[0]), ["first!", "second"]);

    let edited = call(
        &base,
        "PUT",
        &format!("/api/comments/{comment_id}"),
        Some(json!({ "content": "first, edited" })),
    );
    assert_eq!(edited.status, 200, "{:?}", edited.body);
    assert_eq!(
        comment_texts(&events.next_posts()[0]),
        ["first, edited", "second"]
    );

    let renamed = call(
        &base,
        "PUT",
        &format!("/api/posts/{id}"),
        Some(json!({ "title": "Hello again", "rating": 5 })),
    );
    assert_eq!(renamed.status, 200, "{:?}", renamed.body);
    let view = events.next_posts();
    assert_eq!(
        (&view[0]["title"], &view[0]["rating"]),
        (&json!("Hello again"), &json!(5))
    );

    let removed = call(
        &base,
        "DELETE",
        &format!("/api/comments/{comment_id}"),
        None,
    );
    assert_eq!(removed.status, 204);
    assert_eq!(comment_texts(&events.next_posts()[0]), ["second"]);

    // The post's delete takes its comment with it (the cascade): one view, without both.
    let deleted = call(&base, "DELETE", &format!("/api/posts/{id}"), None);
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    let after = events.next();
    assert_eq!(after.data, json!([]));
    assert_eq!(call(&base, "GET", "/api/posts", None).body, json!([]));
}

#[test]
fn event_ids_count_up_and_each_view_is_the_api_read_after_its_commit() {
    let served = serve();
    let base = served.running.url();
    let events = Events::open(&base);
    let mut last = events.next().id.expect("an id");
    for title in ["one", "two", "three"] {
        call(&base, "POST", "/api/posts", Some(json!({ "title": title })));
        let event = events.next();
        let id = event.id.expect("an id");
        assert!(id > last, "ids count up: {id} after {last}");
        last = id;
        assert_eq!(event.data, call(&base, "GET", "/api/posts", None).body);
    }
    // Newest first.
    let titles: Vec<_> = call(&base, "GET", "/api/posts", None)
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(titles, ["three", "two", "one"]);
}

#[test]
fn a_delete_refused_by_editor_links_answers_409_with_the_stores_message_and_changes_nothing() {
    let served = serve();
    let base = served.running.url();
    let post = call(
        &base,
        "POST",
        "/api/posts",
        Some(json!({ "title": "Edited" })),
    )
    .body;
    let id = post["id"].as_str().unwrap();
    call(
        &base,
        "POST",
        &format!("/api/posts/{id}/comments"),
        Some(json!({ "content": "kept" })),
    );
    let nadia = call(
        &base,
        "POST",
        &format!("/api/posts/{id}/editors"),
        Some(json!({ "username": "nadia" })),
    );
    assert_eq!(nadia.status, 201, "{:?}", nadia.body);

    let refused = call(&base, "DELETE", &format!("/api/posts/{id}"), None);
    assert_eq!(refused.status, 409);
    assert_eq!(refused.body["kind"], "delete_restricted");
    assert_eq!(
        refused.body["error"],
        format!(
            "cannot delete posts '{id}': 1 row in post_editors still links to it; unlink it first"
        )
    );
    let events = Events::open(&base);
    let view = events.posts_when(|posts| {
        posts
            .first()
            .is_some_and(|p| p["editors"].as_array().is_some_and(|e| !e.is_empty()))
    });
    assert_eq!(comment_texts(&view[0]), ["kept"]);
    assert_eq!(view[0]["editors"][0]["username"], "nadia");

    let user = nadia.body["id"].as_str().unwrap();
    assert_eq!(
        call(
            &base,
            "DELETE",
            &format!("/api/posts/{id}/editors/{user}"),
            None
        )
        .status,
        204
    );
    assert_eq!(events.next_posts()[0]["editors"], json!([]));
    assert_eq!(
        call(&base, "DELETE", &format!("/api/posts/{id}"), None).status,
        204
    );
    assert_eq!(events.next().data, json!([]));
}

#[test]
fn missing_rows_answer_404_with_the_stores_message() {
    let served = serve();
    let base = served.running.url();
    let missing = datastore::Id::new();
    let answer = call(
        &base,
        "POST",
        &format!("/api/posts/{missing}/comments"),
        Some(json!({ "content": "nowhere" })),
    );
    assert_eq!(answer.status, 404);
    assert_eq!(answer.body["kind"], "not_found");
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap()
            .contains(&missing.to_string()),
        "{:?}",
        answer.body
    );
}

/// Another process's writes to the file: a store of its own on the same file, whose
/// connections the server's store did not open and whose change feed it does not share
/// (as far as the server's store can tell, another process).
#[test]
fn another_store_writing_the_same_sqlite_file_shows_on_the_stream() {
    use datastore::prelude::*;
    use datastore_live_web::models::{Comment, Post};

    let served = serve();
    let base = served.running.url();
    let events = Events::open(&base);
    assert_eq!(events.next().data, json!([]));

    let other = Store::open(
        &served.file,
        datastore::embed_migrations!(
            sqlite = "../../migrations/sqlite",
            postgres = "../../migrations/postgres"
        ),
    )
    .expect("a second store on the file");
    let post = other
        .save(Post {
            title: "From elsewhere".into(),
            ..Post::default()
        })
        .unwrap();
    let view = events.next_posts();
    assert_eq!(view[0]["title"], "From elsewhere");
    other
        .save(
            Comment {
                content: Some("also elsewhere".into()),
                ..Comment::default()
            }
            .with_post(&post),
        )
        .unwrap();
    assert_eq!(comment_texts(&events.next_posts()[0]), ["also elsewhere"]);
    other.delete(&post).unwrap();
    assert_eq!(events.next().data, json!([]));
}

/// Another process: a second server (this package's binary) on the same file, written
/// through its API; the first server's stream shows the write.
#[test]
fn another_process_writing_the_same_sqlite_file_shows_on_the_stream() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let served = serve();
    let base = served.running.url();
    let events = Events::open(&base);
    assert_eq!(events.next().data, json!([]));

    let mut other = Command::new(env!("CARGO_BIN_EXE_datastore-live-web"))
        .arg(&served.file)
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("a second server process");
    let mut line = String::new();
    BufReader::new(other.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("the second server's address");
    let other_base = line
        .split_whitespace()
        .last()
        .expect("an address")
        .to_owned();
    let saved = call(
        &other_base,
        "POST",
        "/api/posts",
        Some(json!({ "title": "From another process" })),
    );
    other.kill().expect("the second server stops");
    other.wait().unwrap();
    assert_eq!(saved.status, 201, "{:?}", saved.body);
    assert_eq!(events.next_posts()[0]["title"], "From another process");
}
