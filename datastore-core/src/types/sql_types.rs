//! SQL types of the columns whose representation differs between backends.
//!
//! Each is a Diesel SQL type with the storage of every backend declared on it, so one
//! `table!` definition serves SQLite and PostgreSQL alike.
//!
//! ```
//! use datastore::diesel::prelude::*;
//! use datastore::sql_types::{TimestampUtc, Uuid};
//!
//! diesel::table! {
//!     use datastore::diesel::sql_types::*;
//!     use datastore::sql_types::{TimestampUtc, Uuid};
//!
//!     events (id) {
//!         id -> Uuid,          // TEXT on SQLite, uuid on PostgreSQL
//!         at -> TimestampUtc,  // RFC 3339 TEXT on SQLite, timestamptz on PostgreSQL
//!     }
//! }
//! # let _ = (events::id, events::at);
//! ```

use diesel::query_builder::QueryId;
use diesel::sql_types::SqlType;

/// A UUID: `TEXT` (hyphenated, lowercase) on SQLite, `uuid` on PostgreSQL.
///
/// ```
/// # use datastore::prelude::*;
/// # #[derive(Model, Debug, Clone, PartialEq, Default)]
/// # pub struct Note { #[primary_key] pub id: Id, pub text: String, pub at: Timestamp, pub doc: Json<Vec<u32>> }
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// use datastore::diesel::dsl::sql;
/// use datastore::diesel::sql_types::Bool;
/// use datastore::sql_types::Uuid;
///
/// # let mut conn = store.conn()?;
/// let note = conn.save(Note::default())?;
/// // An `Id` bound by hand in raw SQL, stored as each backend stores it.
/// let found: Vec<Note> = notes::table
///     .filter(sql::<Bool>("id = ").bind::<Uuid, _>(note.id))
///     .load(&mut conn)?;
/// assert_eq!(found, vec![note]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, QueryId, SqlType)]
#[diesel(sqlite_type(name = "Text"))]
#[diesel(postgres_type(oid = 2950, array_oid = 2951))]
pub struct Uuid;

/// A UTC timestamp with microsecond precision: `TEXT` in RFC 3339 form on SQLite
/// (`2026-11-25T11:47:27.123456Z`, which sorts chronologically), `timestamptz` on PostgreSQL.
///
/// ```
/// # use datastore::prelude::*;
/// # #[derive(Model, Debug, Clone, PartialEq, Default)]
/// # pub struct Note { #[primary_key] pub id: Id, pub text: String, pub at: Timestamp, pub doc: Json<Vec<u32>> }
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// use datastore::diesel::IntoSql;
/// use datastore::sql_types::TimestampUtc;
///
/// # let mut conn = store.conn()?;
/// let at: Timestamp = "2026-11-25T11:47:27.123456Z".parse().unwrap();
/// let back: Timestamp = datastore::diesel::select(at.into_sql::<TimestampUtc>()).get_result(&mut conn)?;
/// assert_eq!(back, at);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, QueryId, SqlType)]
#[diesel(sqlite_type(name = "Text"))]
#[diesel(postgres_type(oid = 1184, array_oid = 1185))]
pub struct TimestampUtc;

/// A JSON document: `TEXT` on SQLite, `jsonb` on PostgreSQL.
///
/// ```
/// # use datastore::prelude::*;
/// # #[derive(Model, Debug, Clone, PartialEq, Default)]
/// # pub struct Note { #[primary_key] pub id: Id, pub text: String, pub at: Timestamp, pub doc: Json<Vec<u32>> }
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// use datastore::diesel::IntoSql;
/// use datastore::sql_types::JsonDoc;
///
/// # let mut conn = store.conn()?;
/// let doc = Json(vec![1_u32, 2, 3]);
/// let back: Json<Vec<u32>> =
///     datastore::diesel::select(doc.clone().into_sql::<JsonDoc>()).get_result(&mut conn)?;
/// assert_eq!(back, doc);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, QueryId, SqlType)]
#[diesel(sqlite_type(name = "Text"))]
#[diesel(postgres_type(oid = 3802, array_oid = 3807))]
pub struct JsonDoc;
