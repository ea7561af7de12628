use datastore::prelude::*;

#[derive(Model)]
pub struct Post {
    pub id: Id,
    pub title: String,
}

fn main() {}
