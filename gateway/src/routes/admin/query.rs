//! `GET /api/admin/users/`'s query string: search text, filters, page size
//! and cursor. The gateway checks what a query string can get wrong (a
//! number, a boolean, absurd lengths); auth-service checks the rest (the
//! search text's rules, the cursor) and names the field in its answer.

use proto::auth::v1::ListUsersRequest;

use crate::{body::parse_bool, error::FieldErrors};

/// Page size when the client names none.
const DEFAULT_LIMIT: u32 = 50;
/// Largest page auth-service serves.
const MAX_LIMIT: u32 = 500;
/// Longest value read; auth-service allows 254 characters of search text.
const MAX_VALUE_LEN: usize = 1024;
/// Parameters this endpoint reads; others are ignored.
const PARAMS: [&str; 6] = ["q", "is_active", "is_staff", "verified", "limit", "cursor"];

/// One page request, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsersQuery {
    /// What auth-service is asked.
    request: ListUsersRequest,
    /// The parameters as the client wrote them, for the `next` link.
    filters: Vec<(&'static str, String)>,
}

impl UsersQuery {
    /// Validates a raw query string. Unknown parameters are ignored, empty
    /// values count as absent, and a repeated parameter keeps its last
    /// value (as the log listing's query). Every problem is reported.
    pub fn parse(query: Option<&str>) -> Result<Self, FieldErrors> {
        let mut raw: Vec<(&'static str, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let Some(name) = PARAMS.into_iter().find(|known| *known == name) else {
                continue;
            };
            raw.retain(|(n, _)| *n != name);
            if !value.is_empty() {
                raw.push((name, value.into_owned()));
            }
        }
        let get = |name: &str| {
            raw.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        let mut errors = FieldErrors::default();
        for (name, value) in &raw {
            if value.len() > MAX_VALUE_LEN {
                errors.add(
                    *name,
                    format!("Ensure this field has no more than {MAX_VALUE_LEN} characters."),
                );
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let limit = match get("limit").map(|v| v.trim().parse::<i64>()) {
            None => DEFAULT_LIMIT,
            Some(Ok(n)) if (1..=i64::from(MAX_LIMIT)).contains(&n) => n as u32,
            Some(Ok(_)) => {
                errors.add(
                    "limit",
                    format!("Ensure this value is between 1 and {MAX_LIMIT}."),
                );
                DEFAULT_LIMIT
            }
            Some(Err(_)) => {
                errors.add("limit", "A valid integer is required.");
                DEFAULT_LIMIT
            }
        };
        let mut boolean = |name: &'static str| {
            get(name).and_then(|v| {
                let parsed = parse_bool(v);
                if parsed.is_none() {
                    errors.add(name, "Must be a valid boolean.");
                }
                parsed
            })
        };
        let is_active = boolean("is_active");
        let is_staff = boolean("is_staff");
        let verified = boolean("verified");
        if !errors.is_empty() {
            return Err(errors);
        }
        let filters = raw
            .iter()
            .filter(|(name, _)| !matches!(*name, "limit" | "cursor"))
            .cloned()
            .collect();
        Ok(Self {
            request: ListUsersRequest {
                q: get("q").unwrap_or_default().to_owned(),
                is_active,
                is_staff,
                verified,
                limit,
                cursor: get("cursor").unwrap_or_default().to_owned(),
            },
            filters,
        })
    }

    /// The auth-service request for this page.
    pub fn to_request(&self) -> ListUsersRequest {
        self.request.clone()
    }

    /// The query string of the page after this one: same limit and
    /// filters, the given cursor.
    pub fn next_query(&self, cursor: &str) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("limit", &self.request.limit.to_string());
        for (name, value) in &self.filters {
            query.append_pair(name, value);
        }
        query.append_pair("cursor", cursor);
        query.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(q: &str) -> Vec<String> {
        UsersQuery::parse(Some(q))
            .unwrap_err()
            .fields()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn no_query_is_the_first_page_of_fifty() {
        let q = UsersQuery::parse(None).unwrap().to_request();
        assert_eq!(
            q,
            ListUsersRequest {
                limit: 50,
                ..Default::default()
            }
        );
    }

    #[test]
    fn every_parameter_is_passed_on_and_kept_for_the_next_page() {
        let q = UsersQuery::parse(Some(
            "q=Al%2Bice&is_active=1&is_staff=FALSE&verified=true&limit=5&cursor=abc&junk=1",
        ))
        .unwrap();
        let r = q.to_request();
        assert_eq!(r.q, "Al+ice");
        assert_eq!(
            (r.is_active, r.is_staff, r.verified),
            (Some(true), Some(false), Some(true))
        );
        assert_eq!((r.limit, r.cursor.as_str()), (5, "abc"));
        assert_eq!(
            q.next_query("n/1"),
            "limit=5&q=Al%2Bice&is_active=1&is_staff=FALSE&verified=true&cursor=n%2F1"
        );
    }

    #[test]
    fn bad_values_are_all_named() {
        assert_eq!(
            fields("limit=0&is_active=yes&is_staff=2&verified=maybe"),
            ["limit", "is_active", "is_staff", "verified"]
        );
        assert_eq!(fields("limit=x"), ["limit"]);
        assert_eq!(fields(&format!("q={}", "a".repeat(1025))), ["q"]);
    }

    #[test]
    fn empty_values_are_absent() {
        let r = UsersQuery::parse(Some("q=&is_active=&limit=&cursor="))
            .unwrap()
            .to_request();
        assert_eq!((r.q.as_str(), r.is_active, r.limit), ("", None, 50));
    }
}
