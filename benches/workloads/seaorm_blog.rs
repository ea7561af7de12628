//! SeaORM's entities for the blog's tables (posts, comments, users and the posts' editors), as a
//! SeaORM user declares them, with every column the blog's models have: shared by the workloads'
//! SeaORM peer (`seaorm.rs`) and the async benchmark (`benches/async.rs`), so that both read
//! what datastore reads.

/// The entity modules `post`, `comment`, `user` and `post_editor`, for keys of type `key` and
/// instants of type `time` (text on SQLite, as stored there; `uuid` and `timestamptz` on
/// PostgreSQL).
macro_rules! seaorm_blog_entities {
    (key: $key:ty, time: $time:ty $(,)?) => {
        pub mod post {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
            #[sea_orm(table_name = "posts")]
            pub struct Model {
                #[sea_orm(primary_key, auto_increment = false)]
                pub id: $key,
                pub title: String,
                pub rating: i32,
                pub status: String,
                pub body: Option<String>,
                pub created_at: $time,
                pub updated_at: $time,
            }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {
                #[sea_orm(has_many = "super::comment::Entity")]
                Comments,
                #[sea_orm(has_many = "super::post_editor::Entity")]
                PostEditors,
            }

            impl Related<super::comment::Entity> for Entity {
                fn to() -> RelationDef {
                    Relation::Comments.def()
                }
            }

            impl Related<super::user::Entity> for Entity {
                fn to() -> RelationDef {
                    super::post_editor::Relation::User.def()
                }

                fn via() -> Option<RelationDef> {
                    Some(super::post_editor::Relation::Post.def().rev())
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
                pub content: Option<String>,
                pub post_id: $key,
                pub created_at: $time,
                pub parent_id: Option<$key>,
                pub author_id: Option<$key>,
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

        pub mod user {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
            #[sea_orm(table_name = "users")]
            pub struct Model {
                #[sea_orm(primary_key, auto_increment = false)]
                pub id: $key,
                pub username: String,
            }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            impl ActiveModelBehavior for ActiveModel {}
        }

        pub mod post_editor {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
            #[sea_orm(table_name = "post_editors")]
            pub struct Model {
                #[sea_orm(primary_key, auto_increment = false)]
                pub id: $key,
                pub post_id: $key,
                pub editor_id: $key,
            }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {
                #[sea_orm(
                    belongs_to = "super::post::Entity",
                    from = "Column::PostId",
                    to = "super::post::Column::Id"
                )]
                Post,
                #[sea_orm(
                    belongs_to = "super::user::Entity",
                    from = "Column::EditorId",
                    to = "super::user::Column::Id"
                )]
                User,
            }

            impl Related<super::post::Entity> for Entity {
                fn to() -> RelationDef {
                    Relation::Post.def()
                }
            }

            impl Related<super::user::Entity> for Entity {
                fn to() -> RelationDef {
                    Relation::User.def()
                }
            }

            impl ActiveModelBehavior for ActiveModel {}
        }
    };
}
