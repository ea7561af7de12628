use datastore::prelude::*;

#[derive(Model, Clone, Default)]
pub struct Post {
    #[primary_key]
    pub id: Id,
    #[has_many(Comment)]
    pub comments: HasMany<Comment>,
}

#[derive(Model, Clone, Default)]
pub struct Comment {
    #[primary_key]
    pub id: Id,
    pub post_id: Id,
}

fn main() {}
