use datastore::prelude::*;

#[derive(Model)]
pub struct Post {
    #[primary_key]
    #[primary_key]
    pub id: Id,
}

fn main() {}
