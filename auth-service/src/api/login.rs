//! Logging in: the try is reserved against the brute-force counters
//! before any password work, decided, and recorded in the outbox with what
//! it changes, in that order.

use proto::auth::v1 as pb;

use super::{AuthApi, new_id};
use crate::{
    attempt::{RejectReason, outbox_entry},
    context::ClientContext,
    domain::{FieldError, LoginIdentifier},
    error::Error,
    hasher::Verified,
    store::{AuthStore, LoginEffects, NewRefreshToken, User},
    throttle::{LoginKeys, wait},
};

/// One login try: who sent what, from which counted client, when; the
/// same for every record of it.
struct Try<'a> {
    ctx: &'a ClientContext,
    identifier: LoginIdentifier,
    /// The client key every per-IP counter and tally uses (see
    /// [`crate::throttle::client_key`]).
    client: String,
    at: time::OffsetDateTime,
}

impl<S: AuthStore> AuthApi<S> {
    /// Tells the owner, once per lock, that their account is locked.
    pub(super) fn notify_lock(&self, user: &User) {
        let (mailer, from, to, id) = (
            self.mailer.clone(),
            self.mail_from.clone(),
            user.email.clone(),
            user.id,
        );
        let body = format!(
            "Hello {},\n\nYour account was temporarily locked after many failed sign-in attempts. \
             It unlocks by itself after a short wait. If these attempts were not you, \
             consider changing your password.\n",
            user.username
        );
        tokio::spawn(async move {
            match mailer
                .send(&from, &to, "Your account was temporarily locked", body)
                .await
            {
                Ok(()) => tracing::info!(user_id = id, "lock notification sent"),
                Err(e) => tracing::error!(user_id = id, error = %e, "lock notification failed"),
            }
        });
    }

    /// Writes the attempt to the outbox (with what it changes) and wakes
    /// the forwarder. A success whose account was deactivated or deleted
    /// after its password was checked is recorded as `inactive` instead,
    /// and is [`Error::BadCredentials`].
    async fn record(
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
        let tally = crate::attempt::tally(
            outcome,
            &attempt.client,
            user,
            attempt.at.unix_timestamp(),
            self.refused_tally_window,
        );
        let entry = outbox_entry(
            attempt.ctx,
            &attempt.identifier,
            user,
            outcome,
            attempt.at,
            tally,
        );
        if !self.store.record_login(&entry, effects).await? {
            return Ok(false);
        }
        self.outbox_signal.notify_one();
        crate::attempt::count(outcome);
        tracing::info!(
            event_id = %entry.event_id,
            successful = outcome.is_ok(),
            reason = outcome.err().map_or("", RejectReason::code),
            user_id = user.map(|u| u.id),
            "login attempt"
        );
        Ok(true)
    }

    /// Logs in at `at`: one instant for the whole attempt, its counters,
    /// tokens and log record.
    pub async fn log_in(
        &self,
        ctx: &ClientContext,
        req: pb::LoginRequest,
        at: time::OffsetDateTime,
    ) -> Result<pb::TokenPair, Error> {
        let now = at.unix_timestamp();
        let attempt = Try {
            ctx,
            identifier: LoginIdentifier::new(&req.username),
            client: self.client(ctx),
            at,
        };
        let identifier = &attempt.identifier;
        let mut problems: Vec<FieldError> = req
            .malformed_fields
            .iter()
            .map(|f| FieldError::new(f.clone(), "Malformed value."))
            .collect();
        if problems.is_empty() {
            if identifier.is_empty() {
                problems.push(FieldError::required("username"));
            }
            if req.password.is_empty() {
                problems.push(FieldError::required("password"));
            }
        }
        if !problems.is_empty() {
            self.record(
                &attempt,
                None,
                Err(RejectReason::MalformedRequest),
                LoginEffects::Nothing,
            )
            .await?;
            return Err(Error::Invalid(problems));
        }

        let user = match identifier.lookup() {
            Some(lookup) => self.store.user_by_identifier(&lookup).await?,
            None => None,
        };
        let keys = LoginKeys::new(
            user.as_ref().map(|u| u.id),
            identifier,
            attempt.client.clone(),
        );

        // The try is counted before, and decided without, looking at the
        // password: a refused attempt says nothing about whether the
        // password was right, and a burst gets no more password checks
        // than the thresholds allow.
        let reserved = match self
            .store
            .reserve_login(&keys, &self.brute_force, now)
            .await?
            .granted()
        {
            Ok(reserved) => reserved,
            Err((reason, until)) => {
                self.record(&attempt, user.as_ref(), Err(reason), LoginEffects::Nothing)
                    .await?;
                return Err(Error::Throttled {
                    retry_after: wait(until, now),
                });
            }
        };

        let password = req.password;
        let verified = self
            .hasher
            .verify_stored(
                password.clone(),
                user.as_ref().map(|u| u.password_hash.clone()),
                user.as_ref().is_some_and(|u| !u.password_nfkc),
            )
            .await?;
        let matched = verified != Verified::No;
        let outcome = match &user {
            None => Err(RejectReason::UnknownUser),
            Some(_) if !matched => Err(RejectReason::BadPassword),
            Some(u) if !u.is_active => Err(RejectReason::Inactive),
            Some(_) => Ok(()),
        };
        let (Some(user), Ok(())) = (&user, outcome) else {
            // Inactive stays counted too: otherwise the lock arriving one
            // attempt late would tell a guesser that one password was right.
            self.record(&attempt, user.as_ref(), outcome, LoginEffects::Nothing)
                .await?;
            if reserved.lock_started {
                tracing::warn!(user_id = user.as_ref().map(|u| u.id), "account locked");
                if let Some(user) = &user {
                    self.notify_lock(user);
                }
            }
            return Err(Error::BadCredentials);
        };
        if verified == Verified::Raw || crate::hasher::needs_rehash(&user.password_hash) {
            // The one moment we hold the plain password of a known-good
            // login: upgrade a hash made with older, weaker parameters, or
            // of the text as typed before passwords were normalised.
            let upgraded = self.hasher.hash(password).await?;
            self.store.set_password_hash(user.id, &upgraded).await?;
            tracing::info!(user_id = user.id, "password hash upgraded");
        } else if !user.password_nfkc {
            // A legacy hash the normalised form matched is a hash of that
            // form already: only the flag changes.
            self.store
                .set_password_hash(user.id, &user.password_hash)
                .await?;
        }
        let jti = new_id();
        let pair = self.tokens.issue(user, now, jti.clone())?;
        let refresh = NewRefreshToken {
            jti,
            family_id: new_id(),
            user_id: user.id,
            issued_at: now,
            expires_at: pair.refresh_exp,
        };
        self.record(
            &attempt,
            Some(user),
            Ok(()),
            LoginEffects::Success {
                refresh: &refresh,
                keys: &keys,
                reserved: &reserved,
            },
        )
        .await?;
        Ok(pb::TokenPair {
            access: pair.access,
            refresh: pair.refresh,
        })
    }
}
