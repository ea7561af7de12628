//! The one place that calls C: SQLite's C API ([`sqlite`]: a new connection's handle, and the
//! hooks observe captures SQLite's changes with) and libpq's ([`libpq`]: the logical
//! replication connection PostgreSQL's change feed reads, as Diesel does not speak that
//! protocol). The crate denies `unsafe` everywhere else, but for one block that borrows text
//! checked as UTF-8 once (`observe::rows`); here every `unsafe` block keeps its `SAFETY` note.
#![allow(unsafe_code)]

pub(crate) mod libpq;
pub(crate) mod sqlite;
