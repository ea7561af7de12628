//! Hand-written Diesel: the same tables and queries as a Diesel user writes them, on Diesel's
//! own connection type, with Diesel's associations API (`belonging_to`, `grouped_by`) for the
//! relation loads, as diesel_bench does.
//!
//! The code is the same on both backends but for the types of keys and timestamps: text on
//! SQLite (as the rows are stored there), `uuid` and `timestamptz` on PostgreSQL. One macro
//! writes it for each.

use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::{Connection, PgConnection, SqliteConnection};

use crate::db::{Backend, Db};
use crate::{IntKeyedPeer, Peer};

pub fn open(db: &Db) -> Box<dyn Peer> {
    match db.backend {
        Backend::Sqlite => Box::new(sqlite::Diesel::new(sqlite_connection(db))),
        Backend::Postgres => Box::new(postgres::Diesel::new(
            PgConnection::establish(&db.url).unwrap(),
        )),
    }
}

pub fn open_int_keyed(db: &Db) -> Box<dyn IntKeyedPeer> {
    match db.backend {
        Backend::Sqlite => Box::new(sqlite::Diesel::new(sqlite_connection(db))),
        Backend::Postgres => Box::new(postgres::Diesel::new(
            PgConnection::establish(&db.url).unwrap(),
        )),
    }
}

fn sqlite_connection(db: &Db) -> SqliteConnection {
    let mut conn = SqliteConnection::establish(&db.url).unwrap();
    conn.batch_execute("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL")
        .unwrap();
    conn
}

macro_rules! hand_written {
    (
        $backend:ident on $conn:ty,
        key: $key_sql:ident => $key:ty = $key_of:expr,
        time: $time_sql:ident => $time:ty = $now:expr $(,)?
    ) => {
        pub mod $backend {
            use datastore::diesel::prelude::*;

            use crate::{Key, Peer};

            diesel::table! {
                use datastore::diesel::sql_types::*;
                use datastore::sql_types::{TimestampUtc, Uuid};

                posts (id) {
                    id -> $key_sql,
                    title -> Text,
                    rating -> Integer,
                    status -> Text,
                    body -> Nullable<Text>,
                    created_at -> $time_sql,
                    updated_at -> $time_sql,
                }
            }

            diesel::table! {
                use datastore::diesel::sql_types::*;
                use datastore::sql_types::{TimestampUtc, Uuid};

                comments (id) {
                    id -> $key_sql,
                    content -> Nullable<Text>,
                    post_id -> $key_sql,
                    created_at -> $time_sql,
                    parent_id -> Nullable<$key_sql>,
                    author_id -> Nullable<$key_sql>,
                }
            }

            diesel::table! {
                use datastore::diesel::sql_types::*;
                use datastore::sql_types::{TimestampUtc, Uuid};

                users (id) {
                    id -> $key_sql,
                    username -> Text,
                }
            }

            diesel::table! {
                use datastore::diesel::sql_types::*;
                use datastore::sql_types::{TimestampUtc, Uuid};

                post_editors (id) {
                    id -> $key_sql,
                    post_id -> $key_sql,
                    editor_id -> $key_sql,
                }
            }

            diesel::joinable!(comments -> posts (post_id));
            diesel::joinable!(post_editors -> posts (post_id));
            diesel::joinable!(post_editors -> users (editor_id));
            diesel::allow_tables_to_appear_in_same_query!(posts, comments, users, post_editors);

            // `None` binds NULL rather than `DEFAULT`: without it, Diesel's batch insert on
            // SQLite runs one `INSERT` per row (SQLite's `VALUES` lists have no `DEFAULT`).
            #[derive(Queryable, Selectable, Identifiable, Insertable, Debug, Clone)]
            #[diesel(table_name = posts, treat_none_as_default_value = false)]
            pub struct Post {
                pub id: $key,
                pub title: String,
                pub rating: i32,
                pub status: String,
                pub body: Option<String>,
                pub created_at: $time,
                pub updated_at: $time,
            }

            #[derive(Queryable, Selectable, Identifiable, Associations, Debug, Clone)]
            #[diesel(table_name = comments, belongs_to(Post))]
            pub struct Comment {
                pub id: $key,
                pub content: Option<String>,
                pub post_id: $key,
                pub created_at: $time,
                pub parent_id: Option<$key>,
                pub author_id: Option<$key>,
            }

            #[derive(Queryable, Selectable, Identifiable, Debug, Clone)]
            #[diesel(table_name = users)]
            pub struct User {
                pub id: $key,
                pub username: String,
            }

            #[derive(Queryable, Selectable, Identifiable, Associations, Debug, Clone)]
            #[diesel(table_name = post_editors, belongs_to(Post), belongs_to(User, foreign_key = editor_id))]
            pub struct PostEditor {
                pub id: $key,
                pub post_id: $key,
                pub editor_id: $key,
            }

            /// diesel_bench's association schema.
            pub mod forum {
                use datastore::diesel::prelude::*;

                diesel::table! {
                    use datastore::diesel::sql_types::*;
                    use datastore::sql_types::Uuid;

                    users (id) {
                        id -> $key_sql,
                        name -> Text,
                        hair_color -> Nullable<Text>,
                    }
                }

                diesel::table! {
                    use datastore::diesel::sql_types::*;
                    use datastore::sql_types::Uuid;

                    posts (id) {
                        id -> $key_sql,
                        user_id -> $key_sql,
                        title -> Text,
                        body -> Nullable<Text>,
                    }
                }

                diesel::table! {
                    use datastore::diesel::sql_types::*;
                    use datastore::sql_types::Uuid;

                    comments (id) {
                        id -> $key_sql,
                        post_id -> $key_sql,
                        text -> Text,
                    }
                }

                diesel::joinable!(comments -> posts (post_id));
                diesel::joinable!(posts -> users (user_id));
                diesel::allow_tables_to_appear_in_same_query!(users, posts, comments);

                #[derive(Queryable, Selectable, Identifiable, Debug, Clone)]
                #[diesel(table_name = users)]
                pub struct User {
                    pub id: $key,
                    pub name: String,
                    pub hair_color: Option<String>,
                }

                #[derive(Queryable, Selectable, Identifiable, Associations, Debug, Clone)]
                #[diesel(table_name = posts, belongs_to(User))]
                pub struct Post {
                    pub id: $key,
                    pub user_id: $key,
                    pub title: String,
                    pub body: Option<String>,
                }

                #[derive(Queryable, Selectable, Identifiable, Associations, Debug, Clone)]
                #[diesel(table_name = comments, belongs_to(Post))]
                pub struct Comment {
                    pub id: $key,
                    pub post_id: $key,
                    pub text: String,
                }
            }

            /// The blog's posts and comments keyed by integers the database assigns.
            pub mod int_keyed {
                use datastore::diesel::prelude::*;

                use super::Diesel;
                use crate::IntKeyedPeer;

                diesel::table! {
                    use datastore::diesel::sql_types::*;
                    use datastore::sql_types::TimestampUtc;

                    posts (id) {
                        id -> BigInt,
                        title -> Text,
                        rating -> Integer,
                        status -> Text,
                        body -> Nullable<Text>,
                        created_at -> $time_sql,
                        updated_at -> $time_sql,
                    }
                }

                diesel::table! {
                    use datastore::diesel::sql_types::*;
                    use datastore::sql_types::TimestampUtc;

                    comments (id) {
                        id -> BigInt,
                        content -> Nullable<Text>,
                        post_id -> BigInt,
                        created_at -> $time_sql,
                    }
                }

                diesel::joinable!(comments -> posts (post_id));
                diesel::allow_tables_to_appear_in_same_query!(posts, comments);

                /// A post is inserted without its key (`skip_insertion`), which the database
                /// assigns and `RETURNING` reads back.
                #[derive(Queryable, Selectable, Identifiable, Insertable, Debug, Clone)]
                #[diesel(table_name = posts, treat_none_as_default_value = false)]
                pub struct Post {
                    #[diesel(skip_insertion)]
                    pub id: i64,
                    pub title: String,
                    pub rating: i32,
                    pub status: String,
                    pub body: Option<String>,
                    pub created_at: $time,
                    pub updated_at: $time,
                }

                #[derive(Queryable, Selectable, Identifiable, Associations, Debug, Clone)]
                #[diesel(table_name = comments, belongs_to(Post))]
                pub struct Comment {
                    pub id: i64,
                    pub content: Option<String>,
                    pub post_id: i64,
                    pub created_at: $time,
                }

                impl Post {
                    /// A new row with `post`'s data, as a Diesel user builds one: no key yet,
                    /// and the time now.
                    pub fn new_from(post: &crate::int_keyed::Post) -> Self {
                        let now: $time = ($now)();
                        Self {
                            id: 0,
                            title: post.title.clone(),
                            rating: post.rating,
                            status: "Active".into(),
                            body: post.body.clone(),
                            created_at: now.clone(),
                            updated_at: now,
                        }
                    }
                }

                impl Diesel {
                    /// Every post, in key order.
                    fn all_int_keyed_posts(&mut self) -> Vec<Post> {
                        posts::table
                            .order(posts::id)
                            .load::<Post>(&mut self.conn)
                            .unwrap()
                    }
                }

                impl IntKeyedPeer for Diesel {
                    fn find_post(&mut self, id: i64) -> usize {
                        posts::table
                            .find(id)
                            .first::<Post>(&mut self.conn)
                            .optional()
                            .unwrap()
                            .into_iter()
                            .count()
                    }

                    fn stage_posts(&mut self, rows: &[crate::int_keyed::Post]) {
                        self.int_keyed = rows.iter().map(Post::new_from).collect();
                    }

                    fn insert_staged(&mut self) -> usize {
                        // Under SQLite's limit of 32,766 bound values: 6 per post.
                        const ROWS_PER_STATEMENT: usize = 32_766 / 6;
                        let rows = &mut self.int_keyed;
                        self.conn
                            .transaction(|tx| {
                                for chunk in rows.chunks_mut(ROWS_PER_STATEMENT) {
                                    let mut ids: Vec<i64> = diesel::insert_into(posts::table)
                                        .values(&*chunk)
                                        .returning(posts::id)
                                        .get_results(tx)?;
                                    // `RETURNING` promises no order, but the keys are assigned
                                    // in the rows' order, each larger than the last (as
                                    // datastore's `insert_all` reads them).
                                    ids.sort_unstable();
                                    for (row, id) in chunk.iter_mut().zip(ids) {
                                        row.id = id;
                                    }
                                }
                                QueryResult::Ok(())
                            })
                            .unwrap();
                        rows.len()
                    }

                    fn inserted_keys(&self) -> Vec<i64> {
                        self.int_keyed.iter().map(|p| p.id).collect()
                    }

                    fn posts_with_comments(&mut self) -> usize {
                        let posts = self.all_int_keyed_posts();
                        let comments = Comment::belonging_to(&posts)
                            .order(comments::id)
                            .load::<Comment>(&mut self.conn)
                            .unwrap()
                            .grouped_by(&posts);
                        let loaded: Vec<(Post, Vec<Comment>)> = posts.into_iter().zip(comments).collect();
                        crate::children(&loaded)
                    }
                }
            }

            pub struct Diesel {
                conn: $conn,
                staged: Vec<Post>,
                /// The integer-keyed rows to insert, then as inserted (with their keys).
                int_keyed: Vec<int_keyed::Post>,
            }

            impl Diesel {
                pub fn new(conn: $conn) -> Self {
                    Self {
                        conn,
                        staged: Vec::new(),
                        int_keyed: Vec::new(),
                    }
                }
            }

            fn key(key: &Key) -> $key {
                ($key_of)(key)
            }

            impl Post {
                /// A new row with `post`'s data, as a Diesel user builds one: a new key, and
                /// the time now.
                pub fn new_from(post: &crate::models::Post) -> Self {
                    let now: $time = ($now)();
                    Self {
                        id: key(&Key::from(datastore::Id::new())),
                        title: post.title.clone(),
                        rating: post.rating,
                        status: "Active".into(),
                        body: post.body.clone(),
                        created_at: now.clone(),
                        updated_at: now,
                    }
                }
            }

            all_posts!($conn);
            posts_commented!($conn);

            impl Peer for Diesel {
                fn posts(&mut self) -> usize {
                    all_posts(&mut self.conn).len()
                }

                fn posts_commented(&mut self, pattern: &str) -> usize {
                    posts_commented(&mut self.conn, pattern).len()
                }

                fn find_post(&mut self, k: &Key) -> usize {
                    posts::table
                        .find(key(k))
                        .first::<Post>(&mut self.conn)
                        .optional()
                        .unwrap()
                        .into_iter()
                        .count()
                }

                fn stage_posts(&mut self, rows: &[crate::models::Post]) {
                    self.staged = rows.iter().map(Post::new_from).collect();
                }

                fn insert_staged(&mut self) -> usize {
                    // Under SQLite's limit of 32,766 bound values: 7 per post.
                    const ROWS_PER_STATEMENT: usize = 32_766 / 7;
                    let rows = std::mem::take(&mut self.staged);
                    self.conn
                        .transaction(|tx| {
                            rows.chunks(ROWS_PER_STATEMENT)
                                .map(|chunk| diesel::insert_into(posts::table).values(chunk).execute(tx))
                                .sum::<QueryResult<usize>>()
                        })
                        .unwrap()
                }

                fn posts_with_comments(&mut self) -> usize {
                    let posts = all_posts(&mut self.conn);
                    let comments = Comment::belonging_to(&posts)
                        .order(comments::id)
                        .load::<Comment>(&mut self.conn)
                        .unwrap()
                        .grouped_by(&posts);
                    let loaded: Vec<(Post, Vec<Comment>)> = posts.into_iter().zip(comments).collect();
                    crate::children(&loaded)
                }

                fn posts_with_editors(&mut self) -> usize {
                    let posts = all_posts(&mut self.conn);
                    let editors = PostEditor::belonging_to(&posts)
                        .inner_join(users::table)
                        .order(post_editors::id)
                        .select((PostEditor::as_select(), User::as_select()))
                        .load::<(PostEditor, User)>(&mut self.conn)
                        .unwrap();
                    let loaded: Vec<(Post, Vec<User>)> = editors
                        .grouped_by(&posts)
                        .into_iter()
                        .zip(posts)
                        .map(|(links, post)| (post, links.into_iter().map(|(_, u)| u).collect()))
                        .collect();
                    crate::children(&loaded)
                }

                fn users_posts_comments(&mut self) -> usize {
                    use forum::{comments, posts, users, Comment, Post, User};
                    let users = users::table
                        .order(users::id)
                        .load::<User>(&mut self.conn)
                        .unwrap();
                    let posts = Post::belonging_to(&users)
                        .order(posts::id)
                        .load::<Post>(&mut self.conn)
                        .unwrap();
                    let comments = Comment::belonging_to(&posts)
                        .order(comments::id)
                        .load::<Comment>(&mut self.conn)
                        .unwrap()
                        .grouped_by(&posts);
                    let posts_and_comments = posts.into_iter().zip(comments).grouped_by(&users);
                    let loaded: Vec<(User, Vec<(Post, Vec<Comment>)>)> =
                        users.into_iter().zip(posts_and_comments).collect();
                    crate::grandchildren(&loaded)
                }

                fn delete_post(&mut self, k: &Key) {
                    diesel::delete(posts::table.find(key(k)))
                        .execute(&mut self.conn)
                        .unwrap();
                }
            }
        }
    };
}

hand_written!(
    sqlite on SqliteConnection,
    key: Text => String = |k: &Key| k.text.clone(),
    time: Text => String = || datastore::Timestamp::now().to_string(),
);

hand_written!(
    postgres on PgConnection,
    key: Uuid => datastore::Id = |k: &Key| k.id,
    time: TimestampUtc => datastore::Timestamp = datastore::Timestamp::now,
);
