//! Page sizes and the keyset cursor of a listing.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use super::{Micros, StoredAttempt};
use crate::error::Error;

/// Position after the last row of a page, in listing order. Opaque to
/// clients: they only hand back what `encode` produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// `occurred_at` of the last row returned.
    pub occurred_at: Micros,
    /// `id` of the last row returned, breaking ties between equal times.
    pub id: i64,
}

/// Which way a listing runs through the log, by `(occurred_at, id)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Latest first: what an administrator looking at the log wants.
    #[default]
    NewestFirst,
    /// Earliest first: the old Django service's order, for its clients.
    OldestFirst,
}

impl Order {
    /// `oldest_first` of an audit.v1 request.
    pub fn from_oldest_first(oldest_first: bool) -> Self {
        if oldest_first {
            Self::OldestFirst
        } else {
            Self::NewestFirst
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// In the listing's [`Order`].
    pub attempts: Vec<StoredAttempt>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// Page size when the request leaves it at 0.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size, keeping one response (and one query) bounded.
pub const MAX_LIMIT: u32 = 500;

/// The page size a request asks for, with 0 meaning the default.
fn parse_limit(limit: u32) -> Result<u32, Error> {
    match limit {
        0 => Ok(DEFAULT_LIMIT),
        1..=MAX_LIMIT => Ok(limit),
        _ => Err(Error::invalid("limit", "must be between 1 and 500")),
    }
}

/// Where a listing request starts: page size, position, order; read from
/// the three fields every audit.v1 listing request has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows at most.
    pub limit: u32,
    /// After this row; `None`: from the start.
    pub cursor: Option<Cursor>,
    /// Which way.
    pub order: Order,
}

impl PageRequest {
    /// `limit` 0 is the default size, `cursor` empty the first page.
    pub fn parse(limit: u32, cursor: &str, oldest_first: bool) -> Result<Self, Error> {
        Ok(Self {
            limit: parse_limit(limit)?,
            cursor: match cursor {
                "" => None,
                raw => Some(Cursor::decode(raw)?),
            },
            order: Order::from_oldest_first(oldest_first),
        })
    }
}

impl Cursor {
    /// Base64url of `occurred_at:id`: opaque enough that clients do not build
    /// their own, plain enough to debug.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.occurred_at, self.id))
    }

    /// Reads a cursor produced by [`Cursor::encode`].
    pub fn decode(raw: &str) -> Result<Self, Error> {
        let invalid = || Error::invalid("cursor", "is not a cursor returned by this service");
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
        let (at, id) = text.split_once(':').ok_or_else(invalid)?;
        Ok(Self {
            occurred_at: at.parse().map_err(|_| invalid())?,
            id: id.parse().map_err(|_| invalid())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor {
            occurred_at: -5,
            id: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        // Not base64, base64 of "abc", of "1:x", and empty.
        for bad in ["!!!", "YWJj", "MTp4", ""] {
            let err = Cursor::decode(bad).unwrap_err();
            assert!(err.to_string().contains("cursor"), "{err}");
        }
    }

    #[test]
    fn limits_default_and_are_bounded() {
        assert_eq!(parse_limit(0).unwrap(), 50);
        assert_eq!(parse_limit(500).unwrap(), 500);
        assert_eq!(
            parse_limit(501).unwrap_err().to_string(),
            "limit must be between 1 and 500"
        );
    }
}
