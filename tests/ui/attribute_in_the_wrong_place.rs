use datastore::prelude::*;

// A field's attribute on the struct, and the struct's on a field: each refused where it is,
// rather than ignored.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[unique]
pub struct Note {
    #[primary_key]
    pub id: Id,
    #[model(table = "notes")]
    pub text: String,
}

fn main() {}
