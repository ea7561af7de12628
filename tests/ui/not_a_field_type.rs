use datastore::prelude::*;

pub struct Color(u8, u8, u8);

#[derive(Model)]
pub struct Post {
    #[primary_key]
    pub id: Id,
    pub color: Color,
}

fn main() {}
