use datastore::prelude::*;

// Diesel's `table!` module holds these items beside the columns.
#[derive(Model)]
pub struct Setting {
    #[primary_key]
    pub id: Id,
    pub table: String,
    pub star: i32,
    pub columns: i32,
    pub dsl: String,
    pub all_columns: bool,
    pub diesel: bool,
}

fn main() {}
