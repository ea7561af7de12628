//! The reference of the model-based tests: random operations on the blog's models, applied to
//! a store and to a plain in-memory model of the same rules, and the observe stream replayed
//! onto an empty copy. Shared by `tests/model_based.rs` (clean runs) and `tests/faults.rs`
//! (runs where SQLite fails at random points).

// Each of the two uses its own part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use datastore::observe::{Observed, Op, RawValue, RawValueRef, RowChange};
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
    /// A comment on a post; a reply to a comment (on any post) when `parent` picks one; by a
    /// user when `author` picks one.
    SaveComment {
        post: usize,
        parent: Option<usize>,
        author: Option<usize>,
    },
    DeleteComment(usize),
    SaveUser,
    DeleteUser(usize),
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
        (
            any::<usize>(),
            proptest::option::of(any::<usize>()),
            proptest::option::of(any::<usize>())
        )
            .prop_map(|(post, parent, author)| Step::SaveComment {
                post,
                parent,
                author
            }),
        any::<usize>().prop_map(Step::DeleteComment),
        Just(Step::SaveUser),
        any::<usize>().prop_map(Step::DeleteUser),
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
    pub comments: BTreeMap<Id, CommentRow>,
    pub users: BTreeSet<Id>,
    pub links: BTreeMap<Id, (Id, Id)>,
}

/// A comment's relations: its post, the comment it answers, its author.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommentRow {
    pub post: Id,
    pub parent: Option<Id>,
    pub author: Option<Id>,
}

impl Reference {
    /// The comments a delete of `roots` removes: they, and every reply under them.
    fn thread(&self, roots: impl IntoIterator<Item = Id>) -> BTreeSet<Id> {
        let mut thread: BTreeSet<Id> = roots.into_iter().collect();
        loop {
            let replies: Vec<Id> = self
                .comments
                .iter()
                .filter(|(id, c)| {
                    !thread.contains(id) && c.parent.is_some_and(|p| thread.contains(&p))
                })
                .map(|(id, _)| *id)
                .collect();
            if replies.is_empty() {
                return thread;
            }
            thread.extend(replies);
        }
    }

    fn links_of(&self, matches: impl Fn(&(Id, Id)) -> bool) -> usize {
        self.links.values().filter(|link| matches(link)).count()
    }
}

/// `(table, column, rows)` of a delete's effects, as the reference predicts them or the
/// store previews them: removed rows, rows set to NULL, refusing rows.
type Effects = [Vec<(String, Option<String>, usize)>; 3];

fn effects(effects: &datastore::relations::DeleteEffects) -> Effects {
    let list = |rows: &[datastore::relations::AffectedRows]| {
        rows.iter()
            .map(|r| (r.table.clone(), r.column.clone(), r.rows))
            .collect()
    };
    [
        list(&effects.removed),
        list(&effects.set_null),
        list(&effects.refused_by),
    ]
}

/// The reference's effects: `(table, column, rows)` lists, empty counts left out.
fn predicted(
    removed: &[(&str, usize)],
    set_null: &[(&str, &str, usize)],
    refused: &[(&str, &str, usize)],
) -> Effects {
    [
        removed
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(t, n)| (t.to_string(), None, *n))
            .collect(),
        set_null
            .iter()
            .filter(|(_, _, n)| *n > 0)
            .map(|(t, c, n)| (t.to_string(), Some(c.to_string()), *n))
            .collect(),
        refused
            .iter()
            .filter(|(_, _, n)| *n > 0)
            .map(|(t, c, n)| (t.to_string(), Some(c.to_string()), *n))
            .collect(),
    ]
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
                let linked = model.links_of(|(p, _)| *p == id);
                let thread = model.thread(
                    model
                        .comments
                        .iter()
                        .filter(|(_, c)| c.post == id)
                        .map(|(id, _)| *id),
                );
                assert_eq!(
                    effects(&conn.preview_delete::<Post>(&id)?),
                    predicted(
                        &[("posts", 1), ("comments", thread.len())],
                        &[],
                        &[("post_editors", "post_id", linked)]
                    ),
                    "the preview of deleting post {id}"
                );
                match conn.delete_by_id::<Post>(&id) {
                    Err(Error::DeleteRestricted { count, .. }) => {
                        assert_eq!(count, linked)
                    }
                    Ok(()) => {
                        assert_eq!(linked, 0, "a linked post was deleted");
                        model.posts.remove(&id);
                        model.comments.retain(|id, _| !thread.contains(id));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Step::SaveComment {
            post,
            parent,
            author,
        } => {
            if let Some(post) = pick(model.posts.keys().copied(), *post) {
                let row = CommentRow {
                    post,
                    parent: parent.and_then(|i| pick(model.comments.keys().copied(), i)),
                    author: author.and_then(|i| pick(model.users.iter().copied(), i)),
                };
                let comment = conn.save(Comment {
                    post_id: row.post,
                    parent_id: row.parent,
                    author_id: row.author,
                    ..Comment::default()
                })?;
                model.comments.insert(comment.id, row);
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
                let thread = model.thread([id]);
                assert_eq!(
                    effects(&conn.preview_delete::<Comment>(&id)?),
                    predicted(&[("comments", thread.len())], &[], &[]),
                    "the preview of deleting comment {id}"
                );
                conn.delete_by_id::<Comment>(&id)?;
                model.comments.retain(|id, _| !thread.contains(id));
            }
        }
        Step::SaveUser => {
            let user = conn.save(User {
                username: Id::new().to_string(),
                ..User::default()
            })?;
            model.users.insert(user.id);
        }
        Step::DeleteUser(i) => {
            if let Some(id) = pick(model.users.iter().copied(), *i) {
                let linked = model.links_of(|(_, u)| *u == id);
                let authored = model
                    .comments
                    .values()
                    .filter(|c| c.author == Some(id))
                    .count();
                assert_eq!(
                    effects(&conn.preview_delete::<User>(&id)?),
                    predicted(
                        &[("users", 1)],
                        &[("comments", "author_id", authored)],
                        &[("post_editors", "editor_id", linked)]
                    ),
                    "the preview of deleting user {id}"
                );
                match conn.delete_by_id::<User>(&id) {
                    Err(Error::DeleteRestricted { count, .. }) => {
                        assert_eq!(count, linked)
                    }
                    Ok(()) => {
                        assert_eq!(linked, 0, "a linked user was deleted");
                        model.users.remove(&id);
                        // A comment outlives its author.
                        for comment in model.comments.values_mut() {
                            if comment.author == Some(id) {
                                comment.author = None;
                            }
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
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
            .map(|c| {
                (
                    c.id,
                    CommentRow {
                        post: c.post_id,
                        parent: c.parent_id,
                        author: c.author_id,
                    },
                )
            })
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
/// SQLite delivers at commit, so everything is queued once the last step returned, and the
/// stream is read until it is quiet.
pub fn replay(
    stream: &datastore::observe::AllSubscription,
    quiet: Duration,
) -> BTreeMap<(String, String), Vec<RawValue>> {
    let mut copy = BTreeMap::new();
    while let Some(Observed::Change(change)) = stream.recv_timeout(quiet) {
        replay_one(&mut copy, change);
    }
    copy
}

/// As [`replay`], read until the insert of the row keyed `last` arrives (left out of the
/// copy): a row written after everything else, so that every change before it has arrived,
/// also where changes arrive a moment after their commit (PostgreSQL), which no quiet moment
/// can tell.
pub fn replay_through(
    stream: &datastore::observe::AllSubscription,
    last: &str,
) -> BTreeMap<(String, String), Vec<RawValue>> {
    let mut copy = BTreeMap::new();
    loop {
        match stream.recv_timeout(Duration::from_secs(30)) {
            Some(Observed::Change(change)) if change.values[0] == RawValue::Text(last.into()) => {
                return copy;
            }
            Some(Observed::Change(change)) => replay_one(&mut copy, change),
            other => panic!("expected changes up to the last row's insert, got {other:?}"),
        }
    }
}

/// One change, applied to the copy.
fn replay_one(copy: &mut BTreeMap<(String, String), Vec<RawValue>>, change: RowChange) {
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

/// The replayed copy as models (its values are in each table's column order, which for these
/// migrations is the models' order).
pub fn replayed<M: Model>(copy: &BTreeMap<(String, String), Vec<RawValue>>) -> Vec<M> {
    copy.iter()
        .filter(|((table, _), _)| table == M::TABLE_NAME)
        .map(|(_, values)| M::from_raw_row(values.iter().map(RawValueRef::from)).unwrap())
        .collect()
}
