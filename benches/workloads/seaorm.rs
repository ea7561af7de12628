//! SeaORM 2 with its sqlx drivers: the ORM a Rust user would most likely pick instead.
//!
//! Configured for speed, as a user measuring it would: statement logging off, no ping before
//! each use of a pooled connection, and a pool of one connection (the benchmark is one thread).
//! SeaORM is async, so each call runs on a current-thread tokio runtime (`block_on`); sqlx's
//! SQLite driver runs SQLite on a worker thread of its own, which each statement reaches
//! through a channel: that hand-off is part of what SeaORM costs.
//!
//! The entities are the same on both backends but for the types of keys and timestamps (text
//! on SQLite, as the rows are stored there; `uuid` and `timestamptz` on PostgreSQL). One macro
//! writes them, and the peer, for each.

use sea_orm::{ConnectOptions, Database};

use crate::db::{Backend, Db};
use crate::Peer;

pub fn open(db: &Db) -> Box<dyn Peer> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = match db.backend {
        // `file:/name?vfs=memdb` or a path, in sqlx's URL form.
        Backend::Sqlite => format!("sqlite:{}", db.url.trim_start_matches("file:")),
        Backend::Postgres => db.url.clone(),
    };
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(1)
        .min_connections(1)
        .sqlx_logging(false)
        .test_before_acquire(false)
        .map_sqlx_sqlite_opts(|o| o.synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal));
    let conn = runtime.block_on(Database::connect(options)).unwrap();
    match db.backend {
        Backend::Sqlite => Box::new(sqlite::SeaOrm::new(runtime, conn)),
        Backend::Postgres => Box::new(postgres::SeaOrm::new(runtime, conn)),
    }
}

macro_rules! sea_orm_peer {
    (
        $backend:ident,
        key: $key:ident = $key_of:expr,
        time: $time:ident = $now:expr $(,)?
    ) => {
        pub mod $backend {
            use sea_orm::entity::prelude::*;
            use sea_orm::{
                ActiveValue::Set, DatabaseConnection, LoaderTrait, QueryOrder, QuerySelect,
                QueryTrait, TransactionTrait,
            };

            use crate::{Key, Peer};

            seaorm_blog_entities!(key: $key, time: $time);

            /// diesel_bench's association schema.
            pub mod forum {
                pub mod user {
                    use sea_orm::entity::prelude::*;

                    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
                    #[sea_orm(table_name = "users")]
                    pub struct Model {
                        #[sea_orm(primary_key, auto_increment = false)]
                        pub id: $key,
                        pub name: String,
                        pub hair_color: Option<String>,
                    }

                    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
                    pub enum Relation {
                        #[sea_orm(has_many = "super::post::Entity")]
                        Posts,
                    }

                    impl Related<super::post::Entity> for Entity {
                        fn to() -> RelationDef {
                            Relation::Posts.def()
                        }
                    }

                    impl ActiveModelBehavior for ActiveModel {}
                }

                pub mod post {
                    use sea_orm::entity::prelude::*;

                    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
                    #[sea_orm(table_name = "posts")]
                    pub struct Model {
                        #[sea_orm(primary_key, auto_increment = false)]
                        pub id: $key,
                        pub user_id: $key,
                        pub title: String,
                        pub body: Option<String>,
                    }

                    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
                    pub enum Relation {
                        #[sea_orm(
                            belongs_to = "super::user::Entity",
                            from = "Column::UserId",
                            to = "super::user::Column::Id"
                        )]
                        User,
                        #[sea_orm(has_many = "super::comment::Entity")]
                        Comments,
                    }

                    impl Related<super::user::Entity> for Entity {
                        fn to() -> RelationDef {
                            Relation::User.def()
                        }
                    }

                    impl Related<super::comment::Entity> for Entity {
                        fn to() -> RelationDef {
                            Relation::Comments.def()
                        }
                    }

                    impl ActiveModelBehavior for ActiveModel {}
                }

                pub mod comment {
                    use sea_orm::entity::prelude::*;

                    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
                    #[sea_orm(table_name = "comments")]
                    pub struct Model {
                        #[sea_orm(primary_key, auto_increment = false)]
                        pub id: $key,
                        pub post_id: $key,
                        pub text: String,
                    }

                    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
                    pub enum Relation {
                        #[sea_orm(
                            belongs_to = "super::post::Entity",
                            from = "Column::PostId",
                            to = "super::post::Column::Id"
                        )]
                        Post,
                    }

                    impl Related<super::post::Entity> for Entity {
                        fn to() -> RelationDef {
                            Relation::Post.def()
                        }
                    }

                    impl ActiveModelBehavior for ActiveModel {}
                }
            }

            /// Rows per `INSERT`: under both backends' limits on bound values (7 per post).
            const INSERT_CHUNK: usize = 1_000;

            pub struct SeaOrm {
                runtime: tokio::runtime::Runtime,
                db: DatabaseConnection,
                staged: Vec<post::ActiveModel>,
            }

            impl SeaOrm {
                pub fn new(runtime: tokio::runtime::Runtime, db: DatabaseConnection) -> Self {
                    Self {
                        runtime,
                        db,
                        staged: Vec::new(),
                    }
                }
            }

            impl SeaOrm {
                /// Every post, in key order.
                async fn all_posts(&self) -> Vec<post::Model> {
                    let query = post::Entity::find().order_by_asc(post::Column::Id);
                    query.all(&self.db).await.unwrap()
                }
            }

            fn key(key: &Key) -> $key {
                ($key_of)(key)
            }

            fn now() -> $time {
                ($now)()
            }

            impl Peer for SeaOrm {
                fn posts(&mut self) -> usize {
                    self.runtime.block_on(self.all_posts()).len()
                }

                fn posts_commented(&mut self, pattern: &str) -> usize {
                    let commented = comment::Entity::find()
                        .select_only()
                        .column(comment::Column::PostId)
                        .filter(comment::Column::Content.like(pattern))
                        .into_query();
                    let query = post::Entity::find()
                        .filter(post::Column::Id.in_subquery(commented))
                        .order_by_asc(post::Column::Id);
                    self.runtime.block_on(query.all(&self.db)).unwrap().len()
                }

                fn find_post(&mut self, k: &Key) -> usize {
                    let query = post::Entity::find_by_id(key(k));
                    self.runtime
                        .block_on(query.one(&self.db))
                        .unwrap()
                        .into_iter()
                        .count()
                }

                fn stage_posts(&mut self, posts: &[crate::models::Post]) {
                    self.staged = posts
                        .iter()
                        .map(|p| {
                            let now = now();
                            post::ActiveModel {
                                id: Set(key(&Key::from(datastore::Id::new()))),
                                title: Set(p.title.clone()),
                                rating: Set(p.rating),
                                status: Set("Active".into()),
                                body: Set(p.body.clone()),
                                created_at: Set(now.clone()),
                                updated_at: Set(now),
                            }
                        })
                        .collect();
                }

                fn insert_staged(&mut self) -> usize {
                    let mut rows = std::mem::take(&mut self.staged);
                    self.runtime.block_on(async {
                        let tx = self.db.begin().await.unwrap();
                        let mut inserted = 0;
                        while !rows.is_empty() {
                            let rest = rows.split_off(rows.len().min(INSERT_CHUNK));
                            inserted +=
                                post::Entity::insert_many(std::mem::replace(&mut rows, rest))
                                    .exec_without_returning(&tx)
                                    .await
                                    .unwrap();
                        }
                        tx.commit().await.unwrap();
                        inserted as usize
                    })
                }

                fn posts_with_comments(&mut self) -> usize {
                    self.runtime.block_on(async {
                        let posts = self.all_posts().await;
                        let comments = posts
                            .load_many(
                                comment::Entity::find().order_by_asc(comment::Column::Id),
                                &self.db,
                            )
                            .await
                            .unwrap();
                        let loaded: Vec<(post::Model, Vec<comment::Model>)> =
                            posts.into_iter().zip(comments).collect();
                        crate::children(&loaded)
                    })
                }

                fn posts_with_editors(&mut self) -> usize {
                    self.runtime.block_on(async {
                        let posts = self.all_posts().await;
                        let editors = posts
                            .load_many_to_many(user::Entity, post_editor::Entity, &self.db)
                            .await
                            .unwrap();
                        let loaded: Vec<(post::Model, Vec<user::Model>)> =
                            posts.into_iter().zip(editors).collect();
                        crate::children(&loaded)
                    })
                }

                fn users_posts_comments(&mut self) -> usize {
                    use forum::{comment, post, user};
                    self.runtime.block_on(async {
                        let users = user::Entity::find()
                            .order_by_asc(user::Column::Id)
                            .all(&self.db)
                            .await
                            .unwrap();
                        let posts = users
                            .load_many(
                                post::Entity::find().order_by_asc(post::Column::Id),
                                &self.db,
                            )
                            .await
                            .unwrap();
                        // The loader takes one flat list of parents: flatten, then regroup.
                        let per_user: Vec<usize> = posts.iter().map(Vec::len).collect();
                        let posts: Vec<post::Model> = posts.into_iter().flatten().collect();
                        let comments = posts
                            .load_many(
                                comment::Entity::find().order_by_asc(comment::Column::Id),
                                &self.db,
                            )
                            .await
                            .unwrap();
                        let mut posts = posts.into_iter().zip(comments);
                        let loaded: Vec<(user::Model, Vec<(post::Model, Vec<comment::Model>)>)> =
                            users
                                .into_iter()
                                .zip(per_user)
                                .map(|(user, n)| (user, posts.by_ref().take(n).collect()))
                                .collect();
                        crate::grandchildren(&loaded)
                    })
                }

                fn delete_post(&mut self, k: &Key) {
                    let delete = post::Entity::delete_by_id(key(k));
                    self.runtime.block_on(delete.exec(&self.db)).unwrap();
                }
            }
        }
    };
}

sea_orm_peer!(
    sqlite,
    key: String = |k: &Key| k.text.clone(),
    time: String = || datastore::Timestamp::now().to_string(),
);

sea_orm_peer!(
    postgres,
    key: Uuid = |k: &Key| Uuid::from(k.id),
    time: DateTimeUtc = || DateTimeUtc::from(datastore::Timestamp::now()),
);
