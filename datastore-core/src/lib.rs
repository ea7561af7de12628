//! Runtime of the `datastore` ORM. Depend on the `datastore` crate, which re-exports this one
//! together with the derive macros; its documentation is the place to start.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod async_store;
mod backend;
mod error;
mod ffi;
pub mod migrate;
mod model;
pub mod observe;
mod persist;
pub mod relations;
mod repo;
pub mod schema;
mod store;
mod trace;
mod types;

pub use async_store::AsyncRepo;
#[cfg(feature = "async")]
pub use async_store::{AsyncStore, AsyncTransaction};
pub use backend::{AnyBackend, AnyConnection, NativeConnection};
pub use error::{ConnectionFailure, ConstraintKind, ConstraintViolation, Duplicate, Error, Result};
pub use model::{IntoPredicate, Model, NotNullCondition, NullableCondition, Predicate};
pub use persist::Persist;
pub use repo::Repo;
pub use schema::Schema;
pub use store::{BackendManager, PooledConn, Store, StoreBuilder, Synchronous};
pub use types::{
    AsText, Checked, DbEnum, FieldType, Id, Json, Key, KeyColumn, KeyValue, MAX_JSON_DEPTH,
    Selection, Timestamp, sql_types,
};

/// Re-exported so that applications use the same Diesel as the store.
pub use diesel;
/// Re-exported so that applications use the same migrations runner as the store.
pub use diesel_migrations;

/// What generated code refers to. Not public API.
#[doc(hidden)]
#[path = "codegen.rs"]
pub mod __private;
