//! Fault injection: random sequences of the model-based test's operations on a SQLite file
//! whose size is capped and uncapped at random points (`PRAGMA max_page_count`), so that writes
//! fail for want of space, some taking their whole transaction with them. After every step the
//! database equals the reference model (a failed operation changed nothing, a failed
//! transaction left nothing), and at the end the observe stream, replayed onto an empty copy,
//! equals the database (nothing uncommitted was observed).

mod common;
#[path = "common/reference.rs"]
mod reference;

use std::time::Duration;

use common::models::{Comment, Post, PostEditor, User};
use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::{Connection, SqliteConnection};
use datastore::prelude::*;
use datastore::{Error, Synchronous};
use proptest::prelude::*;
use reference::{apply, replay, replayed, simple_step, step, stored, Reference, Step};

/// One step of a run: an operation, or a change of the space left.
#[derive(Debug, Clone)]
enum Action {
    /// An operation; for a transaction, whether its closure carries on after a step failed
    /// (swallowing the error, as an application may) rather than return the error.
    Do(Step, bool),
    /// Caps the file at the pages it holds plus these: the writes needing more fail.
    Cap(u32),
    /// Lifts the cap.
    Uncap,
}

/// The model-based test's operations, with more transactions: where a fault does most harm.
fn operation() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => step(),
        1 => (prop::collection::vec(step_in_transaction(), 1..6), any::<bool>())
            .prop_map(|(steps, commit)| Step::Transaction(steps, commit)),
    ]
}

/// A step of a `store.transaction`: also nested transactions (savepoints), committed or rolled
/// back, which must not outlive a loss of the transaction around them.
fn step_in_transaction() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => simple_step(),
        1 => (prop::collection::vec(simple_step(), 1..3), any::<bool>())
            .prop_map(|(steps, commit)| Step::Transaction(steps, commit)),
        1 => prop::collection::vec(simple_step(), 1..3).prop_map(Step::RolledBackSavepoint),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        8 => (operation(), any::<bool>()).prop_map(|(step, carry_on)| Action::Do(step, carry_on)),
        2 => (0..3u32).prop_map(Action::Cap),
        1 => Just(Action::Uncap),
    ]
}

/// A store on a new file of small pages (so that few rows need a new page), with one
/// connection: the cap is a setting of the connection, and holds for every call.
fn store(dir: &tempfile::TempDir) -> Store {
    let path = dir.path().join("faults.db").display().to_string();
    SqliteConnection::establish(&path)
        .unwrap()
        .batch_execute("PRAGMA page_size = 512; PRAGMA user_version = 1;")
        .unwrap();
    Store::builder(path)
        .migrations(datastore::embed_migrations!())
        .pool_size(1)
        .synchronous(Synchronous::Normal)
        .open()
        .unwrap()
}

/// Caps the file at the pages it holds plus `cap`, or lifts the cap (`None`).
fn set_cap(store: &Store, cap: Option<u32>) {
    let mut conn = store.conn().unwrap();
    let pages: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT page_count FROM pragma_page_count)",
    ))
    .get_result(&mut *conn)
    .unwrap();
    let limit = cap.map_or(1_073_741_823, |extra| pages + i64::from(extra));
    conn.batch_execute(&format!("PRAGMA max_page_count = {limit}"))
        .unwrap();
}

/// Runs one operation as an application would: a transaction through `store.transaction`, the
/// rest on a connection of the store. The errors a transaction's closure carried on after are
/// pushed to `swallowed`.
fn run(
    store: &Store,
    model: &mut Reference,
    step: &Step,
    carry_on: bool,
    swallowed: &mut Vec<(Step, Error)>,
) -> datastore::Result<()> {
    match step {
        Step::Transaction(steps, commit) => {
            let outcome = store.transaction(|tx| {
                let mut inner = model.clone();
                for step in steps {
                    match apply(tx, &mut inner, step) {
                        Err(e) if carry_on => swallowed.push((step.clone(), e)),
                        result => result?,
                    }
                }
                if *commit {
                    Ok(Some(inner))
                } else {
                    Err(Error::NotFound {
                        table: "rollback".into(),
                        key: String::new(),
                    })
                }
            });
            match outcome {
                Ok(inner) => *model = inner.expect("committed"),
                Err(Error::NotFound { table, .. }) if table == "rollback" => {}
                Err(e) => return Err(e),
            }
            Ok(())
        }
        step => apply(&mut *store.conn()?, model, step),
    }
}

/// Whether a failure is one the cap explains, typed as such.
fn explained(_step: &Step, err: &Error) -> bool {
    match err {
        Error::StorageFull { .. } => true,
        Error::TransactionAborted { cause: Some(cause) } => {
            matches!(**cause, Error::StorageFull { .. })
        }
        _ => false,
    }
}

/// Runs the actions; the failures of each, in order.
fn survives_faults(actions: &[Action]) -> Result<Vec<Vec<(Step, Error)>>, TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let changes = store.observe_all().unwrap();
    let mut model = Reference::default();
    let mut cap = None;
    let mut failures = Vec::new();
    for action in actions {
        match action {
            Action::Cap(extra) => cap = Some(*extra),
            Action::Uncap => cap = None,
            Action::Do(step, carry_on) => {
                // Set again before each operation: a connection that failed may have been
                // replaced by a new one, without the cap.
                set_cap(&store, cap);
                let mut swallowed = Vec::new();
                let result = run(&store, &mut model, step, *carry_on, &mut swallowed);
                swallowed.extend(result.err().map(|e| (step.clone(), e)));
                for (step, err) in &swallowed {
                    prop_assert!(explained(step, err), "{:?} failed with {:?}", step, err);
                }
                failures.push(swallowed);
                let stored = stored(&mut store.conn().unwrap());
                prop_assert_eq!(&stored, &model, "after {:?} (cap {:?})", step, cap);
            }
        }
    }
    set_cap(&store, None);
    let copy = replay(&changes, Duration::from_millis(1));
    let mut conn = store.conn().unwrap();
    prop_assert_eq!(replayed::<Post>(&copy), conn.all::<Post>().unwrap());
    prop_assert_eq!(replayed::<Comment>(&copy), conn.all::<Comment>().unwrap());
    prop_assert_eq!(replayed::<User>(&copy), conn.all::<User>().unwrap());
    prop_assert_eq!(
        replayed::<PostEditor>(&copy),
        conn.all::<PostEditor>().unwrap()
    );
    Ok(failures)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_store_failing_at_random_points_keeps_to_the_reference(
        actions in prop::collection::vec(action(), 1..50)
    ) {
        survives_faults(&actions)?;
    }
}

/// The faults above do happen: a fixed run in which writes fail, some inside transactions.
#[test]
fn the_cap_makes_writes_fail() {
    let mut actions = vec![Action::Cap(0)];
    for i in 0..30 {
        actions.push(Action::Do(Step::SavePost(i), false));
        let steps = vec![
            Step::SaveUser,
            Step::SavePost(i),
            Step::SaveComment {
                post: i as usize,
                parent: None,
                author: None,
            },
        ];
        actions.push(Action::Do(Step::Transaction(steps, true), i % 2 == 0));
    }
    let failures: usize = survives_faults(&actions)
        .unwrap()
        .iter()
        .map(Vec::len)
        .sum();
    assert!(failures > 10, "only {failures} failures");
}

/// A transaction SQLite rolled back by itself, whose closure carries on with writes that need
/// no new page (an update in place, a delete): none of them is written.
#[test]
fn writes_after_a_transaction_was_lost_are_not_written() {
    // Posts until the capped file is full.
    let mut actions = vec![Action::Cap(0)];
    actions.extend((0..40).map(|i| Action::Do(Step::InsertPosts(vec![i]), false)));
    actions.push(Action::Do(Step::SaveUser, false));
    actions.push(Action::Do(
        Step::Transaction(
            vec![
                Step::UpdatePost(0, 9),
                Step::InsertPosts(vec![4]),
                Step::UpdatePost(1, 8),
                Step::DeletePost(2),
                Step::DeleteComment(0),
            ],
            true,
        ),
        true,
    ));
    let failures = survives_faults(&actions).unwrap();
    let last: Vec<_> = failures
        .last()
        .unwrap()
        .iter()
        .map(|(step, err)| (step, err.to_string()))
        .collect();
    assert!(
        last.len() >= 4,
        "the insert, each write after it and the transaction failed: {last:#?}"
    );
}

/// A transaction SQLite rolled back by itself, whose closure carries on with nested
/// transactions: the first is refused (its `SAVEPOINT`), and so is every later one, which must
/// not begin a transaction of its own and commit.
#[test]
fn nested_transactions_after_a_transaction_was_lost_are_not_written() {
    let mut actions = vec![Action::Cap(0)];
    actions.extend((0..40).map(|i| Action::Do(Step::InsertPosts(vec![i]), false)));
    actions.push(Action::Do(
        Step::Transaction(
            vec![
                Step::UpdatePost(0, 9),
                Step::InsertPosts(vec![4]),
                Step::Transaction(vec![Step::UpdatePost(1, 8)], true),
                Step::Transaction(vec![Step::UpdatePost(2, 7)], true),
                Step::RolledBackSavepoint(vec![Step::UpdatePost(3, 6)]),
                Step::Transaction(vec![Step::DeletePost(4)], true),
            ],
            true,
        ),
        true,
    ));
    let failures = survives_faults(&actions).unwrap();
    let last = failures.last().unwrap();
    assert!(
        last.len() >= 5,
        "the insert, each nested transaction after it and the transaction failed: {last:#?}"
    );
}
