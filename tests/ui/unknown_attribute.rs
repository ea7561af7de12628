use datastore::prelude::*;

#[derive(Model)]
#[model(tabel = "posts")]
pub struct Post {
    #[primary_key]
    pub id: Id,
}

fn main() {}
