//! `store.transaction`: what happens inside one when it is misused, and when the database
//! gives it up.

mod common;

use std::time::{Duration, Instant};

use common::models::{posts, Post};
use common::{post, user};
use datastore::prelude::*;
use datastore::Error;

/// On SQLite a file (WAL), where readers never wait for a writer. (On an in-memory database the
/// connections share one lock: a read through the store waits for the transaction too.)
mod a_write_through_the_store_inside_its_transaction_fails_at_once {
    use super::*;

    #[test]
    fn sqlite() {
        let (_dir, store) = common::file_store();
        fails_at_once(&store);
    }

    #[test]
    fn postgres() {
        let Some(db) = common::TestDb::postgres() else {
            return;
        };
        let _schema = db.schema;
        fails_at_once(&db.store);
    }
}

fn fails_at_once(store: &Store) {
    let kept = store.save(post("kept", 1)).unwrap();
    let editor = store.save(user("editor")).unwrap();
    let started = Instant::now();
    store
        .transaction(|tx| {
            tx.save(post("inside", 2))?;
            let outside = [
                store.save(post("outside", 3)).map(drop),
                store.insert_all(vec![post("outside", 3)]).map(drop),
                store.save_graph(post("outside", 3)).map(drop),
                store.delete(&kept),
                store.delete_by_id::<Post>(&kept.id),
                store.delete_where::<Post, _>(posts::rating.eq(1)).map(drop),
                kept.link_editors(&mut store.conn()?, &editor).map(drop),
                store.transaction(|_| Ok(())),
            ];
            for (i, result) in outside.into_iter().enumerate() {
                let err = result.expect_err("a write outside the transaction");
                assert!(
                    matches!(err, Error::WriteOutsideTransaction),
                    "{i}: {err:?}"
                );
                assert!(err.to_string().contains("closure's connection"), "{err}");
            }
            // Reads through the store work, on other connections: committed data only.
            assert_eq!(store.count::<Post>()?, 1);
            assert_eq!(store.find::<Post>(&kept.id)?, Some(kept.clone()));
            assert_eq!(kept.editors(&mut store.conn()?)?, vec![]);
            Ok(())
        })
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "at once, not after the busy timeout: {:?}",
        started.elapsed()
    );
    let titles: Vec<String> = store
        .all::<Post>()
        .unwrap()
        .into_iter()
        .map(|p| p.title)
        .collect();
    assert_eq!(titles, ["kept", "inside"], "only the transaction's write");
    assert_eq!(kept.editors(&mut store.conn().unwrap()).unwrap(), vec![]);

    // Afterwards the same connections write again.
    let mut conns: Vec<_> = (0..3).map(|_| store.conn().unwrap()).collect();
    for conn in &mut conns {
        conn.save(post("after", 4)).unwrap();
    }
    drop(conns);
    kept.link_editors(&mut store.conn().unwrap(), &editor)
        .unwrap();
    assert_eq!(store.count::<Post>().unwrap(), 5);
}
