use datastore::prelude::*;

#[derive(Model, Clone, Default)]
pub struct Customer {
    #[primary_key]
    pub id: i64,
}

#[derive(Model, Clone, Default)]
pub struct Order {
    #[primary_key]
    pub id: i64,
    #[belongs_to(Customer)]
    pub customer_id: Id,
}

fn main() {}
