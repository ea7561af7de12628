//! The reference of the model-based tests: random operations on the blog's models, applied to
//! a store and to a plain in-memory model of the same rules, and the observe stream replayed
//! onto an empty copy. Shared by `tests/model_based.rs` (clean runs) and `tests/faults.rs`
//! (runs where SQLite fails at random points).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use datastore::observe::{Observed, Op, RawValue};
use datastore::prelude::*;
use datastore::{Error, Model};
use proptest::prelude::*;

use crate::common::models::{Comment, Post, PostEditor, User};

/// One step. Indexes pick among the rows that exist (modulo their number).
#[derive(Debug, Clone)]
pub enum Step {
    SavePost(i32),
    /// New posts with these ratings, through `insert_all`.
    InsertPosts(Vec<i32>),
    UpdatePost(usize, i32),
    DeletePost(usize),
    SaveComment(usize),
    DeleteComment(usize),
    SaveUser,
    Link(usize, usize),
    Unlink(usize, usize),
    /// Steps in one transaction, committed or rolled back.
    Transaction(Vec<Step>, bool),
    /// Inside a committed transaction: steps in a savepoint that rolls back.
    RolledBackSavepoint(Vec<Step>),
}

pub fn simple_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..10i32).prop_map(Step::SavePost),
        prop::collection::vec(0..10i32, 1..4).prop_map(Step::InsertPosts),
        (any::<usize>(), 0..10i32).prop_map(|(i, r)| Step::UpdatePost(i, r)),
        any::<usize>().prop_map(Step::DeletePost),
        any::<usize>().prop_map(Step::SaveComment),
        any::<usize>().prop_map(Step::DeleteComment),
        Just(Step::SaveUser),
        (any::<usize>(), any::<usize>()).prop_map(|(p, u)| Step::Link(p, u)),
        (any::<usize>(), any::<usize>()).prop_map(|(p, u)| Step::Unlink(p, u)),
    ]
}

pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => simple_step(),
        1 => (prop::collection::vec(simple_step(), 1..5), any::<bool>()).prop_map(|(s, c)| Step::Transaction(s, c)),
        1 => prop::collection::vec(simple_step(), 1..4).prop_map(Step::RolledBackSavepoint),
    ]
}

/// The reference: what the rules say the data is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reference {
    pub posts: BTreeMap<Id, i32>,
    pub comments: BTreeMap<Id, Id>,
    pub users: BTreeSet<Id>,
    pub links: BTreeMap<Id, (Id, Id)>,
}

pub fn pick<T: Copy>(items: impl IntoIterator<Item = T>, i: usize) -> Option<T> {
    let items: Vec<T> = items.into_iter().collect();
    (!items.is_empty()).then(|| items[i % items.len()])
}

/// Applies one step to the database and to the reference alike.
pub fn apply(
    conn: &mut datastore::AnyConnection,
    model: &mut Reference,
    step: &Step,
) -> datastore::Result<()> {
    match step {
        Step::SavePost(rating) => {
            let post = conn.save(Post {
                title: "p".into(),
                rating: *rating,
                ..Post::default()
            })?;
            model.posts.insert(post.id, *rating);
        }
        Step::InsertPosts(ratings) => {
            let posts = ratings
                .iter()
                .map(|rating| Post {
                    title: "p".into(),
                    rating: *rating,
                    ..Post::default()
                })
                .collect();
            for post in conn.insert_all(posts)? {
                model.posts.insert(post.id, post.rating);
            }
        }
        Step::UpdatePost(i, rating) => {
            if let Some(id) = pick(model.posts.keys().copied(), *i) {
                let post: Post = conn.get(&id)?;
                conn.save(Post {
                    rating: *rating,
                    ..post
                })?;
                model.posts.insert(id, *rating);
            }
        }
        Step::DeletePost(i) => {
            if let Some(id) = pick(model.posts.keys().copied(), *i) {
                let linked = model.links.values().filter(|(p, _)| *p == id).count();
                match conn.delete_by_id::<Post>(&id) {
                    Err(Error::DeleteRestricted { count, .. }) => {
                        assert_eq!(count as usize, linked)
                    }
                    Ok(()) => {
                        assert_eq!(linked, 0, "a linked post was deleted");
                        model.posts.remove(&id);
                        model.comments.retain(|_, post| *post != id);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Step::SaveComment(i) => {
            if let Some(post) = pick(model.posts.keys().copied(), *i) {
                let comment = conn.save(Comment {
                    post_id: post,
                    ..Comment::default()
                })?;
                model.comments.insert(comment.id, post);
            } else {
                // In a savepoint: on PostgreSQL a failed statement aborts the transaction around
                // it, and the steps after it are expected to go on.
                let orphan = datastore::diesel::Connection::transaction(conn, |tx| {
                    tx.save(Comment {
                        post_id: Id::new(),
                        ..Comment::default()
                    })
                });
                match orphan {
                    Ok(_) => panic!("a comment of no post is refused"),
                    Err(e) if e.constraint().is_some() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Step::DeleteComment(i) => {
            if let Some(id) = pick(model.comments.keys().copied(), *i) {
                conn.delete_by_id::<Comment>(&id)?;
                model.comments.remove(&id);
            }
        }
        Step::SaveUser => {
            let user = conn.save(User {
                username: Id::new().to_string(),
                ..User::default()
            })?;
            model.users.insert(user.id);
        }
        Step::Link(p, u) => {
            if let (Some(post), Some(user)) = (
                pick(model.posts.keys().copied(), *p),
                pick(model.users.iter().copied(), *u),
            ) {
                // A pair is linked at most once: linking it again is handed the link.
                let post: Post = conn.get(&post)?;
                let user: User = conn.get(&user)?;
                let link = post.link_editors(conn, &user)?;
                let known = model
                    .links
                    .iter()
                    .find(|(_, pair)| **pair == (post.id, user.id));
                match known {
                    Some((id, _)) => assert_eq!(*id, link.id, "linked again: the same link"),
                    None => {
                        model.links.insert(link.id, (post.id, user.id));
                    }
                }
            }
        }
        Step::Unlink(p, u) => {
            if let (Some(post), Some(user)) = (
                pick(model.posts.keys().copied(), *p),
                pick(model.users.iter().copied(), *u),
            ) {
                let post: Post = conn.get(&post)?;
                let user: User = conn.get(&user)?;
                let removed = post.unlink_editors(conn, &user)?;
                let before = model.links.len();
                model.links.retain(|_, link| *link != (post.id, user.id));
                assert_eq!(removed, before - model.links.len());
            }
        }
        Step::Transaction(steps, commit) => {
            let mut inner = model.clone();
            let result = datastore::diesel::Connection::transaction(conn, |tx| {
                for step in steps {
                    apply(tx, &mut inner, step)?;
                }
                if *commit {
                    Ok(())
                } else {
                    Err(Error::NotFound {
                        table: "rollback".into(),
                        key: String::new(),
                    })
                }
            });
            match result {
                Ok(()) => *model = inner,
                Err(Error::NotFound { table, .. }) if table == "rollback" => {}
                Err(e) => return Err(e),
            }
        }
        Step::RolledBackSavepoint(steps) => {
            datastore::diesel::Connection::transaction::<(), Error, _>(conn, |tx| {
                let mut discarded = model.clone();
                let _ = datastore::diesel::Connection::transaction::<(), Error, _>(tx, |tx| {
                    for step in steps {
                        apply(tx, &mut discarded, step)?;
                    }
                    Err(Error::NotFound {
                        table: "savepoint".into(),
                        key: String::new(),
                    })
                });
                datastore::Result::Ok(())
            })?;
        }
    }
    Ok(())
}

/// The database's data, in the reference's form.
pub fn stored(conn: &mut datastore::AnyConnection) -> Reference {
    Reference {
        posts: conn
            .all::<Post>()
            .unwrap()
            .into_iter()
            .map(|p| (p.id, p.rating))
            .collect(),
        comments: conn
            .all::<Comment>()
            .unwrap()
            .into_iter()
            .map(|c| (c.id, c.post_id))
            .collect(),
        users: conn
            .all::<User>()
            .unwrap()
            .into_iter()
            .map(|u| u.id)
            .collect(),
        links: conn
            .all::<PostEditor>()
            .unwrap()
            .into_iter()
            .map(|l| (l.id, (l.post_id, l.editor_id)))
            .collect(),
    }
}

/// The data the observe stream describes, replayed onto an empty copy (rows by table and key).
/// SQLite delivers at commit, so everything is queued once the last step returned; PostgreSQL's
/// notifications arrive within milliseconds, and the stream is read until it is quiet.
pub fn replay(
    stream: &datastore::observe::AllSubscription,
    quiet: Duration,
) -> BTreeMap<(String, String), Vec<RawValue>> {
    let mut copy = BTreeMap::new();
    while let Some(Observed::Change(change)) = stream.recv_timeout(quiet) {
        let RawValue::Text(id) = change.values[0].clone() else {
            panic!("keys are text")
        };
        let key = (change.table.clone(), id);
        match change.op {
            Op::Insert | Op::Update => {
                copy.insert(key, change.values);
            }
            Op::Delete => {
                assert!(
                    copy.remove(&key).is_some(),
                    "a delete of a row the stream never inserted"
                );
            }
        }
    }
    copy
}

/// The replayed copy as models (its values are in each table's column order, which for these
/// migrations is the models' order).
pub fn replayed<M: Model>(copy: &BTreeMap<(String, String), Vec<RawValue>>) -> Vec<M> {
    copy.iter()
        .filter(|((table, _), _)| table == M::TABLE_NAME)
        .map(|(_, values)| M::from_raw_row(values.clone()).unwrap())
        .collect()
}
