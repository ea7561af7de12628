use datastore::prelude::*;

#[derive(DbEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stage {
    #[default]
    Draft,
    Done,
}

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Task {
    #[primary_key]
    pub id: Id,
    // A number for a text column.
    #[column(default = 5)]
    pub title: String,
    // A variant the enum does not have.
    #[column(default = "Archived")]
    pub stage: Stage,
    // Out of an i16's range.
    #[column(default = 70000)]
    pub rank: i16,
}

fn main() {}
