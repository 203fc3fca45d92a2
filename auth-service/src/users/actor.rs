//! Who acts on accounts, and from where.

use crate::context::ClientContext;

/// The one acting: an administrator proven by a live access token, or an
/// operator at the command line (who holds the database's credentials),
/// with the client context of the call.
#[derive(Debug, Clone)]
pub struct Actor {
    who: Who,
    client: ClientContext,
}

/// The identity behind an [`Actor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// An administrator's account.
    Admin {
        /// Its id.
        user_id: i64,
        /// Its username, as of the call.
        username: String,
    },
    /// `auth-service user …` on the database directly.
    Operator {
        /// The operating-system user that ran it (`$USER`), when known.
        login: Option<String>,
    },
}

impl Actor {
    /// An administrator. Only `AuthApi::admin_actor` (in `api`) makes
    /// one, after checking the access token and the account.
    pub(crate) fn admin(user_id: i64, username: String, client: ClientContext) -> Self {
        Self {
            who: Who::Admin { user_id, username },
            client,
        }
    }

    /// An operator at the command line of this machine, named by `login`.
    pub fn operator(login: Option<String>) -> Self {
        Self {
            who: Who::Operator { login },
            client: ClientContext {
                ip: String::new(),
                user_agent: Some(format!("auth-service/{} CLI", env!("CARGO_PKG_VERSION"))),
                request_id: uuid::Uuid::new_v4().to_string(),
            },
        }
    }

    /// Who acts.
    pub fn who(&self) -> &Who {
        &self.who
    }

    /// From where: the client context of the call.
    pub fn client(&self) -> &ClientContext {
        &self.client
    }

    /// The acting administrator's account id; `None` for an operator.
    pub fn admin_id(&self) -> Option<i64> {
        match &self.who {
            Who::Admin { user_id, .. } => Some(*user_id),
            Who::Operator { .. } => None,
        }
    }
}
