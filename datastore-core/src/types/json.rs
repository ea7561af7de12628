use std::ops::{Deref, DerefMut};

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, Output, ToSql};
use diesel::sqlite::{Sqlite, SqliteValue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::sql_types;
use super::FieldType;
use crate::schema::ColumnType;

/// A field stored as one JSON document: any serde type, kept whole in a single column.
///
/// Use `serde_json::Value` for schemaless data and `Json<T>` for a typed document.
///
/// ```
/// use datastore::Json;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
/// struct Seo { keywords: Vec<String> }
///
/// let seo = Json(Seo { keywords: vec!["rust".into()] });
/// assert_eq!(seo.keywords[0], "rust"); // derefs to the inner value
/// ```
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    AsExpression,
    FromSqlRow,
)]
#[serde(transparent)]
#[diesel(sql_type = sql_types::JsonDoc)]
#[derive(ref_cast::RefCast)]
#[repr(transparent)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// The document.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Json<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Serialize + DeserializeOwned + std::fmt::Debug> FieldType for Json<T> {
    type SqlType = sql_types::JsonDoc;
    const COLUMN: ColumnType = ColumnType::Json;
    crate::__field_type_by_ref!(|text| serde_json::from_str(&text)
        .map(Json)
        .map_err(|e| e.to_string()));
}

/// A `serde_json::Value` field is bound and read through [`Json`], since Diesel's traits
/// cannot be implemented for the foreign type itself (bound as a `&Json<Value>` cast from the
/// field, without a copy).
impl FieldType for serde_json::Value {
    type SqlType = sql_types::JsonDoc;
    const COLUMN: ColumnType = ColumnType::Json;
    type Bind<'a> = &'a Json<serde_json::Value>;
    type Read = Json<serde_json::Value>;

    fn bind(&self) -> Self::Bind<'_> {
        ref_cast::RefCast::ref_cast(self)
    }

    fn read(value: Self::Read) -> Self {
        value.0
    }

    fn from_raw(value: crate::observe::RawValue) -> Result<Self, String> {
        match value {
            crate::observe::RawValue::Text(text) => {
                serde_json::from_str(&text).map_err(|e| e.to_string())
            }
            other => Err(format!(
                "unexpected {} value for a JSON field",
                other.kind()
            )),
        }
    }
}

impl<T: Serialize + std::fmt::Debug> ToSql<sql_types::JsonDoc, Sqlite> for Json<T> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(serde_json::to_string(&self.0)?);
        Ok(serialize::IsNull::No)
    }
}

impl<T: DeserializeOwned> FromSql<sql_types::JsonDoc, Sqlite> for Json<T> {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        Ok(Self(serde_json::from_str(value.read_text())?))
    }
}

/// `jsonb`'s binary form: a version byte (1), then the JSON text.
impl<T: Serialize + std::fmt::Debug> ToSql<sql_types::JsonDoc, diesel::pg::Pg> for Json<T> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, diesel::pg::Pg>) -> serialize::Result {
        std::io::Write::write_all(out, &[1])?;
        serde_json::to_writer(out, &self.0)?;
        Ok(serialize::IsNull::No)
    }
}

impl<T: DeserializeOwned> FromSql<sql_types::JsonDoc, diesel::pg::Pg> for Json<T> {
    fn from_sql(value: diesel::pg::PgValue<'_>) -> deserialize::Result<Self> {
        match value.as_bytes() {
            [1, json @ ..] => Ok(Self(serde_json::from_slice(json)?)),
            _ => Err("unsupported jsonb version".into()),
        }
    }
}
