//! Observe needs SQLite compiled with the pre-update hook (this repository's builds set
//! `LIBSQLITE3_FLAGS` in `.cargo/config.toml`). A build without it still works, and observe
//! says how to turn it on. `.ci/run` runs this test in both builds.

mod common;

use common::memory_store;
use common::models::Post;
use datastore::Error;

#[test]
fn observe_works_with_the_preupdate_hook_and_says_how_to_get_it_without() {
    if let Ok(expected) = std::env::var("DATASTORE_EXPECT_PREUPDATE") {
        assert_eq!(
            datastore::observe::AVAILABLE,
            expected == "1",
            "the build is not the one expected"
        );
    }
    let store = memory_store();
    let subscription = store.observe::<Post>();
    if datastore::observe::AVAILABLE {
        assert!(subscription.is_ok());
    } else {
        match subscription {
            Err(Error::Unsupported(message)) => {
                assert!(
                    message.contains("LIBSQLITE3_FLAGS=-DSQLITE_ENABLE_PREUPDATE_HOOK"),
                    "{message}"
                )
            }
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }
    // Everything else works either way.
    let saved = store
        .save(Post {
            title: "still here".into(),
            ..Post::default()
        })
        .unwrap();
    assert_eq!(store.get::<Post>(&saved.id).unwrap(), saved);
}
