//! SQL types of the columns whose representation differs between backends.
//!
//! Each is a Diesel SQL type with the storage of every backend declared on it, so one
//! `table!` definition serves SQLite and PostgreSQL alike.

use diesel::query_builder::QueryId;
use diesel::sql_types::SqlType;

/// A UUID: `TEXT` (hyphenated, lowercase) on SQLite, `uuid` on PostgreSQL.
#[derive(Debug, Clone, Copy, Default, QueryId, SqlType)]
#[diesel(sqlite_type(name = "Text"))]
#[diesel(postgres_type(oid = 2950, array_oid = 2951))]
pub struct Uuid;

/// A UTC timestamp with microsecond precision: `TEXT` in RFC 3339 form on SQLite
/// (`2026-11-25T11:47:27.123456Z`, which sorts chronologically), `timestamptz` on PostgreSQL.
#[derive(Debug, Clone, Copy, Default, QueryId, SqlType)]
#[diesel(sqlite_type(name = "Text"))]
#[diesel(postgres_type(oid = 1184, array_oid = 1185))]
pub struct TimestampUtc;

/// A JSON document: `TEXT` on SQLite, `jsonb` on PostgreSQL.
#[derive(Debug, Clone, Copy, Default, QueryId, SqlType)]
#[diesel(sqlite_type(name = "Text"))]
#[diesel(postgres_type(oid = 3802, array_oid = 3807))]
pub struct JsonDoc;
