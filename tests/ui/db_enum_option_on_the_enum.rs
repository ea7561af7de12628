use datastore::prelude::*;

#[derive(DbEnum, Debug, Clone, Copy, PartialEq, Eq)]
#[db_enum(rename_all = "snake_case")]
pub enum Status {
    Active,
    OnHold,
}

fn main() {}
