//! The relations real schemas need: optional parents, a model related to itself, two relations
//! between one pair of models, a many-to-many of a model with itself, and what each delete
//! does stated per relation; on SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use common::PgSchema;
use datastore::migrate::Migrations;
use datastore::observe::{Observed, Op};
use datastore::prelude::*;
use datastore::schema::OnDelete;
use datastore::{AnyConnection, ConstraintKind, Error};

/// A forum: members write topics and review them; replies answer topics or other replies;
/// members follow members.
mod forum {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Member {
        #[primary_key]
        pub id: Id,
        pub name: String,
        #[has_many(Topic, foreign_key = author_id)]
        pub authored: HasMany<Topic>,
        #[has_many(Topic, foreign_key = reviewer_id)]
        pub reviewed: HasMany<Topic>,
        /// The members this one follows: the follows whose `follower_id` is this member, each
        /// pointing at the one followed by its `followee_id`.
        #[many_to_many(Member, through = Follow, foreign_key = follower_id, other_key = followee_id)]
        pub following: ManyToMany<Member>,
        /// The members following this one: the same links, read the other way.
        #[many_to_many(Self, through = Follow, foreign_key = followee_id, other_key = follower_id)]
        pub followers: ManyToMany<Self>,
    }

    /// One member following another: a join model with two foreign keys to `Member`.
    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Follow {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Member)]
        pub follower_id: Id,
        #[belongs_to(Member)]
        pub followee_id: Id,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Topic {
        #[primary_key]
        pub id: Id,
        pub title: String,
        /// Deleting the author deletes the topic.
        #[belongs_to(Member)]
        pub author_id: Id,
        /// Deleting the reviewer leaves the topic, unreviewed.
        #[belongs_to(Member, on_delete = set_null)]
        pub reviewer_id: Option<Id>,
        #[has_many(Reply)]
        pub replies: HasMany<Reply>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Reply {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Topic)]
        pub topic_id: Id,
        /// The reply this one answers; `None` for an answer to the topic itself. (Spelled
        /// `Self`, as the blog's comments spell theirs by name.)
        #[belongs_to(Self)]
        pub parent_id: Option<Id>,
        #[has_many(Self, foreign_key = parent_id)]
        pub answers: HasMany<Self>,
        pub text: String,
    }

    pub fn schema() -> Schema {
        Schema::new()
            .model::<Member>()
            .model::<Topic>()
            .model::<Reply>()
            .model::<Follow>()
    }
}

use forum::{members, replies, topics, Follow, Member, Reply, Topic};

/// The forum's tables: in memory, and in a schema of its own on the server when one is set.
fn stores() -> Vec<(Store, Option<PgSchema>)> {
    let sqlite = Store::builder(":memory:")
        .schema(forum::schema())
        .open()
        .unwrap();
    let mut stores = vec![(sqlite, None)];
    if let Some(url) = common::postgres_url() {
        let schema = PgSchema::new(&url);
        let store = Store::builder(schema.url())
            .schema(forum::schema())
            .open()
            .unwrap();
        stores.push((store, Some(schema)));
    }
    stores
}

fn member(store: &Store, name: &str) -> Member {
    store
        .save(Member {
            name: name.into(),
            ..Member::default()
        })
        .unwrap()
}

fn topic(store: &Store, title: &str, author: &Member, reviewer: Option<&Member>) -> Topic {
    store
        .save(Topic {
            title: title.into(),
            author_id: author.id,
            reviewer_id: reviewer.map(|r| r.id),
            ..Topic::default()
        })
        .unwrap()
}

/// A chain of `depth` replies on a topic, each answering the one before; its first reply.
fn chain(store: &Store, topic: &Topic, depth: usize) -> Reply {
    let mut conn = store.conn().unwrap();
    let replies: Vec<Reply> = {
        let mut parent = None;
        (0..depth)
            .map(|i| {
                let reply = Reply {
                    topic_id: topic.id,
                    parent_id: parent,
                    text: format!("reply {i}"),
                    ..Reply::default()
                };
                parent = Some(reply.id);
                reply
            })
            .collect()
    };
    conn.insert_all(replies).unwrap().remove(0)
}

#[test]
fn the_rules_follow_each_relations_declaration() {
    let table = Topic::table();
    let fk = |column: &str| table.foreign_key(column).unwrap().on_delete;
    assert_eq!(fk("author_id"), OnDelete::Cascade);
    assert_eq!(fk("reviewer_id"), OnDelete::SetNull);
    assert!(table.column("reviewer_id").unwrap().nullable);
    let replies = Reply::table();
    assert_eq!(
        replies.foreign_key("parent_id").unwrap().references,
        "replies"
    );
    assert_eq!(
        replies.foreign_key("parent_id").unwrap().on_delete,
        OnDelete::Cascade,
        "an optional child of a has_many cascades too"
    );
}

#[test]
fn an_optional_parent_may_be_absent_and_is_loaded_when_present() {
    for (store, _schema) in stores() {
        let ada = member(&store, "Ada");
        let bob = member(&store, "Bob");
        let unreviewed = topic(&store, "draft", &ada, None);
        let reviewed = topic(&store, "final", &ada, Some(&bob));
        let mut conn = store.conn().unwrap();
        assert_eq!(unreviewed.reviewer(&mut conn).unwrap(), None);
        assert_eq!(reviewed.reviewer(&mut conn).unwrap(), Some(bob.clone()));
        assert_eq!(reviewed.author(&mut conn).unwrap(), ada);

        let with = Topic::default().with_reviewer(&bob);
        assert_eq!(with.reviewer_id, Some(bob.id));

        // Filters through the optional key.
        let by_bob: Vec<Topic> = conn
            .query::<Topic>(|q| q.filter(Topic::where_reviewer(members::name.eq("Bob"))))
            .unwrap();
        assert_eq!(by_bob, vec![reviewed.clone()]);
        let reviewers: Vec<Member> = conn
            .query::<Member>(|q| q.filter(Member::having_reviewed(topics::title.eq("final"))))
            .unwrap();
        assert_eq!(reviewers, vec![bob.clone()]);
    }
}

#[test]
fn two_relations_between_one_pair_of_models_load_and_filter_each_their_own() {
    for (store, _schema) in stores() {
        let ada = member(&store, "Ada");
        let bob = member(&store, "Bob");
        topic(&store, "one", &ada, Some(&bob));
        topic(&store, "two", &ada, None);
        topic(&store, "three", &bob, Some(&ada));
        let mut conn = store.conn().unwrap();
        assert_eq!(ada.authored(&mut conn).unwrap().len(), 2);
        assert_eq!(ada.reviewed(&mut conn).unwrap().len(), 1);
        assert_eq!(bob.reviewed(&mut conn).unwrap()[0].title, "one");

        let mut members: Vec<Member> = conn.all().unwrap();
        Member::load_authored(&mut conn, &mut members).unwrap();
        Member::load_reviewed(&mut conn, &mut members).unwrap();
        let counts: Vec<(usize, usize)> = members
            .iter()
            .map(|m| {
                (
                    m.authored.get().unwrap().len(),
                    m.reviewed.get().unwrap().len(),
                )
            })
            .collect();
        assert_eq!(counts, [(2, 1), (1, 1)]);

        let authors_of_three: Vec<Member> = conn
            .query::<Member>(|q| q.filter(Member::having_authored(topics::title.eq("three"))))
            .unwrap();
        assert_eq!(authors_of_three, vec![bob.clone()]);
    }
}

#[test]
fn each_foreign_key_does_what_its_relation_states_when_its_parent_is_deleted() {
    for (store, _schema) in stores() {
        let ada = member(&store, "Ada");
        let bob = member(&store, "Bob");
        let kept = topic(&store, "kept", &ada, Some(&bob));
        let gone = topic(&store, "gone", &bob, None);
        chain(&store, &gone, 3);
        let changes = store.observe::<Topic>().unwrap();

        store.delete(&bob).unwrap();
        let mut conn = store.conn().unwrap();
        let kept_now = conn.get::<Topic>(&kept.id).unwrap();
        assert_eq!(kept_now.reviewer_id, None, "set null");
        assert!(conn.find::<Topic>(&gone.id).unwrap().is_none(), "cascade");
        assert_eq!(
            conn.count::<Reply>().unwrap(),
            0,
            "and its replies, down the chain"
        );

        // The SET NULL is observed as the update it is; the cascade as a delete.
        let mut seen = Vec::new();
        while let Some(Observed::Change(change)) = changes.recv_timeout(Duration::from_secs(5)) {
            seen.push((
                change.op,
                change.element.title.clone(),
                change.element.reviewer_id,
            ));
            if seen.len() == 2 {
                break;
            }
        }
        seen.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            seen,
            [
                (Op::Delete, "gone".to_owned(), None),
                (Op::Update, "kept".to_owned(), None)
            ]
        );
    }
}

/// The database accepts replies whose parents form a cycle (here an answer to its own answer):
/// loading the tree ends, each row expanded once on its path, the row met again below itself
/// left unloaded.
#[test]
fn a_tree_whose_parents_form_a_cycle_loads_and_ends() {
    for (store, _schema) in stores() {
        let ada = member(&store, "Ada");
        let topic = topic(&store, "circular", &ada, None);
        let first = chain(&store, &topic, 2);
        let mut conn = store.conn().unwrap();
        let answer = conn
            .query::<Reply>(|q| q.filter(replies::text.eq("reply 1")))
            .unwrap()
            .remove(0);
        let mut question = first.clone();
        question.parent_id = Some(answer.id);
        conn.save(question).unwrap();
        let mut roots = vec![first.clone()];
        let (done, loaded) = std::sync::mpsc::channel();
        let loading = store.clone();
        let worker = std::thread::spawn(move || {
            let mut conn = loading.conn().unwrap();
            Reply::load_answers_tree(&mut conn, &mut roots).unwrap();
            done.send(roots).unwrap();
        });
        let roots = loaded
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the load ends");
        worker.join().unwrap();
        let [again] = roots[0].answers.get().unwrap() else {
            panic!("one answer")
        };
        assert_eq!(again.text, "reply 1");
        let [met_again] = again.answers.get().unwrap() else {
            panic!("the first reply, answering its answer")
        };
        assert_eq!(met_again.id, first.id);
        assert!(met_again.answers.get().is_none(), "not expanded again");
    }
}

#[test]
fn a_thread_of_depth_d_loads_with_d_plus_one_statements() {
    for (store, _schema) in stores() {
        let ada = member(&store, "Ada");
        let topic = topic(&store, "thread", &ada, None);
        for depth in [1, 5, 20] {
            let first = chain(&store, &topic, depth);
            let mut conn = store.conn().unwrap();
            let mut roots = vec![first.clone()];
            let ((), statements) = common::trace::statements(|| {
                Reply::load_answers_tree(&mut conn, &mut roots).unwrap()
            });
            // One statement per level, the last finding no answers: `d` (at most `d + 1`).
            assert_eq!(statements.len(), depth, "depth {depth}: {statements:?}");
            let mut levels = 0;
            let mut at = &roots[0];
            while let Some([next]) = at.answers.get() {
                levels += 1;
                at = next;
            }
            assert_eq!(levels, depth - 1, "every level loaded");
            assert_eq!(
                at.answers.get(),
                Some(&[][..]),
                "the last, loaded and empty"
            );
        }

        // Filters on the self-relation run in SQL.
        let mut conn = store.conn().unwrap();
        let answered: Vec<Reply> = conn
            .query::<Reply>(|q| q.filter(Reply::having_answers(replies::text.eq("reply 1"))))
            .unwrap();
        assert!(answered.iter().all(|r| r.text == "reply 0"), "{answered:?}");
        assert_eq!(answered.len(), 2, "the chains of depth 5 and 20");
        let answering_first: Vec<Reply> = conn
            .query::<Reply>(|q| q.filter(Reply::where_parent(replies::text.eq("reply 0"))))
            .unwrap();
        assert_eq!(answering_first.len(), 2);
    }
}

#[test]
fn deleting_the_root_of_a_chain_deeper_than_sqlites_cascade_limit() {
    for (store, _schema) in stores() {
        let ada = member(&store, "Ada");
        let topic = topic(&store, "long", &ada, None);
        let first = chain(&store, &topic, 2000);
        let changes = store.observe::<Reply>().unwrap();
        let preview = store.preview_delete::<Reply>(&first.id);
        match (store.dialect(), store.delete(&first)) {
            // PostgreSQL follows the whole cascade.
            (Dialect::Postgres, Ok(())) => {
                assert_eq!(preview.unwrap().removed_from("replies"), 2000);
                assert_eq!(store.count::<Reply>().unwrap(), 0)
            }
            // SQLite stops at its trigger depth: a typed error, and nothing deleted; the
            // preview says so, deleting nothing either.
            (Dialect::Sqlite, Err(Error::CascadeTooDeep { limit, .. })) => {
                assert_eq!(limit, Error::SQLITE_CASCADE_LIMIT);
                assert!(
                    matches!(preview, Err(Error::CascadeTooDeep { .. })),
                    "{preview:?}"
                );
                assert_eq!(store.count::<Reply>().unwrap(), 2000, "nothing deleted");
                // Up to the limit, it works, as its preview says.
                let reply = |n: usize| {
                    store
                        .query::<Reply>(|q| q.filter(replies::text.eq(format!("reply {n}"))))
                        .unwrap()
                        .remove(0)
                };
                let at_the_limit = reply(1000);
                let effects = store.preview_delete::<Reply>(&at_the_limit.id).unwrap();
                assert_eq!(effects.removed_from("replies"), 1000);
                assert_eq!(
                    store.count::<Reply>().unwrap(),
                    2000,
                    "a preview deletes nothing"
                );
                assert!(
                    changes.recv_timeout(Duration::from_millis(500)).is_none(),
                    "nor is it observed"
                );
                store.delete(&at_the_limit).unwrap();
                assert_eq!(store.count::<Reply>().unwrap(), 1000);
                // Inside a transaction, the preview leaves it as it was.
                store
                    .transaction(|tx| {
                        let effects = tx.preview_delete::<Reply>(&first.id)?;
                        assert_eq!(effects.removed_from("replies"), 1000);
                        assert_eq!(tx.count::<Reply>()?, 1000);
                        Ok::<_, Error>(())
                    })
                    .unwrap();
            }
            (dialect, outcome) => panic!("{dialect:?}: {outcome:?}"),
        }
    }
}

/// Beside a transaction its thread holds open, a preview may not write (it would wait for that
/// transaction): it reads, and says what it read.
#[test]
fn a_deep_preview_beside_a_transaction_reads_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path().join("forum.db"))
        .schema(forum::schema())
        .open()
        .unwrap();
    let ada = member(&store, "Ada");
    let topic = topic(&store, "long", &ada, None);
    let first = chain(&store, &topic, 1500);
    store
        .transaction(|tx| {
            tx.save(Member {
                name: "Bob".into(),
                ..Member::default()
            })?;
            let beside = store.preview_delete::<Reply>(&first.id)?;
            assert_eq!(beside.removed_from("replies"), 1500);
            Ok::<_, Error>(())
        })
        .unwrap();
    assert!(matches!(
        store.preview_delete::<Reply>(&first.id),
        Err(Error::CascadeTooDeep { .. })
    ));
}

/// `(table, rows)` of every table of the forum.
fn counts(store: &Store) -> [(&'static str, usize); 3] {
    [
        ("members", store.count::<Member>().unwrap()),
        ("topics", store.count::<Topic>().unwrap()),
        ("replies", store.count::<Reply>().unwrap()),
    ]
}

#[test]
fn a_delete_preview_follows_the_whole_cascade_and_agrees_with_the_delete() {
    for (store, _schema) in stores() {
        let ada = member(&store, "Ada");
        let bob = member(&store, "Bob");
        // Ada's own topics go with her, with every reply down their threads; the topic she
        // reviews for Bob stays, unreviewed.
        let first = topic(&store, "first", &ada, Some(&bob));
        let second = topic(&store, "second", &ada, Some(&ada));
        let bobs = topic(&store, "bob's", &bob, Some(&ada));
        let deep = chain(&store, &first, 40);
        chain(&store, &second, 3);
        chain(&store, &bobs, 5);
        // A reply on Bob's topic answering one of Ada's: it goes, through its parent.
        store
            .save(Reply {
                topic_id: bobs.id,
                parent_id: Some(deep.id),
                text: "across".into(),
                ..Reply::default()
            })
            .unwrap();

        let effects = store.preview_delete::<Member>(&ada.id).unwrap();
        assert_eq!(effects.removed_from("members"), 1);
        assert_eq!(effects.removed_from("topics"), 2);
        assert_eq!(effects.removed_from("replies"), 40 + 3 + 1);
        assert_eq!(
            effects.removed[0].table, "members",
            "the deleted table first"
        );
        let set_null: Vec<_> = effects
            .set_null
            .iter()
            .map(|r| (r.table.as_str(), r.column.as_deref(), r.rows))
            .collect();
        assert_eq!(set_null, [("topics", Some("reviewer_id"), 1)]);
        assert_eq!(effects.set_null_in("topics"), 1);
        assert!(!effects.is_refused());
        assert!(
            effects
                .to_string()
                .starts_with("removes members: 1, topics: 2, replies: 44"),
            "{effects}"
        );

        let before = counts(&store);
        store.delete(&ada).unwrap();
        let after = counts(&store);
        for ((table, before), (_, after)) in before.into_iter().zip(after) {
            assert_eq!(
                before - after,
                effects.removed_from(table),
                "{table}: the delete removed what the preview said"
            );
        }
        assert_eq!(store.get::<Topic>(&bobs.id).unwrap().reviewer_id, None);

        assert!(matches!(
            store.preview_delete::<Member>(&ada.id),
            Err(Error::NotFound { .. })
        ));
    }
}

#[test]
fn a_preview_inside_a_transaction_sees_its_writes_and_writes_nothing() {
    for (store, _schema) in stores() {
        let ada = member(&store, "Ada");
        let effects = store
            .transaction(|tx| {
                tx.save(Topic {
                    title: "uncommitted".into(),
                    author_id: ada.id,
                    ..Topic::default()
                })?;
                tx.preview_delete::<Member>(&ada.id)
            })
            .unwrap();
        assert_eq!(effects.removed_from("topics"), 1);
        assert_eq!(
            counts(&store),
            [("members", 1), ("topics", 1), ("replies", 0)]
        );
    }
}

/// A thread inserted in one call, answers before the replies they answer: SQLite checks a
/// foreign key as each statement ends, and a few rows take several statements, so the rows
/// are inserted parents first, whatever their order (and returned in the order given).
#[test]
fn rows_pointing_at_each_other_insert_in_any_order() {
    for (store, _schema) in stores() {
        let author = member(&store, "Ada");
        let topic = topic(&store, "thread", &author, None);
        for length in [2, 3, 5, 9, 300] {
            let mut parent = None;
            let mut thread: Vec<Reply> = (0..length)
                .map(|i| {
                    let reply = Reply {
                        topic_id: topic.id,
                        parent_id: parent,
                        text: format!("reply {i}"),
                        ..Reply::default()
                    };
                    parent = Some(reply.id);
                    reply
                })
                .collect();
            thread.reverse();
            let inserted = store
                .insert_all(thread.clone())
                .unwrap_or_else(|e| panic!("{:?}, {length} rows: {e}", store.dialect()));
            assert_eq!(inserted, thread, "in the order given");
        }
        assert_eq!(store.count::<Reply>().unwrap(), 2 + 3 + 5 + 9 + 300);
    }
}

/// Each member's name with the names of the members it follows and of its followers (both
/// loaded), sorted.
type FollowGraph = Vec<(String, Vec<String>, Vec<String>)>;

fn follow_graph_of(members: &[Member]) -> FollowGraph {
    let names = |linked: &ManyToMany<Member>| -> Vec<String> {
        let mut names: Vec<String> = linked
            .get()
            .unwrap()
            .iter()
            .map(|m| m.name.clone())
            .collect();
        names.sort();
        names
    };
    let mut graph: FollowGraph = members
        .iter()
        .map(|m| (m.name.clone(), names(&m.following), names(&m.followers)))
        .collect();
    graph.sort();
    graph
}

/// The follow graph as stored, loaded with the eager loaders.
fn stored_follow_graph(conn: &mut AnyConnection) -> FollowGraph {
    let mut members: Vec<Member> = conn.all().unwrap();
    Member::load_following(conn, &mut members).unwrap();
    Member::load_followers(conn, &mut members).unwrap();
    follow_graph_of(&members)
}

/// A follow graph written out: each member, whom it follows, who follows it.
fn follow_graph(members: &[(&str, &[&str], &[&str])]) -> FollowGraph {
    let strings = |names: &[&str]| names.iter().map(|&name| name.to_owned()).collect();
    members
        .iter()
        .map(|&(name, following, followers)| {
            (name.to_owned(), strings(following), strings(followers))
        })
        .collect()
}

/// A many-to-many of a model with itself, through a join model whose two foreign keys both
/// point at it: each side is the key its relation names, so following is not being followed.
#[test]
fn a_model_linked_to_itself_tells_the_two_sides_apart() {
    for (store, _schema) in stores() {
        let ada = member(&store, "Ada");
        let bob = member(&store, "Bob");
        let cy = member(&store, "Cy");
        let mut conn = store.conn().unwrap();
        let link = ada.link_following(&mut conn, &bob).unwrap();
        assert_eq!((link.follower_id, link.followee_id), (ada.id, bob.id));
        assert_eq!(
            ada.link_following(&mut conn, &bob).unwrap(),
            link,
            "idempotent"
        );
        bob.link_followers(&mut conn, &cy).unwrap();
        assert_eq!(conn.count::<Follow>().unwrap(), 2);

        assert_eq!(ada.following(&mut conn).unwrap(), vec![bob.clone()]);
        assert!(ada.followers(&mut conn).unwrap().is_empty());
        assert!(bob.following(&mut conn).unwrap().is_empty());
        assert_eq!(cy.following(&mut conn).unwrap(), vec![bob.clone()]);
        assert_eq!(
            stored_follow_graph(&mut conn),
            follow_graph(&[
                ("Ada", &["Bob"], &[]),
                ("Bob", &[], &["Ada", "Cy"]),
                ("Cy", &["Bob"], &[]),
            ])
        );

        let followers_of_bob: Vec<Member> = conn
            .query::<Member>(|q| {
                q.filter(Member::having_following(members::name.eq("Bob")))
                    .order(members::name)
            })
            .unwrap();
        assert_eq!(followers_of_bob, vec![ada.clone(), cy.clone()]);
        let followed_by_ada: Vec<Member> = conn
            .query::<Member>(|q| q.filter(Member::having_followers(members::name.eq("Ada"))))
            .unwrap();
        assert_eq!(followed_by_ada, vec![bob.clone()]);

        // Bob follows nobody: unlinking "Bob follows Ada" leaves "Ada follows Bob".
        assert_eq!(bob.unlink_following(&mut conn, &ada).unwrap(), 0);
        assert_eq!(ada.unlink_followers(&mut conn, &bob).unwrap(), 0);
        assert_eq!(bob.unlink_followers(&mut conn, &ada).unwrap(), 1);
        assert_eq!(
            stored_follow_graph(&mut conn),
            follow_graph(&[
                ("Ada", &[], &[]),
                ("Bob", &[], &["Cy"]),
                ("Cy", &["Bob"], &[])
            ])
        );

        // Saved as a graph: the loaded rows, linked by the side the field names.
        let mut dee = Member {
            name: "Dee".into(),
            ..Member::default()
        };
        dee.following = ManyToMany::loaded(vec![ada.clone()]);
        let dee = store.save_graph(dee).unwrap();
        let followers: Vec<Id> = ada
            .followers(&mut conn)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(followers, [dee.id]);
    }
}

/// Both of a self-linking join model's foreign keys restrict, the pair is unique (one way: the
/// pair the other way round is another link), in the declarations and in the DDL.
#[test]
fn a_self_linking_join_models_keys_restrict_and_its_pair_is_unique() {
    let table = Follow::table();
    for column in ["follower_id", "followee_id"] {
        let fk = table.foreign_key(column).unwrap();
        assert_eq!(
            (fk.references.as_ref(), fk.on_delete),
            ("members", OnDelete::Restrict)
        );
    }
    let unique: Vec<_> = table
        .indexes
        .iter()
        .filter(|index| index.unique)
        .map(|index| index.name.as_ref())
        .collect();
    assert_eq!(unique, ["uq_follows_follower_id_followee_id"]);
    // The tables the schema creates, and the first migration generated for it.
    let dir = tempfile::tempdir().unwrap();
    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
        let schema = forum::schema();
        let migration = Migrations::new(dir.path(), dialect)
            .plan(&schema)
            .unwrap()
            .expect("a first migration");
        for sql in [schema.create_sql(dialect), migration.up] {
            let restricting = sql
                .lines()
                .filter(|line| {
                    line.contains("REFERENCES \"members\"") && line.contains("ON DELETE RESTRICT")
                })
                .count();
            assert_eq!(restricting, 2, "{dialect:?}:\n{sql}");
        }
    }

    for (store, _schema) in stores() {
        let ada = member(&store, "Ada");
        let bob = member(&store, "Bob");
        let follow = |from: &Member, to: &Member| {
            store.save(Follow {
                follower_id: from.id,
                followee_id: to.id,
                ..Follow::default()
            })
        };
        follow(&ada, &bob).unwrap();
        follow(&bob, &ada).expect("the other way round is another link");
        match follow(&ada, &bob) {
            Err(Error::Constraint(violation)) => assert_eq!(violation.kind, ConstraintKind::Unique),
            other => panic!(
                "{:?}: a second link of one pair: {other:?}",
                store.dialect()
            ),
        }
        assert_eq!(store.count::<Follow>().unwrap(), 2);
    }
}

/// How many follows refused the delete of `member` (`result`), which must be refused by them
/// alone: the member's own row, by the follows table directly. `what` names the case.
fn follows_refusing<T: std::fmt::Debug>(
    result: datastore::Result<T>,
    member: &Member,
    what: &dyn std::fmt::Display,
) -> usize {
    match result {
        Err(Error::DeleteRestricted {
            table,
            key,
            join_table,
            via,
            count,
        }) => {
            assert_eq!(
                (table.as_str(), key, join_table.as_str(), via),
                ("members", member.id.to_string(), "follows", None),
                "{what}"
            );
            count
        }
        other => panic!("{what}: deleting {}: {other:?}", member.name),
    }
}

/// Deleting a member still linked, on either side, is refused with the typed error and changes
/// nothing; unlinked, it deletes.
#[test]
fn deleting_a_member_still_following_or_followed_is_refused_until_unlinked() {
    for (store, _schema) in stores() {
        let ada = member(&store, "Ada");
        let bob = member(&store, "Bob");
        let mut conn = store.conn().unwrap();
        ada.link_following(&mut conn, &bob).unwrap();
        for (member, side) in [(&ada, "follower"), (&bob, "followee")] {
            let what = format!("{:?}, the {side}", store.dialect());
            assert_eq!(
                follows_refusing(store.delete(member), member, &what),
                1,
                "{what}"
            );
            assert_eq!(conn.count::<Member>().unwrap(), 2, "nothing deleted");
            assert_eq!(conn.count::<Follow>().unwrap(), 1);
        }
        assert_eq!(ada.unlink_following(&mut conn, &bob).unwrap(), 1);
        store.delete(&bob).unwrap();
        store.delete(&ada).unwrap();
        assert_eq!(conn.count::<Member>().unwrap(), 0);
    }
}

/// A live query loading both sides of a self many-to-many is refreshed by a link and by an
/// unlink, each side showing only its own direction.
#[test]
fn a_live_query_over_both_sides_of_a_self_link_follows_links_and_unlinks() {
    for (store, _schema) in stores() {
        let ada = member(&store, "Ada");
        let bob = member(&store, "Bob");
        let mut live = store
            .live::<Member>()
            .load(Member::FOLLOWING)
            .load(Member::FOLLOWERS)
            .subscribe()
            .unwrap();
        // Snapshots until one shows `members` (a step's commits may arrive in two batches).
        let mut expect = |members: &[(&str, &[&str], &[&str])]| loop {
            let snapshot = live
                .recv_timeout(Duration::from_secs(60))
                .expect("a new snapshot")
                .unwrap();
            if follow_graph_of(&snapshot) == follow_graph(members) {
                return;
            }
        };
        expect(&[("Ada", &[], &[]), ("Bob", &[], &[])]);
        let mut conn = store.conn().unwrap();
        ada.link_following(&mut conn, &bob).unwrap();
        expect(&[("Ada", &["Bob"], &[]), ("Bob", &[], &["Ada"])]);
        bob.link_following(&mut conn, &ada).unwrap();
        expect(&[("Ada", &["Bob"], &["Bob"]), ("Bob", &["Ada"], &["Ada"])]);
        ada.unlink_following(&mut conn, &bob).unwrap();
        expect(&[("Ada", &[], &["Bob"]), ("Bob", &["Ada"], &[])]);
    }
}

/// The members, by name, each saved.
fn members_named<const N: usize>(store: &Store, names: [&str; N]) -> [Member; N] {
    names.map(|name| member(store, name))
}

/// A plain delete of a member still linked is refused with the typed error naming every follow
/// that refuses it (as follower, as followee, and a follow of itself, which is one row), and
/// changes nothing.
#[test]
fn a_refused_delete_of_a_member_counts_each_of_its_follows_once() {
    for (store, _schema) in stores() {
        let [ada, bob, cy, dee] = members_named(&store, ["Ada", "Bob", "Cy", "Dee"]);
        let mut conn = store.conn().unwrap();
        ada.link_following(&mut conn, &bob).unwrap();
        ada.link_following(&mut conn, &cy).unwrap();
        dee.link_following(&mut conn, &ada).unwrap();
        ada.link_following(&mut conn, &ada).unwrap();
        bob.link_following(&mut conn, &cy).unwrap();
        let before = stored_follow_graph(&mut conn);
        // Ada: 3 as follower (one of them of herself), 2 as followee (the same one again); Cy:
        // followed twice; Dee: following once.
        for (member, links) in [(&ada, 4), (&cy, 2), (&dee, 1)] {
            let what = format!("{:?}, {}", store.dialect(), member.name);
            assert_eq!(
                follows_refusing(store.delete(member), member, &what),
                links,
                "{what}"
            );
            assert_eq!(
                store
                    .preview_delete::<Member>(&member.id)
                    .unwrap()
                    .refused_by_rows_of("follows"),
                links,
                "{:?}, {}",
                store.dialect(),
                member.name
            );
        }
        // Several at once: the first refused in key order, with its own follows.
        let refused = store
            .delete_where::<Member, _>(members::name.eq_any(["Ada", "Dee"]))
            .unwrap_err();
        match refused {
            Error::DeleteRestricted { key, count, .. } if key == ada.id.to_string() => {
                assert_eq!(count, 4, "{:?}", store.dialect())
            }
            Error::DeleteRestricted { key, count, .. } if key == dee.id.to_string() => {
                assert_eq!(count, 1, "{:?}", store.dialect())
            }
            other => panic!("{:?}: {other:?}", store.dialect()),
        }
        assert_eq!(stored_follow_graph(&mut conn), before, "nothing changed");
        assert_eq!(conn.count::<Follow>().unwrap(), 5);
    }
}

/// `unlink_and_delete` of a member deletes its follows on both sides (a follow of itself
/// once) and the member, and nothing else: the others and their own follows stay. Deleting
/// one only followed, then one only following, does the same on that one side.
#[test]
fn unlink_and_delete_of_a_member_removes_its_follows_on_both_sides_and_nothing_else() {
    for (store, _schema) in stores() {
        let [ada, bob, cy, dee] = members_named(&store, ["Ada", "Bob", "Cy", "Dee"]);
        let mut conn = store.conn().unwrap();
        ada.link_following(&mut conn, &bob).unwrap();
        cy.link_following(&mut conn, &ada).unwrap();
        ada.link_followers(&mut conn, &ada).unwrap();
        bob.link_following(&mut conn, &cy).unwrap();
        dee.link_followers(&mut conn, &bob).unwrap();

        let preview = store.preview_delete::<Member>(&ada.id).unwrap();
        let effects = store.unlink_and_delete::<Member>(&ada.id).unwrap();
        assert_eq!(effects, preview, "{:?}: as previewed", store.dialect());
        assert_eq!(
            (
                effects.removed_from("members"),
                effects.refused_by_rows_of("follows")
            ),
            (1, 3),
            "{:?}: {effects}",
            store.dialect()
        );
        assert_eq!(store.find::<Member>(&ada.id).unwrap(), None);
        assert_eq!(
            stored_follow_graph(&mut conn),
            follow_graph(&[
                ("Bob", &["Cy", "Dee"], &[]),
                ("Cy", &[], &["Bob"]),
                ("Dee", &[], &["Bob"]),
            ])
        );

        // Dee is only followed; then Bob only follows.
        let effects = store.unlink_and_delete::<Member>(&dee.id).unwrap();
        assert_eq!(effects.refused_by_rows_of("follows"), 1, "{effects}");
        assert_eq!(
            stored_follow_graph(&mut conn),
            follow_graph(&[("Bob", &["Cy"], &[]), ("Cy", &[], &["Bob"])])
        );
        let effects = store.unlink_and_delete::<Member>(&bob.id).unwrap();
        assert_eq!(effects.refused_by_rows_of("follows"), 1, "{effects}");
        assert_eq!(
            stored_follow_graph(&mut conn),
            follow_graph(&[("Cy", &[], &[])])
        );
        assert_eq!(conn.count::<Follow>().unwrap(), 0);
        // Unlinked, nothing refuses: nothing to unlink.
        let effects = store.unlink_and_delete::<Member>(&cy.id).unwrap();
        assert!(!effects.is_refused(), "{effects}");
        assert_eq!(conn.count::<Member>().unwrap(), 0);
    }
}

/// A member may follow itself: the join table allows the pair, as Diesel and Amplify's join
/// models do, and nothing in a link says the two rows differ. It is one follow, the same
/// linked from either side (linking again from either keeps it), shown on both sides; it
/// refuses the member's delete as one row, and unlinking from either side removes it.
#[test]
fn a_member_following_itself_is_one_follow_seen_on_both_sides() {
    for (store, _schema) in stores() {
        let [ada, bob] = members_named(&store, ["Ada", "Bob"]);
        let mut conn = store.conn().unwrap();
        let link = ada.link_following(&mut conn, &ada).unwrap();
        assert_eq!((link.follower_id, link.followee_id), (ada.id, ada.id));
        assert_eq!(
            ada.link_followers(&mut conn, &ada).unwrap(),
            link,
            "the one pair, linked from the other side"
        );
        assert_eq!(ada.link_following(&mut conn, &ada).unwrap(), link);
        assert_eq!(conn.count::<Follow>().unwrap(), 1);
        assert_eq!(ada.following(&mut conn).unwrap(), vec![ada.clone()]);
        assert_eq!(ada.followers(&mut conn).unwrap(), vec![ada.clone()]);
        assert_eq!(
            stored_follow_graph(&mut conn),
            follow_graph(&[("Ada", &["Ada"], &["Ada"]), ("Bob", &[], &[])])
        );
        let what = format!("{:?}", store.dialect());
        assert_eq!(
            follows_refusing(store.delete(&ada), &ada, &what),
            1,
            "{what}"
        );
        assert_eq!(conn.count::<Member>().unwrap(), 2, "nothing deleted");

        bob.link_following(&mut conn, &ada).unwrap();
        let followed_by_ada: Vec<Member> = conn
            .query::<Member>(|q| q.filter(Member::having_followers(members::name.eq("Ada"))))
            .unwrap();
        assert_eq!(followed_by_ada, vec![ada.clone()]);
        let preview = store.preview_delete::<Member>(&ada.id).unwrap();
        assert_eq!(preview.refused_by_rows_of("follows"), 2, "{preview}");

        // Unlinked from the other side than it was linked from.
        assert_eq!(ada.unlink_followers(&mut conn, &ada).unwrap(), 1);
        assert_eq!(ada.unlink_following(&mut conn, &ada).unwrap(), 0);
        assert_eq!(
            stored_follow_graph(&mut conn),
            follow_graph(&[("Ada", &[], &["Bob"]), ("Bob", &["Ada"], &[])])
        );

        // Linked again, and deleted with its follows: the one of itself counted once.
        ada.link_followers(&mut conn, &ada).unwrap();
        let effects = store.unlink_and_delete::<Member>(&ada.id).unwrap();
        assert_eq!(effects.refused_by_rows_of("follows"), 2, "{effects}");
        assert_eq!(conn.count::<Follow>().unwrap(), 0);
        assert_eq!(
            stored_follow_graph(&mut conn),
            follow_graph(&[("Bob", &[], &[])])
        );
    }
}

/// Two members following each other, unlinked on one side: the other follow stays, and each
/// side of each member loads what is left, lazily, eagerly and as a filter; then the other.
#[test]
fn unlinking_one_of_two_mutual_follows_leaves_the_other_on_both_sides() {
    for (store, _schema) in stores() {
        let [ada, bob] = members_named(&store, ["Ada", "Bob"]);
        let mut conn = store.conn().unwrap();
        ada.link_following(&mut conn, &bob).unwrap();
        ada.link_followers(&mut conn, &bob).unwrap();
        assert_eq!(
            stored_follow_graph(&mut conn),
            follow_graph(&[("Ada", &["Bob"], &["Bob"]), ("Bob", &["Ada"], &["Ada"])])
        );

        // "Ada follows Bob", unlinked as one of Bob's followers.
        assert_eq!(bob.unlink_followers(&mut conn, &ada).unwrap(), 1);
        assert!(ada.following(&mut conn).unwrap().is_empty());
        assert_eq!(ada.followers(&mut conn).unwrap(), vec![bob.clone()]);
        assert_eq!(bob.following(&mut conn).unwrap(), vec![ada.clone()]);
        assert!(bob.followers(&mut conn).unwrap().is_empty());
        assert_eq!(
            stored_follow_graph(&mut conn),
            follow_graph(&[("Ada", &[], &["Bob"]), ("Bob", &["Ada"], &[])])
        );
        let following_someone: Vec<Member> = conn
            .query::<Member>(|q| q.filter(Member::having_following(members::id.is_not_null())))
            .unwrap();
        assert_eq!(following_someone, vec![bob.clone()]);
        let followed: Vec<Member> = conn
            .query::<Member>(|q| q.filter(Member::having_followers(members::id.is_not_null())))
            .unwrap();
        assert_eq!(followed, vec![ada.clone()]);

        // "Bob follows Ada", unlinked as one of Bob's follows.
        assert_eq!(bob.unlink_following(&mut conn, &ada).unwrap(), 1);
        assert_eq!(
            stored_follow_graph(&mut conn),
            follow_graph(&[("Ada", &[], &[]), ("Bob", &[], &[])])
        );
        assert_eq!(conn.count::<Follow>().unwrap(), 0);
    }
}

/// Rounds of eight threads linking one pair at the same instant, half of them from each side
/// (`ada.link_following(bob)`, `bob.link_followers(ada)`: the same follow): each round leaves
/// one follow, the right way round, every thread is handed it and none fails.
#[test]
fn eight_threads_following_one_member_at_once_from_both_sides_leave_one_follow() {
    use forum::follows;
    use std::sync::Barrier;
    const THREADS: usize = 8;
    const ROUNDS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let mut builders = vec![(Store::builder(dir.path().join("follows.db")), None)];
    if let Some(url) = common::postgres_url() {
        let schema = PgSchema::new(&url);
        builders.push((Store::builder(schema.url()), Some(schema)));
    }
    for (builder, _schema) in builders {
        let store = builder
            .schema(forum::schema())
            .pool_size(THREADS as u32)
            .open()
            .unwrap();
        for round in 0..ROUNDS {
            let ada = member(&store, &format!("follower {round}"));
            let bob = member(&store, &format!("followed {round}"));
            let start = Barrier::new(THREADS);
            let links: Vec<Follow> = std::thread::scope(|scope| {
                let threads: Vec<_> = (0..THREADS)
                    .map(|t| {
                        let (store, start, ada, bob) = (&store, &start, &ada, &bob);
                        scope.spawn(move || {
                            let mut conn = store.conn().unwrap();
                            start.wait();
                            if t % 2 == 0 {
                                ada.link_following(&mut conn, bob)
                            } else {
                                bob.link_followers(&mut conn, ada)
                            }
                        })
                    })
                    .collect();
                threads
                    .into_iter()
                    .map(|t| {
                        t.join().unwrap().unwrap_or_else(|e| {
                            panic!("{:?}, round {round}: {e:?}", store.dialect())
                        })
                    })
                    .collect()
            });
            let stored: Vec<Follow> = store
                .query::<Follow>(|q| {
                    q.filter(
                        follows::follower_id
                            .eq_any([ada.id, bob.id])
                            .or(follows::followee_id.eq_any([ada.id, bob.id])),
                    )
                })
                .unwrap();
            assert_eq!(
                stored.len(),
                1,
                "{:?}, round {round}: {stored:?}",
                store.dialect()
            );
            assert_eq!(
                (stored[0].follower_id, stored[0].followee_id),
                (ada.id, bob.id)
            );
            assert!(
                links.iter().all(|link| link == &stored[0]),
                "{:?}, round {round}: every thread is handed the one follow: {links:?}",
                store.dialect()
            );
        }
        assert_eq!(store.count::<Follow>().unwrap(), ROUNDS);
    }
}

/// The async store's forms of a self many-to-many: links from both sides, lazy and eager
/// loads of both, a refused delete on either side, an unlink in a transaction, and
/// `unlink_and_delete`.
#[cfg(feature = "async")]
#[test]
fn the_async_store_links_loads_unlinks_and_deletes_both_sides_of_a_self_link() {
    use datastore::AsyncStore;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (store, _schema) in stores() {
        let store = AsyncStore::from(store);
        runtime.block_on(async {
            let named = |name: &str| Member {
                name: name.into(),
                ..Member::default()
            };
            let ada = store.save(named("Ada")).await.unwrap();
            let bob = store.save(named("Bob")).await.unwrap();
            let cy = store.save(named("Cy")).await.unwrap();

            let link = ada.link_following_async(&store, &bob).await.unwrap();
            assert_eq!((link.follower_id, link.followee_id), (ada.id, bob.id));
            assert_eq!(
                bob.link_followers_async(&store, &ada).await.unwrap(),
                link,
                "the same pair from the other side"
            );
            let link = ada.link_followers_async(&store, &cy).await.unwrap();
            assert_eq!((link.follower_id, link.followee_id), (cy.id, ada.id));
            assert_eq!(store.count::<Follow>().await.unwrap(), 2);

            assert_eq!(
                ada.following_async(&store).await.unwrap(),
                vec![bob.clone()]
            );
            assert_eq!(ada.followers_async(&store).await.unwrap(), vec![cy.clone()]);
            assert_eq!(
                bob.followers_async(&store).await.unwrap(),
                vec![ada.clone()]
            );
            assert!(bob.following_async(&store).await.unwrap().is_empty());
            let everyone = store.all::<Member>().await.unwrap();
            let everyone = Member::load_following_async(&store, everyone)
                .await
                .unwrap();
            let everyone = Member::load_followers_async(&store, everyone)
                .await
                .unwrap();
            assert_eq!(
                follow_graph_of(&everyone),
                follow_graph(&[
                    ("Ada", &["Bob"], &["Cy"]),
                    ("Bob", &[], &["Ada"]),
                    ("Cy", &["Ada"], &[]),
                ])
            );

            // Bob only followed, Cy only following, Ada both.
            for (member, links) in [(&bob, 1), (&cy, 1), (&ada, 2)] {
                let what = format!("{:?}, {}", store.dialect(), member.name);
                let refused = follows_refusing(store.delete(member).await, member, &what);
                assert_eq!(refused, links, "{what}");
            }
            assert_eq!(store.count::<Member>().await.unwrap(), 3, "nothing deleted");
            assert_eq!(store.count::<Follow>().await.unwrap(), 2);

            let (tx_ada, tx_bob) = (ada.clone(), bob.clone());
            store
                .transaction(|tx| async move {
                    assert_eq!(tx_bob.unlink_following_async(&tx, &tx_ada).await?, 0);
                    assert_eq!(tx_bob.unlink_followers_async(&tx, &tx_ada).await?, 1);
                    assert!(tx_ada.following_async(&tx).await?.is_empty());
                    assert!(tx_bob.followers_async(&tx).await?.is_empty());
                    Ok(())
                })
                .await
                .unwrap();
            assert!(ada.following_async(&store).await.unwrap().is_empty());
            assert_eq!(ada.followers_async(&store).await.unwrap(), vec![cy.clone()]);

            let effects = store.unlink_and_delete::<Member>(&ada.id).await.unwrap();
            assert_eq!(
                (
                    effects.removed_from("members"),
                    effects.refused_by_rows_of("follows")
                ),
                (1, 1),
                "{effects}"
            );
            assert_eq!(store.count::<Follow>().await.unwrap(), 0);
            assert!(cy.following_async(&store).await.unwrap().is_empty());
            store.delete(&bob).await.unwrap();
            store.delete(&cy).await.unwrap();
            assert_eq!(store.count::<Member>().await.unwrap(), 0);
        });
    }
}
