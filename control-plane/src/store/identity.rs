//! Persistence of identity: users, org memberships with roles, teams, console sessions,
//! invitations, per-key ownership and allowlists, and server-generated secrets. Implemented
//! for both backends by `identity_sql::impl_identity_store!`.
//!
//! Every query on tenant data takes the org id. The exceptions look a row up by something
//! unguessable or globally unique: a user by email (login), a session by its random id, an
//! invitation by the hash of its token.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::{NewKey, Org, StoreResult};

/// A member's role in one org. The permission matrix lives in `crate::identity::rbac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Billing,
    Developer,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::Admin,
        Role::Billing,
        Role::Developer,
        Role::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Billing => "billing",
            Role::Developer => "developer",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, FromRow)]
pub struct UserRecord {
    pub id: String,
    pub email: String,
    pub name: String,
    /// PHC string (argon2id); `None` for users who only sign in through SSO.
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("disabled", &self.disabled)
            .field("failed_logins", &self.failed_logins)
            .field("locked_until", &self.locked_until)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct NewUser {
    pub id: String,
    /// Lowercased by the caller.
    pub email: String,
    pub name: String,
    pub password_hash: Option<String>,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("id", &self.id)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// A membership joined with the user and the org, for listings both ways.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct MemberRecord {
    pub org_id: String,
    pub org_name: String,
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub created_at: i64,
}

impl MemberRecord {
    pub fn role(&self) -> Option<Role> {
        Role::parse(&self.role)
    }
}

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct TeamRecord {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct TeamMemberRecord {
    pub team_id: String,
    pub user_id: String,
    pub email: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: String,
    pub org_id: String,
    pub created_at: i64,
    /// Absolute end of the session; refresh never extends past it.
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct InvitationRecord {
    pub id: String,
    pub org_id: String,
    pub email: String,
    pub role: String,
    pub team_id: Option<String>,
    pub invited_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub accepted_by: Option<String>,
    pub revoked_at: Option<i64>,
}

#[derive(Clone)]
pub struct NewInvitation {
    pub id: String,
    pub token_hash: String,
    pub org_id: String,
    pub email: String,
    pub role: Role,
    pub team_id: Option<String>,
    pub invited_by: String,
    pub expires_at: i64,
}

/// Who accepts an invitation: a user that already exists, or one to create.
#[derive(Debug, Clone)]
pub enum Invitee {
    Existing { user_id: String },
    New(NewUser),
}

/// Ownership and allowlists of one API key. Empty allowlists mean "no restriction".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyPolicy {
    pub hash: String,
    pub owner_user_id: Option<String>,
    pub owner_team_id: Option<String>,
    pub allowed_models: Vec<String>,
    pub allowed_providers: Vec<String>,
    /// The key this one replaced, when it was made by a rotation.
    pub rotated_from: Option<String>,
}

#[derive(Debug, Clone, FromRow)]
pub(crate) struct KeyPolicyRow {
    pub hash: String,
    pub owner_user_id: Option<String>,
    pub owner_team_id: Option<String>,
    pub allowed_models: String,
    pub allowed_providers: String,
    pub rotated_from: Option<String>,
}

impl From<KeyPolicyRow> for KeyPolicy {
    fn from(r: KeyPolicyRow) -> Self {
        // The columns are written only by this module, as JSON arrays; anything else reads
        // as "no restriction" would be wrong, so it reads as "nothing allowed" instead.
        let list = |text: &str| {
            serde_json::from_str::<Vec<String>>(text)
                .unwrap_or_else(|_| vec!["\u{0}invalid".to_owned()])
        };
        KeyPolicy {
            allowed_models: list(&r.allowed_models),
            allowed_providers: list(&r.allowed_providers),
            hash: r.hash,
            owner_user_id: r.owner_user_id,
            owner_team_id: r.owner_team_id,
            rotated_from: r.rotated_from,
        }
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct GuardrailPolicyRow {
    pub org_id: String,
    pub scope_kind: String,
    pub scope_id: String,
    pub policy: String,
}

/// An org's OIDC single sign-on settings. `Debug` never shows the client secret.
#[derive(Clone, FromRow)]
pub struct OidcConfig {
    pub org_id: String,
    /// Issuer URL, exactly as in its discovery document and id tokens.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// This control plane's callback URL, as registered at the issuer.
    pub redirect_uri: String,
    /// JSON array of email domains that join the org on first login.
    pub allowed_domains: String,
    pub default_role: String,
    pub updated_at: i64,
}

impl fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcConfig")
            .field("org_id", &self.org_id)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("has_client_secret", &self.client_secret.is_some())
            .finish_non_exhaustive()
    }
}

impl OidcConfig {
    pub fn domains(&self) -> Vec<String> {
        serde_json::from_str(&self.allowed_domains).unwrap_or_default()
    }
}

#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    /// Creates an org with `owner_user_id` as its owner.
    async fn create_org(&self, org: &Org, owner_user_id: &str) -> StoreResult<()>;

    async fn create_user(&self, user: &NewUser) -> StoreResult<UserRecord>;
    /// Login lookup; emails are unique across the installation.
    async fn find_user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>>;
    async fn get_user(&self, user_id: &str) -> StoreResult<UserRecord>;
    /// Counts a failed login; locks the account until `lock_until` once `max_failures`
    /// consecutive failures are reached. Returns the failure count.
    async fn record_login_failure(
        &self,
        user_id: &str,
        max_failures: i64,
        lock_until: i64,
    ) -> StoreResult<i64>;
    async fn record_login_success(&self, user_id: &str) -> StoreResult<()>;
    async fn set_password(&self, user_id: &str, password_hash: &str) -> StoreResult<()>;

    async fn add_member(&self, org_id: &str, user_id: &str, role: Role) -> StoreResult<()>;
    async fn get_member(&self, org_id: &str, user_id: &str) -> StoreResult<MemberRecord>;
    async fn list_members(&self, org_id: &str) -> StoreResult<Vec<MemberRecord>>;
    async fn list_user_orgs(&self, user_id: &str) -> StoreResult<Vec<MemberRecord>>;
    /// Refuses (conflict) to leave an org without an owner.
    async fn set_member_role(
        &self,
        org_id: &str,
        user_id: &str,
        role: Role,
    ) -> StoreResult<MemberRecord>;
    /// Also drops the user's team memberships in the org and disables the keys they own
    /// there. Refuses to remove the last owner.
    async fn remove_member(&self, org_id: &str, user_id: &str) -> StoreResult<()>;

    async fn create_team(&self, team: &TeamRecord) -> StoreResult<TeamRecord>;
    async fn list_teams(&self, org_id: &str) -> StoreResult<Vec<TeamRecord>>;
    async fn get_team(&self, org_id: &str, team_id: &str) -> StoreResult<TeamRecord>;
    async fn rename_team(&self, org_id: &str, team_id: &str, name: &str)
    -> StoreResult<TeamRecord>;
    async fn delete_team(&self, org_id: &str, team_id: &str) -> StoreResult<()>;
    /// The user must be a member of the org.
    async fn add_team_member(&self, org_id: &str, team_id: &str, user_id: &str) -> StoreResult<()>;
    async fn remove_team_member(
        &self,
        org_id: &str,
        team_id: &str,
        user_id: &str,
    ) -> StoreResult<()>;
    async fn list_team_members(
        &self,
        org_id: &str,
        team_id: &str,
    ) -> StoreResult<Vec<TeamMemberRecord>>;

    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()>;
    async fn get_session(&self, session_id: &str) -> StoreResult<Option<SessionRecord>>;
    async fn set_session_org(&self, session_id: &str, org_id: &str) -> StoreResult<()>;
    async fn revoke_session(&self, session_id: &str) -> StoreResult<()>;

    async fn create_invitation(&self, invitation: &NewInvitation) -> StoreResult<InvitationRecord>;
    async fn list_invitations(&self, org_id: &str) -> StoreResult<Vec<InvitationRecord>>;
    async fn revoke_invitation(&self, org_id: &str, id: &str) -> StoreResult<InvitationRecord>;
    async fn find_invitation(&self, token_hash: &str) -> StoreResult<Option<InvitationRecord>>;
    /// Marks the invitation used (once: a second accept is `NotFound`), creates the user if
    /// new, and adds the membership (and team membership), atomically. Returns the user id.
    async fn accept_invitation(
        &self,
        token_hash: &str,
        invitee: &Invitee,
        now: i64,
    ) -> StoreResult<(InvitationRecord, String)>;

    /// Creates a key with its ownership and allowlists in one transaction.
    async fn create_key_with_policy(&self, key: &NewKey, policy: &KeyPolicy) -> StoreResult<()>;
    async fn get_key_policy(&self, org_id: &str, hash: &str) -> StoreResult<KeyPolicy>;
    async fn list_key_policies(&self, org_id: &str) -> StoreResult<Vec<KeyPolicy>>;
    /// Every key's policy across orgs, for the gateway snapshot.
    async fn all_key_policies(&self) -> StoreResult<Vec<KeyPolicy>>;
    async fn set_key_policy(&self, org_id: &str, policy: &KeyPolicy) -> StoreResult<()>;
    /// Creates `new_key` as a copy of `old_hash` (policy included) and sets the old key to
    /// expire at `old_expires_at`, in one transaction.
    async fn rotate_key(
        &self,
        org_id: &str,
        old_hash: &str,
        new_key: &NewKey,
        old_expires_at: i64,
    ) -> StoreResult<()>;

    /// Stores (`Some`) or removes (`None`) the guardrail policy JSON of one scope.
    async fn set_guardrail_policy(
        &self,
        org_id: &str,
        scope_kind: &str,
        scope_id: &str,
        policy_json: Option<&str>,
    ) -> StoreResult<()>;
    async fn get_guardrail_policy(
        &self,
        org_id: &str,
        scope_kind: &str,
        scope_id: &str,
    ) -> StoreResult<Option<String>>;
    /// Every scope's policy across orgs, for the gateway snapshot.
    async fn all_guardrail_policies(&self) -> StoreResult<Vec<GuardrailPolicyRow>>;

    async fn set_oidc_config(&self, config: &OidcConfig) -> StoreResult<()>;
    async fn get_oidc_config(&self, org_id: &str) -> StoreResult<Option<OidcConfig>>;
    async fn delete_oidc_config(&self, org_id: &str) -> StoreResult<()>;

    /// The stored secret named `name`, storing `candidate` first if there is none yet (the
    /// first replica to start wins; every replica then reads the same value).
    async fn get_or_create_secret(&self, name: &str, candidate: &str) -> StoreResult<String>;
}
