use datastore::prelude::*;

#[derive(Model, Clone, Default)]
pub struct Reading {
    #[primary_key]
    pub value: f64,
}

fn main() {}
