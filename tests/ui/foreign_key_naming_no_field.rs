use datastore::prelude::*;

#[derive(Model, Clone, Default)]
pub struct Member {
    #[primary_key]
    pub id: Id,
    #[has_many(Topic, foreign_key = writer_id)]
    pub topics: HasMany<Topic>,
}

#[derive(Model, Clone, Default)]
pub struct Topic {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Member)]
    pub author_id: Id,
}

fn main() {}
