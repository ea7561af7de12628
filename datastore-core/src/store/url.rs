//! Database URLs as they may be shown: in errors, `Debug` output and logs, never with a password.
//!
//! A URL is read the way libpq reads it, which is what connects: the user information is what
//! precedes the first `@` met before any `/` (a password may hold `?`, `#` or `:`), and a
//! parameter's name may be percent-encoded (`pass%77ord` is `password`).

use std::borrow::Cow;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// What a password is shown as.
const HIDDEN: &str = "***";

/// Where the passwords of a PostgreSQL URL are, as byte ranges of the URL.
struct Parsed<'u> {
    url: &'u str,
    /// The password of the user information.
    user_password: Option<(usize, usize)>,
    /// The values of the query's password parameters.
    parameter_passwords: Vec<(usize, usize)>,
    /// Where the query's `?` is, past the credentials.
    query: Option<usize>,
}

/// The passwords of `url`, if it is a PostgreSQL URL.
fn parse(url: &str) -> Option<Parsed<'_>> {
    let scheme = ["postgres://", "postgresql://"]
        .into_iter()
        .find(|scheme| url.starts_with(scheme))?;
    let start = scheme.len();
    let rest = &url[start..];
    // libpq: the user information ends at the first '@' met before any '/'.
    let libpq_at = rest
        .find(['@', '/'])
        .filter(|&i| rest.as_bytes()[i] == b'@');
    let (user_password, host_start) = match libpq_at {
        Some(at) => {
            // A password meant to hold '@' (unencoded) makes libpq read a host of its tail:
            // everything up to the last '@' before the query is hidden too.
            let query = rest[at..].find('?').map_or(rest.len(), |q| at + q);
            let end = rest[..query].rfind('@').unwrap_or(at);
            let password = rest[..at].find(':').map(|colon| (colon + 1, end));
            (password, end + 1)
        }
        None => {
            // No user information for libpq; a password meant to hold '/' (unencoded) would
            // show whole, so the '@' before the first '?' counts as its end too.
            let query = rest.find('?').unwrap_or(rest.len());
            match rest[..query].rfind('@') {
                Some(end) => (rest[..end].find(':').map(|colon| (colon + 1, end)), end + 1),
                None => (None, 0),
            }
        }
    };
    let mut parameter_passwords = Vec::new();
    let query = rest[host_start..].find('?').map(|q| host_start + q);
    if let Some(q) = query {
        let mut offset = q + 1;
        for parameter in rest[offset..].split('&') {
            if let Some((key, value)) = parameter.split_once('=') {
                if is_password_key(&percent_decode(key)) {
                    let value_start = offset + key.len() + 1;
                    parameter_passwords
                        .push((start + value_start, start + value_start + value.len()));
                }
            }
            offset += parameter.len() + 1;
        }
    }
    Some(Parsed {
        url,
        user_password: user_password.map(|(a, b)| (start + a, start + b)),
        parameter_passwords,
        query: query.map(|q| start + q),
    })
}

/// `url` with its passwords replaced by `***`: the password of the user information
/// (`postgres://user:password@host`) and the `password` and `sslpassword` query parameters.
/// Anything that is not a PostgreSQL URL (a SQLite path) is shown as given.
pub(crate) fn redact(url: &str) -> String {
    let Some(parsed) = parse(url) else {
        return url.to_owned();
    };
    let mut ranges: Vec<(usize, usize)> = parsed
        .user_password
        .into_iter()
        .chain(parsed.parameter_passwords)
        .collect();
    ranges.sort_unstable();
    let mut shown = String::with_capacity(url.len());
    let mut at = 0;
    for (start, end) in ranges {
        shown.push_str(&parsed.url[at..start]);
        shown.push_str(HIDDEN);
        at = end;
    }
    shown.push_str(&parsed.url[at..]);
    shown
}

/// `message` without the passwords of `url`, which a driver's message may repeat (as written
/// in the URL, or decoded).
pub(crate) fn redact_message(url: &str, message: &str) -> String {
    let mut shown = message.to_owned();
    for password in passwords(url) {
        if !password.is_empty() {
            shown = shown.replace(&*password, HIDDEN);
        }
    }
    shown
}

/// The passwords `url` carries, as written in it and percent-decoded, longest first (so that
/// one that contains another is hidden whole).
fn passwords(url: &str) -> Vec<Cow<'_, str>> {
    let Some(parsed) = parse(url) else {
        return Vec::new();
    };
    let mut passwords: Vec<Cow<'_, str>> = Vec::new();
    for (start, end) in parsed
        .user_password
        .into_iter()
        .chain(parsed.parameter_passwords)
    {
        let written = &url[start..end];
        passwords.push(Cow::Owned(percent_decode(written).into_owned()));
        passwords.push(Cow::Borrowed(written));
        // A password holding '/' (unencoded) is no password to libpq, which reads its head as
        // the port (`invalid integer value "<head>" for connection option "port"`) and its
        // tail as the start of the database's name (`database "<tail>@.." does not exist`).
        if let Some((head, tail)) = written.split_once('/') {
            passwords.extend(
                [head, tail]
                    .into_iter()
                    .filter(|part| !part.is_empty())
                    .map(Cow::Borrowed),
            );
        }
    }
    passwords.sort_by_key(|p| std::cmp::Reverse(p.len()));
    passwords
}

/// libpq's connection parameters that hold a password.
fn is_password_key(key: &str) -> bool {
    key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword")
}

/// `text` with its `%XX` escapes decoded (as libpq decodes a URL's parts); an escape that is
/// not one is kept as written.
fn percent_decode(text: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy()
}

/// `url` (a PostgreSQL URL) with `search_path` set to `schema` for every connection: libpq's
/// `options` parameter gains `-c search_path=<schema>`, added to the URL or to the `options`
/// it has. The schema name is quoted as an identifier, so that any name (mixed case, spaces)
/// means that schema and nothing else.
pub(crate) fn with_search_path(url: &str, schema: &str) -> String {
    // An identifier in double quotes, then escaped for libpq's options (a backslash before
    // each space or backslash), then percent-encoded as a URL's query value.
    let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
    let mut escaped = String::with_capacity(quoted.len());
    for c in quoted.chars() {
        if c == ' ' || c == '\\' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    let option = format!("-csearch_path={escaped}");
    let option = utf8_percent_encode(&option, NON_ALPHANUMERIC).to_string();
    // The parameters start past the credentials, as libpq reads them (a password may hold `?`).
    let (base, query) = match parse(url).and_then(|parsed| parsed.query) {
        Some(q) => (&url[..q], &url[q + 1..]),
        None => (url, ""),
    };
    let mut found = false;
    let mut parameters: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|parameter| match parameter.split_once('=') {
            Some((key, value)) if !found && percent_decode(key) == "options" => {
                found = true;
                format!("{key}={value}%20{option}")
            }
            _ => parameter.to_owned(),
        })
        .collect();
    if !found {
        parameters.push(format!("options={option}"));
    }
    format!("{base}?{}", parameters.join("&"))
}

/// The PostgreSQL URL `url` with the query parameters `extra` (`key=value`, encoded) after its
/// own, found past the credentials as libpq reads them; empty parameters (a URL ending in `?`
/// or `&`), which libpq accepts alone but refuses before another, are left out.
pub(crate) fn with_parameters(url: &str, extra: &[String]) -> String {
    let (base, query) = match parse(url).and_then(|parsed| parsed.query) {
        Some(q) => (&url[..q], &url[q + 1..]),
        None => (url, ""),
    };
    let parameters: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .chain(extra.iter().map(String::as_str))
        .collect();
    format!("{base}?{}", parameters.join("&"))
}

/// The TCP settings every connection of a store to PostgreSQL gets, unless its URL sets them:
/// a server that goes silent (its host powered off, a network partition, a failover that moved
/// its address away) is found gone within about a minute, instead of when the system's TCP
/// settings would find it (about 15 minutes of retransmissions where something was sent, two
/// hours of silence before the first keepalive probe where nothing was). That matters most for
/// the connections that only wait, the change feeds': until their connection fails, their
/// subscribers are not told that nothing more will come. An idle connection is probed after
/// 30 s of silence, then every 10 s, and given up after 3 probes unanswered; data sent and not
/// acknowledged for 60 s gives the connection up too. Neither limits a query that runs long (a
/// busy server's kernel answers both); a server that reads none of what the client sends for
/// 60 s (its window closed: a `COPY .. FROM STDIN` whose rows wait that long) is given up as
/// well. A URL with `keepalives=0` opts out of all of them. libpq ignores them over a Unix
/// socket.
const LIVENESS: [(&str, &str); 4] = [
    ("keepalives_idle", "30"),
    ("keepalives_interval", "10"),
    ("keepalives_count", "3"),
    ("tcp_user_timeout", "60000"),
];

/// The PostgreSQL URL `url` with the settings of [`LIVENESS`] it does not set itself.
pub(crate) fn with_liveness(url: &str) -> String {
    let query = parse(url)
        .and_then(|parsed| parsed.query)
        .map_or("", |q| &url[q + 1..]);
    let set: Vec<(Cow<'_, str>, Cow<'_, str>)> = query
        .split('&')
        .filter_map(|parameter| parameter.split_once('='))
        .map(|(key, value)| (percent_decode(key), percent_decode(value)))
        .collect();
    if set
        .iter()
        .any(|(key, value)| key == "keepalives" && value == "0")
    {
        return url.to_owned();
    }
    let missing: Vec<String> = LIVENESS
        .iter()
        .filter(|(key, _)| !set.iter().any(|(given, _)| given == key))
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    if missing.is_empty() {
        return url.to_owned();
    }
    with_parameters(url, &missing)
}

#[cfg(test)]
mod tests {
    use super::{redact, redact_message, with_liveness, with_parameters, with_search_path};

    #[test]
    fn parameters_follow_the_urls_own_past_its_credentials() {
        let extra = ["replication=database".to_owned()];
        for (url, with) in [
            ("postgres://h/db", "postgres://h/db?replication=database"),
            ("postgres://h/db?", "postgres://h/db?replication=database"),
            (
                "postgres://h/db?sslmode=disable&",
                "postgres://h/db?sslmode=disable&replication=database",
            ),
            (
                "postgres://u:pa?ss@h/db",
                "postgres://u:pa?ss@h/db?replication=database",
            ),
            (
                "postgresql://u:p@h/db?a=1&&b=2",
                "postgresql://u:p@h/db?a=1&b=2&replication=database",
            ),
        ] {
            assert_eq!(with_parameters(url, &extra), with, "{url}");
        }
    }

    #[test]
    fn a_silent_server_is_given_up_by_the_urls_settings_or_the_stores() {
        assert_eq!(
            with_liveness("postgres://app@db/blog"),
            "postgres://app@db/blog?keepalives_idle=30&keepalives_interval=10\
             &keepalives_count=3&tcp_user_timeout=60000"
        );
        // The URL's own settings stand, also percent-encoded; the others are added after them.
        assert_eq!(
            with_liveness("postgres://u:pa?ss@db/blog?keepalives_idle=5&tcp%5Fuser%5Ftimeout=0&"),
            "postgres://u:pa?ss@db/blog?keepalives_idle=5&tcp%5Fuser%5Ftimeout=0\
             &keepalives_interval=10&keepalives_count=3"
        );
        let all = "postgres://db/blog?keepalives_idle=1&keepalives_interval=1\
                   &keepalives_count=1&tcp_user_timeout=1";
        assert_eq!(with_liveness(all), all);
        // Keepalives turned off: none of them.
        let off = "postgres://db/blog?keepalives=0";
        assert_eq!(with_liveness(off), off);
    }

    #[test]
    fn a_schema_is_set_through_libpqs_options_parameter() {
        assert_eq!(
            with_search_path("postgres://app@db/blog", "tenant_1"),
            "postgres://app@db/blog?options=%2Dcsearch%5Fpath%3D%22tenant%5F1%22"
        );
        // Added to the parameters there are, and to an `options` the URL already has.
        assert_eq!(
            with_search_path(
                "postgres://db/blog?sslmode=disable&options=-cwork_mem%3D64MB",
                "a"
            ),
            "postgres://db/blog?sslmode=disable&options=-cwork_mem%3D64MB%20%2Dcsearch%5Fpath%3D%22a%22"
        );
        // A `?` in the password is no parameter.
        assert_eq!(
            with_search_path("postgres://app:pa?ss@db/blog?sslmode=disable", "a"),
            "postgres://app:pa?ss@db/blog?sslmode=disable&options=%2Dcsearch%5Fpath%3D%22a%22"
        );
        assert_eq!(
            with_search_path("postgres://app:pa?ss@db/blog", "a"),
            "postgres://app:pa?ss@db/blog?options=%2Dcsearch%5Fpath%3D%22a%22"
        );
        // Quoted as an identifier and escaped for libpq: any name means that schema.
        assert_eq!(
            with_search_path("postgres://db/blog", "My \"Schema\""),
            "postgres://db/blog?options=%2Dcsearch%5Fpath%3D%22My%5C%20%22%22Schema%22%22%22"
        );
    }

    #[test]
    fn passwords_are_hidden_wherever_a_url_holds_them() {
        for (url, shown) in [
            (
                "postgres://app:s3cr%40t@db.internal:5432/blog",
                "postgres://app:***@db.internal:5432/blog",
            ),
            (
                "postgresql://app:p@ss:w/rd@db/blog?sslmode=require",
                "postgresql://app:***@db/blog?sslmode=require",
            ),
            (
                "postgres://app@db/blog?password=x&sslpassword=y&options=-c",
                "postgres://app@db/blog?password=***&sslpassword=***&options=-c",
            ),
            // libpq reads the user information up to the first '@' or '/': a '?' before the
            // '@' is the password's.
            (
                "postgres://app:pa?ss@127.0.0.1:1/blog",
                "postgres://app:***@127.0.0.1:1/blog",
            ),
            (
                "postgres://app:pa?ss@127.0.0.1:1/blog?password=x",
                "postgres://app:***@127.0.0.1:1/blog?password=***",
            ),
            // libpq decodes percent-escapes in parameter names.
            (
                "postgres://app@127.0.0.1:1/blog?pass%77ord=hunter2",
                "postgres://app@127.0.0.1:1/blog?pass%77ord=***",
            ),
            (
                "postgres://app@db/blog?sslmode=disable&%50ASSWORD=x",
                "postgres://app@db/blog?sslmode=disable&%50ASSWORD=***",
            ),
            // Not user information for libpq, but a password with a '/' all the same.
            ("postgres://app:pa/ss@db/blog", "postgres://app:***@db/blog"),
            ("postgres://db/blog", "postgres://db/blog"),
            (
                "postgres://db:5432/blog?user=a@b",
                "postgres://db:5432/blog?user=a@b",
            ),
            ("postgres://app@db/blog", "postgres://app@db/blog"),
            ("/var/lib/app:x@y.db", "/var/lib/app:x@y.db"),
            (":memory:", ":memory:"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
            assert_eq!(redact(shown), shown, "showing is idempotent");
        }
    }

    #[test]
    fn a_message_repeating_a_password_hides_it() {
        assert_eq!(
            redact_message(
                "postgres://app:hunter2@db/blog",
                "password authentication failed (hunter2)"
            ),
            "password authentication failed (***)"
        );
        // As written in the URL, or decoded.
        assert_eq!(
            redact_message(
                "postgres://app:s3cr%40t@db/blog?pass%77ord=hun%74er2",
                "s3cr%40t, s3cr@t, hun%74er2, hunter2"
            ),
            "***, ***, ***, ***"
        );
        assert_eq!(
            redact_message("blog.db", "unable to open"),
            "unable to open"
        );
    }
}
