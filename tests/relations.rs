//! has_one, has_many, belongs_to and many_to_many(through): in the schema, the queries and the
//! deletes, on a real SQLite database.

mod common;

use common::models::{comments, posts, Comment, Post, PostEditor, Profile, User};
use common::{comment, memory_store, post, user};
use datastore::diesel::sql_types::{BigInt, Text};
use datastore::prelude::*;
use datastore::AnyConnection;
use datastore::{ConstraintKind, Error};

#[derive(QueryableByName, Debug, PartialEq)]
struct ForeignKeyRow {
    #[diesel(sql_type = Text)]
    table: String,
    #[diesel(sql_type = Text)]
    from: String,
    #[diesel(sql_type = Text)]
    on_delete: String,
}

fn foreign_keys(conn: &mut AnyConnection, table: &str) -> Vec<(String, String, String)> {
    diesel::sql_query(
        r#"SELECT "table", "from", on_delete FROM pragma_foreign_key_list(?) ORDER BY "from""#,
    )
    .bind::<Text, _>(table)
    .load::<ForeignKeyRow>(conn)
    .unwrap()
    .into_iter()
    .map(|r| (r.from, r.table, r.on_delete))
    .collect()
}

#[derive(QueryableByName)]
struct IndexRow {
    #[diesel(sql_type = BigInt)]
    indexes: i64,
    #[diesel(sql_type = BigInt)]
    unique_indexes: i64,
}

/// Whether a column is indexed, and whether uniquely.
fn indexed(conn: &mut AnyConnection, table: &str, column: &str) -> (bool, bool) {
    let row: IndexRow = diesel::sql_query(
        r#"SELECT count(*) AS indexes, coalesce(sum(l."unique"), 0) AS unique_indexes
           FROM pragma_index_list(?1) AS l, pragma_index_info(l.name) AS i WHERE i.name = ?2"#,
    )
    .bind::<Text, _>(table)
    .bind::<Text, _>(column)
    .get_result(conn)
    .unwrap();
    (row.indexes > 0, row.unique_indexes > 0)
}

#[test]
fn the_migrations_give_cascading_children_and_restricting_join_rows() {
    let store = memory_store();
    let mut conn = store.conn().unwrap();
    let own = |s: &str| s.to_owned();
    assert_eq!(
        foreign_keys(&mut conn, "comments"),
        [
            (own("author_id"), own("users"), own("SET NULL")),
            (own("parent_id"), own("comments"), own("CASCADE")),
            (own("post_id"), own("posts"), own("CASCADE"))
        ]
    );
    assert_eq!(
        foreign_keys(&mut conn, "profiles"),
        [(own("user_id"), own("users"), own("CASCADE"))]
    );
    assert_eq!(
        foreign_keys(&mut conn, "post_editors"),
        [
            (own("editor_id"), own("users"), own("RESTRICT")),
            (own("post_id"), own("posts"), own("RESTRICT"))
        ]
    );
    assert_eq!(indexed(&mut conn, "comments", "post_id"), (true, false));
    assert_eq!(
        indexed(&mut conn, "profiles", "user_id"),
        (true, true),
        "a has_one child's key is unique"
    );
    // Both are in the pair's unique index, which links a post and an editor at most once.
    assert_eq!(indexed(&mut conn, "post_editors", "post_id"), (true, true));
    assert_eq!(
        indexed(&mut conn, "post_editors", "editor_id"),
        (true, true)
    );
}

per_backend! {
    fn a_child_is_saved_for_its_parent_and_reads_it_back(store) {
        let mut conn = store.conn().unwrap();
        let post = conn.save(post("My Post with comments", 10)).unwrap();
        let saved = conn
            .save(comment(&post, "Loving Amplify DataStore!"))
            .unwrap();
        assert_eq!(saved.post_id, post.id);
        assert_eq!(saved.post(&mut conn).unwrap(), post);
        let by_id = conn
            .save(Comment {
                post_id: post.id,
                ..Comment::default()
            })
            .unwrap();
        assert_eq!(post.comments(&mut conn).unwrap(), vec![saved, by_id]);
    }
}

per_backend! {
    fn a_child_of_a_missing_parent_is_refused_naming_the_column(store) {
        let ghost = post("never saved", 1);
        let err = store.save(comment(&ghost, "orphan")).unwrap_err();
        let violation = err.constraint().expect("a constraint violation");
        assert_eq!(violation.kind, ConstraintKind::ForeignKey);
        assert_eq!(
            (violation.table.as_deref(), violation.column.as_deref()),
            (Some("comments"), Some("post_id"))
        );
        assert!(violation.message.contains("which does not exist"), "{err}");
        assert_eq!(store.count::<Comment>().unwrap(), 0);
    }
}

per_backend! {
    fn linking_and_unlinking_through_the_join_model(store) {
        let mut conn = store.conn().unwrap();
        let post = conn.save(post("My first post", 1)).unwrap();
        let nadia = conn.save(user("Nadia")).unwrap();
        let omar = conn.save(user("Omar")).unwrap();

        let link = post.link_editors(&mut conn, &nadia).unwrap();
        assert_eq!((link.post_id, link.editor_id), (post.id, nadia.id));
        // Saving the join model directly is the same thing.
        conn.save(PostEditor {
            post_id: post.id,
            editor_id: omar.id,
            ..PostEditor::default()
        })
        .unwrap();

        assert_eq!(
            post.editors(&mut conn).unwrap(),
            vec![nadia.clone(), omar.clone()]
        );
        assert_eq!(nadia.posts(&mut conn).unwrap(), vec![post.clone()]);

        assert_eq!(post.unlink_editors(&mut conn, &nadia).unwrap(), 1);
        assert_eq!(post.editors(&mut conn).unwrap(), vec![omar]);
        assert_eq!(nadia.posts(&mut conn).unwrap(), vec![]);
        assert_eq!(
            conn.count::<User>().unwrap(),
            2,
            "unlinking never deletes the linked rows"
        );
    }
}

per_backend! {
    fn has_one_is_loaded_as_some_or_none(store) {
        let mut conn = store.conn().unwrap();
        let with = conn.save(user("with")).unwrap();
        let without = conn.save(user("without")).unwrap();
        let profile = conn
            .save(Profile {
                user_id: with.id,
                bio: Some("hi".into()),
                ..Profile::default()
            })
            .unwrap();
        assert_eq!(with.profile(&mut conn).unwrap(), Some(profile.clone()));
        assert_eq!(without.profile(&mut conn).unwrap(), None);

        let mut users = vec![with, without];
        User::load_profile(&mut conn, &mut users).unwrap();
        assert_eq!(users[0].profile.get(), Some(Some(&profile)));
        assert_eq!(
            users[1].profile.get(),
            Some(None),
            "loaded, and there is none"
        );

        let second = Profile {
            user_id: users[0].id,
            ..Profile::default()
        };
        let err = conn.save(second).unwrap_err();
        assert_eq!(
            err.constraint().map(|c| c.kind),
            Some(ConstraintKind::Unique),
            "one profile per user"
        );
    }
}

per_backend! {
    fn a_relation_not_loaded_is_never_an_empty_list(store) {
        let post = store.save(post("p", 1)).unwrap();
        let read = store.get::<Post>(&post.id).unwrap();
        assert_eq!(read.comments.get(), None);
        assert!(!read.editors.is_loaded());

        let mut posts = vec![read];
        Post::load_comments(&mut store.conn().unwrap(), &mut posts).unwrap();
        assert_eq!(posts[0].comments.get(), Some(&[][..]), "loaded and empty");
    }
}

/// Saves `n` posts, each with two comments and one editor (every third user edits).
fn blog_with(conn: &mut AnyConnection, n: usize) -> Vec<Post> {
    let editors: Vec<User> = (0..3)
        .map(|i| conn.save(user(&format!("editor{i}"))).unwrap())
        .collect();
    conn.transaction(|conn| {
        let mut posts = Vec::new();
        for i in 0..n {
            let post = conn.save(post(&format!("post {i}"), i as i32))?;
            if i % 5 != 4 {
                conn.save(comment(&post, "first"))?;
                conn.save(comment(&post, "second"))?;
            }
            post.link_editors(conn, &editors[i % 3])?;
            posts.push(post);
        }
        Ok::<_, Error>(posts)
    })
    .unwrap()
}

#[test]
fn eager_loading_costs_the_same_statements_for_1_10_and_1000_parents() {
    let mut counts = Vec::new();
    for n in [1, 10, 1000] {
        let store = memory_store();
        let mut conn = store.conn().unwrap();
        blog_with(&mut conn, n);
        let (posts, statements) = common::trace::statements(|| {
            let mut posts: Vec<Post> = conn.all().unwrap();
            Post::load_comments(&mut conn, &mut posts).unwrap();
            Post::load_editors(&mut conn, &mut posts).unwrap();
            posts
        });
        counts.push(statements.len());

        assert_eq!(posts.len(), n);
        for (i, post) in posts.iter().enumerate() {
            let expected = if i % 5 == 4 { 0 } else { 2 };
            assert_eq!(post.comments.get().unwrap().len(), expected, "post {i}");
            assert!(post
                .comments
                .get()
                .unwrap()
                .iter()
                .all(|c| c.post_id == post.id));
            let editors = post.editors.get().unwrap();
            assert_eq!(editors.len(), 1);
            assert_eq!(editors[0].username, format!("editor{}", i % 3));
        }
    }
    // posts, comments, join rows, users.
    assert_eq!(counts, [4, 4, 4]);
}

per_backend! {
    fn nested_eager_loading_is_one_statement_set_per_level(store) {
        let mut conn = store.conn().unwrap();
        blog_with(&mut conn, 30);
        let (users, statements) = common::trace::statements(|| {
            let mut users: Vec<User> = conn.all().unwrap();
            User::load_posts(&mut conn, &mut users).unwrap();
            Post::load_comments(
                &mut conn,
                users
                    .iter_mut()
                    .flat_map(|u| u.posts.get_mut().unwrap().iter_mut()),
            )
            .unwrap();
            users
        });
        assert_eq!(
            statements.len(),
            1 + 2 + 1,
            "users; join rows and posts; comments"
        );
        let total_posts: usize = users.iter().map(|u| u.posts.get().unwrap().len()).sum();
        assert_eq!(total_posts, 30);
        let total_comments: usize = users
            .iter()
            .flat_map(|u| u.posts.get().unwrap())
            .map(|p| p.comments.get().expect("nested level loaded").len())
            .sum();
        assert_eq!(total_comments, 24 * 2);
    }
}

per_backend! {
    fn eager_loading_chunks_parents_under_the_bind_limit(store) {
        let mut conn = store.conn().unwrap();
        let parent = conn.save(post("the only one with comments", 1)).unwrap();
        conn.save(comment(&parent, "c")).unwrap();
        // More parents than one IN list holds; most are not stored, which is fine for a lookup.
        let mut posts: Vec<Post> = (0..datastore::relations::CHUNK + 5)
            .map(|i| post(&i.to_string(), 0))
            .collect();
        posts.push(parent);
        let ((), statements) =
            common::trace::statements(|| Post::load_comments(&mut conn, &mut posts).unwrap());
        assert_eq!(statements.len(), 2, "two chunks");
        assert_eq!(posts.last().unwrap().comments.get().unwrap().len(), 1);
        assert!(posts[0].comments.get().unwrap().is_empty());
    }
}

per_backend! {
    fn filters_by_related_fields_run_in_sql(store) {
        let mut conn = store.conn().unwrap();
        let rusty = conn.save(post("rusty", 2)).unwrap();
        let popular = conn.save(post("popular", 9)).unwrap();
        conn.save(comment(&rusty, "I love Rust")).unwrap();
        conn.save(comment(&popular, "nice")).unwrap();
        let nadia = conn.save(user("Nadia")).unwrap();
        let omar = conn.save(user("Omar")).unwrap();
        rusty.link_editors(&mut conn, &nadia).unwrap();
        popular.link_editors(&mut conn, &omar).unwrap();

        let ((), statements) = common::trace::statements(|| {
        let with_word: Vec<Post> = conn
            .query::<Post>(|q| q.filter(Post::having_comments(comments::content.like("%Rust%"))))
            .unwrap();
        assert_eq!(with_word, vec![rusty.clone()]);

        let on_rated: Vec<Comment> = conn
            .query::<Comment>(|q| q.filter(Comment::where_post(posts::rating.gt(4))))
            .unwrap();
        assert_eq!(
            on_rated
                .iter()
                .map(|c| c.content.as_deref())
                .collect::<Vec<_>>(),
            [Some("nice")]
        );

        let editors_of_rusty: Vec<User> = conn
            .query::<User>(|q| q.filter(User::having_posts(posts::id.eq(rusty.id))))
            .unwrap();
        assert_eq!(editors_of_rusty, vec![nadia]);
        });
        assert_eq!(
            statements.len(),
            3,
            "one statement per filter: no loading into memory"
        );
    }
}

// `NOT having_replies(..)`: top-level comments (no parent) are no parent's reply, and must not
// make the negation match nothing (`x NOT IN (.., NULL)` is never true).
per_backend! {
    fn a_negated_filter_over_an_optional_foreign_key_matches_the_rows_without(store) {
        let mut conn = store.conn().unwrap();
        let post = conn.save(post("thread", 1)).unwrap();
        let answered = conn.save(comment(&post, "question")).unwrap();
        let reply = conn
            .save(Comment {
                parent_id: Some(answered.id),
                ..comment(&post, "answer")
            })
            .unwrap();
        let alone = conn.save(comment(&post, "aside")).unwrap();
        let without_replies: Vec<Comment> = conn
            .query::<Comment>(|q| {
                q.filter(datastore::diesel::dsl::not(Comment::having_replies(
                    comments::content.is_not_null(),
                )))
                .order(comments::content)
            })
            .unwrap();
        assert_eq!(
            without_replies.iter().map(|c| c.id).collect::<Vec<_>>(),
            [reply.id, alone.id],
            "'answer' and 'aside' have no reply"
        );
        // The other way: the comments that answer no 'question' include those that answer
        // nothing (no parent), whether or not a 'question' exists.
        let not_answering: Vec<Comment> = conn
            .query::<Comment>(|q| {
                q.filter(datastore::diesel::dsl::not(Comment::where_parent(
                    comments::content.eq("question"),
                )))
                .order(comments::content)
            })
            .unwrap();
        assert_eq!(
            not_answering.iter().map(|c| c.id).collect::<Vec<_>>(),
            [alone.id, answered.id],
            "'aside' and 'question' answer no question"
        );
    }
}

per_backend! {
    fn deleting_a_parent_deletes_its_children_but_never_the_parent_of_a_child(store) {
        let mut conn = store.conn().unwrap();
        let doomed = conn.save(post("doomed", 1)).unwrap();
        let kept = conn.save(post("kept", 1)).unwrap();
        conn.save(comment(&doomed, "a")).unwrap();
        conn.save(comment(&doomed, "b")).unwrap();
        let survivor = conn.save(comment(&kept, "c")).unwrap();

        conn.delete(&survivor).unwrap();
        assert!(
            conn.find::<Post>(&kept.id).unwrap().is_some(),
            "deleting a comment keeps its post"
        );

        conn.delete(&doomed).unwrap();
        assert_eq!(conn.count::<Comment>().unwrap(), 0, "the database cascaded");

        let user = conn.save(user("u")).unwrap();
        conn.save(Profile {
            user_id: user.id,
            ..Profile::default()
        })
        .unwrap();
        conn.delete(&user).unwrap();
        assert_eq!(
            conn.count::<Profile>().unwrap(),
            0,
            "has_one children cascade too"
        );
    }
}

mod three_levels {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Author {
        #[primary_key]
        pub id: Id,
        #[has_many(Book)]
        pub books: HasMany<Book>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Book {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Author)]
        pub author_id: Id,
        #[has_many(Chapter)]
        pub chapters: HasMany<Chapter>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Chapter {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Book)]
        pub book_id: Id,
        pub title: String,
    }
}

#[test]
fn a_cascade_reaches_grandchildren() {
    use three_levels::{Author, Book, Chapter};
    let schema = Schema::new()
        .model::<Author>()
        .model::<Book>()
        .model::<Chapter>();
    let store = Store::builder(":memory:").schema(schema).open().unwrap();
    let mut conn = store.conn().unwrap();
    let author = conn.save(Author::default()).unwrap();
    let other = conn.save(Author::default()).unwrap();
    for owner in [&author, &other] {
        let book = conn.save(Book::default().with_author(owner)).unwrap();
        for title in ["one", "two"] {
            conn.save(
                Chapter {
                    title: title.into(),
                    ..Chapter::default()
                }
                .with_book(&book),
            )
            .unwrap();
        }
    }
    conn.delete(&author).unwrap();
    assert_eq!(
        (
            conn.count::<Book>().unwrap(),
            conn.count::<Chapter>().unwrap()
        ),
        (1, 2)
    );
    let left: Vec<Chapter> = conn.all().unwrap();
    assert!(left
        .iter()
        .all(|c| c.book(&mut conn).unwrap().author_id == other.id));
}

per_backend! {
    fn a_post_still_linked_to_editors_cannot_be_deleted_until_unlinked(store) {
        let mut conn = store.conn().unwrap();
        let post = conn.save(post("linked", 5)).unwrap();
        conn.save(comment(&post, "stays")).unwrap();
        let nadia = conn.save(user("Nadia")).unwrap();
        let omar = conn.save(user("Omar")).unwrap();
        post.link_editors(&mut conn, &nadia).unwrap();
        post.link_editors(&mut conn, &omar).unwrap();

        let err = conn.delete(&post).unwrap_err();
        match &err {
            Error::DeleteRestricted {
                table,
                join_table,
                count,
                ..
            } => {
                assert_eq!(
                    (table.as_str(), join_table.as_str(), *count),
                    ("posts", "post_editors", 2)
                );
            }
            other => panic!("expected DeleteRestricted, got {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!(
                "cannot delete posts '{}': 2 rows in post_editors still link to it; unlink them first",
                post.id
            )
        );
        assert!(conn.find::<Post>(&post.id).unwrap().is_some());
        assert_eq!(conn.count::<Comment>().unwrap(), 1);
        assert_eq!(conn.count::<PostEditor>().unwrap(), 2);

        post.unlink_editors(&mut conn, &nadia).unwrap();
        post.unlink_editors(&mut conn, &omar).unwrap();
        conn.delete(&post).unwrap();
        assert_eq!(
            (
                conn.count::<Post>().unwrap(),
                conn.count::<Comment>().unwrap()
            ),
            (0, 0)
        );
        assert_eq!(conn.count::<User>().unwrap(), 2, "the editors remain");
    }
}

per_backend! {
    fn a_post_with_its_comments_and_editors_is_saved_as_one_graph(store) {
        let nadia = store.save(user("Nadia")).unwrap();
        let mut draft = post("graph", 3);
        draft.comments = HasMany::loaded(vec![
            Comment {
                content: Some("one".into()),
                ..Comment::default()
            },
            Comment {
                content: Some("two".into()),
                ..Comment::default()
            },
        ]);
        draft.editors = ManyToMany::loaded(vec![nadia.clone(), user("Omar")]);
        let saved = store.save_graph(draft).unwrap();

        let comments = saved.comments.get().unwrap();
        assert!(comments.iter().all(|c| c.post_id == saved.id));
        let mut conn = store.conn().unwrap();
        assert_eq!(saved.comments(&mut conn).unwrap(), comments);
        let editors: Vec<String> = saved
            .editors(&mut conn)
            .unwrap()
            .into_iter()
            .map(|u| u.username)
            .collect();
        assert_eq!(editors, ["Nadia", "Omar"]);

        // Saving the same graph again links nothing twice.
        store.save_graph(saved.clone()).unwrap();
        assert_eq!(store.count::<PostEditor>().unwrap(), 2);
        assert_eq!(store.count::<Comment>().unwrap(), 2);
    }
}

per_backend! {
    fn a_stale_copy_of_a_row_deeper_in_its_graph_does_not_undo_the_callers_change(store) {
        // Loaded both ways, a user's posts hold copies of their editors: the user among them,
        // copied before the caller renamed it.
        let nadia = store.save(user("Nadia")).unwrap();
        let mut draft = post("loaded both ways", 1);
        draft.editors = ManyToMany::loaded(vec![nadia.clone()]);
        let mut renamed = nadia.clone();
        renamed.username = "Nadia R.".into();
        renamed.posts = ManyToMany::loaded(vec![draft]);

        let saved = store.save_graph(renamed).unwrap();

        assert_eq!(saved.username, "Nadia R.");
        assert_eq!(
            store.get::<User>(&nadia.id).unwrap().username,
            "Nadia R.",
            "the stale copy was saved over the rename"
        );
        let posts = saved.posts.get().unwrap();
        let editors = posts[0].editors.get().unwrap();
        assert_eq!(editors.len(), 1);
        assert_eq!(
            (editors[0].id, editors[0].username.as_str()),
            (nadia.id, "Nadia R."),
            "the copy is answered with the row as stored"
        );
        assert_eq!(store.count::<PostEditor>().unwrap(), 1, "linked once");
        let mut conn = store.conn().unwrap();
        assert_eq!(posts[0].editors(&mut conn).unwrap()[0].username, "Nadia R.");
    }
}

per_backend! {
    fn a_graph_that_fails_anywhere_leaves_nothing_written(store) {
        store.save(user("taken")).unwrap();
        let mut draft = post("doomed graph", 3);
        draft.comments = HasMany::loaded(vec![Comment {
            content: Some("lost".into()),
            ..Comment::default()
        }]);
        draft.editors = ManyToMany::loaded(vec![user("taken")]); // a second "taken": unique violation
        let err = store.save_graph(draft).unwrap_err();
        assert_eq!(
            err.constraint().map(|c| c.kind),
            Some(ConstraintKind::Unique)
        );
        assert_eq!(
            (
                store.count::<Post>().unwrap(),
                store.count::<Comment>().unwrap()
            ),
            (0, 0)
        );
        assert_eq!(store.count::<PostEditor>().unwrap(), 0);
    }
}

per_backend! {
    fn linking_twice_keeps_one_link(store) {
        let mut conn = store.conn().unwrap();
        let post = conn.save(post("once", 1)).unwrap();
        let nadia = conn.save(user("Nadia")).unwrap();
        let first = post.link_editors(&mut conn, &nadia).unwrap();
        let again = post.link_editors(&mut conn, &nadia).unwrap();
        assert_eq!(first, again);
        assert_eq!(post.editors(&mut conn).unwrap(), vec![nadia]);
    }
}
