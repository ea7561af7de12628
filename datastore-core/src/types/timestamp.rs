use std::fmt;

use chrono::{DateTime, Datelike, NaiveDateTime, SecondsFormat, SubsecRound, Timelike, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, Output, ToSql};
use diesel::sqlite::{Sqlite, SqliteType, SqliteValue};
use serde::{Deserialize, Serialize};

use super::sql_types;
use super::text_bind::read_stored;
use super::text_bind::{TEXT_CAPACITY, Text};
use crate::error::ValueError;

/// A point in time, in UTC, with microsecond precision.
///
/// Fields named `created_at` and `updated_at` of this type are maintained by the store: the
/// first is set when a row is inserted, the second whenever it is written. Precision is
/// microseconds on every backend, so a value read back equals the value written.
///
/// ```
/// use datastore::Timestamp;
///
/// let t: Timestamp = "2026-11-25T11:47:27.123456Z".parse().unwrap();
/// assert_eq!(t.to_string(), "2026-11-25T11:47:27.123456Z");
/// assert!(Timestamp::now() > t);
/// ```
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, AsExpression, FromSqlRow,
)]
#[serde(transparent)]
#[diesel(sql_type = sql_types::TimestampUtc)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The current time, truncated to microseconds.
    ///
    /// ```
    /// use datastore::Timestamp;
    ///
    /// let (earlier, now) = (Timestamp::now(), Timestamp::now());
    /// assert!(earlier <= now);
    /// assert_eq!(now.as_datetime().timestamp_subsec_nanos() % 1_000, 0);
    /// ```
    pub fn now() -> Self {
        Self(Utc::now().trunc_subsecs(6))
    }

    /// The time as a `chrono` value.
    ///
    /// ```
    /// use datastore::Timestamp;
    ///
    /// let t: Timestamp = "2026-12-02T10:00:00.5Z".parse().unwrap();
    /// assert_eq!(t.as_datetime().timestamp_millis() % 1_000, 500);
    /// ```
    pub const fn as_datetime(&self) -> &DateTime<Utc> {
        &self.0
    }

    /// The text a timestamp is shown and stored as: RFC 3339 in UTC with microseconds,
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, as chrono writes it (`to_rfc3339_opts(Micros, true)`).
    #[cfg(test)]
    fn to_text(self) -> String {
        Text::of(&self).as_str().expect("ASCII").to_owned()
    }

    /// Writes [`to_text`](Self::to_text)'s text at the start of `buffer` and returns its length.
    /// Written here field by field for the four-digit years every store holds, because it is
    /// formatted for every timestamp bound on SQLite, where chrono's general formatter cost a
    /// tenth of a bulk insert; other years, and leap seconds, go through chrono (at most 30
    /// bytes, for its widest years).
    pub(super) fn write_text(self, buffer: &mut [u8; TEXT_CAPACITY]) -> usize {
        let t = self.0.naive_utc();
        let (date, time) = (t.date(), t.time());
        if !(0..=9999).contains(&date.year()) || time.nanosecond() >= 1_000_000_000 {
            let text = self.0.to_rfc3339_opts(SecondsFormat::Micros, true);
            buffer[..text.len()].copy_from_slice(text.as_bytes());
            return text.len();
        }
        let text = &mut buffer[..27];
        text.copy_from_slice(b"0000-00-00T00:00:00.000000Z");
        // Each field written at its place, two digits at a time.
        let mut pair = |at: usize, value: u32| {
            text[at] = b'0' + (value / 10) as u8;
            text[at + 1] = b'0' + (value % 10) as u8;
        };
        let year = date.year() as u32;
        let micros = time.nanosecond() / 1_000;
        pair(0, year / 100);
        pair(2, year % 100);
        pair(5, date.month());
        pair(8, date.day());
        pair(11, time.hour());
        pair(14, time.minute());
        pair(17, time.second());
        pair(20, micros / 10_000);
        pair(22, micros / 100 % 100);
        pair(24, micros % 100);
        27
    }
}

impl Timestamp {
    /// The timestamp [`to_text`](Self::to_text) writes: every timestamp a store reads back
    /// on SQLite has this form, and chrono's general parser cost a fifth of a find by key.
    /// `None` for any other text, which chrono then parses.
    ///
    /// Read eight bytes at a time (see [`FORM`]): four words checked with a few instructions
    /// each and every two-digit field taken from them at once, where a loop over the digits
    /// cost about 190 instructions a timestamp, read twice in every row of most models.
    fn from_text(text: &[u8]) -> Option<Self> {
        let text: &[u8; 27] = text.try_into().ok()?;
        let word = |i: usize| form_word(text, WORDS[i]) ^ form_word(FORM, WORDS[i]);
        let words = [word(0), word(1), word(2), word(3)];
        // Each byte now holds a digit's value where the form has a digit, and 0 where the
        // text has the form's separator: valid when no byte exceeds its limit (9 or 0), that
        // is, when adding the headroom to its limit sets no byte's high bit. A byte's sum
        // carries into the next only when that byte already has its high bit set.
        let mut high = 0;
        for (word, headroom) in words.iter().zip(HEADROOM) {
            high |= word | word.wrapping_add(headroom);
        }
        if high & 0x8080_8080_8080_8080 != 0 {
            return None;
        }
        // At each byte, the two-digit number starting there (at most 99: no carry).
        let pair_word = |word: u64| word * 10 + (word >> 8);
        let pairs = [
            pair_word(words[0]),
            pair_word(words[1]),
            pair_word(words[2]),
            pair_word(words[3]),
        ];
        let pair = |word: usize, byte: usize| (pairs[word] >> (8 * byte)) as u32 & 0xFF;
        let date = chrono::NaiveDate::from_ymd_opt(
            (pair(0, 0) * 100 + pair(0, 2)) as i32,
            pair(0, 5),
            pair(1, 0),
        )?;
        let micros = pair(2, 4) * 10_000 + pair(2, 6) * 100 + pair(3, 5);
        let time =
            chrono::NaiveTime::from_hms_micro_opt(pair(1, 3), pair(1, 6), pair(2, 1), micros)?;
        Some(Self(date.and_time(time).and_utc()))
    }
}

/// The form [`Timestamp::write_text`] writes for years 0 to 9999: `'0'` where a digit goes,
/// and the separators. [`Timestamp::from_text`] reads a text as four little-endian words,
/// at these offsets (the last overlaps the third), each XORed with the form's word there:
/// `YYYY-MM-`, `DDTHH:MM`, `:SS.ffff`, `.ffffffZ`.
const FORM: &[u8; 27] = b"0000-00-00T00:00:00.000000Z";
const WORDS: [usize; 4] = [0, 8, 16, 19];

/// For each word, what takes each byte's largest valid value (9 at a digit, 0 at a
/// separator) to 0x7F.
const HEADROOM: [u64; 4] = {
    let mut headroom = [0; 4];
    let mut word = 0;
    while word < WORDS.len() {
        let mut byte = 0;
        while byte < 8 {
            let limit = if FORM[WORDS[word] + byte] == b'0' {
                9
            } else {
                0
            };
            headroom[word] |= (0x7F - limit) << (8 * byte);
            byte += 1;
        }
        word += 1;
    }
    headroom
};

/// The bytes `at..at + 8` of a timestamp's text, as a little-endian word.
const fn form_word(text: &[u8; 27], at: usize) -> u64 {
    let mut bytes = [0; 8];
    let mut i = 0;
    while i < 8 {
        bytes[i] = text[at + i];
        i += 1;
    }
    u64::from_le_bytes(bytes)
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Self(t.trunc_subsecs(6))
    }
}

/// Read as `chrono` reads a `DateTime<Utc>`, then truncated to microseconds as
/// `Timestamp::from` does: the value saved is the value read back.
///
/// ```
/// use datastore::Timestamp;
///
/// let read: Timestamp = serde_json::from_str("\"2026-11-25T11:47:27.123456789Z\"").unwrap();
/// let micros: Timestamp = "2026-11-25T11:47:27.123456Z".parse().unwrap();
/// assert_eq!(read, micros);
/// ```
impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        DateTime::<Utc>::deserialize(deserializer).map(Self::from)
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(t: Timestamp) -> Self {
        t.0
    }
}

impl std::str::FromStr for Timestamp {
    type Err = chrono::ParseError;

    /// Parses RFC 3339, the signed years beyond it that [`Display`](fmt::Display) writes
    /// (`+10000-01-01T00:00:00Z`, `-0001-...`), and SQLite's own
    /// `YYYY-MM-DD HH:MM:SS[.fff]` (taken as UTC).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(t) = Self::from_text(s.as_bytes()) {
            return Ok(t);
        }
        match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Ok(Self::from(t.with_timezone(&Utc))),
            Err(e) => s
                .parse::<DateTime<Utc>>()
                .or_else(|_| {
                    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").map(|t| t.and_utc())
                })
                .map(Self::from)
                .map_err(|_| e),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Text::of(self).as_str().map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl Timestamp {
    /// Refuses a timestamp SQLite cannot hold, told by `text`, its [`Text`]: SQLite stores a
    /// timestamp as that text, which compares and sorts in time order only while every year has
    /// four digits, and chrono writes the years outside 0 to 9999 with a sign. Read from the
    /// text each bind writes anyway (computing the year again cost an insert ~43 instructions
    /// a timestamp).
    pub(crate) fn check_sqlite(self, text: &str) -> Result<(), ValueError> {
        match text.as_bytes().first() {
            Some(b'+' | b'-') => Err(ValueError::TimestampOutOfRange(self)),
            _ => Ok(()),
        }
    }
}

impl ToSql<sql_types::TimestampUtc, Sqlite> for Timestamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        let text = Text::of(self);
        let text = text.as_str()?;
        self.check_sqlite(text)?;
        out.set_value(text.to_owned());
        Ok(serialize::IsNull::No)
    }
}

impl FromSql<sql_types::TimestampUtc, Sqlite> for Timestamp {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        // A blob is the stored text's bytes, selected so ([`Selection`](crate::Selection)): the
        // form the store writes is parsed as ASCII, without Diesel's text read (which checks
        // UTF-8 twice); any other is checked and parsed as text.
        match value.value_type() {
            Some(SqliteType::Binary) => {
                read_stored(value.read_blob(), |bytes| match Self::from_text(bytes) {
                    Some(t) => Ok(t),
                    None => Ok(std::str::from_utf8(bytes)?.parse()?),
                })
            }
            _ => Ok(value.read_text().parse()?),
        }
    }
}

/// PostgreSQL counts `timestamptz` in microseconds from 2000-01-01 00:00:00 UTC.
fn pg_epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(946_684_800, 0).expect("a valid instant")
}

/// PostgreSQL's earliest `timestamptz`, 4714-11-24 BC (ISO year -4713) at midnight UTC, in
/// microseconds from its epoch (its `MIN_TIMESTAMP`). Its latest is past chrono's.
const PG_EARLIEST: i64 = -211_813_488_000_000_000;

impl ToSql<sql_types::TimestampUtc, diesel::pg::Pg> for Timestamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, diesel::pg::Pg>) -> serialize::Result {
        // Refused here, as SQLite's range is, rather than by the server as an error of no kind.
        let micros = (self.0 - pg_epoch())
            .num_microseconds()
            .filter(|&micros| micros >= PG_EARLIEST)
            .ok_or(ValueError::TimestampOutOfRange(*self))?;
        std::io::Write::write_all(out, &micros.to_be_bytes())?;
        Ok(serialize::IsNull::No)
    }
}

impl FromSql<sql_types::TimestampUtc, diesel::pg::Pg> for Timestamp {
    fn from_sql(value: diesel::pg::PgValue<'_>) -> deserialize::Result<Self> {
        let bytes: [u8; 8] = value
            .as_bytes()
            .try_into()
            .map_err(|_| "a timestamptz is 8 bytes")?;
        let micros = i64::from_be_bytes(bytes);
        // PostgreSQL's `infinity` and `-infinity` are the two extreme counts; years past
        // chrono's ±262,143 are counts too.
        pg_epoch()
            .checked_add_signed(chrono::Duration::microseconds(micros))
            .map(Self)
            .ok_or_else(|| "timestamptz out of the range a Timestamp holds (an infinity?)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_chronos_rfc_3339_with_microseconds() {
        let chrono_text = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut instants = vec![
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            DateTime::<Utc>::UNIX_EPOCH,
            "0000-01-01T00:00:00Z".parse().unwrap(),
            "9999-12-31T23:59:59.999999Z".parse().unwrap(),
            "2026-11-25T11:47:27.000001Z".parse().unwrap(),
            // A leap second, which chrono shows as :60.
            "2016-12-31T23:59:60.5Z".parse().unwrap(),
        ];
        // Every second field, minute, hour and month; microseconds with every digit.
        let mut t: DateTime<Utc> = "1999-12-31T22:58:57.123456Z".parse().unwrap();
        for step in 0..20_000 {
            instants.push(t);
            t += chrono::TimeDelta::microseconds(7_919_123_457 + step);
        }
        for t in instants {
            assert_eq!(Timestamp(t).to_text(), chrono_text(t), "{t:?}");
        }
    }

    #[test]
    fn text_is_read_back_as_chrono_reads_it() {
        let chrono_read = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| Timestamp::from(t.with_timezone(&Utc)))
                .ok()
        };
        // Years 0 to 9999, at every time of day and day of the year in turn.
        let mut t: DateTime<Utc> = "0000-01-01T00:00:00.000001Z".parse().unwrap();
        for step in 0..40_000 {
            let text = Timestamp::from(t).to_text();
            assert_eq!(
                Timestamp::from_text(text.as_bytes()),
                chrono_read(&text),
                "{text}"
            );
            t += chrono::TimeDelta::microseconds(7_800_000_000_000 + (step % 97) * 3_600_000_001);
        }
        assert!(t.year() > 9_800, "{t}");
        for text in [
            "2024-02-29T00:00:00.000000Z",
            "2000-02-29T23:59:59.999999Z",
            "1970-01-01T00:00:00.000000Z",
            "0000-03-01T00:00:00.000000Z",
        ] {
            assert_eq!(
                Timestamp::from_text(text.as_bytes()),
                chrono_read(text),
                "{text}"
            );
            assert!(Timestamp::from_text(text.as_bytes()).is_some(), "{text}");
        }
        // Not this form, or not a valid instant: chrono's to decide.
        for text in [
            "2016-12-31T23:59:60.500000Z",
            "2026-02-30T00:00:00.000000Z",
            "2026-02-29T00:00:00.000000Z",
            "1900-02-29T00:00:00.000000Z",
            "2026-13-01T00:00:00.000000Z",
            "2026-11-25T24:00:00.000000Z",
            "2026-11-25T11:47:27.123456+01:00",
            "2026-11-25 11:47:27",
            "2026-11-25T11:47:2x.123456Z",
            "+2026-11-25T11:47:27.12345Z",
        ] {
            assert_eq!(Timestamp::from_text(text.as_bytes()), None, "{text}");
        }
        let leap: Timestamp = "2016-12-31T23:59:60.500000Z".parse().unwrap();
        assert_eq!(leap.to_string(), "2016-12-31T23:59:60.500000Z");
    }

    /// Every byte of a text in turn replaced by every other byte: what the fast reader takes
    /// is exactly what chrono reads, and it takes no byte that is not the form's.
    #[test]
    fn a_text_changed_in_any_byte_is_read_as_chrono_reads_it_or_left_to_chrono() {
        for original in ["2024-02-29T23:59:59.999999Z", "1999-12-31T09:08:07.060504Z"] {
            for at in 0..original.len() {
                for byte in 0..=u8::MAX {
                    // Any byte, UTF-8 or not: reads take the stored bytes as they are.
                    let mut bytes = original.as_bytes().to_vec();
                    bytes[at] = byte;
                    let Some(fast) = Timestamp::from_text(&bytes) else {
                        continue;
                    };
                    let kept = byte == original.as_bytes()[at];
                    assert!(
                        kept || FORM[at] == b'0' && byte.is_ascii_digit(),
                        "{bytes:?}"
                    );
                    let text = std::str::from_utf8(&bytes).unwrap();
                    let chrono = DateTime::parse_from_rfc3339(text).unwrap();
                    assert_eq!(fast, Timestamp::from(chrono.with_timezone(&Utc)), "{text}");
                }
            }
        }
    }

    /// What `Display` writes, `FromStr` reads: also years outside 0 to 9999, which chrono
    /// writes signed (and SQLite refuses to store).
    #[test]
    fn every_text_display_writes_parses_back() {
        use chrono::NaiveDate;
        for (year, text) in [
            (10_000, "+10000-01-02T03:04:05.000006Z"),
            (-1, "-0001-01-02T03:04:05.000006Z"),
            (262_142, "+262142-01-02T03:04:05.000006Z"),
            (2026, "2026-01-02T03:04:05.000006Z"),
        ] {
            let t = Timestamp::from(
                NaiveDate::from_ymd_opt(year, 1, 2)
                    .unwrap()
                    .and_hms_micro_opt(3, 4, 5, 6)
                    .unwrap()
                    .and_utc(),
            );
            assert_eq!(t.to_string(), text);
            assert_eq!(text.parse::<Timestamp>(), Ok(t), "{text}");
        }
        // Signed years are not RFC 3339, and its error is the one reported.
        assert!("+10000-13-01T00:00:00Z".parse::<Timestamp>().is_err());
    }
}
