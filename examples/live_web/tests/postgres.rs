//! The server on PostgreSQL (`DATASTORE_POSTGRES_URL`; without it the test says it was not
//! run, and passes): the API's saves and deletes arrive on the event stream in order, a
//! refused delete answers 409, and another store's writes to the database show too.

mod support;

use datastore::prelude::*;
use datastore_live_web::models::Post;
use serde_json::json;
use support::{call, comment_texts, serve_postgres, Events};

#[test]
fn the_page_follows_a_postgresql_database() {
    // A schema of its own: other test runs may share the database.
    let Some((running, schema)) = serve_postgres() else {
        return;
    };
    let url = schema.url().to_owned();
    let base = running.url();
    let events = Events::open(&base);
    assert_eq!(events.next().data, json!([]));

    let post = call(
        &base,
        "POST",
        "/api/posts",
        Some(json!({ "title": "On PostgreSQL" })),
    )
    .body;
    let id = post["id"].as_str().unwrap().to_owned();
    assert_eq!(events.next_posts()[0]["title"], "On PostgreSQL");
    call(
        &base,
        "POST",
        &format!("/api/posts/{id}/comments"),
        Some(json!({ "content": "one" })),
    );
    assert_eq!(comment_texts(&events.next_posts()[0]), ["one"]);
    let nadia = call(
        &base,
        "POST",
        &format!("/api/posts/{id}/editors"),
        Some(json!({ "username": "nadia" })),
    );
    assert_eq!(events.next_posts()[0]["editors"][0]["username"], "nadia");

    let refused = call(&base, "DELETE", &format!("/api/posts/{id}"), None);
    assert_eq!(refused.status, 409);
    assert_eq!(
        refused.body["error"],
        format!(
            "cannot delete posts '{id}': 1 row in post_editors still links to it; unlink it first"
        )
    );

    // Another writer of the database: PostgreSQL's change feed sees every one.
    let other = Store::open(
        &url,
        datastore::embed_migrations!(
            sqlite = "../../migrations/sqlite",
            postgres = "../../migrations/postgres"
        ),
    )
    .unwrap();
    other
        .save(Post {
            title: "From elsewhere".into(),
            ..Post::default()
        })
        .unwrap();
    let view = events.next_posts();
    assert_eq!(view[0]["title"], "From elsewhere");
    assert_eq!(view[1]["title"], "On PostgreSQL");

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
    assert_eq!(events.next_posts()[1]["editors"], json!([]));
    assert_eq!(
        call(&base, "DELETE", &format!("/api/posts/{id}"), None).status,
        204
    );
    let view = events.next_posts();
    assert_eq!(
        view.len(),
        1,
        "the post went, its comment with it: {view:?}"
    );
    assert_eq!(view[0]["title"], "From elsewhere");

    // The server and its connections before the schema.
    drop((events, other, running));
    drop(schema);
}
