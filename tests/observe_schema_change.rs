//! Another connection changes an observed table's columns while a subscription is live: every
//! row delivered afterwards is the row as saved, or is reported `Undecodable`; never a row
//! decoded by the old positions of its columns.

mod common;

use std::time::Duration;

use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::{Connection, PgConnection, SqliteConnection};
use datastore::observe::{Observed, Subscription};
use datastore::prelude::*;

const WAIT: Duration = Duration::from_secs(5);

/// The model reads `a` and `b`; the table has other columns around them.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Note {
    #[primary_key]
    pub id: Id,
    pub a: String,
    pub b: Option<String>,
}

fn note(n: usize) -> Note {
    Note {
        a: format!("A{n}"),
        b: Some(format!("B{n}")),
        ..Note::default()
    }
}

/// The row saved, or `Undecodable`; `true` if it was the row.
fn delivered_right_or_reported(notes: &Subscription<Note>, saved: &Note, step: &str) -> bool {
    match notes.recv_timeout(WAIT) {
        Some(Observed::Change(change)) => {
            assert_eq!(&change.element, saved, "{step}: a wrong row was delivered");
            true
        }
        Some(Observed::Undecodable { table, .. }) => {
            assert_eq!(table, "notes");
            false
        }
        other => panic!("{step}: expected the row or Undecodable, got {other:?}"),
    }
}

/// Saves after each change of the table by `other`, checking every delivered row; after each
/// change, a row saved once the previous one arrived is delivered right again.
fn schema_changes_never_shift_rows(store: &Store, mut alter: impl FnMut(&str)) {
    let notes = store.observe::<Note>().unwrap();
    let mut n = 0;
    let save = |n: &mut usize| {
        *n += 1;
        store.save(note(*n)).unwrap()
    };
    let saved = save(&mut n);
    assert!(delivered_right_or_reported(
        &notes,
        &saved,
        "before any change"
    ));
    let steps = [
        // A column the model does not use, before the model's.
        "ALTER TABLE notes DROP COLUMN x",
        // One dropped and one of the same type added: as many columns as before, the
        // model's at other positions.
        "ALTER TABLE notes DROP COLUMN y; ALTER TABLE notes ADD COLUMN w TEXT",
        // The model's two columns swap names.
        "ALTER TABLE notes RENAME COLUMN a TO t; ALTER TABLE notes RENAME COLUMN b TO a; \
         ALTER TABLE notes RENAME COLUMN t TO b",
    ];
    for step in steps {
        alter(step);
        for _ in 0..3 {
            let saved = save(&mut n);
            delivered_right_or_reported(&notes, &saved, step);
        }
        let saved = save(&mut n);
        assert!(
            delivered_right_or_reported(&notes, &saved, step),
            "{step}: delivery recovers after the change"
        );
    }
}

#[test]
fn a_schema_change_while_observing_never_delivers_shifted_rows_on_postgres() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let mut other = PgConnection::establish(schema.url()).unwrap();
    other
        .batch_execute(
            "CREATE TABLE notes (id uuid PRIMARY KEY, x TEXT, y TEXT, a TEXT NOT NULL, b TEXT)",
        )
        .unwrap();
    let store = Store::builder(schema.url()).open().unwrap();
    schema_changes_never_shift_rows(&store, |sql| other.batch_execute(sql).unwrap());
}
#[test]
fn a_schema_change_while_observing_never_delivers_shifted_rows_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db").display().to_string();
    let mut other = SqliteConnection::establish(&path).unwrap();
    other
        .batch_execute(
            "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, x TEXT, y TEXT, a TEXT NOT NULL, b TEXT)",
        )
        .unwrap();
    let store = Store::builder(&path).open().unwrap();
    schema_changes_never_shift_rows(&store, |sql| other.batch_execute(sql).unwrap());
}

/// A SQLite file with a table of notes (`a` and `b`, no other column), another plain
/// connection to it, and a store on it whose pool holds one connection.
fn notes_on_sqlite() -> (tempfile::TempDir, SqliteConnection, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db").display().to_string();
    let mut other = SqliteConnection::establish(&path).unwrap();
    other
        .batch_execute("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, a TEXT NOT NULL, b TEXT)")
        .unwrap();
    let store = Store::builder(&path).pool_size(1).open().unwrap();
    (dir, other, store)
}

/// Swaps the names of the notes' columns `a` and `b` (and so what the model reads as each).
const SWAP_A_AND_B: &str = "ALTER TABLE notes RENAME COLUMN a TO t; \
     ALTER TABLE notes RENAME COLUMN b TO a; ALTER TABLE notes RENAME COLUMN t TO b";

/// While nobody observes, the store's connections do not watch for schema changes: a table
/// changed by another connection then is read anew by the next subscription, whose rows are
/// decoded by the new columns (here, two swapped names: the old positions would swap values).
#[test]
fn a_schema_change_made_while_nobody_observed_is_read_by_the_next_subscription() {
    let (_dir, mut other, store) = notes_on_sqlite();
    {
        // An epoch whose columns a subscription read, before nobody observes.
        let notes = store.observe::<Note>().unwrap();
        let saved = store.save(note(1)).unwrap();
        assert!(delivered_right_or_reported(&notes, &saved, "observed"));
    }
    store.save(note(2)).unwrap();
    other.batch_execute(SWAP_A_AND_B).unwrap();
    // Re-prepared for the new schema while nobody observes.
    store.save(note(3)).unwrap();
    let notes = store.observe::<Note>().unwrap();
    let saved = store.save(note(4)).unwrap();
    assert!(
        delivered_right_or_reported(&notes, &saved, "observed again"),
        "the first row after subscribing is decoded by the columns the table has now"
    );
}

/// A statement SQLite prepares again (another connection swapped two columns' names) that
/// changes no row counts as a schema change all the same: the same prepared statement then
/// changes a row without being prepared again, and that row is decoded by the new columns.
#[test]
fn a_statement_prepared_again_that_changed_no_row_still_counts_on_sqlite() {
    use datastore::diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
    prepared_again_then_changing_a_row(true, |sqlite, a| {
        datastore::diesel::update(notes::table.filter(notes::a.eq(a.to_owned())))
            .set(notes::b.eq("touched"))
            .execute(sqlite)
            .unwrap()
    });
}

/// The same when the statement runs another from inside it before its first row (a
/// table-valued pragma, whose own statement SQLite reports as starting, in its place).
#[test]
fn a_statement_prepared_again_that_runs_a_pragma_first_still_counts_on_sqlite() {
    use datastore::diesel::RunQueryDsl;
    prepared_again_then_changing_a_row(false, |sqlite, a| {
        datastore::diesel::sql_query(
            "UPDATE notes SET b = 'touched' \
             WHERE a = ? AND (SELECT count(*) FROM pragma_table_xinfo('notes')) > 0",
        )
        .bind::<datastore::diesel::sql_types::Text, _>(a.to_owned())
        .execute(sqlite)
        .unwrap()
    });
}

/// Runs `touch` (one statement Diesel keeps, setting `b` of the notes whose `a` it is given)
/// before another connection swaps the names of columns `a` and `b`, and after: once for no
/// row if `idle_first` (prepared again, changing nothing), then for the saved row (whose `a`
/// now holds what was `b`). Its change is delivered by the new columns or reported, and the
/// next row is delivered right.
fn prepared_again_then_changing_a_row(
    idle_first: bool,
    mut touch: impl FnMut(&mut SqliteConnection, &str) -> usize,
) {
    let (_dir, mut other, store) = notes_on_sqlite();
    let notes = store.observe::<Note>().unwrap();
    let saved = store.save(note(1)).unwrap();
    assert!(delivered_right_or_reported(&notes, &saved, "before"));
    {
        let mut conn = store.conn().unwrap();
        let datastore::AnyConnection::Sqlite(sqlite) = &mut *conn else {
            unreachable!("a SQLite store")
        };
        assert_eq!(touch(sqlite, "none"), 0);
        other.batch_execute(SWAP_A_AND_B).unwrap();
        if idle_first {
            assert_eq!(
                touch(sqlite, "none"),
                0,
                "prepared again, and changed nothing"
            );
        }
        assert_eq!(touch(sqlite, "B1"), 1);
    }
    let now = store.get::<Note>(&saved.id).unwrap();
    assert_eq!((now.a.as_str(), now.b.as_deref()), ("B1", Some("touched")));
    // Decoded by the new columns, or reported (never by the old ones); then delivered again.
    delivered_right_or_reported(&notes, &now, "after");
    let again = store.save(note(2)).unwrap();
    assert!(delivered_right_or_reported(&notes, &again, "recovered"));
}
