//! Roles and what they may do. Every management handler names the permission it needs;
//! `allows` is the single place that decides.
//!
//! | Permission        | What it covers                                              | owner | admin | billing | developer | viewer |
//! |-------------------|-------------------------------------------------------------|:-----:|:-----:|:-------:|:---------:|:------:|
//! | `keys.read`       | list/get API keys (never secrets)                           |  ✓    |  ✓    |   ✓     |    ✓      |   ✓    |
//! | `keys.write`      | create/update/disable/delete/rotate any key of the org      |  ✓    |  ✓    |         |           |        |
//! | `keys.write_own`  | create inference keys owned by oneself; change/rotate/delete only those |  ✓ | ✓ |  | ✓ |     |
//! | `providers.read`  | list providers (credentials are never returned)             |  ✓    |  ✓    |   ✓     |    ✓      |   ✓    |
//! | `providers.write` | create/change providers and their credentials               |  ✓    |  ✓    |         |           |        |
//! | `models.read`     | list/get the org's model catalog and prices                 |  ✓    |  ✓    |   ✓     |    ✓      |   ✓    |
//! | `models.write`    | create/change models, endpoints, prices                     |  ✓    |  ✓    |         |           |        |
//! | `usage.read`      | `GET /generation` for any generation of the org             |  ✓    |  ✓    |   ✓     |    ✓      |   ✓    |
//! | `members.read`    | list members, teams, invitations                            |  ✓    |  ✓    |   ✓     |    ✓      |   ✓    |
//! | `members.write`   | invite, change roles (not to/from owner), remove members    |  ✓    |  ✓    |         |           |        |
//! | `members.owner`   | grant or revoke the owner role                              |  ✓    |       |         |           |        |
//! | `teams.write`     | create/rename/delete teams, change team membership          |  ✓    |  ✓    |         |           |        |
//! | `guardrails.write` | set org / team / key guardrail policies (reading needs `models.read`) | ✓ | ✓ |      |           |        |
//! | `audit.read`      | read and export the org's audit log                         |  ✓    |  ✓    |         |           |        |
//! | `billing.read`    | credits, spend and invoices                                 |  ✓    |  ✓    |   ✓     |           |        |
//! | `billing.write`   | top-ups, budgets, payment settings                          |  ✓    |       |   ✓     |           |        |
//!
//! Credentials: a console session acts with its user's role in the session's current org.
//! A management API key acts as `admin` of its org (so it cannot grant `owner`, except to
//! give an org without any owner its first one). An inference API key holds no management
//! permission: it may only read itself (`GET /api/v1/key`) and its own generations.
//! Anything addressed in another org answers 404, never 403, so ids do not leak across orgs.

use std::fmt;

use crate::store::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    KeysRead,
    KeysWrite,
    KeysWriteOwn,
    ProvidersRead,
    ProvidersWrite,
    ModelsRead,
    ModelsWrite,
    UsageRead,
    MembersRead,
    MembersWrite,
    MembersOwner,
    TeamsWrite,
    GuardrailsWrite,
    AuditRead,
    BillingRead,
    BillingWrite,
}

impl Permission {
    pub const ALL: [Permission; 16] = [
        Permission::KeysRead,
        Permission::KeysWrite,
        Permission::KeysWriteOwn,
        Permission::ProvidersRead,
        Permission::ProvidersWrite,
        Permission::ModelsRead,
        Permission::ModelsWrite,
        Permission::UsageRead,
        Permission::MembersRead,
        Permission::MembersWrite,
        Permission::MembersOwner,
        Permission::TeamsWrite,
        Permission::GuardrailsWrite,
        Permission::AuditRead,
        Permission::BillingRead,
        Permission::BillingWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::KeysRead => "keys.read",
            Permission::KeysWrite => "keys.write",
            Permission::KeysWriteOwn => "keys.write_own",
            Permission::ProvidersRead => "providers.read",
            Permission::ProvidersWrite => "providers.write",
            Permission::ModelsRead => "models.read",
            Permission::ModelsWrite => "models.write",
            Permission::UsageRead => "usage.read",
            Permission::MembersRead => "members.read",
            Permission::MembersWrite => "members.write",
            Permission::MembersOwner => "members.owner",
            Permission::TeamsWrite => "teams.write",
            Permission::GuardrailsWrite => "guardrails.write",
            Permission::AuditRead => "audit.read",
            Permission::BillingRead => "billing.read",
            Permission::BillingWrite => "billing.write",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The permission matrix above, as code.
pub fn allows(role: Role, permission: Permission) -> bool {
    use Permission as P;
    match role {
        Role::Owner => true,
        Role::Admin => !matches!(permission, P::MembersOwner | P::BillingWrite),
        Role::Billing => matches!(
            permission,
            P::KeysRead
                | P::ProvidersRead
                | P::ModelsRead
                | P::UsageRead
                | P::MembersRead
                | P::BillingRead
                | P::BillingWrite
        ),
        Role::Developer => matches!(
            permission,
            P::KeysRead
                | P::KeysWriteOwn
                | P::ProvidersRead
                | P::ModelsRead
                | P::UsageRead
                | P::MembersRead
        ),
        Role::Viewer => matches!(
            permission,
            P::KeysRead | P::ProvidersRead | P::ModelsRead | P::UsageRead | P::MembersRead
        ),
    }
}

/// Whether `actor` may give or take `target` (a role change, invitation or removal).
pub fn may_assign(actor: Role, target: Role) -> bool {
    if target == Role::Owner {
        allows(actor, Permission::MembersOwner)
    } else {
        allows(actor, Permission::MembersWrite)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_matches_the_documented_table() {
        let table = include_str!("rbac.rs");
        for p in Permission::ALL {
            let row = table
                .lines()
                .find(|l| l.starts_with(&format!("//! | `{}`", p.as_str())))
                .unwrap_or_else(|| panic!("no doc row for {p}"));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            // cells: "//!", perm, what, owner, admin, billing, developer, viewer, ""
            for (i, role) in Role::ALL.into_iter().enumerate() {
                let documented = cells[3 + i] == "✓";
                assert_eq!(allows(role, p), documented, "{role} × {p}");
            }
        }
    }

    #[test]
    fn only_owners_touch_the_owner_role() {
        assert!(may_assign(Role::Owner, Role::Owner));
        assert!(!may_assign(Role::Admin, Role::Owner));
        assert!(may_assign(Role::Admin, Role::Developer));
        assert!(!may_assign(Role::Developer, Role::Viewer));
    }
}
