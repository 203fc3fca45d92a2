//! The query strings of the listing routes (the attempt log, its counts,
//! the users and the admin events), read by one piece of code so that they
//! agree: unknown parameters ignored, empty values absent, a repeated
//! parameter's last value kept, absurd lengths refused, each typed value
//! checked with the same message, and every problem reported together
//! (DRF style) in the caller's [`FieldErrors`].

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{body::parse_bool, config::PublicUrl, error::FieldErrors};

/// Page size when the client names none.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page the services serve.
pub const MAX_LIMIT: u32 = 500;
/// Longest parameter value accepted; nothing legitimate comes close.
const MAX_VALUE_LEN: usize = 1024;

/// The known parameters of a query string, as sent.
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    /// Reads the parameters of `query` named in `known` or `extra` (a
    /// route's shared filters and its own parameters).
    pub fn read(
        query: Option<&str>,
        known: &[&'static str],
        extra: &[&'static str],
    ) -> Result<Self, FieldErrors> {
        let mut raw: Vec<(&'static str, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let Some(name) = known
                .iter()
                .chain(extra)
                .copied()
                .find(|known| *known == name)
            else {
                continue;
            };
            raw.retain(|(n, _)| *n != name);
            if !value.is_empty() {
                raw.push((name, value.into_owned()));
            }
        }
        let mut errors = FieldErrors::default();
        for (name, value) in &raw {
            if value.len() > MAX_VALUE_LEN {
                errors.add(
                    *name,
                    format!("Ensure this field has no more than {MAX_VALUE_LEN} characters."),
                );
            }
        }
        if errors.is_empty() {
            Ok(Self(raw))
        } else {
            Err(errors)
        }
    }

    /// The value of `name`, if sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent (or bad,
    /// with its error added).
    pub fn limit(&self, errors: &mut FieldErrors) -> u32 {
        let Some(v) = self.get("limit") else {
            return DEFAULT_LIMIT;
        };
        match v.trim().parse::<i64>() {
            Ok(n) if (1..=i64::from(MAX_LIMIT)).contains(&n) => n as u32,
            Ok(_) => {
                errors.add(
                    "limit",
                    format!("Ensure this value is between 1 and {MAX_LIMIT}."),
                );
                DEFAULT_LIMIT
            }
            Err(_) => {
                errors.add("limit", "A valid integer is required.");
                DEFAULT_LIMIT
            }
        }
    }

    /// A boolean in DRF's spellings (`true`, `1`, `False`, …).
    pub fn boolean(&self, name: &'static str, errors: &mut FieldErrors) -> Option<bool> {
        self.get(name).and_then(|v| {
            let parsed = parse_bool(v);
            if parsed.is_none() {
                errors.add(name, "Must be a valid boolean.");
            }
            parsed
        })
    }

    /// A whole number (an id).
    pub fn integer(&self, name: &'static str, errors: &mut FieldErrors) -> Option<i64> {
        self.get(name).and_then(|v| {
            let parsed = v.trim().parse::<i64>().ok();
            if parsed.is_none() {
                errors.add(name, "A valid integer is required.");
            }
            parsed
        })
    }

    /// `since` and `until` (RFC 3339), `until` after `since`.
    pub fn time_range(
        &self,
        errors: &mut FieldErrors,
    ) -> (Option<OffsetDateTime>, Option<OffsetDateTime>) {
        let mut datetime = |name: &'static str| {
            self.get(name).and_then(|v| {
                // An unencoded `+01:00` arrives as ` 01:00`; no valid
                // RFC 3339 value has a space there, so take it back.
                let parsed = OffsetDateTime::parse(&v.trim().replace(' ', "+"), &Rfc3339).ok();
                if parsed.is_none() {
                    errors.add(
                        name,
                        "Datetime has wrong format. Use RFC 3339, e.g. 2024-01-31T12:00:00Z.",
                    );
                }
                parsed
            })
        };
        let since = datetime("since");
        let until = datetime("until");
        if let (Some(since), Some(until)) = (since, until)
            && until <= since
        {
            errors.add("until", "Must be later than since.");
        }
        (since, until)
    }

    /// The parameters but `page` ones (limit, cursor, …), as sent: the
    /// filters a `next` link repeats.
    pub fn filters(&self, page: &[&str]) -> Vec<(&'static str, String)> {
        self.0
            .iter()
            .filter(|(name, _)| !page.contains(name))
            .cloned()
            .collect()
    }
}

/// The query string of the page after one: the same `limit` and filters,
/// and `cursor`.
pub fn next_query(limit: u32, filters: &[(&'static str, String)], cursor: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &limit.to_string());
    for (name, value) in filters {
        query.append_pair(name, value);
    }
    query.append_pair("cursor", cursor);
    query.finish()
}

/// The `next` link of a page whose listing answered `cursor` (none on the
/// last page, whose cursor is empty); `query` makes the next page's query
/// string from the cursor.
pub fn next_link(
    public_url: Option<&PublicUrl>,
    path: &str,
    cursor: &str,
    query: impl FnOnce(&str) -> String,
) -> Option<String> {
    (!cursor.is_empty()).then(|| next_url(public_url, path, &query(cursor)))
}

/// A page's `next` link, `path?query`: under `GATEWAY_PUBLIC_URL` when
/// configured, else a path relative to this server (RFC 3986 relative
/// reference). Never from the request's `Host`: a client (or a cache keyed
/// without it) could point an admin's next click anywhere.
pub fn next_url(public_url: Option<&PublicUrl>, path: &str, query: &str) -> String {
    let path = format!("{path}?{query}");
    match public_url {
        Some(base) => base.join(&path),
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/api/accounts/logs/login/attemps/";

    #[test]
    fn next_links_are_relative_unless_a_public_url_is_configured() {
        let query = |cursor: &str| format!("limit=5&cursor={cursor}");
        assert_eq!(
            next_link(None, PATH, "c", query).as_deref(),
            Some("/api/accounts/logs/login/attemps/?limit=5&cursor=c")
        );
        let base = PublicUrl::parse("https://api.example.com:8585/").unwrap();
        assert_eq!(
            next_link(Some(&base), PATH, "c", query).as_deref(),
            Some("https://api.example.com:8585/api/accounts/logs/login/attemps/?limit=5&cursor=c")
        );
    }

    #[test]
    fn the_last_page_has_no_next_link() {
        assert_eq!(next_link(None, PATH, "", |_| unreachable!()), None);
    }
}
