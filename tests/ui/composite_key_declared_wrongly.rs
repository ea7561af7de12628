use datastore::prelude::*;

#[derive(Model, Clone, Default)]
#[model(primary_key(order_id))]
pub struct Line {
    pub order_id: i64,
    pub line: i32,
}

#[derive(Model, Clone, Default)]
#[model(primary_key(order_id, missing))]
pub struct Entry {
    #[primary_key]
    pub order_id: i64,
    pub line: i32,
}

fn main() {}
