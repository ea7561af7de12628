//! The field types SQLite stores as text ([`Id`], [`Timestamp`]): their `FieldType`, and how a
//! model's statements bind them, with their text written into the bound value so that SQLite
//! reads it in place.

use std::cell::OnceCell;
use std::str::Utf8Error;

use diesel::expression::AsExpression;
use diesel::pg::Pg;
use diesel::serialize::{self, Output, ToSql};
use diesel::sqlite::Sqlite;

use super::{FieldType, Id, Timestamp, sql_types, unexpected};
use crate::AnyBackend;
use crate::error::ValueError;
use crate::observe::RawValueRef;
use crate::schema::ColumnType;

/// The longest text a [`TextForm`] writes: a hyphenated UUID (36 bytes; a timestamp takes at
/// most 30, for chrono's widest years).
pub(crate) const TEXT_CAPACITY: usize = 36;

/// A field type whose SQLite form is a short text, written without allocating: what
/// [`AsText`] binds and [`Text`] holds.
pub(crate) trait TextForm: Copy {
    /// Writes the value's text at the start of `buffer` and returns its length in bytes.
    fn write_text(&self, buffer: &mut [u8; TEXT_CAPACITY]) -> usize;

    /// Refuses a value SQLite cannot hold as `text`, its text, before a statement binds it.
    fn check_sqlite(&self, _text: &str) -> Result<(), ValueError> {
        Ok(())
    }
}

impl TextForm for Id {
    fn write_text(&self, buffer: &mut [u8; TEXT_CAPACITY]) -> usize {
        self.as_uuid().hyphenated().encode_lower(buffer).len()
    }
}

impl TextForm for Timestamp {
    fn write_text(&self, buffer: &mut [u8; TEXT_CAPACITY]) -> usize {
        Timestamp::write_text(*self, buffer)
    }

    fn check_sqlite(&self, text: &str) -> Result<(), ValueError> {
        Timestamp::check_sqlite(*self, text)
    }
}

/// An [`Id`] or a [`Timestamp`] as a model's statements bind it: its
/// [`FieldType::Bind`](crate::FieldType::Bind).
///
/// SQLite stores both as text. Bound as themselves, each value becomes a string on the heap
/// that Diesel hands to SQLite and frees after the statement; bound through `AsText` on a
/// SQLite connection, the text is written into this value when the statement binds it, and
/// SQLite reads it where it lies (a key and two timestamps are three allocations fewer per
/// row inserted). On PostgreSQL the value is bound in its binary form, and on
/// `AnyConnection` as itself, as the field would be.
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// use datastore::FieldType;
///
/// # let mut conn = store.conn()?;
/// let note = conn.save(Note { text: "kept".into(), ..Note::default() })?;
/// let found: Vec<Note> = notes::table.filter(notes::id.eq(note.id.bind())).load(&mut conn)?;
/// assert_eq!(found, vec![note]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, AsExpression)]
#[diesel(sql_type = sql_types::Uuid)]
#[diesel(sql_type = sql_types::TimestampUtc)]
pub struct AsText<T> {
    value: T,
    /// Written when a SQLite statement first binds the value: PostgreSQL binds the value's
    /// binary form and never needs it (written eagerly, it cost a PostgreSQL insert of 10
    /// posts 7.5% more client instructions; a `OnceLock`, SQLite's inserts 2%).
    text: OnceCell<Text>,
}

impl<T> AsText<T> {
    /// Binds `value`; its text is written if a SQLite statement binds it.
    pub(crate) fn new(value: T) -> Self {
        Self {
            value,
            text: OnceCell::new(),
        }
    }

    /// The value's text, written on the first call.
    fn text(&self) -> Result<&str, Utf8Error>
    where
        T: TextForm,
    {
        self.text.get_or_init(|| Text::of(&self.value)).as_str()
    }
}

/// A value's text, held inline: what [`AsText`] binds, and what `Timestamp` shows and binds
/// on its own.
#[derive(Debug, Clone)]
pub(crate) struct Text {
    bytes: [u8; TEXT_CAPACITY],
    len: usize,
}

impl Text {
    /// The text of `value`.
    pub(crate) fn of(value: &impl TextForm) -> Self {
        let mut bytes = [0; TEXT_CAPACITY];
        let len = value.write_text(&mut bytes);
        Self { bytes, len }
    }

    /// The text as a `str`: ASCII (and, for chrono's rare forms, UTF-8), so this never fails;
    /// checked rather than assumed, at the cost of one pass over a few dozen bytes.
    pub(crate) fn as_str(&self) -> Result<&str, Utf8Error> {
        std::str::from_utf8(&self.bytes[..self.len])
    }
}

/// Parses a key's or an instant's stored text from `bytes`, a blob read of it (see
/// [`Selection`](crate::Selection)): as they are, or, where they do not parse, as the ASCII text
/// they hold in UTF-16 ([`ascii_in_utf16`]); the first parse's error otherwise.
pub(crate) fn read_stored<T, E>(
    bytes: &[u8],
    parse: impl Fn(&[u8]) -> Result<T, E>,
) -> Result<T, E> {
    parse(bytes).or_else(|error| ascii_in_utf16(bytes).map_or(Err(error), |ascii| parse(&ascii)))
}

/// The ASCII text held by `bytes`, a text value's bytes as a UTF-16 database keeps them (and a
/// blob read hands them over, see [`Selection`](crate::Selection)): each character a byte and a zero, in either byte
/// order. `None` where the bytes are not ASCII in UTF-16: the reads then take them as they are.
///
/// Asked only of bytes that did not read as the ASCII form itself: in a UTF-8 database those
/// hold no zero byte, where every ASCII character in UTF-16 has one.
fn ascii_in_utf16(bytes: &[u8]) -> Option<Vec<u8>> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    // The byte order, from the first character (a character's zero byte is its high one).
    let low = match bytes.get(..2)? {
        [0, 0] => return None,
        [_, 0] => 0,
        [0, _] => 1,
        _ => return None,
    };
    let pairs = bytes.chunks_exact(2);
    let ascii = |pair: &[u8]| pair[1 - low] == 0 && pair[low] != 0 && pair[low].is_ascii();
    pairs
        .clone()
        .all(ascii)
        .then(|| pairs.map(|pair| pair[low]).collect())
}

/// The bind form's `ToSql` on each backend, for the SQL type its value has.
macro_rules! as_text_to_sql {
    ($($rust:ty => $sql:ty;)*) => {$(
        impl ToSql<$sql, Sqlite> for AsText<$rust> {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
                let text = self.text()?;
                self.value.check_sqlite(text)?;
                out.set_value(text);
                Ok(serialize::IsNull::No)
            }
        }

        impl ToSql<$sql, Pg> for AsText<$rust> {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <$rust as ToSql<$sql, Pg>>::to_sql(&self.value, out)
            }
        }

        // On `AnyConnection` (a query the caller runs there) the value binds as itself:
        // Diesel's `MultiBackend` asks that a bound value be `Sync`, which the lazily written
        // text is not. The model's own statements run on the backend's own connection.
        impl ToSql<$sql, AnyBackend> for AsText<$rust> {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, AnyBackend>) -> serialize::Result {
                <$rust as ToSql<$sql, AnyBackend>>::to_sql(&self.value, out)
            }
        }
    )*};
}

/// `FieldType` for the types bound through [`AsText`], read as themselves from Diesel and
/// parsed from their text in a committed change.
macro_rules! field_types_as_text {
    ($($rust:ty => $sql:ty, $column:ident, $from_text:expr;)*) => {$(
        impl FieldType for $rust {
            type SqlType = $sql;
            const COLUMN: ColumnType = ColumnType::$column;
            type Bind<'a> = AsText<Self>;
            type Read = Self;

            fn bind(&self) -> AsText<Self> {
                AsText::new(*self)
            }

            fn read(value: Self) -> Self {
                value
            }

            fn from_raw(value: RawValueRef<'_>) -> Result<Self, String> {
                match value {
                    RawValueRef::Text(text) => $from_text(&text),
                    other => unexpected(&other),
                }
            }
        }
    )*};
}

field_types_as_text! {
    // As SQLite's reads: a key in another spelling than the one the store binds is refused.
    Id => sql_types::Uuid, Uuid, |text: &str| Id::from_stored_text(text).map_err(|e| e.to_string());
    Timestamp => sql_types::TimestampUtc, Timestamp,
        |text: &str| text.parse().map_err(|e: chrono::ParseError| e.to_string());
}

as_text_to_sql! {
    Id => sql_types::Uuid;
    Timestamp => sql_types::TimestampUtc;
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, SecondsFormat, Utc};

    use super::*;

    #[test]
    fn ascii_is_taken_from_utf16_in_either_byte_order_and_nothing_else() {
        let text = "2024-02-29T23:59:59.999999Z";
        let le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(ascii_in_utf16(&le).as_deref(), Some(text.as_bytes()));
        assert_eq!(ascii_in_utf16(&be).as_deref(), Some(text.as_bytes()));
        // Not UTF-16 of ASCII: UTF-8 (no zero byte), an odd length, a character beyond ASCII,
        // a NUL character, nothing.
        assert_eq!(ascii_in_utf16(text.as_bytes()), None);
        assert_eq!(ascii_in_utf16(&le[..le.len() - 1]), None);
        let wide: Vec<u8> = "2024-é".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(ascii_in_utf16(&wide), None);
        assert_eq!(ascii_in_utf16(&[b'a', 0, 0, 0]), None);
        assert_eq!(ascii_in_utf16(&[]), None);
    }

    #[test]
    fn text_is_what_the_value_shows() {
        let id = Id::new();
        assert_eq!(AsText::new(id).text(), Ok(id.to_string().as_str()));
        // The widest texts chrono writes fit, as does the common form.
        for t in [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            "2016-12-31T23:59:60.5Z".parse().unwrap(),
            "2026-12-03T03:04:05.000006Z".parse().unwrap(),
        ] {
            let bound = AsText::new(Timestamp::from(t));
            let expected = t.to_rfc3339_opts(SecondsFormat::Micros, true);
            assert_eq!(bound.text(), Ok(expected.as_str()));
        }
    }

    #[test]
    fn sqlite_stores_the_text_a_value_shows_as_text() {
        use diesel::connection::SimpleConnection;
        use diesel::prelude::*;
        use diesel::sql_types::Text;

        #[derive(QueryableByName, Debug, PartialEq)]
        struct Stored {
            #[diesel(sql_type = Text)]
            value: String,
            #[diesel(sql_type = Text)]
            class: String,
        }

        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        conn.batch_execute("CREATE TABLE t (n INTEGER, value)")
            .unwrap();
        let (id, at) = (Id::new(), Timestamp::now());
        diesel::sql_query("INSERT INTO t VALUES (1, ?), (2, ?)")
            .bind::<sql_types::Uuid, _>(AsText::new(id))
            .bind::<sql_types::TimestampUtc, _>(AsText::new(at))
            .execute(&mut conn)
            .unwrap();
        let stored: Vec<Stored> =
            diesel::sql_query("SELECT value, typeof(value) AS class FROM t ORDER BY n")
                .load(&mut conn)
                .unwrap();
        let text = |value: String| Stored {
            value,
            class: "text".into(),
        };
        assert_eq!(stored, [text(id.to_string()), text(at.to_string())]);
    }
}
