//! The logical replication stream, read: the streaming protocol's frames (WAL data and
//! keepalives, and the status updates sent back) and, inside WAL data, the messages of
//! PostgreSQL's built-in output plugin `pgoutput` (protocol version 1, values as text).
//! Everything is checked for length: a short or unknown message is an error, never a panic.
//! Text is left as the server's bytes: in a `SQL_ASCII` database any byte may be in a value, a
//! name or a message's prefix, and the stream's reader decides what one that is not UTF-8
//! makes of its change, never of the whole stream.

/// A frame the server sends on a replication connection.
#[derive(Debug, PartialEq)]
pub(super) enum Frame<'a> {
    /// WAL data: where the server's WAL ended when it was sent, and a `pgoutput` message.
    Data { wal_end: u64, message: &'a [u8] },
    /// A keepalive: where the server's WAL ends, and whether it asks for a status update now.
    Keepalive { wal_end: u64, reply: bool },
}

/// A `pgoutput` message. Origins and types are of no use to the feed and are skipped.
#[derive(Debug, PartialEq)]
pub(super) enum Message<'a> {
    Begin {
        xid: u32,
    },
    Commit,
    /// A table's schema, name and columns, sent before its first change and again after
    /// it changed (altered, renamed, moved to another schema, its grants changed).
    Relation {
        id: u32,
        schema: &'a [u8],
        table: &'a [u8],
        columns: Vec<(&'a [u8], u32)>,
    },
    Insert {
        relation: u32,
        new: Tuple<'a>,
    },
    Update {
        relation: u32,
        old: Option<Tuple<'a>>,
        new: Tuple<'a>,
    },
    /// A delete; `key_only` when the table's replica identity is not `FULL` (then the old
    /// row holds its key's values only).
    Delete {
        relation: u32,
        old: Tuple<'a>,
        key_only: bool,
    },
    /// `pg_logical_emit_message`: its prefix and content.
    Logical {
        transactional: bool,
        prefix: &'a [u8],
        content: &'a [u8],
    },
    /// `TRUNCATE` of the tables `relations` (with those its `CASCADE` reached).
    Truncate {
        relations: Vec<u32>,
    },
    /// Anything else (origins, types).
    Other,
}

/// A row's values, in its table's column order.
pub(super) type Tuple<'a> = Vec<Value<'a>>;

/// A column's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Value<'a> {
    Null,
    /// A large value the update did not change, which the row's old version holds.
    Unchanged,
    /// Its text form, in the replication connection's client encoding (UTF-8, unless the
    /// database is `SQL_ASCII`, whose text the server passes on as stored).
    Text(&'a [u8]),
}

/// Reads big-endian fields off a message, failing on a short one.
struct Reader<'a> {
    bytes: &'a [u8],
}

type Parsed<T> = Result<T, String>;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Parsed<&'a [u8]> {
        if self.bytes.len() < n {
            return Err("a replication message ended early".into());
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Parsed<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Parsed<u16> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&mut self) -> Parsed<u32> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Parsed<u64> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// A NUL-terminated string, its bytes as sent.
    fn string(&mut self) -> Parsed<&'a [u8]> {
        let end = self
            .bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or("a replication message's string has no end")?;
        let text = &self.bytes[..end];
        self.bytes = &self.bytes[end + 1..];
        Ok(text)
    }

    fn tuple(&mut self) -> Parsed<Tuple<'a>> {
        let count = self.u16()?;
        (0..count)
            .map(|_| match self.u8()? {
                b'n' => Ok(Value::Null),
                b'u' => Ok(Value::Unchanged),
                b't' => {
                    let len = self.u32()? as usize;
                    Ok(Value::Text(self.take(len)?))
                }
                other => Err(format!("a value of unknown kind {:?}", other as char)),
            })
            .collect()
    }
}

impl<'a> Frame<'a> {
    pub fn parse(bytes: &'a [u8]) -> Parsed<Self> {
        let mut r = Reader { bytes };
        match r.u8()? {
            b'w' => {
                let _start = r.u64()?;
                let wal_end = r.u64()?;
                let _sent = r.u64()?;
                Ok(Frame::Data {
                    wal_end,
                    message: r.bytes,
                })
            }
            b'k' => {
                let wal_end = r.u64()?;
                let _sent = r.u64()?;
                Ok(Frame::Keepalive {
                    wal_end,
                    reply: r.u8()? != 0,
                })
            }
            other => Err(format!(
                "a replication frame of unknown kind {:?}",
                other as char
            )),
        }
    }
}

impl<'a> Message<'a> {
    pub fn parse(bytes: &'a [u8]) -> Parsed<Self> {
        let mut r = Reader { bytes };
        Ok(match r.u8()? {
            b'B' => {
                let _final_lsn = r.u64()?;
                let _committed_at = r.u64()?;
                Message::Begin { xid: r.u32()? }
            }
            b'C' => Message::Commit,
            b'R' => {
                let id = r.u32()?;
                let schema = r.string()?;
                let table = r.string()?;
                let _identity = r.u8()?;
                let count = r.u16()?;
                let columns = (0..count)
                    .map(|_| {
                        let _flags = r.u8()?;
                        let name = r.string()?;
                        let ty = r.u32()?;
                        let _modifier = r.u32()?;
                        Ok((name, ty))
                    })
                    .collect::<Parsed<_>>()?;
                Message::Relation {
                    id,
                    schema,
                    table,
                    columns,
                }
            }
            b'I' => {
                let relation = r.u32()?;
                expect(r.u8()?, b'N')?;
                Message::Insert {
                    relation,
                    new: r.tuple()?,
                }
            }
            b'U' => {
                let relation = r.u32()?;
                let (old, new) = match r.u8()? {
                    // The old row's key only (the replica identity is not `FULL`): no row.
                    b'K' => {
                        r.tuple()?;
                        expect(r.u8()?, b'N')?;
                        (None, r.tuple()?)
                    }
                    b'O' => {
                        let old = r.tuple()?;
                        expect(r.u8()?, b'N')?;
                        (Some(old), r.tuple()?)
                    }
                    b'N' => (None, r.tuple()?),
                    other => return Err(format!("an update of unknown form {:?}", other as char)),
                };
                Message::Update { relation, old, new }
            }
            b'D' => {
                let relation = r.u32()?;
                let key_only = match r.u8()? {
                    b'K' => true,
                    b'O' => false,
                    other => return Err(format!("a delete of unknown form {:?}", other as char)),
                };
                Message::Delete {
                    relation,
                    old: r.tuple()?,
                    key_only,
                }
            }
            b'M' => {
                let transactional = r.u8()? & 1 == 1;
                let _lsn = r.u64()?;
                let prefix = r.string()?;
                let len = r.u32()? as usize;
                Message::Logical {
                    transactional,
                    prefix,
                    content: r.take(len)?,
                }
            }
            b'T' => {
                let count = r.u32()?;
                let _options = r.u8()?; // CASCADE, RESTART IDENTITY
                let relations = (0..count).map(|_| r.u32()).collect::<Parsed<_>>()?;
                Message::Truncate { relations }
            }
            b'O' | b'Y' => Message::Other,
            other => {
                return Err(format!(
                    "a pgoutput message of unknown kind {:?}",
                    other as char
                ));
            }
        })
    }
}

fn expect(found: u8, wanted: u8) -> Parsed<()> {
    if found == wanted {
        Ok(())
    } else {
        Err(format!(
            "expected {:?} in a replication message, found {:?}",
            wanted as char, found as char
        ))
    }
}

/// A standby status update: everything up to `lsn` was received and handled (the slot may
/// let the server recycle that WAL). `now` is microseconds since 2000-01-01.
pub(super) fn status_update(lsn: u64, now: i64) -> [u8; 34] {
    let mut out = [0u8; 34];
    out[0] = b'r';
    for (i, field) in [lsn, lsn, lsn].into_iter().enumerate() {
        out[1 + 8 * i..9 + 8 * i].copy_from_slice(&field.to_be_bytes());
    }
    out[25..33].copy_from_slice(&now.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages as the server sent them for `INSERT INTO lt.p VALUES (1, 'a')` and an update
    /// of a table with `REPLICA IDENTITY FULL`.
    #[test]
    fn pgoutput_messages_parse() {
        let relation =
            b"R\0\0@\x04lt\0p\0f\0\x02\x01id\0\0\0\0\x14\xff\xff\xff\xff\x01t\0\0\0\0\x19\xff\xff\xff\xff";
        assert_eq!(
            Message::parse(relation).unwrap(),
            Message::Relation {
                id: 0x4004,
                schema: b"lt",
                table: b"p",
                columns: vec![(&b"id"[..], 20), (b"t", 25)]
            }
        );
        let insert = b"I\0\0@\x04N\0\x02t\0\0\0\x011t\0\0\0\x01a";
        assert_eq!(
            Message::parse(insert).unwrap(),
            Message::Insert {
                relation: 0x4004,
                new: vec![Value::Text(b"1"), Value::Text(b"a")]
            }
        );
        let update = b"U\0\0@\x04O\0\x02t\0\0\0\x011uN\0\x02t\0\0\0\x011n";
        assert_eq!(
            Message::parse(update).unwrap(),
            Message::Update {
                relation: 0x4004,
                old: Some(vec![Value::Text(b"1"), Value::Unchanged]),
                new: vec![Value::Text(b"1"), Value::Null]
            }
        );
        // `TRUNCATE p CASCADE` reaching one more table.
        let truncate = b"T\0\0\0\x02\x01\0\0@\x04\0\0@\x05";
        assert_eq!(
            Message::parse(truncate).unwrap(),
            Message::Truncate {
                relations: vec![0x4004, 0x4005]
            }
        );
        let message = b"M\0\0\0\0\0\x01\xda{\x80datastore\0\0\0\0\x07m:hello";
        assert_eq!(
            Message::parse(message).unwrap(),
            Message::Logical {
                transactional: false,
                prefix: b"datastore",
                content: b"m:hello"
            }
        );
    }

    /// A `SQL_ASCII` database passes on any bytes as text, in values, names and prefixes:
    /// parsed as sent, for the reader to tell what they make of their change.
    #[test]
    fn text_that_is_not_utf8_parses_as_sent() {
        let insert = b"I\0\0@\x04N\0\x01t\0\0\0\x02\xffa";
        assert_eq!(
            Message::parse(insert).unwrap(),
            Message::Insert {
                relation: 0x4004,
                new: vec![Value::Text(b"\xffa")]
            }
        );
        let relation = b"R\0\0@\x04s\xe9\0p\xe9\0f\0\x01\x01\xe9\0\0\0\0\x19\xff\xff\xff\xff";
        assert_eq!(
            Message::parse(relation).unwrap(),
            Message::Relation {
                id: 0x4004,
                schema: b"s\xe9",
                table: b"p\xe9",
                columns: vec![(&b"\xe9"[..], 25)]
            }
        );
        let message = b"M\0\0\0\0\0\x01\xda{\x80\xff\0\0\0\0\x01\xfe";
        assert!(matches!(
            Message::parse(message).unwrap(),
            Message::Logical {
                prefix: b"\xff",
                content: b"\xfe",
                ..
            }
        ));
    }

    #[test]
    fn short_or_unknown_messages_are_errors() {
        for bad in [
            &b""[..],
            b"I\0\0",
            b"I\0\0@\x04N\0\x02t\0\0\0\x09short",
            b"Z",
            b"U\0\0@\x04X",
            b"R\0\0@\x04no end",
        ] {
            assert!(Message::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Frame::parse(b"w\0\0").is_err());
        assert!(Frame::parse(b"q").is_err());
    }

    #[test]
    fn frames_and_status_updates() {
        let mut keepalive = vec![b'k'];
        keepalive.extend(7u64.to_be_bytes());
        keepalive.extend(0u64.to_be_bytes());
        keepalive.push(1);
        assert_eq!(
            Frame::parse(&keepalive).unwrap(),
            Frame::Keepalive {
                wal_end: 7,
                reply: true
            }
        );
        let update = status_update(0x0102, 5);
        assert_eq!(update[0], b'r');
        assert_eq!(&update[1..9], &0x0102u64.to_be_bytes());
        assert_eq!(&update[17..25], &0x0102u64.to_be_bytes());
        assert_eq!(update[33], 0, "no reply asked");
    }
}
