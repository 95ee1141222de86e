//! SQL of `IdentityStore` and `AuditStore`, shared by both backends like `sql.rs`. Expanded in
//! a child module of each backend's module, so it reaches the pool and `announce` without
//! widening their visibility.
//!
//! Transactions that must see a consistent org (owner counts) first touch the org row with a
//! no-op UPDATE: that takes SQLite's write lock up front and a row lock on Postgres, so two
//! concurrent demotions cannot both pass the "last owner" check.

pub(super) const USER_COLUMNS: &str =
    "id, email, name, password_hash, disabled, failed_logins, locked_until, created_at, updated_at";
pub(super) const MEMBER_SELECT: &str =
    "SELECT m.org_id, o.name AS org_name, m.user_id, u.email, u.name, m.role, m.created_at
     FROM org_members m JOIN orgs o ON o.id = m.org_id JOIN users u ON u.id = m.user_id";
pub(super) const INVITATION_COLUMNS: &str = "id, org_id, email, role, team_id, invited_by, created_at, expires_at, accepted_at, accepted_by, revoked_at";
pub(super) const KEY_POLICY_COLUMNS: &str =
    "hash, owner_user_id, owner_team_id, allowed_models, allowed_providers, rotated_from";
pub(super) const AUDIT_COLUMNS: &str = "seq, org_id, at, actor_type, actor_id, action, target_type, target_id, before_json, after_json, ip, user_agent, prev_hash, hash";

macro_rules! impl_identity_store {
    ($store:ident, $db:ty) => {
        mod identity_impl {
            use super::$store;
            use $crate::store::identity_sql::{AUDIT_COLUMNS, INVITATION_COLUMNS, KEY_POLICY_COLUMNS, MEMBER_SELECT, USER_COLUMNS};
            use $crate::store::sql::KEY_COLUMNS;
            use $crate::store::*;

            type Tx<'a> = sqlx::Transaction<'a, $db>;

            async fn bump_version(tx: &mut Tx<'_>) -> StoreResult<u64> {
                let (v,): (i64,) =
                    sqlx::query_as("UPDATE config_state SET version = version + 1 WHERE id = 1 RETURNING version")
                        .fetch_one(&mut **tx)
                        .await?;
                Ok(u64::try_from(v).unwrap_or(0))
            }

            async fn lock_org(tx: &mut Tx<'_>, org_id: &str) -> StoreResult<()> {
                let done = sqlx::query("UPDATE orgs SET name = name WHERE id = $1").bind(org_id).execute(&mut **tx).await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            }

            async fn owner_count(tx: &mut Tx<'_>, org_id: &str) -> StoreResult<i64> {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM org_members WHERE org_id = $1 AND role = 'owner'")
                    .bind(org_id)
                    .fetch_one(&mut **tx)
                    .await?;
                Ok(n)
            }

            async fn insert_user(tx: &mut Tx<'_>, user: &NewUser, now: i64) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO users (id, email, name, password_hash, disabled, failed_logins, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, FALSE, 0, $5, $5)",
                )
                .bind(&user.id)
                .bind(&user.email)
                .bind(&user.name)
                .bind(&user.password_hash)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            fn json_list(list: &[String]) -> String {
                serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
            }

            async fn insert_key_with_policy(tx: &mut Tx<'_>, key: &NewKey, policy: &KeyPolicy, now: i64) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO api_keys (hash, org_id, name, label, kind, disabled, limit_nanos, limit_reset, include_byok_in_limit, expires_at, created_at, updated_at,
                        owner_user_id, owner_team_id, allowed_models, allowed_providers, rotated_from)
                     VALUES ($1, $2, $3, $4, $5, FALSE, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14, $15)",
                )
                .bind(&key.hash)
                .bind(&key.org_id)
                .bind(&key.name)
                .bind(&key.label)
                .bind(key.kind.as_str())
                .bind(key.limit_nanos)
                .bind(&key.limit_reset)
                .bind(key.include_byok_in_limit)
                .bind(key.expires_at)
                .bind(now)
                .bind(&policy.owner_user_id)
                .bind(&policy.owner_team_id)
                .bind(json_list(&policy.allowed_models))
                .bind(json_list(&policy.allowed_providers))
                .bind(&policy.rotated_from)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            async fn fetch_key_policy(tx: &mut Tx<'_>, org_id: &str, hash: &str) -> StoreResult<KeyPolicy> {
                let row = sqlx::query_as::<_, KeyPolicyRow>(&format!("SELECT {KEY_POLICY_COLUMNS} FROM api_keys WHERE org_id = $1 AND hash = $2"))
                    .bind(org_id)
                    .bind(hash)
                    .fetch_one(&mut **tx)
                    .await?;
                Ok(row.into())
            }

            #[async_trait::async_trait]
            impl IdentityStore for $store {
                async fn create_org(&self, org: &Org, owner_user_id: &str) -> StoreResult<()> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    let version = bump_version(&mut tx).await?;
                    sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)")
                        .bind(&org.id)
                        .bind(&org.name)
                        .bind(org.created_at)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)")
                        .bind(&org.id)
                        .bind(owner_user_id)
                        .bind(org.created_at)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    self.announce(version);
                    Ok(())
                }

                async fn create_user(&self, user: &NewUser) -> StoreResult<UserRecord> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    insert_user(&mut tx, user, now_ms()).await?;
                    tx.commit().await?;
                    self.get_user(&user.id).await
                }

                async fn find_user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
                    Ok(sqlx::query_as::<_, UserRecord>(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
                        .bind(email)
                        .fetch_optional(&self.pool)
                        .await?)
                }

                async fn get_user(&self, user_id: &str) -> StoreResult<UserRecord> {
                    Ok(sqlx::query_as::<_, UserRecord>(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                        .bind(user_id)
                        .fetch_one(&self.pool)
                        .await?)
                }

                async fn record_login_failure(&self, user_id: &str, max_failures: i64, lock_until: i64) -> StoreResult<i64> {
                    // Right-hand sides read the row as it was before the update, on both backends.
                    let (n,): (i64,) = sqlx::query_as(
                        "UPDATE users SET failed_logins = failed_logins + 1,
                            locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until END,
                            updated_at = $4
                         WHERE id = $1 RETURNING failed_logins",
                    )
                    .bind(user_id)
                    .bind(max_failures)
                    .bind(lock_until)
                    .bind(now_ms())
                    .fetch_one(&self.pool)
                    .await?;
                    Ok(n)
                }

                async fn record_login_success(&self, user_id: &str) -> StoreResult<()> {
                    sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1 AND (failed_logins <> 0 OR locked_until IS NOT NULL)")
                        .bind(user_id)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn set_password(&self, user_id: &str, password_hash: &str) -> StoreResult<()> {
                    let done = sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
                        .bind(user_id)
                        .bind(password_hash)
                        .bind(now_ms())
                        .execute(&self.pool)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    Ok(())
                }

                async fn add_member(&self, org_id: &str, user_id: &str, role: Role) -> StoreResult<()> {
                    sqlx::query("INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
                        .bind(org_id)
                        .bind(user_id)
                        .bind(role.as_str())
                        .bind(now_ms())
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn get_member(&self, org_id: &str, user_id: &str) -> StoreResult<MemberRecord> {
                    Ok(sqlx::query_as::<_, MemberRecord>(&format!("{MEMBER_SELECT} WHERE m.org_id = $1 AND m.user_id = $2"))
                        .bind(org_id)
                        .bind(user_id)
                        .fetch_one(&self.pool)
                        .await?)
                }

                async fn list_members(&self, org_id: &str) -> StoreResult<Vec<MemberRecord>> {
                    Ok(sqlx::query_as::<_, MemberRecord>(&format!("{MEMBER_SELECT} WHERE m.org_id = $1 ORDER BY u.email"))
                        .bind(org_id)
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn list_user_orgs(&self, user_id: &str) -> StoreResult<Vec<MemberRecord>> {
                    Ok(sqlx::query_as::<_, MemberRecord>(&format!("{MEMBER_SELECT} WHERE m.user_id = $1 ORDER BY o.name, m.org_id"))
                        .bind(user_id)
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn set_member_role(&self, org_id: &str, user_id: &str, role: Role) -> StoreResult<MemberRecord> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    lock_org(&mut tx, org_id).await?;
                    let done = sqlx::query("UPDATE org_members SET role = $3 WHERE org_id = $1 AND user_id = $2")
                        .bind(org_id)
                        .bind(user_id)
                        .bind(role.as_str())
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    if owner_count(&mut tx, org_id).await? == 0 {
                        return Err(StoreError::Conflict("an org must keep at least one owner".into()));
                    }
                    tx.commit().await?;
                    self.get_member(org_id, user_id).await
                }

                async fn remove_member(&self, org_id: &str, user_id: &str) -> StoreResult<()> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    lock_org(&mut tx, org_id).await?;
                    let done = sqlx::query("DELETE FROM org_members WHERE org_id = $1 AND user_id = $2")
                        .bind(org_id)
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    if owner_count(&mut tx, org_id).await? == 0 {
                        return Err(StoreError::Conflict("an org must keep at least one owner".into()));
                    }
                    sqlx::query("DELETE FROM team_members WHERE org_id = $1 AND user_id = $2")
                        .bind(org_id)
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?;
                    // Keys of someone who left stop working with their access.
                    let disabled = sqlx::query("UPDATE api_keys SET disabled = TRUE, updated_at = $3 WHERE org_id = $1 AND owner_user_id = $2 AND NOT disabled")
                        .bind(org_id)
                        .bind(user_id)
                        .bind(now_ms())
                        .execute(&mut *tx)
                        .await?;
                    if disabled.rows_affected() > 0 {
                        let version = bump_version(&mut tx).await?;
                        tx.commit().await?;
                        self.announce(version);
                    } else {
                        tx.commit().await?;
                    }
                    Ok(())
                }

                async fn create_team(&self, team: &TeamRecord) -> StoreResult<TeamRecord> {
                    sqlx::query("INSERT INTO teams (id, org_id, name, created_at) VALUES ($1, $2, $3, $4)")
                        .bind(&team.id)
                        .bind(&team.org_id)
                        .bind(&team.name)
                        .bind(team.created_at)
                        .execute(&self.pool)
                        .await?;
                    self.get_team(&team.org_id, &team.id).await
                }

                async fn list_teams(&self, org_id: &str) -> StoreResult<Vec<TeamRecord>> {
                    Ok(sqlx::query_as::<_, TeamRecord>("SELECT id, org_id, name, created_at FROM teams WHERE org_id = $1 ORDER BY name")
                        .bind(org_id)
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn get_team(&self, org_id: &str, team_id: &str) -> StoreResult<TeamRecord> {
                    Ok(sqlx::query_as::<_, TeamRecord>("SELECT id, org_id, name, created_at FROM teams WHERE org_id = $1 AND id = $2")
                        .bind(org_id)
                        .bind(team_id)
                        .fetch_one(&self.pool)
                        .await?)
                }

                async fn rename_team(&self, org_id: &str, team_id: &str, name: &str) -> StoreResult<TeamRecord> {
                    let done = sqlx::query("UPDATE teams SET name = $3 WHERE org_id = $1 AND id = $2")
                        .bind(org_id)
                        .bind(team_id)
                        .bind(name)
                        .execute(&self.pool)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    self.get_team(org_id, team_id).await
                }

                async fn delete_team(&self, org_id: &str, team_id: &str) -> StoreResult<()> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    let done = sqlx::query("DELETE FROM teams WHERE org_id = $1 AND id = $2")
                        .bind(org_id)
                        .bind(team_id)
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    sqlx::query("DELETE FROM guardrail_policies WHERE org_id = $1 AND scope_kind = 'team' AND scope_id = $2")
                        .bind(org_id)
                        .bind(team_id)
                        .execute(&mut *tx)
                        .await?;
                    // Keys owned by the team fall back to the org (they keep working).
                    let touched = sqlx::query("UPDATE api_keys SET owner_team_id = NULL WHERE org_id = $1 AND owner_team_id = $2")
                        .bind(org_id)
                        .bind(team_id)
                        .execute(&mut *tx)
                        .await?;
                    if touched.rows_affected() > 0 {
                        let version = bump_version(&mut tx).await?;
                        tx.commit().await?;
                        self.announce(version);
                    } else {
                        tx.commit().await?;
                    }
                    Ok(())
                }

                async fn add_team_member(&self, org_id: &str, team_id: &str, user_id: &str) -> StoreResult<()> {
                    let done = sqlx::query(
                        "INSERT INTO team_members (team_id, org_id, user_id, created_at)
                         SELECT t.id, t.org_id, m.user_id, $4 FROM teams t JOIN org_members m ON m.org_id = t.org_id
                         WHERE t.id = $1 AND t.org_id = $2 AND m.user_id = $3",
                    )
                    .bind(team_id)
                    .bind(org_id)
                    .bind(user_id)
                    .bind(now_ms())
                    .execute(&self.pool)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    Ok(())
                }

                async fn remove_team_member(&self, org_id: &str, team_id: &str, user_id: &str) -> StoreResult<()> {
                    let done = sqlx::query("DELETE FROM team_members WHERE org_id = $1 AND team_id = $2 AND user_id = $3")
                        .bind(org_id)
                        .bind(team_id)
                        .bind(user_id)
                        .execute(&self.pool)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    Ok(())
                }

                async fn list_team_members(&self, org_id: &str, team_id: &str) -> StoreResult<Vec<TeamMemberRecord>> {
                    Ok(sqlx::query_as::<_, TeamMemberRecord>(
                        "SELECT tm.team_id, tm.user_id, u.email, tm.created_at FROM team_members tm JOIN users u ON u.id = tm.user_id
                         WHERE tm.org_id = $1 AND tm.team_id = $2 ORDER BY u.email",
                    )
                    .bind(org_id)
                    .bind(team_id)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
                    sqlx::query("INSERT INTO sessions (id, user_id, org_id, created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)")
                        .bind(&s.id)
                        .bind(&s.user_id)
                        .bind(&s.org_id)
                        .bind(s.created_at)
                        .bind(s.expires_at)
                        .bind(s.revoked_at)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn get_session(&self, session_id: &str) -> StoreResult<Option<SessionRecord>> {
                    Ok(sqlx::query_as::<_, SessionRecord>("SELECT id, user_id, org_id, created_at, expires_at, revoked_at FROM sessions WHERE id = $1")
                        .bind(session_id)
                        .fetch_optional(&self.pool)
                        .await?)
                }

                async fn set_session_org(&self, session_id: &str, org_id: &str) -> StoreResult<()> {
                    let done = sqlx::query("UPDATE sessions SET org_id = $2 WHERE id = $1 AND revoked_at IS NULL")
                        .bind(session_id)
                        .bind(org_id)
                        .execute(&self.pool)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    Ok(())
                }

                async fn revoke_session(&self, session_id: &str) -> StoreResult<()> {
                    sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                        .bind(session_id)
                        .bind(now_ms())
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn create_invitation(&self, inv: &NewInvitation) -> StoreResult<InvitationRecord> {
                    sqlx::query(
                        "INSERT INTO invitations (id, token_hash, org_id, email, role, team_id, invited_by, created_at, expires_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(&inv.id)
                    .bind(&inv.token_hash)
                    .bind(&inv.org_id)
                    .bind(&inv.email)
                    .bind(inv.role.as_str())
                    .bind(&inv.team_id)
                    .bind(&inv.invited_by)
                    .bind(now_ms())
                    .bind(inv.expires_at)
                    .execute(&self.pool)
                    .await?;
                    Ok(sqlx::query_as::<_, InvitationRecord>(&format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE org_id = $1 AND id = $2"))
                        .bind(&inv.org_id)
                        .bind(&inv.id)
                        .fetch_one(&self.pool)
                        .await?)
                }

                async fn list_invitations(&self, org_id: &str) -> StoreResult<Vec<InvitationRecord>> {
                    Ok(sqlx::query_as::<_, InvitationRecord>(&format!(
                        "SELECT {INVITATION_COLUMNS} FROM invitations WHERE org_id = $1 ORDER BY created_at DESC, id"
                    ))
                    .bind(org_id)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn revoke_invitation(&self, org_id: &str, id: &str) -> StoreResult<InvitationRecord> {
                    let done = sqlx::query("UPDATE invitations SET revoked_at = $3 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL AND accepted_at IS NULL")
                        .bind(org_id)
                        .bind(id)
                        .bind(now_ms())
                        .execute(&self.pool)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    Ok(sqlx::query_as::<_, InvitationRecord>(&format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE org_id = $1 AND id = $2"))
                        .bind(org_id)
                        .bind(id)
                        .fetch_one(&self.pool)
                        .await?)
                }

                async fn find_invitation(&self, token_hash: &str) -> StoreResult<Option<InvitationRecord>> {
                    Ok(sqlx::query_as::<_, InvitationRecord>(&format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE token_hash = $1"))
                        .bind(token_hash)
                        .fetch_optional(&self.pool)
                        .await?)
                }

                async fn accept_invitation(&self, token_hash: &str, invitee: &Invitee, now: i64) -> StoreResult<(InvitationRecord, String)> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    // The conditional UPDATE is the single-use check: a concurrent second accept
                    // matches no row once the first has set accepted_at.
                    let claimed = sqlx::query_as::<_, InvitationRecord>(&format!(
                        "UPDATE invitations SET accepted_at = $2
                         WHERE token_hash = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2
                         RETURNING {INVITATION_COLUMNS}"
                    ))
                    .bind(token_hash)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                    let user_id = match invitee {
                        Invitee::Existing { user_id } => user_id.clone(),
                        Invitee::New(user) => {
                            insert_user(&mut tx, user, now).await?;
                            user.id.clone()
                        }
                    };
                    sqlx::query("UPDATE invitations SET accepted_by = $2 WHERE id = $1")
                        .bind(&claimed.id)
                        .bind(&user_id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(
                        "INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (org_id, user_id) DO NOTHING",
                    )
                    .bind(&claimed.org_id)
                    .bind(&user_id)
                    .bind(&claimed.role)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if let Some(team_id) = &claimed.team_id {
                        sqlx::query(
                            "INSERT INTO team_members (team_id, org_id, user_id, created_at)
                             SELECT id, org_id, $3, $4 FROM teams WHERE id = $1 AND org_id = $2
                             ON CONFLICT (team_id, user_id) DO NOTHING",
                        )
                        .bind(team_id)
                        .bind(&claimed.org_id)
                        .bind(&user_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    let accepted = InvitationRecord { accepted_by: Some(user_id.clone()), ..claimed };
                    Ok((accepted, user_id))
                }

                async fn create_key_with_policy(&self, key: &NewKey, policy: &KeyPolicy) -> StoreResult<()> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    let version = bump_version(&mut tx).await?;
                    insert_key_with_policy(&mut tx, key, policy, now_ms()).await?;
                    tx.commit().await?;
                    self.announce(version);
                    Ok(())
                }

                async fn get_key_policy(&self, org_id: &str, hash: &str) -> StoreResult<KeyPolicy> {
                    let row = sqlx::query_as::<_, KeyPolicyRow>(&format!("SELECT {KEY_POLICY_COLUMNS} FROM api_keys WHERE org_id = $1 AND hash = $2"))
                        .bind(org_id)
                        .bind(hash)
                        .fetch_one(&self.pool)
                        .await?;
                    Ok(row.into())
                }

                async fn list_key_policies(&self, org_id: &str) -> StoreResult<Vec<KeyPolicy>> {
                    let rows = sqlx::query_as::<_, KeyPolicyRow>(&format!("SELECT {KEY_POLICY_COLUMNS} FROM api_keys WHERE org_id = $1"))
                        .bind(org_id)
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows.into_iter().map(Into::into).collect())
                }

                async fn all_key_policies(&self) -> StoreResult<Vec<KeyPolicy>> {
                    let rows = sqlx::query_as::<_, KeyPolicyRow>(&format!("SELECT {KEY_POLICY_COLUMNS} FROM api_keys ORDER BY hash"))
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows.into_iter().map(Into::into).collect())
                }

                async fn set_key_policy(&self, org_id: &str, policy: &KeyPolicy) -> StoreResult<()> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    let version = bump_version(&mut tx).await?;
                    let done = sqlx::query(
                        "UPDATE api_keys SET owner_user_id = $3, owner_team_id = $4, allowed_models = $5, allowed_providers = $6, updated_at = $7
                         WHERE org_id = $1 AND hash = $2",
                    )
                    .bind(org_id)
                    .bind(&policy.hash)
                    .bind(&policy.owner_user_id)
                    .bind(&policy.owner_team_id)
                    .bind(json_list(&policy.allowed_models))
                    .bind(json_list(&policy.allowed_providers))
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    tx.commit().await?;
                    self.announce(version);
                    Ok(())
                }

                async fn rotate_key(&self, org_id: &str, old_hash: &str, new_key: &NewKey, old_expires_at: i64) -> StoreResult<()> {
                    let now = now_ms();
                    let mut tx = Self::begin_write(&self.pool).await?;
                    let version = bump_version(&mut tx).await?;
                    let old = sqlx::query_as::<_, KeyRecord>(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1 AND hash = $2"))
                        .bind(org_id)
                        .bind(old_hash)
                        .fetch_one(&mut *tx)
                        .await?;
                    if old.disabled {
                        return Err(StoreError::Conflict("a disabled key cannot be rotated".into()));
                    }
                    let mut policy = fetch_key_policy(&mut tx, org_id, old_hash).await?;
                    policy.hash = new_key.hash.clone();
                    policy.rotated_from = Some(old_hash.to_owned());
                    insert_key_with_policy(&mut tx, new_key, &policy, now).await?;
                    // Never lengthen the old key's life: an earlier expiry stays.
                    sqlx::query(
                        "UPDATE api_keys SET expires_at = CASE WHEN expires_at IS NOT NULL AND expires_at < $3 THEN expires_at ELSE $3 END, updated_at = $4
                         WHERE org_id = $1 AND hash = $2",
                    )
                    .bind(org_id)
                    .bind(old_hash)
                    .bind(old_expires_at)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    self.announce(version);
                    Ok(())
                }

                async fn set_guardrail_policy(&self, org_id: &str, scope_kind: &str, scope_id: &str, policy_json: Option<&str>) -> StoreResult<()> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    let version = bump_version(&mut tx).await?;
                    match policy_json {
                        Some(policy) => {
                            sqlx::query(
                                "INSERT INTO guardrail_policies (org_id, scope_kind, scope_id, policy, updated_at) VALUES ($1, $2, $3, $4, $5)
                                 ON CONFLICT (org_id, scope_kind, scope_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
                            )
                            .bind(org_id)
                            .bind(scope_kind)
                            .bind(scope_id)
                            .bind(policy)
                            .bind(now_ms())
                            .execute(&mut *tx)
                            .await?;
                        }
                        None => {
                            sqlx::query("DELETE FROM guardrail_policies WHERE org_id = $1 AND scope_kind = $2 AND scope_id = $3")
                                .bind(org_id)
                                .bind(scope_kind)
                                .bind(scope_id)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    tx.commit().await?;
                    self.announce(version);
                    Ok(())
                }

                async fn get_guardrail_policy(&self, org_id: &str, scope_kind: &str, scope_id: &str) -> StoreResult<Option<String>> {
                    let row: Option<(String,)> = sqlx::query_as("SELECT policy FROM guardrail_policies WHERE org_id = $1 AND scope_kind = $2 AND scope_id = $3")
                        .bind(org_id)
                        .bind(scope_kind)
                        .bind(scope_id)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.map(|(p,)| p))
                }

                async fn all_guardrail_policies(&self) -> StoreResult<Vec<GuardrailPolicyRow>> {
                    Ok(sqlx::query_as::<_, GuardrailPolicyRow>(
                        "SELECT org_id, scope_kind, scope_id, policy FROM guardrail_policies ORDER BY org_id, scope_kind, scope_id",
                    )
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn set_oidc_config(&self, c: &OidcConfig) -> StoreResult<()> {
                    sqlx::query(
                        "INSERT INTO oidc_configs (org_id, issuer, client_id, client_secret, redirect_uri, allowed_domains, default_role, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                         ON CONFLICT (org_id) DO UPDATE SET issuer = excluded.issuer, client_id = excluded.client_id,
                            client_secret = excluded.client_secret, redirect_uri = excluded.redirect_uri,
                            allowed_domains = excluded.allowed_domains, default_role = excluded.default_role, updated_at = excluded.updated_at",
                    )
                    .bind(&c.org_id)
                    .bind(&c.issuer)
                    .bind(&c.client_id)
                    .bind(&c.client_secret)
                    .bind(&c.redirect_uri)
                    .bind(&c.allowed_domains)
                    .bind(&c.default_role)
                    .bind(now_ms())
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn get_oidc_config(&self, org_id: &str) -> StoreResult<Option<OidcConfig>> {
                    Ok(sqlx::query_as::<_, OidcConfig>(
                        "SELECT org_id, issuer, client_id, client_secret, redirect_uri, allowed_domains, default_role, updated_at FROM oidc_configs WHERE org_id = $1",
                    )
                    .bind(org_id)
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn delete_oidc_config(&self, org_id: &str) -> StoreResult<()> {
                    let done = sqlx::query("DELETE FROM oidc_configs WHERE org_id = $1").bind(org_id).execute(&self.pool).await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    Ok(())
                }

                async fn get_or_create_secret(&self, name: &str, candidate: &str) -> StoreResult<String> {
                    sqlx::query("INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                        .bind(name)
                        .bind(candidate)
                        .bind(now_ms())
                        .execute(&self.pool)
                        .await?;
                    let (value,): (String,) = sqlx::query_as("SELECT value FROM server_secrets WHERE name = $1")
                        .bind(name)
                        .fetch_one(&self.pool)
                        .await?;
                    Ok(value)
                }
            }

            #[async_trait::async_trait]
            impl AuditStore for $store {
                async fn append_audit(&self, e: &NewAuditEntry) -> StoreResult<AuditEntry> {
                    let mut tx = Self::begin_write(&self.pool).await?;
                    // Claiming the next seq on the head row serialises appenders on both backends.
                    let (seq, prev_hash): (i64, String) =
                        sqlx::query_as("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
                            .fetch_one(&mut *tx)
                            .await?;
                    let mut entry = AuditEntry {
                        seq,
                        org_id: e.org_id.clone(),
                        at: now_ms(),
                        actor_type: e.actor_type.clone(),
                        actor_id: e.actor_id.clone(),
                        action: e.action.clone(),
                        target_type: e.target_type.clone(),
                        target_id: e.target_id.clone(),
                        before_json: e.before.clone(),
                        after_json: e.after.clone(),
                        ip: e.ip.clone(),
                        user_agent: e.user_agent.clone(),
                        prev_hash,
                        hash: String::new(),
                    };
                    entry.hash = entry.expected_hash();
                    sqlx::query(&format!(
                        "INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                    ))
                    .bind(entry.seq)
                    .bind(&entry.org_id)
                    .bind(entry.at)
                    .bind(&entry.actor_type)
                    .bind(&entry.actor_id)
                    .bind(&entry.action)
                    .bind(&entry.target_type)
                    .bind(&entry.target_id)
                    .bind(&entry.before_json)
                    .bind(&entry.after_json)
                    .bind(&entry.ip)
                    .bind(&entry.user_agent)
                    .bind(&entry.prev_hash)
                    .bind(&entry.hash)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
                        .bind(&entry.hash)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(entry)
                }

                async fn list_audit(&self, org_id: &str, f: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
                    let (action_exact, action_prefix) = match f.action.as_deref() {
                        Some(a) if a.ends_with('.') => (None, Some(a.to_owned())),
                        Some(a) => (Some(a.to_owned()), None),
                        None => (None, None),
                    };
                    Ok(sqlx::query_as::<_, AuditEntry>(&format!(
                        "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE org_id = $1
                           AND ($2 IS NULL OR actor_id = $2)
                           AND ($3 IS NULL OR action = $3)
                           AND ($4 IS NULL OR substr(action, 1, length($4)) = $4)
                           AND ($5 IS NULL OR target_type = $5)
                           AND ($6 IS NULL OR target_id = $6)
                           AND ($7 IS NULL OR at >= $7)
                           AND ($8 IS NULL OR at < $8)
                           AND ($9 IS NULL OR seq < $9)
                         ORDER BY seq DESC LIMIT $10"
                    ))
                    .bind(org_id)
                    .bind(&f.actor_id)
                    .bind(action_exact)
                    .bind(action_prefix)
                    .bind(&f.target_type)
                    .bind(&f.target_id)
                    .bind(f.since)
                    .bind(f.until)
                    .bind(f.before_seq)
                    .bind(f.limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn audit_chain_page(&self, after_seq: i64, limit: i64) -> StoreResult<Vec<AuditEntry>> {
                    Ok(sqlx::query_as::<_, AuditEntry>(&format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"))
                        .bind(after_seq)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn audit_head(&self) -> StoreResult<(i64, String)> {
                    Ok(sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?)
                }
            }
        }
    };
}

pub(super) use impl_identity_store;
