use datastore::prelude::*;

#[derive(Model)]
#[model(table = "Blog Posts")]
pub struct Post {
    #[primary_key]
    pub id: Id,
}

fn main() {}
