//! The rules an administrator's change of an account obeys, as pure
//! functions of the state the store locked for the decision.

use crate::store::{AccountChange, AccountView};

/// Why a change is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It would leave no active administrator.
    LastAdmin,
    /// The acting administrator is no longer one (another change made
    /// before this one demoted, deactivated or deleted them).
    ActorNotAdmin,
    /// Activation of an account that has not verified its email: only the
    /// mailbox owner's code may activate the password someone registered.
    NotVerified,
}

/// Whether `change` to `target` may go ahead, where `admins` are the ids of
/// every active administrator now and `actor` the acting administrator's id
/// (`None`: an operator at the command line).
///
/// The last-administrator rule comes first: of two administrators demoting
/// each other at one instant, the one decided second is refused because it
/// would remove the last administrator, which says what happened.
pub fn check(
    change: AccountChange,
    target: &AccountView,
    admins: &[i64],
    actor: Option<i64>,
) -> Result<(), Refusal> {
    let removes_an_admin = target.is_active_admin()
        && match change {
            AccountChange::Update {
                is_active,
                is_staff,
            } => is_active == Some(false) || is_staff == Some(false),
            AccountChange::Delete => true,
        };
    if removes_an_admin && admins.iter().all(|&id| id == target.id) {
        return Err(Refusal::LastAdmin);
    }
    if let Some(actor) = actor
        && !admins.contains(&actor)
    {
        return Err(Refusal::ActorNotAdmin);
    }
    if let AccountChange::Update {
        is_active: Some(true),
        ..
    } = change
        && target.unverified()
    {
        return Err(Refusal::NotVerified);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: i64, is_active: bool, is_staff: bool, verified: bool) -> AccountView {
        AccountView {
            id,
            username: format!("u{id}"),
            email: format!("u{id}@example.com"),
            is_active,
            is_staff,
            created_at: 0,
            verified_at: verified.then_some(1),
            last_login_at: None,
        }
    }

    const DEMOTE: AccountChange = AccountChange::Update {
        is_active: None,
        is_staff: Some(false),
    };
    const DEACTIVATE: AccountChange = AccountChange::Update {
        is_active: Some(false),
        is_staff: None,
    };
    const ACTIVATE: AccountChange = AccountChange::Update {
        is_active: Some(true),
        is_staff: None,
    };

    #[test]
    fn the_last_active_admin_cannot_be_demoted_deactivated_or_deleted() {
        let only = account(1, true, true, true);
        for change in [DEMOTE, DEACTIVATE, AccountChange::Delete] {
            assert_eq!(
                check(change, &only, &[1], Some(1)),
                Err(Refusal::LastAdmin),
                "{change:?}"
            );
            assert_eq!(
                check(change, &only, &[1], None),
                Err(Refusal::LastAdmin),
                "{change:?} by an operator"
            );
            assert_eq!(check(change, &only, &[1, 2], Some(2)), Ok(()));
        }
    }

    #[test]
    fn changes_that_keep_an_admin_pass() {
        let only = account(1, true, true, true);
        let grant_and_keep = AccountChange::Update {
            is_active: Some(true),
            is_staff: Some(true),
        };
        assert_eq!(check(grant_and_keep, &only, &[1], Some(1)), Ok(()));
        // Not an active admin: removing it removes none.
        let inactive_staff = account(3, false, true, true);
        assert_eq!(
            check(AccountChange::Delete, &inactive_staff, &[1], Some(1)),
            Ok(())
        );
        // With no admin at all (an operator's database), ordinary accounts
        // can still be changed.
        assert_eq!(
            check(DEACTIVATE, &account(4, true, false, true), &[], None),
            Ok(())
        );
    }

    #[test]
    fn an_actor_who_is_no_longer_an_admin_is_refused() {
        let target = account(5, true, false, true);
        assert_eq!(
            check(DEACTIVATE, &target, &[1], Some(2)),
            Err(Refusal::ActorNotAdmin)
        );
        assert_eq!(check(DEACTIVATE, &target, &[1], None), Ok(()));
    }

    #[test]
    fn an_unverified_account_is_not_activated_but_a_deactivated_one_is() {
        assert_eq!(
            check(ACTIVATE, &account(6, false, false, false), &[1], Some(1)),
            Err(Refusal::NotVerified)
        );
        assert_eq!(
            check(ACTIVATE, &account(7, false, false, true), &[1], Some(1)),
            Ok(())
        );
    }
}
