use datastore::prelude::*;

// `natural` tells an integer key the application gives from one the database assigns: a text
// key is always the application's.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Country {
    #[primary_key(natural)]
    pub code: String,
}

fn main() {}
