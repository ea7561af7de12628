use datastore::prelude::*;

#[derive(Model)]
pub struct Post {
    #[primary_key]
    pub id: Id,
    #[primary_key]
    pub other_id: Id,
}

fn main() {}
