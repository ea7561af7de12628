use datastore::prelude::*;

/// An alias of a field type: the derive reads types as written, and takes a name it does not
/// know for a `DbEnum` stored as text.
type UserId = Id;

#[derive(Model, Clone, Default)]
pub struct Account {
    #[primary_key]
    pub id: Id,
    pub owner: UserId,
}

fn main() {}
