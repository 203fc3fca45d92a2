//! Recording attempts, shared by logins and password changes and resets:
//! an attempt is begun once ([`crate::attempt::Try`]), its try reserved
//! against the brute-force counters before any password work, and every
//! outcome written to the outbox in the transaction that applies its
//! effects.

use crate::{
    attempt::{AttemptKind, RejectReason, Try},
    context::ClientContext,
    domain::LoginIdentifier,
    error::Error,
    store::{AuthStore, LoginEffects, OutboxEntry, ReservedTry, User},
    throttle::{LoginKeys, wait},
};

use super::AuthApi;

impl<S: AuthStore> AuthApi<S> {
    /// An attempt of `kind` naming its account by `identifier`, at `at`.
    pub(super) fn begin<'a>(
        &self,
        kind: AttemptKind,
        ctx: &'a ClientContext,
        identifier: &str,
        at: time::OffsetDateTime,
    ) -> Try<'a> {
        Try {
            kind,
            ctx,
            identifier: LoginIdentifier::new(identifier),
            client: self.client(ctx),
            at,
        }
    }

    /// The outbox entry of `attempt` with `outcome` (tallied when a
    /// refusal).
    pub(super) fn entry(
        &self,
        attempt: &Try<'_>,
        user: Option<&User>,
        outcome: Result<(), RejectReason>,
    ) -> OutboxEntry {
        attempt.entry(user, outcome, self.refused_tally_window)
    }

    /// Writes the attempt to the outbox (with what it changes) and wakes
    /// the forwarder. Logins are counted in `login_attempts_total`. A
    /// success whose account was deactivated or deleted after its password
    /// was checked is recorded as `inactive` instead, and is
    /// [`Error::BadCredentials`].
    pub(super) async fn record(
        &self,
        attempt: &Try<'_>,
        user: Option<&User>,
        outcome: Result<(), RejectReason>,
        effects: LoginEffects<'_>,
    ) -> Result<(), Error> {
        if !self.record_once(attempt, user, outcome, effects).await? {
            tracing::info!(
                user_id = user.map(|u| u.id),
                "account deactivated during its login: refused"
            );
            self.record_once(
                attempt,
                user,
                Err(RejectReason::Inactive),
                LoginEffects::Nothing,
            )
            .await?;
            return Err(Error::BadCredentials);
        }
        Ok(())
    }

    /// [`Self::record`]'s one write; false when the store refused a
    /// success (see [`AuthStore::record_login`]).
    async fn record_once(
        &self,
        attempt: &Try<'_>,
        user: Option<&User>,
        outcome: Result<(), RejectReason>,
        effects: LoginEffects<'_>,
    ) -> Result<bool, Error> {
        let entry = self.entry(attempt, user, outcome);
        if !self.store.record_login(&entry, effects).await? {
            return Ok(false);
        }
        self.outbox_signal.notify_one();
        if attempt.kind == AttemptKind::Login {
            crate::attempt::count(outcome);
        }
        tracing::info!(
            event_id = %entry.event_id,
            kind = attempt.kind.code(),
            successful = outcome.is_ok(),
            reason = outcome.err().map_or("", RejectReason::code),
            user_id = user.map(|u| u.id),
            "login attempt"
        );
        Ok(true)
    }

    /// Counts the try before, and decides it without, looking at the
    /// password: a refused attempt says nothing about whether the password
    /// was right, and a burst gets no more password checks than the
    /// thresholds allow. A refusal is recorded and answered as throttled.
    pub(super) async fn reserve(
        &self,
        attempt: &Try<'_>,
        keys: &LoginKeys,
        user: Option<&User>,
    ) -> Result<ReservedTry, Error> {
        let now = attempt.at.unix_timestamp();
        match self
            .store
            .reserve_login(keys, &self.brute_force, now)
            .await?
            .granted()
        {
            Ok(reserved) => Ok(reserved),
            Err((reason, until)) => {
                self.record(attempt, user, Err(reason), LoginEffects::Nothing)
                    .await?;
                Err(Error::Throttled {
                    retry_after: wait(until, now),
                })
            }
        }
    }

    /// Records a failed attempt that changes nothing.
    pub(super) async fn record_failure(
        &self,
        attempt: &Try<'_>,
        user: Option<&User>,
        reason: RejectReason,
    ) -> Result<(), Error> {
        self.record(attempt, user, Err(reason), LoginEffects::Nothing)
            .await
    }
}
