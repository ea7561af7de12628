use datastore::prelude::*;

#[derive(Model, Clone, Default)]
pub struct Reply {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Reply)]
    pub parent_id: Option<Id>,
    #[belongs_to(Reply)]
    pub quoted_id: Option<Id>,
    #[has_many(Reply)]
    pub answers: HasMany<Reply>,
}

fn main() {}
