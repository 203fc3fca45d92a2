//! The SQL both backends run, written once and instantiated per driver.

/// Implements [`super::AuthStore`] for `SqlStore<$db>`.
macro_rules! impl_auth_store {
    ($db:ty) => {
        impl $crate::store::AuthStore for $crate::store::SqlStore<$db> {
            async fn create_user(
                &self,
                u: $crate::store::NewUser<'_>,
            ) -> Result<$crate::store::User, $crate::store::StoreError> {
                let mut conn = self.write().await?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO users (username, username_lower, email, email_lower, password_hash, is_active, is_staff, created_at, verified_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $6 THEN $8 END)
                     RETURNING id",
                )
                .bind(u.username)
                .bind(u.username_lower)
                .bind(u.email)
                .bind(u.email_lower)
                .bind(u.password_hash)
                .bind(u.is_active)
                .bind(u.is_staff)
                .bind(u.now)
                .fetch_one(&mut *conn)
                .await
                .map_err($crate::store::unique_violation)?;
                Ok($crate::store::User {
                    id,
                    username: u.username.to_owned(),
                    email: u.email.to_owned(),
                    password_hash: u.password_hash.to_owned(),
                    is_active: u.is_active,
                    is_staff: u.is_staff,
                    sessions_revoked_at: None,
                })
            }

            async fn user_by_login(
                &self,
                key: &str,
            ) -> Result<Option<$crate::store::User>, $crate::store::StoreError> {
                // A username may itself look like an email; an exact username
                // match wins over another account's email.
                Ok(sqlx::query_as(
                    "SELECT id, username, email, password_hash, is_active, is_staff, sessions_revoked_at FROM users
                     WHERE username_lower = $1 OR email_lower = $1
                     ORDER BY CASE WHEN username_lower = $1 THEN 0 ELSE 1 END
                     LIMIT 1",
                )
                .bind(key)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn user_by_email(
                &self,
                email_lower: &str,
            ) -> Result<Option<$crate::store::User>, $crate::store::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, username, email, password_hash, is_active, is_staff, sessions_revoked_at FROM users WHERE email_lower = $1",
                )
                .bind(email_lower)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn set_password_hash(
                &self,
                user_id: i64,
                password_hash: &str,
            ) -> Result<(), $crate::store::StoreError> {
                let mut conn = self.write().await?;
                sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                    .bind(user_id)
                    .bind(password_hash)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            async fn make_staff(&self, user_id: i64) -> Result<(), $crate::store::StoreError> {
                let mut conn = self.write().await?;
                sqlx::query("UPDATE users SET is_staff = TRUE WHERE id = $1")
                    .bind(user_id)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            async fn user_by_id(
                &self,
                id: i64,
            ) -> Result<Option<$crate::store::User>, $crate::store::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, username, email, password_hash, is_active, is_staff, sessions_revoked_at FROM users WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn put_code(
                &self,
                user_id: i64,
                code: &$crate::store::StoredCode,
                resend_cutoff: i64,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut conn = self.write().await?;
                // The WHERE on the update makes the resend throttle atomic:
                // two racing requests cannot both replace a fresh code.
                let done = sqlx::query(
                    "INSERT INTO verification_codes (user_id, code_hash, salt, created_at, expires_at, tries)
                     VALUES ($1, $2, $3, $4, $5, 0)
                     ON CONFLICT (user_id) DO UPDATE SET
                        code_hash = excluded.code_hash, salt = excluded.salt,
                        created_at = excluded.created_at, expires_at = excluded.expires_at, tries = 0
                     WHERE verification_codes.created_at <= $6",
                )
                .bind(user_id)
                .bind(&code.code_hash)
                .bind(&code.salt)
                .bind(code.created_at)
                .bind(code.expires_at)
                .bind(resend_cutoff)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn code(
                &self,
                user_id: i64,
            ) -> Result<Option<$crate::store::StoredCode>, $crate::store::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT code_hash, salt, created_at, expires_at, tries FROM verification_codes WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn reserve_code_try(
                &self,
                user_id: i64,
                max_tries: i32,
            ) -> Result<Option<$crate::store::StoredCode>, $crate::store::StoreError> {
                let mut conn = self.write().await?;
                Ok(sqlx::query_as(
                    "UPDATE verification_codes SET tries = tries + 1
                     WHERE user_id = $1 AND tries < $2
                     RETURNING code_hash, salt, created_at, expires_at, tries",
                )
                .bind(user_id)
                .bind(max_tries)
                .fetch_optional(&mut *conn)
                .await?)
            }

            async fn activate_with_code(
                &self,
                user_id: i64,
                code_hash: &[u8],
                now: i64,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut conn = self.write().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let deleted = sqlx::query(
                    "DELETE FROM verification_codes WHERE user_id = $1 AND code_hash = $2",
                )
                .bind(user_id)
                .bind(code_hash)
                .execute(&mut *tx)
                .await?;
                if deleted.rows_affected() != 1 {
                    return Ok(false);
                }
                sqlx::query("UPDATE users SET is_active = TRUE, verified_at = $2 WHERE id = $1")
                    .bind(user_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn reserve_login(
                &self,
                keys: &$crate::throttle::LoginKeys,
                policy: &$crate::throttle::BruteForcePolicy,
                now: i64,
            ) -> Result<$crate::store::LoginReservation, $crate::store::StoreError> {
                use $crate::store::{LoginReservation, ReservedTry};
                let mut conn = self.write().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                // Always pair, then account, then IP: every transaction that
                // locks these rows takes them in this order, so two of them
                // never wait on each other in a cycle. A refusal returns
                // without committing: dropping the transaction rolls back
                // the counts taken before the blocked key.
                let Some((pair, _)) =
                    reserve_hit(&mut *tx, &keys.pair, now, policy.failure_reset).await?
                else {
                    return Ok(refusal(&mut *tx, keys, now).await?);
                };
                let known_client = match keys.user_id {
                    Some(user_id) => sqlx::query_scalar::<_, i64>(
                        "SELECT last_login FROM known_clients
                         WHERE user_id = $1 AND client = $2 AND last_login > $3",
                    )
                    .bind(user_id)
                    .bind(&keys.client)
                    .bind(now - policy.known_client_ttl)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some(),
                    None => false,
                };
                let account = if known_client {
                    None
                } else {
                    let Some((account, _)) =
                        reserve_hit(&mut *tx, &keys.account, now, policy.failure_reset).await?
                    else {
                        return Ok(refusal(&mut *tx, keys, now).await?);
                    };
                    Some(policy.account(account, now))
                };
                let Some((ip, ip_window_start)) =
                    reserve_hit(&mut *tx, &keys.ip, now, policy.ip_window).await?
                else {
                    return Ok(refusal(&mut *tx, keys, now).await?);
                };
                let updates = [
                    (&keys.pair, Some(policy.pair(pair, now))),
                    (&keys.account, account),
                    (&keys.ip, Some(policy.ip(ip, now))),
                ];
                for (key, update) in updates {
                    if let Some(update) = update.filter(|u| u.started) {
                        apply(&mut *tx, key, update).await?;
                    }
                }
                tx.commit().await?;
                Ok(LoginReservation::Granted(ReservedTry {
                    known_client,
                    lock_started: account.is_some_and(|a| a.started),
                    ip_window_start,
                }))
            }

            async fn record_login(
                &self,
                attempt: &$crate::store::OutboxEntry,
                effects: $crate::store::LoginEffects<'_>,
            ) -> Result<(), $crate::store::StoreError> {
                let mut conn = self.write().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                // The outbox write goes first: on SQLite a transaction that
                // starts by writing takes the lock at once instead of failing
                // to upgrade a read lock under contention.
                match &attempt.tally {
                    None => {
                        sqlx::query(
                            "INSERT INTO attempt_outbox (event_id, payload, created_at) VALUES ($1, $2, $3)",
                        )
                        .bind(&attempt.event_id)
                        .bind(&attempt.payload)
                        .bind(attempt.created_at)
                        .execute(&mut *tx)
                        .await?;
                    }
                    // Counted into the key's open row, or opens it. The
                    // forwarder closes a row (clearing its key) in one
                    // statement, so a refusal lands in a row before it is
                    // read or in a new one, never in one already sent.
                    Some(tally) => {
                        sqlx::query(
                            "INSERT INTO attempt_outbox
                                (event_id, payload, created_at, tally_key, due_at, last_at)
                             VALUES ($1, $2, $3, $4, $5, $6)
                             ON CONFLICT (tally_key) DO UPDATE SET
                                tally_count = attempt_outbox.tally_count + 1,
                                last_at = CASE WHEN excluded.last_at > attempt_outbox.last_at
                                               THEN excluded.last_at ELSE attempt_outbox.last_at END",
                        )
                        .bind(&attempt.event_id)
                        .bind(&attempt.payload)
                        .bind(attempt.created_at)
                        .bind(&tally.key)
                        .bind(tally.due_at)
                        .bind(attempt.occurred_micros)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                if let $crate::store::LoginEffects::Success {
                    refresh,
                    keys,
                    reserved,
                } = effects
                {
                    insert_refresh(&mut *tx, refresh).await?;
                    // Row by row in the order reservations lock them (see
                    // `reserve_login`), never one statement over both keys.
                    // A known client never touched the account counter, and
                    // clearing it would hand whoever is guessing elsewhere
                    // a fresh set of tries each time the owner logs in.
                    let mut cleared = vec![&keys.pair];
                    if !reserved.known_client {
                        cleared.push(&keys.account);
                    }
                    for key in cleared {
                        sqlx::query("DELETE FROM throttle WHERE key = $1")
                            .bind(key)
                            .execute(&mut *tx)
                            .await?;
                    }
                    sqlx::query(
                        "INSERT INTO known_clients (user_id, client, last_login) VALUES ($1, $2, $3)
                         ON CONFLICT (user_id, client) DO UPDATE SET last_login = excluded.last_login",
                    )
                    .bind(refresh.user_id)
                    .bind(&keys.client)
                    .bind(refresh.issued_at)
                    .execute(&mut *tx)
                    .await?;
                    // Only to the window it was taken from, and not once a
                    // block has started (which reset the count): the try
                    // that reaches the IP threshold starts the block
                    // whatever its outcome.
                    sqlx::query(
                        "UPDATE throttle SET hits = hits - 1
                         WHERE key = $1 AND window_start = $2 AND hits > 0",
                    )
                    .bind(&keys.ip)
                    .bind(reserved.ip_window_start)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn rate_hit(
                &self,
                key: &str,
                now: i64,
                window: i64,
            ) -> Result<(i64, i64), $crate::store::StoreError> {
                let mut conn = self.write().await?;
                let (c, start) = count_hit(&mut *conn, key, now, window).await?;
                Ok((c.hits, start))
            }

            async fn unlock_account(&self, user_id: i64) -> Result<u64, $crate::store::StoreError> {
                let mut conn = self.write().await?;
                let done = sqlx::query("DELETE FROM throttle WHERE key = $1 OR key LIKE $2")
                    .bind($crate::throttle::account_key(user_id))
                    .bind(format!("{}%", $crate::throttle::pair_prefix(user_id)))
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn throttle_prune(
                &self,
                before: i64,
                now: i64,
                known_before: i64,
            ) -> Result<u64, $crate::store::StoreError> {
                let mut conn = self.write().await?;
                let done = sqlx::query("DELETE FROM throttle WHERE window_start < $1 AND blocked_until <= $2")
                    .bind(before)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                let known = sqlx::query("DELETE FROM known_clients WHERE last_login < $1")
                    .bind(known_before)
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected() + known.rows_affected())
            }

            async fn rotate_refresh(
                &self,
                jti: &str,
                now: i64,
                next: &$crate::store::NewRefreshToken,
                family_limit: $crate::throttle::Limit,
            ) -> Result<$crate::store::Rotation, $crate::store::StoreError> {
                if let Some(batches) = &self.rotations {
                    return batches.rotate(jti, now, next, family_limit).await;
                }
                let mut conn = self.write().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let outcome = rotate_in_tx(&mut *tx, jti, now, next, family_limit).await?;
                tx.commit().await?;
                Ok(outcome)
            }

            async fn logout_family(
                &self,
                jti: &str,
                now: i64,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut conn = self.write().await?;
                let live = sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $2
                     WHERE revoked_at IS NULL AND family_id = (
                        SELECT family_id FROM refresh_tokens
                        WHERE jti = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2)",
                )
                .bind(jti)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                if live.rows_affected() > 0 {
                    return Ok(true);
                }
                // Logging out with an already used token is reuse: the
                // family goes as on refresh, and the caller is told no.
                sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $2
                     WHERE revoked_at IS NULL AND family_id = (
                        SELECT family_id FROM refresh_tokens WHERE jti = $1 AND used_at IS NOT NULL)",
                )
                .bind(jti)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                Ok(false)
            }

            async fn live_refresh_owner(
                &self,
                jti: &str,
                now: i64,
            ) -> Result<Option<i64>, $crate::store::StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT user_id FROM refresh_tokens
                     WHERE jti = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
                )
                .bind(jti)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn logout_user(
                &self,
                user_id: i64,
                now: i64,
            ) -> Result<u64, $crate::store::StoreError> {
                let mut conn = self.write().await?;
                let families: Vec<String> = sqlx::query_scalar(
                    "UPDATE refresh_tokens SET revoked_at = $2
                     WHERE user_id = $1 AND revoked_at IS NULL
                     RETURNING family_id",
                )
                .bind(user_id)
                .bind(now)
                .fetch_all(&mut *conn)
                .await?;
                // Never moved back: a replica with a slower clock must not
                // revive tokens another replica's logout already revoked.
                sqlx::query(
                    "UPDATE users SET sessions_revoked_at = $2
                     WHERE id = $1 AND (sessions_revoked_at IS NULL OR sessions_revoked_at < $2)",
                )
                .bind(user_id)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                let distinct: std::collections::HashSet<String> = families.into_iter().collect();
                Ok(u64::try_from(distinct.len()).unwrap_or(u64::MAX))
            }

            async fn signing_keys(
                &self,
            ) -> Result<Vec<$crate::store::SigningKeyRow>, $crate::store::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT kid, secret, created_at, not_before FROM signing_keys ORDER BY not_before DESC, created_at DESC, kid DESC",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn add_signing_key(
                &self,
                key: &$crate::store::SigningKeyRow,
            ) -> Result<(), $crate::store::StoreError> {
                let mut conn = self.write().await?;
                sqlx::query(
                    "INSERT INTO signing_keys (kid, secret, created_at, not_before) VALUES ($1, $2, $3, $4)",
                )
                .bind(&key.kid)
                .bind(&key.secret)
                .bind(key.created_at)
                .bind(key.not_before)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            async fn outbox_oldest(
                &self,
                limit: i64,
                now: i64,
            ) -> Result<Vec<$crate::store::OutboxRow>, $crate::store::StoreError> {
                // Looked for on the read pool first: closing takes the write
                // connection, and this runs every few milliseconds.
                let due: Option<i64> = sqlx::query_scalar(
                    "SELECT seq FROM attempt_outbox WHERE tally_key IS NOT NULL AND due_at <= $1 LIMIT 1",
                )
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                if due.is_some() {
                    let mut conn = self.write().await?;
                    sqlx::query(
                        "UPDATE attempt_outbox SET tally_key = NULL WHERE tally_key IS NOT NULL AND due_at <= $1",
                    )
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                }
                Ok(sqlx::query_as(
                    "SELECT seq, payload, tally_count, last_at FROM attempt_outbox
                     WHERE tally_key IS NULL ORDER BY seq LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn outbox_remove(&self, seqs: &[i64]) -> Result<(), $crate::store::StoreError> {
                let mut conn = self.write().await?;
                // Exact ids, never a range: a row committed late with a lower
                // sequence number must not be deleted unsent.
                for chunk in seqs.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("DELETE FROM attempt_outbox WHERE seq IN (");
                    let mut list = qb.separated(", ");
                    for seq in chunk {
                        list.push_bind(*seq);
                    }
                    list.push_unseparated(")");
                    qb.build().execute(&mut *conn).await?;
                }
                Ok(())
            }

            async fn outbox_set_aside(
                &self,
                seq: i64,
                refusal: &str,
                now: i64,
            ) -> Result<(), $crate::store::StoreError> {
                let mut conn = self.write().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query(
                    "INSERT INTO refused_attempts
                        (event_id, payload, created_at, refused_at, refusal, tally_count, last_at)
                     SELECT event_id, payload, created_at, $2, $3, tally_count, last_at
                     FROM attempt_outbox WHERE seq = $1
                     ON CONFLICT (event_id) DO NOTHING",
                )
                .bind(seq)
                .bind(now)
                .bind(refusal)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM attempt_outbox WHERE seq = $1")
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn refused_len(&self) -> Result<i64, $crate::store::StoreError> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM refused_attempts")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn outbox_len(&self) -> Result<i64, $crate::store::StoreError> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM attempt_outbox")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn check_writable(&self, now: i64) -> Result<(), $crate::store::StoreError> {
                // On the connection every write uses (SQLite's single
                // writer): that is the one that must be able to write.
                let mut conn = self.write().await?;
                sqlx::query(
                    "INSERT INTO readiness_heartbeat (id, written_at) VALUES (1, $1) \
                     ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at",
                )
                .bind(now)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }
        }

        async fn insert_refresh(
            conn: &mut <$db as sqlx::Database>::Connection,
            r: &$crate::store::NewRefreshToken,
        ) -> Result<(), sqlx::Error> {
            sqlx::query(
                "INSERT INTO refresh_tokens (jti, family_id, user_id, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&r.jti)
            .bind(&r.family_id)
            .bind(r.user_id)
            .bind(r.issued_at)
            .bind(r.expires_at)
            .execute(conn)
            .await?;
            Ok(())
        }

        /// One refresh-token rotation inside the caller's transaction, which
        /// the caller commits (alone, or with a batch of others). Three
        /// statements on the common path, each a round trip to the driver:
        /// use the token and read its owner, count the family's refresh,
        /// store the successor.
        async fn rotate_in_tx(
            conn: &mut <$db as sqlx::Database>::Connection,
            jti: &str,
            now: i64,
            next: &$crate::store::NewRefreshToken,
            family_limit: $crate::throttle::Limit,
        ) -> Result<$crate::store::Rotation, sqlx::Error> {
            use $crate::store::Rotation;
            let used: Option<(String, i64, Option<String>, Option<bool>, Option<bool>)> =
                sqlx::query_as(
                    "UPDATE refresh_tokens SET used_at = $2
                     WHERE jti = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2
                     RETURNING family_id, user_id,
                        (SELECT username FROM users WHERE id = refresh_tokens.user_id),
                        (SELECT is_active FROM users WHERE id = refresh_tokens.user_id),
                        (SELECT is_staff FROM users WHERE id = refresh_tokens.user_id)",
                )
                .bind(jti)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await?;
            let Some((family_id, user_id, username, is_active, is_staff)) = used else {
                let seen: Option<(String, Option<i64>)> =
                    sqlx::query_as("SELECT family_id, used_at FROM refresh_tokens WHERE jti = $1")
                        .bind(jti)
                        .fetch_optional(&mut *conn)
                        .await?;
                return Ok(match seen {
                    Some((family_id, Some(_))) => {
                        revoke_family(&mut *conn, &family_id, now).await?;
                        Rotation::Reused
                    }
                    _ => Rotation::Invalid,
                });
            };
            let rate_key = format!("rf:{family_id}");
            let (hits, start) = count_hit(&mut *conn, &rate_key, now, family_limit.window).await?;
            if let Some(wait) = family_limit.retry_after(hits.hits, start, now) {
                // Undo both writes exactly (the transaction may hold other
                // rotations, so it is not rolled back): the token stays
                // usable once the window passes. Over the limit means the
                // count was incremented within a running window (a fresh
                // window starts at 1, and every limit is at least 1), so one
                // decrement restores it.
                sqlx::query("UPDATE throttle SET hits = hits - 1 WHERE key = $1")
                    .bind(&rate_key)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("UPDATE refresh_tokens SET used_at = NULL WHERE jti = $1")
                    .bind(jti)
                    .execute(&mut *conn)
                    .await?;
                return Ok(Rotation::Throttled(wait));
            }
            Ok(match (username, is_active, is_staff) {
                (Some(username), Some(true), Some(is_staff)) => {
                    let next = $crate::store::NewRefreshToken {
                        family_id,
                        user_id,
                        ..next.clone()
                    };
                    insert_refresh(&mut *conn, &next).await?;
                    Rotation::Rotated($crate::store::TokenOwner {
                        id: user_id,
                        username,
                        is_staff,
                    })
                }
                // Disabled, or gone.
                _ => {
                    revoke_family(&mut *conn, &family_id, now).await?;
                    Rotation::Inactive
                }
            })
        }

        /// [`reserve_hit`] for a key nothing ever blocks (rate limits, the
        /// refresh family): always counted.
        async fn count_hit(
            conn: &mut <$db as sqlx::Database>::Connection,
            key: &str,
            now: i64,
            window: i64,
        ) -> Result<($crate::throttle::Counter, i64), sqlx::Error> {
            // Only login keys get a `blocked_until`; a refusal here would
            // mean a rate key was blocked, which nothing does.
            reserve_hit(conn, key, now, window)
                .await?
                .ok_or(sqlx::Error::RowNotFound)
        }

        /// Counts one event under `key` in a fixed window of `window` seconds
        /// that starts over once it has passed (locks and tiers with it),
        /// unless `key` is blocked at `now`: then nothing is counted and
        /// `None` comes back. One statement, so the check and the count
        /// cannot be split by a concurrent try. Also returns when the
        /// window began.
        async fn reserve_hit(
            conn: &mut <$db as sqlx::Database>::Connection,
            key: &str,
            now: i64,
            window: i64,
        ) -> Result<Option<($crate::throttle::Counter, i64)>, sqlx::Error> {
            let row: Option<(i64, i64, i64, i64)> = sqlx::query_as(
                "INSERT INTO throttle (key, hits, window_start) VALUES ($1, 1, $2)
                 ON CONFLICT (key) DO UPDATE SET
                    hits = CASE WHEN throttle.window_start <= $3 THEN 1 ELSE throttle.hits + 1 END,
                    strikes = CASE WHEN throttle.window_start <= $3 THEN 0 ELSE throttle.strikes END,
                    window_start = CASE WHEN throttle.window_start <= $3 THEN $2 ELSE throttle.window_start END
                 WHERE throttle.blocked_until <= $2
                 RETURNING hits, blocked_until, strikes, window_start",
            )
            .bind(key)
            .bind(now)
            .bind(now - window)
            .fetch_optional(conn)
            .await?;
            Ok(row.map(|(hits, blocked_until, strikes, window_start)| {
                (
                    $crate::throttle::Counter {
                        hits,
                        blocked_until,
                        strikes,
                    },
                    window_start,
                )
            }))
        }

        /// Why a login try was refused: the blocks running on its keys.
        async fn refusal(
            conn: &mut <$db as sqlx::Database>::Connection,
            keys: &$crate::throttle::LoginKeys,
            now: i64,
        ) -> Result<$crate::store::LoginReservation, sqlx::Error> {
            let blocks: Vec<(String, i64)> = sqlx::query_as(
                "SELECT key, blocked_until FROM throttle
                 WHERE key IN ($1, $2, $3) AND blocked_until > $4",
            )
            .bind(&keys.pair)
            .bind(&keys.account)
            .bind(&keys.ip)
            .bind(now)
            .fetch_all(conn)
            .await?;
            Ok($crate::store::LoginReservation::Refused {
                until: blocks.iter().map(|(_, u)| *u).max().unwrap_or(now + 1),
                account_locked: blocks.iter().any(|(k, _)| *k == keys.account),
            })
        }

        /// Writes back what the policy decided for one counter.
        async fn apply(
            conn: &mut <$db as sqlx::Database>::Connection,
            key: &str,
            u: $crate::throttle::Update,
        ) -> Result<(), sqlx::Error> {
            sqlx::query("UPDATE throttle SET hits = $2, blocked_until = $3, strikes = $4 WHERE key = $1")
                .bind(key)
                .bind(u.hits)
                .bind(u.blocked_until)
                .bind(u.strikes)
                .execute(conn)
                .await?;
            Ok(())
        }

        async fn revoke_family(
            conn: &mut <$db as sqlx::Database>::Connection,
            family_id: &str,
            now: i64,
        ) -> Result<(), sqlx::Error> {
            sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL")
                .bind(family_id)
                .bind(now)
                .execute(conn)
                .await?;
            Ok(())
        }
    };
}

pub(super) use impl_auth_store;
