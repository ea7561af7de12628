//! The blog's models, as the example declares them (`examples/blog/models.rs`, included
//! here), compiled once for the integration tests: `tests/common` re-exports this crate as
//! `common::models`.

#[path = "../../../examples/blog/models.rs"]
mod models;

pub use models::*;
