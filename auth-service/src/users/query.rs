//! A listing request, checked: the search text, filters, page size and
//! cursor, turned into the store's [`AccountFilter`].

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::{
    domain::{FieldError, names},
    store::AccountFilter,
};

/// Longest search text, in characters: the longest email address (254).
pub const MAX_QUERY_CHARS: usize = 254;
/// Page size when the request leaves it at 0.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page, as the attempt log's listing.
pub const MAX_LIMIT: u32 = 500;
/// Longest cursor read; one this service made is far shorter.
const MAX_CURSOR_CHARS: usize = 64;

/// One page request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserQuery {
    /// What the store is asked for (one row more than the page, to know
    /// whether another page follows).
    filter: AccountFilter,
    /// The page size.
    limit: u32,
}

/// What a listing request asks for, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRequest<'a> {
    /// Part of a username or email, any case; empty: any.
    pub q: &'a str,
    /// Only active, or only inactive, accounts.
    pub is_active: Option<bool>,
    /// Only administrators, or only the others.
    pub is_staff: Option<bool>,
    /// Only verified, or only unverified, accounts.
    pub verified: Option<bool>,
    /// Page size; 0 for the default.
    pub limit: u32,
    /// A previous page's cursor; empty for the first page.
    pub cursor: &'a str,
}

impl UserQuery {
    /// Checks every field, reporting every problem at once.
    pub fn parse(req: &ListRequest<'_>) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let q = req.q.trim();
        if q.contains('\0') {
            errors.push(FieldError::new("q", "Null characters are not allowed."));
        } else if q.chars().count() > MAX_QUERY_CHARS {
            errors.push(FieldError::new(
                "q",
                format!("Ensure this field has no more than {MAX_QUERY_CHARS} characters."),
            ));
        }
        let limit = match req.limit {
            0 => DEFAULT_LIMIT,
            n if n <= MAX_LIMIT => n,
            _ => {
                errors.push(FieldError::new(
                    "limit",
                    format!("Ensure this value is between 1 and {MAX_LIMIT}."),
                ));
                DEFAULT_LIMIT
            }
        };
        let before_id = if req.cursor.is_empty() {
            None
        } else {
            let id = decode_cursor(req.cursor);
            if id.is_none() {
                errors.push(FieldError::new(
                    "cursor",
                    "Invalid cursor: use the `next` link of a previous page.",
                ));
            }
            id
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        // Matched against the lookup keys, so the text is folded as they
        // are: `ALICE`, `ａｌｉｃｅ` and `alice` find the same accounts.
        let pattern = (!q.is_empty()).then(|| format!("%{}%", escape_like(&names::fold(q))));
        Ok(Self {
            filter: AccountFilter {
                pattern,
                is_active: req.is_active,
                is_staff: req.is_staff,
                verified: req.verified,
                before_id,
                limit: i64::from(limit) + 1,
            },
            limit,
        })
    }

    /// What to ask the store for.
    pub fn filter(&self) -> &AccountFilter {
        &self.filter
    }

    /// The page size.
    pub fn limit(&self) -> u32 {
        self.limit
    }
}

/// The cursor of the page after the one ending with account `last_id`:
/// base64url of the id, opaque enough that clients do not make their own.
pub fn encode_cursor(last_id: i64) -> String {
    URL_SAFE_NO_PAD.encode(last_id.to_string())
}

/// The id in a cursor from [`encode_cursor`]; `None` for anything else.
fn decode_cursor(raw: &str) -> Option<i64> {
    if raw.len() > MAX_CURSOR_CHARS {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok().filter(|id| *id > 0)
}

/// `text` with `LIKE`'s wildcards and its escape character (`\`) escaped.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An account id from a request: positive, else the field error naming
/// `field`.
pub fn user_id(field: &'static str, raw: i64) -> Result<i64, FieldError> {
    if raw >= 1 {
        Ok(raw)
    } else {
        Err(FieldError::new(field, "Ensure this value is at least 1."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(req: ListRequest<'_>) -> Result<UserQuery, Vec<String>> {
        UserQuery::parse(&req).map_err(|e| e.into_iter().map(|f| f.field).collect())
    }

    #[test]
    fn an_empty_request_is_the_first_page_of_fifty_of_everyone() {
        let q = parse(ListRequest::default()).unwrap();
        assert_eq!(q.limit(), 50);
        assert_eq!(
            *q.filter(),
            AccountFilter {
                limit: 51,
                ..AccountFilter::default()
            }
        );
    }

    #[test]
    fn search_text_is_folded_and_its_wildcards_escaped() {
        let q = parse(ListRequest {
            q: "  ＡＬ_i%c\\E ",
            ..Default::default()
        })
        .unwrap();
        assert_eq!(q.filter().pattern.as_deref(), Some(r"%al\_i\%c\\e%"));
    }

    #[test]
    fn bad_fields_are_all_named() {
        let long = "x".repeat(MAX_QUERY_CHARS + 1);
        assert_eq!(
            parse(ListRequest {
                q: &long,
                limit: 501,
                cursor: "!!",
                ..Default::default()
            })
            .unwrap_err(),
            ["q", "limit", "cursor"]
        );
        assert_eq!(
            parse(ListRequest {
                q: "a\0b",
                ..Default::default()
            })
            .unwrap_err(),
            ["q"]
        );
        let edge = "é".repeat(MAX_QUERY_CHARS);
        assert!(
            parse(ListRequest {
                q: &edge,
                limit: 500,
                ..Default::default()
            })
            .is_ok()
        );
    }

    #[test]
    fn cursors_round_trip_and_anything_else_is_refused() {
        let q = parse(ListRequest {
            cursor: &encode_cursor(42),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(q.filter().before_id, Some(42));
        for bad in [
            "!!!".to_owned(),
            URL_SAFE_NO_PAD.encode("0"),
            URL_SAFE_NO_PAD.encode("-5"),
            URL_SAFE_NO_PAD.encode("+5"),
            URL_SAFE_NO_PAD.encode("99999999999999999999"),
            URL_SAFE_NO_PAD.encode("4\u{0}2"),
            "A".repeat(100),
        ] {
            assert_eq!(
                parse(ListRequest {
                    cursor: &bad,
                    ..Default::default()
                })
                .unwrap_err(),
                ["cursor"],
                "{bad}"
            );
        }
    }

    #[test]
    fn ids_must_be_positive() {
        assert_eq!(user_id("user_id", 1).unwrap(), 1);
        assert_eq!(user_id("user_id", 0).unwrap_err().field, "user_id");
        assert_eq!(user_id("user_id", -3).unwrap_err().field, "user_id");
    }
}
