use std::fmt;
use std::str::FromStr;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, Output, ToSql};
use diesel::sqlite::{Sqlite, SqliteValue};
use serde::{Deserialize, Serialize};

use super::sql_types;
use super::FieldType;
use crate::schema::ColumnType;

/// The primary key of a model: a UUID generated on the client.
///
/// `Id::default()` and [`Id::new`] make a fresh, time-ordered UUID (version 7), so new rows
/// index well and sort by creation. It is stored as text on SQLite.
///
/// ```
/// use datastore::Id;
///
/// let id = Id::new();
/// let parsed: Id = id.to_string().parse().unwrap();
/// assert_eq!(id, parsed);
/// assert_ne!(Id::new(), Id::new());
/// ```
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    AsExpression,
    FromSqlRow,
)]
#[serde(transparent)]
#[diesel(sql_type = sql_types::Uuid)]
pub struct Id(uuid::Uuid);

impl Id {
    /// A fresh, time-ordered (version 7) UUID.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    /// The UUID behind this id.
    pub const fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }
}

impl Default for Id {
    /// A fresh id, so that `..Model::default()` gives a new row its own key.
    fn default() -> Self {
        Self::new()
    }
}

impl From<uuid::Uuid> for Id {
    fn from(uuid: uuid::Uuid) -> Self {
        Self(uuid)
    }
}

impl From<Id> for uuid::Uuid {
    fn from(id: Id) -> Self {
        id.0
    }
}

impl FromStr for Id {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.0.hyphenated())
    }
}

impl FieldType for Id {
    type SqlType = sql_types::Uuid;
    const COLUMN: ColumnType = ColumnType::Uuid;
    crate::__field_type_by_ref!(|text| text.parse().map_err(|e: uuid::Error| e.to_string()));
}

impl ToSql<sql_types::Uuid, Sqlite> for Id {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.to_string());
        Ok(serialize::IsNull::No)
    }
}

impl FromSql<sql_types::Uuid, Sqlite> for Id {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        Ok(value.read_text().parse()?)
    }
}

impl ToSql<sql_types::Uuid, diesel::pg::Pg> for Id {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, diesel::pg::Pg>) -> serialize::Result {
        std::io::Write::write_all(out, self.0.as_bytes())?;
        Ok(serialize::IsNull::No)
    }
}

impl FromSql<sql_types::Uuid, diesel::pg::Pg> for Id {
    fn from_sql(value: diesel::pg::PgValue<'_>) -> deserialize::Result<Self> {
        Ok(Self(uuid::Uuid::from_slice(value.as_bytes())?))
    }
}
