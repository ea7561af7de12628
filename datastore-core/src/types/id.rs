use std::fmt;
use std::str::FromStr;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, Output, ToSql};
use diesel::sqlite::{Sqlite, SqliteType, SqliteValue};
use serde::{Deserialize, Serialize};

use super::sql_types;
use super::text_bind::read_stored;
use crate::error::ValueError;

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
    ///
    /// ```
    /// use datastore::Id;
    ///
    /// let (first, second) = (Id::new(), Id::new());
    /// assert!(first < second); // made later, sorts later
    /// assert_eq!(first.as_uuid().get_version_num(), 7);
    /// ```
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    /// The UUID behind this id.
    ///
    /// ```
    /// use datastore::Id;
    ///
    /// let id: Id = "0193a4f2-7c1e-7d3a-8b2c-5e6f7a8b9c0d".parse().unwrap();
    /// assert_eq!(id.as_uuid().as_bytes()[0], 0x01);
    /// assert_eq!(Id::from(*id.as_uuid()), id);
    /// ```
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

impl ToSql<sql_types::Uuid, Sqlite> for Id {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        // Encoded into a buffer and copied once into a string of its exact length: `to_string`
        // goes through the formatting machinery and grows its string, a third of the cost of
        // binding a row's key.
        let mut buffer = uuid::Uuid::encode_buffer();
        let text: &str = self.0.hyphenated().encode_lower(&mut buffer);
        out.set_value(String::from(text));
        Ok(serialize::IsNull::No)
    }
}

/// Whether `text`, which `Uuid::try_parse_ascii` read, is the lowercase hyphenated form: 36 bytes
/// long (no other form is) and no letter `A` to `F`. Digits, `a` to `f` and `-` all have the
/// bit `0x20` set, which `A` to `F` have clear: four words and one half-word tested at once,
/// where a loop over the bytes cost every key read about 140 instructions.
fn is_lowercase_hyphenated(text: &[u8]) -> bool {
    let Ok(text) = <&[u8; 36]>::try_from(text) else {
        return false;
    };
    let word = |at: usize| u64::from_le_bytes(*text[at..].first_chunk().expect("in bounds"));
    let last = u32::from_le_bytes(*text[32..].first_chunk().expect("in bounds"));
    const SET: u64 = 0x2020_2020_2020_2020;
    (word(0) & word(8) & word(16) & word(24) & (u64::from(last) | 0xFFFF_FFFF_0000_0000)) & SET
        == SET
}

/// Read from the text SQLite stores it as: the lowercase, hyphenated form every statement of
/// the store binds and compares keys by. Text that is no UUID is an
/// [`Error::Conversion`](crate::Error::Conversion); a UUID in another form (uppercase, braced,
/// without hyphens), written by another program, is refused with
/// [`Error::OutOfRange`](crate::Error::OutOfRange) rather than read: its row would not be found
/// by its own key, nor its relations by theirs.
impl FromSql<sql_types::Uuid, Sqlite> for Id {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        // A blob is the stored text's bytes, selected so ([`Selection`](crate::Selection)): parsed
        // as ASCII, without Diesel's text read (which checks UTF-8 twice).
        match value.value_type() {
            Some(SqliteType::Binary) => read_stored(value.read_blob(), Self::from_stored_bytes),
            _ => Self::from_stored_text(value.read_text()),
        }
    }
}

impl Id {
    /// Reads the text form the store keeps keys in on SQLite (and the form of the changes
    /// observe reports): no UUID is a parse error, another spelling of one is
    /// [`ValueError::OutOfRange`].
    pub(crate) fn from_stored_text(text: &str) -> deserialize::Result<Self> {
        Self::from_stored_bytes(text.as_bytes())
    }

    /// [`Self::from_stored_text`] of the text's bytes.
    fn from_stored_bytes(text: &[u8]) -> deserialize::Result<Self> {
        let Ok(id) = uuid::Uuid::try_parse_ascii(text) else {
            // Said as a text's parse says it (which character, where): the bytes' parse
            // says only that it failed.
            let said = uuid::Uuid::parse_str(&String::from_utf8_lossy(text)).err();
            return Err(said.map_or_else(|| "not a UUID".into(), |error| Box::new(error) as _));
        };
        if !is_lowercase_hyphenated(text) {
            return Err(Box::new(ValueError::OutOfRange {
                value: String::from_utf8_lossy(text).into_owned(),
                field_type: "Id (stored on SQLite as a lowercase, hyphenated UUID)",
            }));
        }
        Ok(Self(id))
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

#[cfg(test)]
mod tests {
    use diesel::prelude::*;
    use diesel::sql_types::Text;

    use super::*;

    #[test]
    fn only_the_lowercase_hyphenated_form_is_the_stored_one() {
        let id = Id::new();
        // An uppercase letter in any of the 32 places a letter can be is found.
        for lower in [
            id.to_string(),
            "abcdefab-cdef-abcd-efab-cdefabcdefab".into(),
        ] {
            assert!(is_lowercase_hyphenated(lower.as_bytes()));
            for (at, byte) in lower.bytes().enumerate() {
                if byte.is_ascii_lowercase() {
                    let mut upper = lower.clone().into_bytes();
                    upper[at] = byte.to_ascii_uppercase();
                    let upper = String::from_utf8(upper).unwrap();
                    assert!(!is_lowercase_hyphenated(upper.as_bytes()), "{upper}");
                }
            }
        }
        let uuid = id.as_uuid();
        for other in [
            uuid.simple().to_string(),
            uuid.braced().to_string(),
            uuid.urn().to_string(),
        ] {
            assert!(!is_lowercase_hyphenated(other.as_bytes()), "{other}");
        }
    }

    #[derive(QueryableByName)]
    struct Bound {
        #[diesel(sql_type = Text)]
        text: String,
        #[diesel(sql_type = Text)]
        kind: String,
    }

    #[test]
    fn a_key_is_bound_on_sqlite_as_lowercase_hyphenated_text_and_read_back() {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        let id: Id = "0193A4F2-7C1E-7D3A-8B2C-5E6F7A8B9C0D".parse().unwrap();
        let bound: Bound = diesel::sql_query("SELECT ?1 AS text, typeof(?1) AS kind")
            .bind::<sql_types::Uuid, _>(id)
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(bound.text, "0193a4f2-7c1e-7d3a-8b2c-5e6f7a8b9c0d");
        assert_eq!(bound.text, id.to_string());
        assert_eq!(bound.kind, "text");

        let read: Id = diesel::select(diesel::dsl::sql::<sql_types::Uuid>(
            "'0193a4f2-7c1e-7d3a-8b2c-5e6f7a8b9c0d'",
        ))
        .get_result(&mut conn)
        .unwrap();
        assert_eq!(read, id);
    }
}
