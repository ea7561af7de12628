//! Database URLs as they may be shown: in errors, `Debug` output and logs, never with a password.

/// What a password is shown as.
const HIDDEN: &str = "***";

/// `url` with its password replaced by `***`: the password of the user information
/// (`postgres://user:password@host`) and the `password` and `sslpassword` query parameters.
/// Anything that is not a PostgreSQL URL (a SQLite path) is shown as given.
pub(crate) fn redact(url: &str) -> String {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return url.to_owned();
    };
    let scheme = &url[..url.len() - rest.len()];
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let mut shown = String::from(scheme);
    // The user information ends at the last '@': a password may hold any other character.
    match before_query.rsplit_once('@') {
        Some((user_info, host_and_path)) => {
            match user_info.split_once(':') {
                Some((user, _password)) => {
                    shown.push_str(user);
                    shown.push(':');
                    shown.push_str(HIDDEN);
                }
                None => shown.push_str(user_info),
            }
            shown.push('@');
            shown.push_str(host_and_path);
        }
        None => shown.push_str(before_query),
    }
    if let Some(query) = query {
        shown.push('?');
        let parameters: Vec<String> = query
            .split('&')
            .map(|parameter| match parameter.split_once('=') {
                Some((key, _)) if is_password_key(key) => format!("{key}={HIDDEN}"),
                _ => parameter.to_owned(),
            })
            .collect();
        shown.push_str(&parameters.join("&"));
    }
    shown
}

/// `message` without the passwords of `url`, which a driver's message may repeat.
pub(crate) fn redact_message(url: &str, message: &str) -> String {
    let mut shown = message.to_owned();
    for password in passwords(url) {
        if !password.is_empty() {
            shown = shown.replace(password, HIDDEN);
        }
    }
    shown
}

/// The passwords `url` carries, as written in it.
fn passwords(url: &str) -> Vec<&str> {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return Vec::new();
    };
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let from_user_info = before_query
        .rsplit_once('@')
        .and_then(|(user_info, _)| user_info.split_once(':'))
        .map(|(_, password)| password);
    let from_query = query.split('&').filter_map(|parameter| {
        let (key, value) = parameter.split_once('=')?;
        is_password_key(key).then_some(value)
    });
    from_user_info.into_iter().chain(from_query).collect()
}

/// libpq's connection parameters that hold a password.
fn is_password_key(key: &str) -> bool {
    matches!(key, "password" | "sslpassword")
}

#[cfg(test)]
mod tests {
    use super::{redact, redact_message};

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
            ("postgres://db/blog", "postgres://db/blog"),
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
        assert_eq!(
            redact_message("blog.db", "unable to open"),
            "unable to open"
        );
    }
}
