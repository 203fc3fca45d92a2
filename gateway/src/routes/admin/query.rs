//! `GET /api/admin/users/`'s query string: search text, filters, page size
//! and cursor. The gateway checks what a query string can get wrong (a
//! number, a boolean, absurd lengths); auth-service checks the rest (the
//! search text's rules, the cursor) and names the field in its answer.

use proto::auth::v1::ListUsersRequest;

use crate::{
    error::FieldErrors,
    routes::params::{Params, next_query},
};

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
        let params = Params::read(query, &PARAMS, &[])?;
        let get = |name: &str| params.get(name);
        let mut errors = FieldErrors::default();
        let limit = params.limit(&mut errors);
        let is_active = params.boolean("is_active", &mut errors);
        let is_staff = params.boolean("is_staff", &mut errors);
        let verified = params.boolean("verified", &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        let filters = params.filters(&["limit", "cursor"]);
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
        next_query(self.request.limit, &self.filters, cursor)
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
