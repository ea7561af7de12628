use datastore::prelude::*;

#[derive(Model)]
#[model(crate = 42)]
pub struct Post {
    #[primary_key]
    pub id: Id,
}

#[derive(Model)]
#[model(crate = "my_db::")]
pub struct Comment {
    #[primary_key]
    pub id: Id,
}

#[derive(DbEnum)]
#[db_enum(crate = my_db::datastore<T>)]
pub enum Status {
    Active,
}

fn main() {}
