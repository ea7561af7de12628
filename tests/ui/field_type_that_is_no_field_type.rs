use datastore::prelude::*;

/// A struct of the application's own, neither a `DbEnum` nor in `Json<..>`.
#[derive(Clone, Default)]
pub struct Point {
    pub x: i64,
}

#[derive(Model, Clone, Default)]
pub struct Marker {
    #[primary_key]
    pub id: Id,
    pub at: Point,
}

fn main() {}
