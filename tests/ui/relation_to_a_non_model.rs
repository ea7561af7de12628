use datastore::prelude::*;

#[derive(Clone, Default)]
pub struct Comment {
    pub text: String,
}

#[derive(Model, Clone, Default)]
pub struct Post {
    #[primary_key]
    pub id: Id,
    #[has_many(Comment)]
    pub comments: HasMany<Comment>,
}

fn main() {}
