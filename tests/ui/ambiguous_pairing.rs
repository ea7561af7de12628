use datastore::prelude::*;

#[derive(Model, Clone, Default)]
pub struct User {
    #[primary_key]
    pub id: Id,
    #[has_many(Comment)]
    pub comments: HasMany<Comment>,
}

#[derive(Model, Clone, Default)]
pub struct Comment {
    #[primary_key]
    pub id: Id,
    #[belongs_to(User)]
    pub author_id: Id,
    #[belongs_to(User)]
    pub reviewer_id: Id,
}

fn main() {}
