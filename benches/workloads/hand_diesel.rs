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
use crate::Peer;

pub fn open(db: &Db) -> Box<dyn Peer> {
    match db.backend {
        Backend::Sqlite => {
            let mut conn = SqliteConnection::establish(&db.url).unwrap();
            conn.batch_execute("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL")
                .unwrap();
            Box::new(sqlite::Diesel::new(conn))
        }
        Backend::Postgres => Box::new(postgres::Diesel::new(
            PgConnection::establish(&db.url).unwrap(),
        )),
    }
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

            pub struct Diesel {
                conn: $conn,
                staged: Vec<Post>,
            }

            impl Diesel {
                pub fn new(conn: $conn) -> Self {
                    Self {
                        conn,
                        staged: Vec::new(),
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

            impl Diesel {
                /// Every post, in key order.
                fn all_posts(&mut self) -> Vec<Post> {
                    posts::table
                        .order(posts::id)
                        .load::<Post>(&mut self.conn)
                        .unwrap()
                }
            }

            impl Peer for Diesel {
                fn posts(&mut self) -> usize {
                    self.all_posts().len()
                }

                fn posts_commented(&mut self, pattern: &str) -> usize {
                    let commented = comments::table
                        .select(comments::post_id)
                        .filter(comments::content.like(pattern));
                    posts::table
                        .filter(posts::id.eq_any(commented))
                        .order(posts::id)
                        .load::<Post>(&mut self.conn)
                        .unwrap()
                        .len()
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
                    let posts = self.all_posts();
                    let comments = Comment::belonging_to(&posts)
                        .order(comments::id)
                        .load::<Comment>(&mut self.conn)
                        .unwrap()
                        .grouped_by(&posts);
                    let loaded: Vec<(Post, Vec<Comment>)> = posts.into_iter().zip(comments).collect();
                    crate::children(&loaded)
                }

                fn posts_with_editors(&mut self) -> usize {
                    let posts = self.all_posts();
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
