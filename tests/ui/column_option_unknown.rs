use datastore::prelude::*;

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Task {
    #[primary_key]
    pub id: Id,
    #[column(renamed = "owner")]
    pub assignee: String,
    #[column(default = [1, 2])]
    pub tags: String,
}

fn main() {}
