use datastore::prelude::*;

#[derive(Model)]
pub struct Topic {
    #[primary_key]
    pub id: Id,
}

#[derive(Model)]
pub struct Reply {
    #[primary_key]
    pub id: Id,
    // `query()` is every model's.
    #[belongs_to(Topic)]
    pub query_id: Id,
    // `self()` cannot be written, not even as `r#self`.
    #[belongs_to(Topic)]
    pub self_id: Id,
    // `topic()`, as `topic_id`'s getter, is taken.
    #[belongs_to(Topic)]
    pub topic_id: Id,
    #[has_one(Topic)]
    pub topic: HasOne<Topic>,
}

fn main() {}
