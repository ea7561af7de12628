use datastore::prelude::*;

#[derive(Model)]
pub struct Post {
    #[primary_key]
    pub id: Id,
    pub tags: std::collections::HashSet<String>,
}

fn main() {}
