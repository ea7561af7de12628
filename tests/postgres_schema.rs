//! The PostgreSQL migrations, generated from the same models, give the same referential rules
//! on a real server. Runs when `DATASTORE_POSTGRES_URL` is set (`.ci/run` sets it); each run
//! works in a schema of its own and drops it afterwards.

use std::path::Path;

use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::sql_types::Text;
use datastore::diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use datastore::diesel_migrations::{FileBasedMigrations, MigrationHarness};

mod common;

/// The server to test against, if one is configured (`.ci/run` always configures one).
fn postgres_url() -> Option<String> {
    let url = std::env::var("DATASTORE_POSTGRES_URL").ok();
    if url.is_none() {
        eprintln!("PostgreSQL suite not run: set DATASTORE_POSTGRES_URL, e.g. postgres://root@127.0.0.1:5432/test");
    }
    url
}

#[derive(QueryableByName, Debug)]
struct Rule {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    delete_rule: String,
}

#[test]
fn postgres_migrations_give_cascading_children_and_restricting_join_rows() {
    let Some(url) = postgres_url() else { return };
    // A schema of the test's own, dropped when the test ends (passing or not).
    let schema = common::PgSchema::new(&url);
    let mut conn = PgConnection::establish(schema.url()).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    conn.run_pending_migrations(FileBasedMigrations::from_path(dir).unwrap())
        .unwrap();

    let rules: Vec<Rule> = datastore::diesel::sql_query(
        "SELECT k.table_name::text AS table_name, k.column_name::text AS column_name, r.delete_rule::text AS delete_rule \
         FROM information_schema.referential_constraints r \
         JOIN information_schema.key_column_usage k \
           ON k.constraint_name = r.constraint_name AND k.constraint_schema = r.constraint_schema \
         WHERE r.constraint_schema = current_schema() ORDER BY 1, 2",
    )
    .load(&mut conn)
    .unwrap();
    let rules: Vec<(&str, &str, &str)> = rules
        .iter()
        .map(|r| {
            (
                r.table_name.as_str(),
                r.column_name.as_str(),
                r.delete_rule.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            ("comments", "author_id", "SET NULL"),
            ("comments", "parent_id", "CASCADE"),
            ("comments", "post_id", "CASCADE"),
            ("post_editors", "editor_id", "RESTRICT"),
            ("post_editors", "post_id", "RESTRICT"),
            ("profiles", "user_id", "CASCADE"),
            ("reactions", "post_id", "CASCADE"),
        ]
    );

    // The rules hold: a cascade, and a refused delete that changes nothing.
    conn
        .batch_execute(
            "INSERT INTO posts VALUES ('00000000-0000-0000-0000-000000000001', 't', 1, 'Active', NULL, now(), now());
             INSERT INTO comments VALUES ('00000000-0000-0000-0000-000000000002', 'c', '00000000-0000-0000-0000-000000000001', now());
             INSERT INTO users VALUES ('00000000-0000-0000-0000-000000000003', 'nadia');
             INSERT INTO post_editors VALUES ('00000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000003');",
        )
        .unwrap();
    let refused = conn.batch_execute("DELETE FROM posts");
    assert!(refused.is_err(), "a linked post cannot be deleted");
    conn.batch_execute("DELETE FROM post_editors; DELETE FROM posts")
        .unwrap();
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = datastore::diesel::sql_types::BigInt)]
        n: i64,
    }
    let left: Count = datastore::diesel::sql_query("SELECT count(*) AS n FROM comments")
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(left.n, 0, "the comments cascaded");
}

/// The column types whose storage differs between backends travel to PostgreSQL in its binary
/// forms (`uuid`, `timestamptz`, `jsonb`) and come back equal; the server reads them as the
/// same values.
#[test]
fn ids_timestamps_and_json_round_trip_through_postgres() {
    use datastore::diesel::dsl::sql;
    use datastore::diesel::sql_types::Text as SqlText;
    use datastore::diesel::IntoSql;
    use datastore::sql_types::{JsonDoc, TimestampUtc, Uuid};
    use datastore::{Id, Json, Timestamp};

    let Some(url) = postgres_url() else { return };
    // A schema of the test's own, dropped when the test ends (passing or not).
    let schema = common::PgSchema::new(&url);
    let mut conn = PgConnection::establish(schema.url()).unwrap();
    let id = Id::new();
    let at: Timestamp = "2026-11-25T11:47:27.123456Z".parse().unwrap();
    let doc = Json(serde_json::json!({ "quote": "it's", "emoji": "🦀", "n": [1, 2.5] }));
    let back: (Id, Timestamp, Json<serde_json::Value>) = datastore::diesel::select((
        id.into_sql::<Uuid>(),
        at.into_sql::<TimestampUtc>(),
        doc.clone().into_sql::<JsonDoc>(),
    ))
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(back, (id, at, doc));

    let as_text: (String, String) = datastore::diesel::select((
        sql::<SqlText>("").bind::<Uuid, _>(id).sql("::text"),
        sql::<SqlText>("to_char(")
            .bind::<TimestampUtc, _>(at)
            .sql(" AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"),
    ))
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(
        as_text,
        (id.to_string(), "2026-11-25T11:47:27.123456".to_owned())
    );
}
