//! The relation rules, pinned: what the models' declarations make of the schema (the DDL, which
//! foreign keys are unique, what each delete does) and the error of every delete that links
//! refuse, on SQLite and PostgreSQL.

mod common;

use common::models::{posts, schema, Post, PostEditor};
use common::{comment, post, user, PgSchema};
use datastore::prelude::*;
use datastore::schema::OnDelete;
use datastore::{Error, Repo};

/// `on_each_backend!(case, schema)` makes the tests `case::sqlite` (in memory) and
/// `case::postgres` (in a schema of its own, when the server is configured): each runs
/// `case(store)` with a fresh store of `schema()`.
macro_rules! on_each_backend {
    ($case:ident, $schema:path) => {
        mod $case {
            use super::*;

            #[test]
            fn sqlite() {
                let store = Store::builder(":memory:").schema($schema()).open().unwrap();
                super::$case(store);
            }

            #[test]
            fn postgres() {
                let Some(url) = common::postgres_url() else {
                    return;
                };
                let schema = PgSchema::new(&url);
                let store = Store::builder(schema.url())
                    .schema($schema())
                    .open()
                    .unwrap();
                super::$case(store);
            }
        }
    };
}

/// The blog's DDL as the rules render it, exactly.
#[test]
fn the_blogs_ddl_is_pinned_on_both_dialects() {
    assert_eq!(
        schema().create_sql(Dialect::Sqlite),
        include_str!("rules/blog.sqlite.sql")
    );
    assert_eq!(
        schema().create_sql(Dialect::Postgres),
        include_str!("rules/blog.postgres.sql")
    );
}

/// `(column, referenced table, on delete)` of every foreign key of a table, and its unique
/// columns.
fn rules_of(table: &str) -> (Vec<(String, String, OnDelete)>, Vec<String>) {
    let schema = schema();
    let table = schema
        .tables()
        .into_iter()
        .find(|t| t.name == table)
        .unwrap();
    let foreign_keys = table
        .foreign_keys
        .iter()
        .map(|fk| {
            (
                fk.column.to_string(),
                fk.references.to_string(),
                fk.on_delete,
            )
        })
        .collect();
    let unique = table
        .columns
        .iter()
        .filter(|c| c.unique)
        .map(|c| c.name.to_string())
        .collect();
    (foreign_keys, unique)
}

#[test]
fn children_cascade_join_rows_restrict_and_a_has_one_child_is_unique() {
    let own = |s: &str| s.to_owned();
    assert_eq!(
        rules_of("comments"),
        (
            vec![
                (own("post_id"), own("posts"), OnDelete::Cascade),
                // A reply goes with the comment it answers.
                (own("parent_id"), own("comments"), OnDelete::Cascade),
                // A comment outlives its author's account.
                (own("author_id"), own("users"), OnDelete::SetNull),
            ],
            vec![]
        )
    );
    assert_eq!(
        rules_of("profiles"),
        (
            vec![(own("user_id"), own("users"), OnDelete::Cascade)],
            vec![own("user_id")]
        )
    );
    assert_eq!(
        rules_of("post_editors"),
        (
            vec![
                (own("post_id"), own("posts"), OnDelete::Restrict),
                (own("editor_id"), own("users"), OnDelete::Restrict)
            ],
            vec![]
        )
    );
    assert_eq!(rules_of("users"), (vec![], vec![own("username")]));
    assert_eq!(rules_of("posts"), (vec![], vec![]));
}

/// A post that two editors link to, with a comment.
fn linked_post(conn: &mut datastore::PooledConn) -> Post {
    let post = conn.save(post("linked", 5)).unwrap();
    conn.save(comment(&post, "stays")).unwrap();
    for name in ["Nadia", "Omar"] {
        let editor = conn.save(user(name)).unwrap();
        post.link_editors(conn, &editor).unwrap();
    }
    post
}

/// The error of a delete of the post that its editors refuse.
fn assert_refused_by_editors(err: &Error, post: &Post) {
    match err {
        Error::DeleteRestricted {
            table,
            key,
            join_table,
            via,
            count,
        } => assert_eq!(
            (
                table.as_str(),
                key.as_str(),
                join_table.as_str(),
                via,
                *count
            ),
            (
                "posts",
                post.id.to_string().as_str(),
                "post_editors",
                &None,
                2
            ),
            "{err}"
        ),
        other => panic!("expected DeleteRestricted, got {other:?}"),
    }
}

/// Nothing of a refused delete happened.
fn assert_untouched(conn: &mut datastore::PooledConn, post: &Post) {
    assert!(conn.find::<Post>(&post.id).unwrap().is_some());
    assert_eq!(post.comments(conn).unwrap().len(), 1);
    assert_eq!(conn.count::<PostEditor>().unwrap(), 2);
}

per_backend! {
    fn a_delete_by_key_that_links_refuse_names_the_join_table(store) {
        let mut conn = store.conn().unwrap();
        let post = linked_post(&mut conn);
        assert_refused_by_editors(&conn.delete(&post).unwrap_err(), &post);
        assert_refused_by_editors(&conn.delete_by_id::<Post>(&post.id).unwrap_err(), &post);
        assert_untouched(&mut conn, &post);
        drop(conn);

        let err = store
            .transaction(|tx| tx.delete_by_id::<Post>(&post.id))
            .unwrap_err();
        assert_refused_by_editors(&err, &post);
        assert_untouched(&mut store.conn().unwrap(), &post);
    }
}

per_backend! {
    fn a_delete_where_that_links_refuse_names_the_first_refused_row(store) {
        let mut conn = store.conn().unwrap();
        let post = linked_post(&mut conn);
        // A post without links sorts before or after it: either way, the refused one is named.
        conn.save(common::post("free", 1)).unwrap();
        let err = conn
            .delete_where::<Post, _>(posts::rating.gt(0))
            .unwrap_err();
        assert_refused_by_editors(&err, &post);
        assert_untouched(&mut conn, &post);
        assert_eq!(conn.count::<Post>().unwrap(), 2, "the free post was not deleted either");
        drop(conn);

        let err = store
            .transaction(|tx| tx.delete_where::<Post, _>(posts::title.eq("linked")))
            .unwrap_err();
        assert_refused_by_editors(&err, &post);
        assert_untouched(&mut store.conn().unwrap(), &post);
    }
}

per_backend! {
    fn a_delete_where_refused_for_several_rows_names_the_first_in_key_order(store) {
        let mut conn = store.conn().unwrap();
        let first = conn.save(post("first", 1)).unwrap();
        let second = linked_post(&mut conn);
        let editor = conn.save(user("Ada")).unwrap();
        first.link_editors(&mut conn, &editor).unwrap();
        assert!(first.id < second.id);
        match conn.delete_where::<Post, _>(posts::rating.gt(0)).unwrap_err() {
            Error::DeleteRestricted { key, count, .. } => {
                assert_eq!((key, count), (first.id.to_string(), 1))
            }
            other => panic!("expected DeleteRestricted, got {other:?}"),
        }
    }
}

per_backend! {
    fn a_transaction_goes_on_after_a_refused_delete(store) {
        let post = linked_post(&mut store.conn().unwrap());
        let after = store
            .transaction(|tx| {
                let refused = tx.delete(&post).unwrap_err();
                assert!(matches!(refused, Error::DeleteRestricted { .. }), "{refused}");
                let refused = tx.delete_where::<Post, _>(posts::id.eq(post.id)).unwrap_err();
                assert!(matches!(refused, Error::DeleteRestricted { .. }), "{refused}");
                tx.save(common::post("after", 1))
            })
            .unwrap();
        assert!(store.find::<Post>(&after.id).unwrap().is_some());
        assert_untouched(&mut store.conn().unwrap(), &post);
    }
}

/// A delete refused on a backend's own connection, outside any store.
macro_rules! refused_on {
    ($conn:expr) => {{
        let conn = $conn;
        let post = conn.save(common::post("plain", 1)).unwrap();
        let editor = conn.save(user("Ada")).unwrap();
        post.link_editors(conn, &editor).unwrap();
        for err in [
            conn.delete(&post).unwrap_err(),
            conn.delete_where::<Post, _>(posts::title.eq("plain"))
                .unwrap_err(),
        ] {
            match err {
                Error::DeleteRestricted {
                    join_table, count, ..
                } => assert_eq!((join_table.as_str(), count), ("post_editors", 1)),
                other => panic!("expected DeleteRestricted, got {other:?}"),
            }
        }
    }};
}

#[test]
fn a_delete_refused_on_a_backends_own_connection_names_the_join_table() {
    use datastore::diesel::connection::SimpleConnection;
    use datastore::diesel::{Connection, PgConnection, SqliteConnection};
    use datastore::diesel_migrations::{self, MigrationHarness};

    const SQLITE: diesel_migrations::EmbeddedMigrations =
        diesel_migrations::embed_migrations!("migrations/sqlite");
    const POSTGRES: diesel_migrations::EmbeddedMigrations =
        diesel_migrations::embed_migrations!("migrations/postgres");

    let mut sqlite = SqliteConnection::establish(":memory:").unwrap();
    sqlite.batch_execute("PRAGMA foreign_keys = ON").unwrap();
    sqlite.run_pending_migrations(SQLITE).unwrap();
    refused_on!(&mut sqlite);

    if let Some(url) = common::postgres_url() {
        let schema = PgSchema::new(&url);
        let mut pg = PgConnection::establish(schema.url()).unwrap();
        pg.run_pending_migrations(POSTGRES).unwrap();
        refused_on!(&mut pg);
    }
}

/// A cascade that reaches a join table further down: a project's tasks cascade, and the tags
/// linked to a task refuse.
mod projects {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Project {
        #[primary_key]
        pub id: Id,
        pub name: String,
        #[has_many(Task)]
        pub tasks: HasMany<Task>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Task {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Project)]
        pub project_id: Id,
        #[many_to_many(Tag, through = TaskTag)]
        pub tags: ManyToMany<Tag>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Tag {
        #[primary_key]
        pub id: Id,
        pub label: String,
        #[many_to_many(Task, through = TaskTag)]
        pub tasks: ManyToMany<Task>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct TaskTag {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Task)]
        pub task_id: Id,
        #[belongs_to(Tag)]
        pub tag_id: Id,
    }

    pub fn schema() -> Schema {
        Schema::new()
            .model::<Project>()
            .model::<Task>()
            .model::<Tag>()
            .model::<TaskTag>()
    }
}

/// A project with two tasks, one of them tagged twice; and the store.
fn tagged_project(store: &Store) -> projects::Project {
    use projects::{Project, Tag, Task};
    let mut conn = store.conn().unwrap();
    let project = conn
        .save(Project {
            name: "launch".into(),
            ..Project::default()
        })
        .unwrap();
    let tagged = conn.save(Task::default().with_project(&project)).unwrap();
    conn.save(Task::default().with_project(&project)).unwrap();
    for label in ["urgent", "later"] {
        let tag = conn
            .save(Tag {
                label: label.into(),
                ..Tag::default()
            })
            .unwrap();
        tagged.link_tags(&mut conn, &tag).unwrap();
    }
    project
}

fn a_cascade_into_links_is_refused_whole(store: Store) {
    use projects::{projects as table, Project, Tag, Task, TaskTag};
    let project = tagged_project(&store);
    let refused_by_tags = |err: Error| match err {
        Error::DeleteRestricted {
            table,
            key,
            join_table,
            via,
            count,
        } => assert_eq!(
            (
                table.as_str(),
                key,
                join_table.as_str(),
                via.as_deref(),
                count
            ),
            (
                "projects",
                project.id.to_string(),
                "task_tags",
                Some("tasks"),
                2
            )
        ),
        other => panic!("expected DeleteRestricted, got {other:?}"),
    };
    refused_by_tags(store.delete(&project).unwrap_err());
    refused_by_tags(
        store
            .delete_where::<Project, _>(table::name.eq("launch"))
            .unwrap_err(),
    );
    refused_by_tags(store.transaction(|tx| tx.delete(&project)).unwrap_err());
    let mut conn = store.conn().unwrap();
    assert_eq!(
        (
            conn.count::<Project>().unwrap(),
            conn.count::<Task>().unwrap(),
            conn.count::<TaskTag>().unwrap(),
            conn.count::<Tag>().unwrap()
        ),
        (1, 2, 2, 2),
        "nothing of the refused delete happened"
    );

    // The preview finds the same, reading only.
    let effects = conn.preview_delete::<Project>(&project.id).unwrap();
    assert_eq!(
        (
            effects.removed_from("projects"),
            effects.removed_from("tasks")
        ),
        (1, 2)
    );
    let refused: Vec<_> = effects
        .refused_by
        .iter()
        .map(|r| (r.table.as_str(), r.column.as_deref(), r.rows))
        .collect();
    assert_eq!(refused, [("task_tags", Some("task_id"), 2)]);
    drop(conn);

    // Unlinking is explicit, and one transaction with the delete: undone with it.
    let undone = store.transaction(|tx| {
        tx.unlink_and_delete::<Project>(&project.id)?;
        Err::<(), _>(Error::Unsupported("changed my mind".into()))
    });
    assert!(undone.is_err());
    let counts = || {
        (
            store.count::<Project>().unwrap(),
            store.count::<Task>().unwrap(),
            store.count::<TaskTag>().unwrap(),
            store.count::<Tag>().unwrap(),
        )
    };
    assert_eq!(counts(), (1, 2, 2, 2));
    let done = store.unlink_and_delete::<Project>(&project.id).unwrap();
    assert_eq!(done, effects, "it did what the preview said");
    assert_eq!(counts(), (0, 0, 0, 2), "the tags stay");
}

on_each_backend!(a_cascade_into_links_is_refused_whole, projects::schema);

/// Models told apart by type, not by name: two `Link`s and two `Cover`s in different modules.
mod library {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Doc {
        #[primary_key]
        pub id: Id,
        #[many_to_many(Tag, through = one::Link)]
        pub tags: ManyToMany<Tag>,
        #[has_one(one::Cover)]
        pub cover: HasOne<one::Cover>,
    }

    /// Declares no relation back to `Doc`.
    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Tag {
        #[primary_key]
        pub id: Id,
    }

    pub mod one {
        use datastore::prelude::*;

        /// The join model of docs and tags.
        #[derive(Model, Debug, Clone, PartialEq, Default)]
        pub struct Link {
            #[primary_key]
            pub id: Id,
            #[belongs_to(super::Doc)]
            pub doc_id: Id,
            #[belongs_to(super::Tag)]
            pub tag_id: Id,
        }

        #[derive(Model, Debug, Clone, PartialEq, Default)]
        pub struct Cover {
            #[primary_key]
            pub id: Id,
            #[belongs_to(super::Doc)]
            pub doc_id: Id,
        }
    }

    pub mod two {
        use datastore::prelude::*;

        /// A plain child of a doc, with a join model's name.
        #[derive(Model, Debug, Clone, PartialEq, Default)]
        #[model(table = "doc_links")]
        pub struct Link {
            #[primary_key]
            pub id: Id,
            #[belongs_to(super::Doc)]
            pub doc_id: Id,
        }

        /// A child of a doc that no `has_one` answers, with a `has_one` child's name.
        #[derive(Model, Debug, Clone, PartialEq, Default)]
        #[model(table = "spare_covers")]
        pub struct Cover {
            #[primary_key]
            pub id: Id,
            #[belongs_to(super::Doc)]
            pub doc_id: Id,
        }
    }
}

#[test]
fn models_with_the_same_name_in_two_modules_do_not_collide() {
    use library::{one, two, Doc, Tag};
    let fk = |table: &datastore::schema::Table, column: &str| {
        let fk = table.foreign_key(column).unwrap();
        (fk.references.to_string(), fk.on_delete)
    };
    let unique =
        |table: &datastore::schema::Table, column: &str| table.column(column).unwrap().unique;
    let own = |s: &str| s.to_owned();

    assert_eq!(
        fk(one::Link::table(), "doc_id"),
        (own("docs"), OnDelete::Restrict)
    );
    assert_eq!(
        fk(one::Link::table(), "tag_id"),
        (own("tags"), OnDelete::Restrict),
        "a join model's keys restrict, whichever side declares the relation"
    );
    assert_eq!(
        fk(two::Link::table(), "doc_id"),
        (own("docs"), OnDelete::Cascade)
    );
    assert!(unique(one::Cover::table(), "doc_id"));
    assert!(!unique(two::Cover::table(), "doc_id"));

    // In the database: deleting a doc takes its plain children and its spare covers, and is
    // refused by its links only.
    let schema = Schema::new()
        .model::<Doc>()
        .model::<Tag>()
        .model::<one::Link>()
        .model::<one::Cover>()
        .model::<two::Link>()
        .model::<two::Cover>();
    let store = Store::builder(":memory:").schema(schema).open().unwrap();
    let doc = store.save(Doc::default()).unwrap();
    store
        .save(two::Link {
            doc_id: doc.id,
            ..Default::default()
        })
        .unwrap();
    store
        .save(two::Cover {
            doc_id: doc.id,
            ..Default::default()
        })
        .unwrap();
    store
        .save(two::Cover {
            doc_id: doc.id,
            ..Default::default()
        })
        .unwrap();
    let tag = store.save(Tag::default()).unwrap();
    doc.link_tags(&mut store.conn().unwrap(), &tag).unwrap();
    match store.delete(&doc).unwrap_err() {
        Error::DeleteRestricted { join_table, .. } => assert_eq!(join_table, "links"),
        other => panic!("expected DeleteRestricted, got {other:?}"),
    }
    doc.unlink_tags(&mut store.conn().unwrap(), &tag).unwrap();
    store.delete(&doc).unwrap();
    assert_eq!(
        (
            store.count::<two::Link>().unwrap(),
            store.count::<two::Cover>().unwrap()
        ),
        (0, 0)
    );
}

mod passports {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Citizen {
        #[primary_key]
        pub id: Id,
        #[has_one(Passport, foreign_key = holder_id)]
        pub passport: HasOne<Passport>,
        #[has_many(Passport, foreign_key = issuer_id)]
        pub issued: HasMany<Passport>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Passport {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Citizen)]
        pub holder_id: Id,
        #[belongs_to(Citizen)]
        pub issuer_id: Id,
    }
}

#[test]
fn a_has_one_naming_its_foreign_key_makes_exactly_that_column_unique() {
    use passports::{Citizen, Passport};
    let table = Passport::table();
    assert!(table.column("holder_id").unwrap().unique);
    assert!(!table.column("issuer_id").unwrap().unique);

    let store = Store::builder(":memory:")
        .schema(Schema::new().model::<Citizen>().model::<Passport>())
        .open()
        .unwrap();
    let officer = store.save(Citizen::default()).unwrap();
    for _ in 0..2 {
        let holder = store.save(Citizen::default()).unwrap();
        store
            .save(Passport {
                holder_id: holder.id,
                issuer_id: officer.id,
                ..Passport::default()
            })
            .unwrap();
    }
    let err = store
        .save(Passport {
            holder_id: officer.id,
            issuer_id: officer.id,
            ..Passport::default()
        })
        .and_then(|_| {
            store.save(Passport {
                holder_id: officer.id,
                issuer_id: officer.id,
                ..Passport::default()
            })
        })
        .unwrap_err();
    assert_eq!(
        err.constraint().map(|c| c.column.as_deref()),
        Some(Some("holder_id")),
        "a second passport for one holder: {err}"
    );
}

/// A tree of nodes whose children cascade with their parent, each node tagged through a join
/// model.
mod nodes {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Node {
        #[primary_key]
        pub id: Id,
        /// A root is its own parent.
        #[belongs_to(Node)]
        pub parent_id: Id,
        #[many_to_many(Label, through = NodeLabel)]
        pub labels: ManyToMany<Label>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Label {
        #[primary_key]
        pub id: Id,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct NodeLabel {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Node)]
        pub node_id: Id,
        #[belongs_to(Label)]
        pub label_id: Id,
    }

    pub fn schema() -> Schema {
        Schema::new()
            .model::<Node>()
            .model::<Label>()
            .model::<NodeLabel>()
    }
}

/// The root of a three-level chain whose last node is labelled.
fn labelled_chain(store: &Store) -> nodes::Node {
    use nodes::{Label, Node};
    let id = Id::new();
    let root = store
        .save(Node {
            id,
            parent_id: id,
            ..Node::default()
        })
        .unwrap();
    let middle = store
        .save(Node {
            parent_id: root.id,
            ..Node::default()
        })
        .unwrap();
    let leaf = store
        .save(Node {
            parent_id: middle.id,
            ..Node::default()
        })
        .unwrap();
    let label = store.save(Label::default()).unwrap();
    leaf.link_labels(&mut store.conn().unwrap(), &label)
        .unwrap();
    root
}

fn a_cascade_through_a_self_reference_is_followed(store: Store) {
    let root = labelled_chain(&store);
    match store.delete(&root).unwrap_err() {
        Error::DeleteRestricted {
            table,
            key,
            join_table,
            via,
            count,
        } => assert_eq!(
            (
                table.as_str(),
                key,
                join_table.as_str(),
                via.as_deref(),
                count
            ),
            (
                "nodes",
                root.id.to_string(),
                "node_labels",
                Some("nodes"),
                1
            )
        ),
        other => panic!("expected DeleteRestricted, got {other:?}"),
    }
    assert_eq!(store.count::<nodes::Node>().unwrap(), 3);
}

on_each_backend!(
    a_cascade_through_a_self_reference_is_followed,
    nodes::schema
);

/// Schemas of a test's own, named as given (quoted), dropped with it.
struct NamedSchemas {
    admin: datastore::diesel::PgConnection,
    names: Vec<String>,
}

impl NamedSchemas {
    fn new(url: &str, names: &[&str]) -> Self {
        use datastore::diesel::connection::SimpleConnection;
        use datastore::diesel::Connection;
        let mut admin = datastore::diesel::PgConnection::establish(url).unwrap();
        let suffix = Id::new().to_string().replace('-', "");
        let names: Vec<String> = names
            .iter()
            .map(|n| format!("{n}_{}", &suffix[..12]))
            .collect();
        for name in &names {
            admin
                .batch_execute(&format!("CREATE SCHEMA \"{name}\""))
                .unwrap();
        }
        Self { admin, names }
    }

    /// `url` with these schemas, quoted, as the search path (in this order).
    fn url(&self, url: &str, schemas: &[usize]) -> String {
        let path: Vec<String> = schemas
            .iter()
            .map(|&i| format!("%22{}%22", self.names[i]))
            .collect();
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}options=-csearch_path%3D{}", path.join(","))
    }
}

impl Drop for NamedSchemas {
    fn drop(&mut self) {
        use datastore::diesel::connection::SimpleConnection;
        for name in &self.names {
            let _ = self
                .admin
                .batch_execute(&format!("DROP SCHEMA \"{name}\" CASCADE"));
        }
    }
}

/// On PostgreSQL the refusal is explained from the tables the search path reaches: a schema
/// named in mixed case, and tables in the second schema of the path. The transaction goes on.
#[test]
fn a_refusal_is_explained_in_any_schema_of_the_search_path_postgres() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schemas = NamedSchemas::new(&url, &["MixedCase", "first", "second"]);
    for path in [vec![0], vec![1, 2]] {
        // The tables go to the last schema of the path; the store then sees the whole path.
        let tables = schemas.url(&url, &path[path.len() - 1..]);
        Store::builder(&tables)
            .schema(projects::schema())
            .open()
            .unwrap();
        let store = Store::builder(schemas.url(&url, &path)).open().unwrap();
        let project = tagged_project(&store);
        store
            .transaction(|tx| {
                match tx.delete(&project).unwrap_err() {
                    Error::DeleteRestricted { join_table, .. } => {
                        assert_eq!(join_table, "task_tags")
                    }
                    other => panic!("expected DeleteRestricted in {path:?}, got {other:?}"),
                }
                tx.save(projects::Tag {
                    label: "after".into(),
                    ..Default::default()
                })
            })
            .unwrap();
    }
}

/// A join model keyed by its pair.
mod keyed_by_pair {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Reader {
        #[primary_key]
        pub id: Id,
        #[many_to_many(Book, through = Loan)]
        pub books: ManyToMany<Book>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Book {
        #[primary_key]
        pub id: Id,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    #[model(primary_key(reader_id, book_id))]
    pub struct Loan {
        #[belongs_to(Reader)]
        pub reader_id: Id,
        #[belongs_to(Book)]
        pub book_id: Id,
    }

    pub fn schema() -> Schema {
        Schema::new()
            .model::<Reader>()
            .model::<Book>()
            .model::<Loan>()
    }
}

/// A pair of rows is linked at most once: a join model's pair of foreign keys is unique, by a
/// unique index, or by the key when the pair is the key (then no index is added).
#[test]
fn a_join_models_pair_of_foreign_keys_is_unique() {
    let unique_indexes = |schema: Schema, table: &str| -> Vec<Vec<String>> {
        let table = schema
            .tables()
            .into_iter()
            .find(|t| t.name == table)
            .unwrap();
        table
            .indexes
            .iter()
            .filter(|i| i.unique)
            .map(|i| i.columns.iter().map(|c| c.to_string()).collect())
            .collect()
    };
    // Declared from both sides, indexed once.
    assert_eq!(
        unique_indexes(projects::schema(), "task_tags"),
        [["task_id", "tag_id"]]
    );
    // Declared from one side only.
    assert_eq!(
        unique_indexes(schema(), "post_editors"),
        [["post_id", "editor_id"]]
    );
    assert_eq!(
        unique_indexes(keyed_by_pair::schema(), "loans"),
        Vec::<Vec<String>>::new()
    );
}

/// A join model's foreign key may state that deleting its side removes the links: the stated
/// rule wins over the join default, the other side keeps restricting.
#[test]
fn a_join_models_key_may_state_cascade() {
    mod stated {
        use datastore::prelude::*;

        #[derive(Model, Debug, Clone, PartialEq, Default)]
        pub struct Playlist {
            #[primary_key]
            pub id: Id,
            #[many_to_many(Song, through = Entry)]
            pub songs: ManyToMany<Song>,
        }

        #[derive(Model, Debug, Clone, PartialEq, Default)]
        pub struct Song {
            #[primary_key]
            pub id: Id,
        }

        #[derive(Model, Debug, Clone, PartialEq, Default)]
        pub struct Entry {
            #[primary_key]
            pub id: Id,
            #[belongs_to(Playlist, on_delete = cascade)]
            pub playlist_id: Id,
            #[belongs_to(Song)]
            pub song_id: Id,
        }
    }
    let schema = Schema::new()
        .model::<stated::Playlist>()
        .model::<stated::Song>()
        .model::<stated::Entry>();
    let entries = schema
        .tables()
        .into_iter()
        .find(|t| t.name == "entries")
        .unwrap();
    let rules: Vec<(String, OnDelete)> = entries
        .foreign_keys
        .iter()
        .map(|fk| (fk.column.to_string(), fk.on_delete))
        .collect();
    assert_eq!(
        rules,
        [
            ("playlist_id".to_owned(), OnDelete::Cascade),
            ("song_id".to_owned(), OnDelete::Restrict)
        ]
    );
}

/// Rows that refuse a delete but do not link two rows, and rows below the links.
mod ledger {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Account {
        #[primary_key]
        pub id: Id,
        #[many_to_many(Label, through = AccountLabel)]
        pub labels: ManyToMany<Label>,
    }

    /// Keeps its account: not a link, so unlinking never deletes it.
    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Invoice {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Account, on_delete = restrict)]
        pub account_id: Id,
    }

    /// An account's own label goes with it.
    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Label {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Account, on_delete = cascade)]
        pub owner_id: Option<Id>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct AccountLabel {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Account)]
        pub account_id: Id,
        #[belongs_to(Label)]
        pub label_id: Id,
        #[has_many(LabelNote)]
        pub notes: HasMany<LabelNote>,
        #[many_to_many(Flag, through = LinkFlag)]
        pub flags: ManyToMany<Flag>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Flag {
        #[primary_key]
        pub id: Id,
    }

    /// A link to a link.
    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct LinkFlag {
        #[primary_key]
        pub id: Id,
        #[belongs_to(AccountLabel)]
        pub account_label_id: Id,
        #[belongs_to(Flag)]
        pub flag_id: Id,
    }

    /// Goes with its link.
    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct LabelNote {
        #[primary_key]
        pub id: Id,
        #[belongs_to(AccountLabel)]
        pub account_label_id: Id,
    }

    /// Keeps the link it audits.
    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Audit {
        #[primary_key]
        pub id: Id,
        #[belongs_to(AccountLabel, on_delete = restrict)]
        pub account_label_id: Id,
    }

    pub fn schema() -> Schema {
        Schema::new()
            .model::<Account>()
            .model::<Invoice>()
            .model::<Label>()
            .model::<AccountLabel>()
            .model::<LabelNote>()
            .model::<Audit>()
            .model::<Flag>()
            .model::<LinkFlag>()
    }
}

/// `unlink_and_delete` deletes links, and what their delete cascades to, and nothing else: a
/// row that refuses the delete without linking (directly, or below a link) refuses it whole.
fn unlinking_deletes_only_links(store: Store) {
    use ledger::{Account, AccountLabel, Audit, Flag, Invoice, Label, LabelNote, LinkFlag};
    let mut conn = store.conn().unwrap();
    let account = conn.save(Account::default()).unwrap();
    let label = conn.save(Label::default()).unwrap();
    account.link_labels(&mut conn, &label).unwrap();
    let link = AccountLabel::all(&mut conn).unwrap().remove(0);
    // Its own label, linked too: that link is reached by both its keys.
    let own = conn
        .save(Label {
            owner_id: Some(account.id),
            ..Label::default()
        })
        .unwrap();
    account.link_labels(&mut conn, &own).unwrap();
    let flag = conn.save(Flag::default()).unwrap();
    link.link_flags(&mut conn, &flag).unwrap();
    conn.save(LabelNote {
        account_label_id: link.id,
        ..LabelNote::default()
    })
    .unwrap();
    let invoice = conn
        .save(Invoice {
            account_id: account.id,
            ..Invoice::default()
        })
        .unwrap();
    let audit = conn
        .save(Audit {
            account_label_id: link.id,
            ..Audit::default()
        })
        .unwrap();
    let mut counts = || {
        (
            conn.count::<Account>().unwrap(),
            conn.count::<Invoice>().unwrap(),
            conn.count::<AccountLabel>().unwrap(),
            conn.count::<LabelNote>().unwrap(),
            conn.count::<Audit>().unwrap(),
            conn.count::<LinkFlag>().unwrap(),
        )
    };
    let refused = |err: Error| match err {
        Error::DeleteRestricted {
            join_table,
            via,
            count,
            ..
        } => (join_table, via, count),
        other => panic!("expected DeleteRestricted, got {other:?}"),
    };

    // The invoice refuses, whatever the links.
    assert_eq!(
        refused(store.unlink_and_delete::<Account>(&account.id).unwrap_err()),
        ("invoices".to_owned(), None, 1)
    );
    assert_eq!(counts(), (1, 1, 2, 1, 1, 1), "nothing was deleted");
    store.delete(&invoice).unwrap();

    // The audit keeps the link, and so the account.
    assert_eq!(
        refused(store.unlink_and_delete::<Account>(&account.id).unwrap_err()),
        ("audits".to_owned(), Some("account_labels".to_owned()), 1)
    );
    assert_eq!(counts(), (1, 0, 2, 1, 1, 1), "nothing was deleted");
    store.delete(&audit).unwrap();

    // The links go, the flag's link first, the note with its link, the own label with the
    // account; each row counted once, and the effects say so.
    let effects = store.unlink_and_delete::<Account>(&account.id).unwrap();
    assert_eq!(counts(), (0, 0, 0, 0, 0, 0));
    assert_eq!(
        (
            effects.removed_from("accounts"),
            effects.refused_by_rows_of("account_labels"),
            effects.refused_by_rows_of("link_flags"),
            effects.removed_from("label_notes"),
            effects.removed_from("labels"),
        ),
        (1, 2, 1, 1, 1),
        "{effects}"
    );
    assert_eq!(
        store.all::<Label>().unwrap(),
        [label],
        "the other label stays"
    );
    assert_eq!(store.count::<Flag>().unwrap(), 1, "the flag stays");
}

on_each_backend!(unlinking_deletes_only_links, ledger::schema);

/// A join model keyed by its pair links by its key: unlinking deletes its rows.
fn a_link_keyed_by_its_pair_is_unlinked(store: Store) {
    use keyed_by_pair::{Book, Loan, Reader};
    let reader = store.save(Reader::default()).unwrap();
    let book = store.save(Book::default()).unwrap();
    reader
        .link_books(&mut store.conn().unwrap(), &book)
        .unwrap();
    assert!(matches!(
        store.delete(&book),
        Err(Error::DeleteRestricted { .. })
    ));
    let effects = store.unlink_and_delete::<Book>(&book.id).unwrap();
    assert_eq!(effects.refused_by_rows_of("loans"), 1);
    assert_eq!(
        (
            store.count::<Loan>().unwrap(),
            store.count::<Book>().unwrap()
        ),
        (0, 0)
    );
}

on_each_backend!(a_link_keyed_by_its_pair_is_unlinked, keyed_by_pair::schema);

/// A join model that another model declares as its children: `Article` links `Writer`s
/// through `Remark`, and `Writer` has its remarks as children. Each model alone compiles.
mod remarks {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Writer {
        #[primary_key]
        pub id: Id,
        #[has_many(Remark, foreign_key = writer_id)]
        pub remarks: HasMany<Remark>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Article {
        #[primary_key]
        pub id: Id,
        #[many_to_many(Writer, through = Remark)]
        pub remarked_by: ManyToMany<Writer>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Remark {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Article)]
        pub article_id: Id,
        #[belongs_to(Writer)]
        pub writer_id: Id,
    }
}

/// Its rows cannot be both links (restricting the writer's delete, one for each pair) and
/// children (deleted with the writer): the schema is refused, naming the foreign key, before
/// any table is made.
#[test]
fn a_join_model_that_is_another_models_children_is_refused() {
    use datastore::schema::SchemaProblem;
    use remarks::{Article, Remark, Writer};
    let schema = || {
        Schema::new()
            .model::<Writer>()
            .model::<Article>()
            .model::<Remark>()
    };
    let expected = |problem: &SchemaProblem| {
        matches!(
            problem,
            SchemaProblem::LinkAndChild { table, column, parent }
                if table == "remarks" && column == "writer_id" && parent.ends_with("Writer")
        )
    };
    match schema().validate() {
        Err(Error::Migration {
            failure: datastore::migrate::MigrationFailure::InvalidSchema(problem),
            ..
        }) => assert!(expected(&problem), "{problem:?}"),
        other => panic!("expected the schema refused, got {other:?}"),
    }
    match Store::builder(":memory:").schema(schema()).open() {
        Err(Error::Migration {
            failure: datastore::migrate::MigrationFailure::InvalidSchema(problem),
            ..
        }) => assert!(expected(&problem), "{problem:?}"),
        other => panic!("expected the store refused, got {other:?}"),
    }
}
