use datastore::prelude::*;

#[derive(Model, Clone, Default)]
#[model(primary_key(order_id, line))]
pub struct Line {
    pub order_id: i64,
    pub line: i32,
}

#[derive(Model, Clone, Default)]
pub struct Note {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Line)]
    pub line_id: i64,
}

fn main() {}
