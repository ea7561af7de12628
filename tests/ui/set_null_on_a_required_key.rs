use datastore::prelude::*;

#[derive(Model, Clone, Default)]
pub struct Member {
    #[primary_key]
    pub id: Id,
}

#[derive(Model, Clone, Default)]
pub struct Topic {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Member, on_delete = set_null)]
    pub author_id: Id,
}

fn main() {}
