//! What observe's PostgreSQL triggers cost every write to an observed table, measured: 10,000
//! rows inserted (then updated, then deleted) in one statement each, with no trigger and with
//! observe's, each twice. Ignored (it measures, it checks nothing but that the rows were
//! recorded); run it with
//!
//! ```sh
//! DATASTORE_POSTGRES_URL=postgres://root@127.0.0.1:5432/test \
//!     cargo test -p datastore --release --test trigger_cost -- --ignored --nocapture
//! ```

mod common;

use std::time::{Duration, Instant};

use common::models::Post;
use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::{Connection, PgConnection};

const ROWS: usize = 10_000;

/// The three statements, timed.
fn timed(conn: &mut PgConnection) -> [Duration; 3] {
    let statements = [
        format!(
            "INSERT INTO posts (id, title, rating, status, body, created_at, updated_at) \
             SELECT gen_random_uuid(), 'post ' || i, i, 'Active', repeat('b', 100), now(), now() \
             FROM generate_series(1, {ROWS}) AS i"
        ),
        "UPDATE posts SET rating = rating + 1".to_owned(),
        "DELETE FROM posts".to_owned(),
    ];
    statements.map(|sql| {
        let started = Instant::now();
        conn.batch_execute(&sql).unwrap();
        started.elapsed()
    })
}

fn report(label: &str, runs: &[[Duration; 3]]) {
    for (i, [insert, update, delete]) in runs.iter().enumerate() {
        println!(
            "{label}, run {}: insert {:.3} s, update {:.3} s, delete {:.3} s",
            i + 1,
            insert.as_secs_f64(),
            update.as_secs_f64(),
            delete.as_secs_f64()
        );
    }
}

#[test]
#[ignore]
fn what_the_triggers_cost_a_statement_of_10000_rows() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let mut conn = PgConnection::establish(schema.url()).unwrap();
    {
        let store = common::trigger_feed_store(schema.url());
        // A first run before any trigger exists.
        report("no trigger", &[timed(&mut conn), timed(&mut conn)]);
        drop(store.observe::<Post>().unwrap());
    }
    // The store and its listener are gone; the triggers stay, as in production.
    std::thread::sleep(Duration::from_millis(200));
    let runs = [timed(&mut conn), timed(&mut conn)];
    report("observe's triggers", &runs);
    #[derive(datastore::diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = datastore::diesel::sql_types::BigInt)]
        n: i64,
    }
    let recorded: Vec<Count> = datastore::diesel::RunQueryDsl::load(
        datastore::diesel::sql_query(
            "SELECT count(*) AS n FROM datastore_change_payloads \
             UNION ALL SELECT pg_total_relation_size('datastore_change_payloads') AS n",
        ),
        &mut conn,
    )
    .unwrap();
    println!(
        "recorded changes: {} rows, {} kB",
        recorded[0].n,
        recorded[1].n / 1024
    );
    assert!(recorded[0].n >= 6 * ROWS as i64);
}
