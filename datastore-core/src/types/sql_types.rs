//! SQL types of the columns whose representation differs between backends.
//!
//! Each is a Diesel SQL type with the storage of every backend declared on it, so one
//! `table!` definition serves SQLite and PostgreSQL alike.

use diesel::query_builder::QueryId;
use diesel::sql_types::SqlType;

/// A UUID: `TEXT` (hyphenated, lowercase) on SQLite.
#[derive(Debug, Clone, Copy, Default, QueryId, SqlType)]
#[diesel(sqlite_type(name = "Text"))]
pub struct Uuid;

/// A UTC timestamp with microsecond precision: `TEXT` in RFC 3339 form on SQLite
/// (`2026-11-25T11:47:27.123456Z`, which sorts chronologically).
#[derive(Debug, Clone, Copy, Default, QueryId, SqlType)]
#[diesel(sqlite_type(name = "Text"))]
pub struct TimestampUtc;

/// A JSON document: `TEXT` on SQLite.
#[derive(Debug, Clone, Copy, Default, QueryId, SqlType)]
#[diesel(sqlite_type(name = "Text"))]
pub struct JsonDoc;
