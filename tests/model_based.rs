//! Random sequences of operations run against the store and against a plain in-memory model of
//! the same rules; after every step the database equals the model. The observe stream of the
//! whole run, replayed onto an empty copy, gives the same data. Failures shrink to a minimal
//! sequence.

mod common;
#[path = "common/reference.rs"]
mod reference;

use std::time::Duration;

use common::models::{Comment, Post, PostEditor, User};
use datastore::observe::{Observed, Op, RawValue};
use datastore::prelude::*;
use proptest::prelude::*;
use reference::{apply, replay_through, replayed, step, stored, Reference, Step};

/// Runs the steps on the store and on the reference, compares after each, then replays the
/// observe stream.
fn follows_the_reference(store: &Store, steps: &[Step]) -> Result<(), TestCaseError> {
    let stream = store.observe_all().unwrap();
    let mut conn = store.conn().unwrap();
    let mut model = Reference::default();
    for step in steps {
        apply(&mut conn, &mut model, step).unwrap();
        prop_assert_eq!(&stored(&mut conn), &model, "after {:?}", step);
    }
    // Written last: once its insert arrives, every change before it has.
    let last = conn
        .save(User {
            username: "last".into(),
            ..User::default()
        })
        .unwrap();
    let copy = replay_through(&stream, &last.id.to_string());
    conn.delete(&last).unwrap();
    // And nothing after it but its delete: no change arrives late, or twice.
    match stream.recv_timeout(Duration::from_secs(30)) {
        Some(Observed::Change(change)) => prop_assert!(
            change.op == Op::Delete && change.values[0] == RawValue::Text(last.id.to_string()),
            "after the last row's insert: {:?}",
            change
        ),
        other => prop_assert!(false, "expected the last row's delete, got {:?}", other),
    }
    // Keys are time-ordered, so the copy (ordered by key) lists rows as `all` does.
    prop_assert_eq!(replayed::<Post>(&copy), conn.all::<Post>().unwrap());
    prop_assert_eq!(replayed::<Comment>(&copy), conn.all::<Comment>().unwrap());
    prop_assert_eq!(replayed::<User>(&copy), conn.all::<User>().unwrap());
    prop_assert_eq!(
        replayed::<PostEditor>(&copy),
        conn.all::<PostEditor>().unwrap()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_store_follows_the_reference_and_observe_replays_it(steps in prop::collection::vec(step(), 1..40)) {
        follows_the_reference(&common::memory_store(), &steps)?;
    }
}

proptest! {
    // Each case opens a schema of its own on the server: fewer cases than on SQLite.
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn on_postgres_the_store_follows_the_reference_and_observe_replays_it(steps in prop::collection::vec(step(), 1..40)) {
        if let Some(db) = common::TestDb::postgres() {
            let _schema = db.schema;
            follows_the_reference(&db.store, &steps)?;
        }
    }
}
