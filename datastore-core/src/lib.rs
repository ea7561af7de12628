//! Runtime of the `datastore` ORM. Depend on the `datastore` crate, which re-exports this one
//! together with the derive macros; its documentation is the place to start.

#![warn(missing_docs)]

mod backend;
mod error;
pub mod migrate;
mod model;
pub mod observe;
pub mod relations;
mod repo;
pub mod schema;
mod store;
mod types;

pub use backend::{AnyBackend, AnyConnection};
pub use error::{ConstraintKind, ConstraintViolation, Error, Result};
pub use migrate::Schema;
pub use model::{
    IntoPredicate, Model, NotNullCondition, NullableCondition, Persist, Predicate, MAX_BIND_PARAMS,
};
pub use repo::Repo;
pub use store::{BackendManager, PooledConn, Store, StoreBuilder, Synchronous};
pub use types::{sql_types, Checked, DbEnum, FieldType, Id, Json, Timestamp, MAX_JSON_DEPTH};

/// Re-exported so that applications use the same Diesel as the store.
pub use diesel;
/// Re-exported so that applications use the same migrations runner as the store.
pub use diesel_migrations;

/// What generated code refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use diesel;
    pub use diesel_migrations;
    pub use std::borrow::Cow;

    use diesel::connection::{Connection, TransactionManager};

    use crate::schema::ddl::{Dialect, HasDialect};

    /// Runs one statement so that its failure leaves an enclosing transaction usable, as
    /// SQLite does by itself: on PostgreSQL, inside a transaction, in a savepoint.
    pub fn statement_scope<C, T>(
        conn: &mut C,
        statement: impl FnOnce(&mut C) -> diesel::QueryResult<T>,
    ) -> diesel::QueryResult<T>
    where
        C: Connection + HasDialect,
    {
        let in_transaction = C::TransactionManager::transaction_manager_status_mut(conn)
            .transaction_depth()
            .is_ok_and(|depth| depth.is_some());
        if in_transaction && conn.dialect() == Dialect::Postgres {
            conn.transaction(statement)
        } else {
            statement(conn)
        }
    }
}
