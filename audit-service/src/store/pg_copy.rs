//! Rows for PostgreSQL's `COPY … FROM STDIN` in its text format.
//!
//! `COPY` is the cheapest way into PostgreSQL: measured on this table, a
//! group of 5,000 rows bound as 14 arrays and expanded with `UNNEST` cost
//! ~7 µs per row more than the same rows copied in, most of it in array
//! decoding and the function scan's tuple store.

use std::fmt::Write as _;

use crate::attempt::NewAttempt;

/// The statement the rows of [`encode`] go with, columns in its order.
pub(super) const COPY_IN: &str = "COPY login_attempts \
    (id, event_id, occurred_at, identifier, user_id, username, email, email_lower, \
     successful, reject_reason, ip, user_agent, request_id, suspicious, ip_key, attempt_count, \
     last_occurred_at, kind, original_reject_reason) FROM STDIN";

/// `rows` (attempt, flag) with their reserved `ids`, one line per row.
pub(super) fn encode(rows: &[(&NewAttempt, bool)], ids: &[i64]) -> Vec<u8> {
    let mut out = String::with_capacity(rows.len() * 256);
    for ((a, suspicious), id) in rows.iter().zip(ids) {
        // Writing into a String cannot fail.
        let _ = write!(out, "{id}\t");
        text(&mut out, &a.event_id);
        let _ = write!(out, "\t{}\t", a.occurred_at);
        text(&mut out, &a.identifier);
        out.push('\t');
        match a.user_id {
            Some(user_id) => {
                let _ = write!(out, "{user_id}");
            }
            None => out.push_str(NULL),
        }
        out.push('\t');
        optional(&mut out, a.username.as_deref());
        out.push('\t');
        text(&mut out, &a.email);
        out.push('\t');
        text(&mut out, &a.email_lower);
        out.push('\t');
        out.push_str(boolean(a.successful));
        out.push('\t');
        text(&mut out, &a.reject_reason);
        out.push('\t');
        text(&mut out, &a.ip);
        out.push('\t');
        optional(&mut out, a.user_agent.as_deref());
        out.push('\t');
        text(&mut out, &a.request_id);
        out.push('\t');
        out.push_str(boolean(*suspicious));
        out.push('\t');
        text(&mut out, &a.ip_key);
        let _ = write!(out, "\t{}\t", a.count);
        match a.last_occurred_at {
            Some(last) => {
                let _ = write!(out, "{last}");
            }
            None => out.push_str(NULL),
        }
        out.push('\t');
        text(&mut out, &a.kind);
        out.push('\t');
        optional(&mut out, a.original_reject_reason.as_deref());
        out.push('\n');
    }
    out.into_bytes()
}

/// The text format's NULL marker.
const NULL: &str = "\\N";

fn boolean(value: bool) -> &'static str {
    if value { "t" } else { "f" }
}

fn optional(out: &mut String, value: Option<&str>) {
    match value {
        Some(value) => text(out, value),
        None => out.push_str(NULL),
    }
}

/// Appends `value` with the backslash escapes that keep a field one field:
/// a literal backslash (so `\N` or `\.` in the data stay data), tab,
/// newline and carriage return. NUL never reaches here; ingest strips it.
fn text(out: &mut String, value: &str) {
    if !value.contains(['\\', '\t', '\n', '\r']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_one_line_of_tab_separated_escaped_fields() {
        let attempt = NewAttempt {
            event_id: "0190aaaa-0000-7000-8000-000000000001".to_owned(),
            occurred_at: 42,
            identifier: "a\\N".to_owned(),
            user_id: None,
            username: Some("tab\there".to_owned()),
            email: "line\nbreak\r".to_owned(),
            email_lower: "x@y.z".to_owned(),
            successful: false,
            reject_reason: "bad_password".to_owned(),
            kind: "password_change".to_owned(),
            ip: String::new(),
            ip_key: String::new(),
            user_agent: None,
            request_id: "r".to_owned(),
            count: 1,
            last_occurred_at: None,
            original_reject_reason: Some("Wrong\tpassword".to_owned()),
            producer_suspicious: None,
        };

        let line = encode(&[(&attempt, true)], &[7]);

        assert_eq!(
            String::from_utf8(line).unwrap(),
            "7\t0190aaaa-0000-7000-8000-000000000001\t42\ta\\\\N\t\\N\ttab\\there\t\
             line\\nbreak\\r\tx@y.z\tf\tbad_password\t\t\\N\tr\tt\t\t1\t\\N\tpassword_change\tWrong\\tpassword\n"
        );
    }
}
