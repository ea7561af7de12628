//! diesel_bench's association schema as datastore models: users, their posts, and the posts'
//! comments. It lives in a database of its own (its table names are the blog's).

use datastore::prelude::*;

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct User {
    #[primary_key]
    pub id: Id,
    pub name: String,
    pub hair_color: Option<String>,
    #[has_many(Post)]
    pub posts: HasMany<Post>,
}

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Post {
    #[primary_key]
    pub id: Id,
    #[belongs_to(User)]
    pub user_id: Id,
    pub title: String,
    pub body: Option<String>,
    #[has_many(Comment)]
    pub comments: HasMany<Comment>,
}

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Comment {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Post)]
    pub post_id: Id,
    pub text: String,
}

pub fn schema() -> Schema {
    Schema::new()
        .model::<User>()
        .model::<Post>()
        .model::<Comment>()
}
