//! rusqlite with cached prepared statements: the floor, what SQLite itself costs through a
//! thin safe binding. Rows are read into the same plain structs as hand-written Diesel's.

use std::collections::HashMap;
use std::hash::Hash;

use rusqlite::{params, Connection, OpenFlags, Row, ToSql};

use crate::db::Db;
use crate::hand_diesel::sqlite::{forum, int_keyed, Comment, Post, User};
use crate::{IntKeyedPeer, Key, Peer};

pub struct Rusqlite {
    conn: Connection,
    staged: Vec<Post>,
    /// The integer-keyed rows to insert, then as inserted (with their keys).
    int_keyed: Vec<int_keyed::Post>,
}

impl Rusqlite {
    pub fn open(db: &Db) -> Self {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&db.url, flags).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL")
            .unwrap();
        Self {
            conn,
            staged: Vec::new(),
            int_keyed: Vec::new(),
        }
    }

    /// The rows of `select` whose `column` is one of `keys`, by `order`: one statement,
    /// cached per number of keys.
    fn rows_in<'k, K: ToSql + 'k, T>(
        &self,
        select: &str,
        column: &str,
        keys: impl ExactSizeIterator<Item = &'k K>,
        order: &str,
        read: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Vec<T> {
        let placeholders = (1..=keys.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("{select} WHERE {column} IN ({placeholders}) ORDER BY {order}");
        self.rows(&sql, rusqlite::params_from_iter(keys), read)
    }

    /// Every row of a cached statement, read by `read`.
    fn rows<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        read: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Vec<T> {
        let mut stmt = self.conn.prepare_cached(sql).unwrap();
        stmt.query_map(params, read)
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }
}

/// The statements' SQL, written out once as a user of prepared statements would.
macro_rules! select_posts {
    ($($rest:literal)?) => {
        concat!(
            "SELECT id, title, rating, status, body, created_at, updated_at FROM posts"
            $(, " ", $rest)?
        )
    };
}

const POSTS: &str = select_posts!("ORDER BY id");
const POSTS_COMMENTED: &str =
    select_posts!("WHERE id IN (SELECT post_id FROM comments WHERE content LIKE ?1) ORDER BY id");
const POST_BY_ID: &str = select_posts!("WHERE id = ?1");

fn post(row: &Row<'_>) -> rusqlite::Result<Post> {
    Ok(Post {
        id: row.get(0)?,
        title: row.get(1)?,
        rating: row.get(2)?,
        status: row.get(3)?,
        body: row.get(4)?,
        created_at: row.get(5)?,
        updated_at: row.get(6)?,
    })
}

fn int_keyed_post(row: &Row<'_>) -> rusqlite::Result<int_keyed::Post> {
    Ok(int_keyed::Post {
        id: row.get(0)?,
        title: row.get(1)?,
        rating: row.get(2)?,
        status: row.get(3)?,
        body: row.get(4)?,
        created_at: row.get(5)?,
        updated_at: row.get(6)?,
    })
}

fn comment(row: &Row<'_>) -> rusqlite::Result<Comment> {
    Ok(Comment {
        id: row.get(0)?,
        content: row.get(1)?,
        post_id: row.get(2)?,
        created_at: row.get(3)?,
        parent_id: row.get(4)?,
        author_id: row.get(5)?,
    })
}

fn int_keyed_comment(row: &Row<'_>) -> rusqlite::Result<int_keyed::Comment> {
    Ok(int_keyed::Comment {
        id: row.get(0)?,
        content: row.get(1)?,
        post_id: row.get(2)?,
        created_at: row.get(3)?,
    })
}

const SELECT_COMMENTS: &str =
    "SELECT id, content, post_id, created_at, parent_id, author_id FROM comments";
/// The integer-keyed comments' columns (they have no thread and no author).
const SELECT_INT_KEYED_COMMENTS: &str = "SELECT id, content, post_id, created_at FROM comments";

/// What a hand-written eager load does after its queries: each parent with its children
/// (the way Diesel's `grouped_by` does it).
fn with_children<P, C, K: Hash + Eq>(
    parents: Vec<P>,
    children: Vec<C>,
    parent_key: impl Fn(&P) -> &K,
    child_key: impl Fn(&C) -> &K,
) -> Vec<(P, Vec<C>)> {
    let mut grouped: Vec<Vec<C>> = parents.iter().map(|_| Vec::new()).collect();
    {
        let index: HashMap<&K, usize> = parents
            .iter()
            .enumerate()
            .map(|(i, p)| (parent_key(p), i))
            .collect();
        for child in children {
            if let Some(&i) = index.get(child_key(&child)) {
                grouped[i].push(child);
            }
        }
    }
    parents.into_iter().zip(grouped).collect()
}

impl Peer for Rusqlite {
    fn posts(&mut self) -> usize {
        self.rows(POSTS, [], post).len()
    }

    fn posts_commented(&mut self, pattern: &str) -> usize {
        self.rows(POSTS_COMMENTED, [pattern], post).len()
    }

    fn find_post(&mut self, key: &Key) -> usize {
        let mut stmt = self.conn.prepare_cached(POST_BY_ID).unwrap();
        stmt.query_row([&key.text], post).map(|_| 1).unwrap()
    }

    fn stage_posts(&mut self, posts: &[crate::models::Post]) {
        self.staged = posts.iter().map(Post::new_from).collect();
    }

    fn insert_staged(&mut self) -> usize {
        let tx = self.conn.unchecked_transaction().unwrap();
        let mut inserted = 0;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO posts (id, title, rating, status, body, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .unwrap();
            for p in self.staged.drain(..) {
                inserted += stmt
                    .execute(params![
                        p.id,
                        p.title,
                        p.rating,
                        p.status,
                        p.body,
                        p.created_at,
                        p.updated_at
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
        inserted
    }

    fn posts_with_comments(&mut self) -> usize {
        let posts = self.rows(POSTS, [], post);
        let comments = self.rows_in(
            SELECT_COMMENTS,
            "post_id",
            posts.iter().map(|p| &p.id),
            "id",
            comment,
        );
        let loaded = with_children(posts, comments, |p| &p.id, |c| &c.post_id);
        crate::children(&loaded)
    }

    fn posts_with_editors(&mut self) -> usize {
        let posts = self.rows(POSTS, [], post);
        let editors = self.rows_in(
            "SELECT post_editors.post_id, users.id, users.username FROM post_editors \
             INNER JOIN users ON users.id = post_editors.editor_id",
            "post_editors.post_id",
            posts.iter().map(|p| &p.id),
            "post_editors.id",
            |row| {
                let post_id: String = row.get(0)?;
                let user = User {
                    id: row.get(1)?,
                    username: row.get(2)?,
                };
                Ok((post_id, user))
            },
        );
        let loaded = with_children(posts, editors, |p| &p.id, |(post_id, _)| post_id);
        crate::children(&loaded)
    }

    fn users_posts_comments(&mut self) -> usize {
        let users = self.rows(
            "SELECT id, name, hair_color FROM users ORDER BY id",
            [],
            |row| {
                Ok(forum::User {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    hair_color: row.get(2)?,
                })
            },
        );
        let posts = self.rows_in(
            "SELECT id, user_id, title, body FROM posts",
            "user_id",
            users.iter().map(|u| &u.id),
            "id",
            |row| {
                Ok(forum::Post {
                    id: row.get(0)?,
                    user_id: row.get(1)?,
                    title: row.get(2)?,
                    body: row.get(3)?,
                })
            },
        );
        let comments = self.rows_in(
            "SELECT id, post_id, text FROM comments",
            "post_id",
            posts.iter().map(|p| &p.id),
            "id",
            |row| {
                Ok(forum::Comment {
                    id: row.get(0)?,
                    post_id: row.get(1)?,
                    text: row.get(2)?,
                })
            },
        );
        let posts = with_children(posts, comments, |p| &p.id, |c| &c.post_id);
        let loaded = with_children(users, posts, |u| &u.id, |(p, _)| &p.user_id);
        crate::grandchildren(&loaded)
    }

    fn delete_post(&mut self, key: &Key) {
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM posts WHERE id = ?1")
            .unwrap();
        stmt.execute([&key.text]).unwrap();
    }
}

/// The same tables keyed by integers the database assigns: the statements are the blog's.
impl IntKeyedPeer for Rusqlite {
    fn find_post(&mut self, id: i64) -> usize {
        let mut stmt = self.conn.prepare_cached(POST_BY_ID).unwrap();
        stmt.query_row([id], int_keyed_post).map(|_| 1).unwrap()
    }

    fn stage_posts(&mut self, posts: &[crate::int_keyed::Post]) {
        self.int_keyed = posts.iter().map(int_keyed::Post::new_from).collect();
    }

    fn insert_staged(&mut self) -> usize {
        let tx = self.conn.unchecked_transaction().unwrap();
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO posts (title, rating, status, body, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .unwrap();
            // `insert` returns the key SQLite assigned (`sqlite3_last_insert_rowid`).
            for p in &mut self.int_keyed {
                p.id = stmt
                    .insert(params![
                        p.title,
                        p.rating,
                        p.status,
                        p.body,
                        p.created_at,
                        p.updated_at
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
        self.int_keyed.len()
    }

    fn inserted_keys(&self) -> Vec<i64> {
        self.int_keyed.iter().map(|p| p.id).collect()
    }

    fn posts_with_comments(&mut self) -> usize {
        let posts = self.rows(POSTS, [], int_keyed_post);
        let comments = self.rows_in(
            SELECT_INT_KEYED_COMMENTS,
            "post_id",
            posts.iter().map(|p| &p.id),
            "id",
            int_keyed_comment,
        );
        let loaded = with_children(posts, comments, |p| &p.id, |c| &c.post_id);
        crate::children(&loaded)
    }
}
