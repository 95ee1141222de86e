-- Identity (users, memberships, teams, sessions, invitations), per-key ownership and
-- allowlists, server secrets, and the hash-chained audit log. Keep in step with ../postgres.

ALTER TABLE users ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
-- Consecutive failed logins since the last success; reaching the limit sets locked_until.
ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until INTEGER;
ALTER TABLE users ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX org_members_user ON org_members (user_id);

CREATE TABLE teams (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE team_members (
    team_id     TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    org_id      TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (team_id, user_id)
);

-- Console sessions. The JWT carries only the id; revocation and the current org live here.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    org_id      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Invitation links: only the SHA-256 of the token is stored; accepted_at makes them single-use.
CREATE TABLE invitations (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    org_id       TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    email        TEXT NOT NULL,
    role         TEXT NOT NULL,
    team_id      TEXT,
    invited_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    accepted_at  INTEGER,
    accepted_by  TEXT,
    revoked_at   INTEGER
);
CREATE INDEX invitations_org ON invitations (org_id, created_at);

-- Per-key ownership and allowlists (JSON arrays of strings; empty = no restriction).
ALTER TABLE api_keys ADD COLUMN owner_user_id TEXT;
ALTER TABLE api_keys ADD COLUMN owner_team_id TEXT;
ALTER TABLE api_keys ADD COLUMN allowed_models TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_keys ADD COLUMN allowed_providers TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_keys ADD COLUMN rotated_from TEXT;

-- Secrets the server generates for itself (the session-signing key), shared by replicas.
CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Append-only audit log. Each entry's hash commits to the previous entry's hash and to its
-- own content; audit_head holds the latest (seq, hash), so deleting the newest entries shows.
CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY,
    org_id       TEXT NOT NULL,
    at           INTEGER NOT NULL,
    actor_type   TEXT NOT NULL,
    actor_id     TEXT NOT NULL,
    action       TEXT NOT NULL,
    target_type  TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    before_json  TEXT,
    after_json   TEXT,
    ip           TEXT NOT NULL,
    user_agent   TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE INDEX audit_log_org ON audit_log (org_id, seq);

CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');

-- Guardrail policies of an org, a team or a key (JSON; see api/guardrails.rs).
CREATE TABLE guardrail_policies (
    org_id      TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    scope_kind  TEXT NOT NULL CHECK (scope_kind IN ('org', 'team', 'key')),
    scope_id    TEXT NOT NULL,
    policy      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, scope_kind, scope_id)
);

-- OIDC single sign-on per org: the issuer, this installation's client at it, and which email
-- domains join the org just in time (with default_role) on their first login.
CREATE TABLE oidc_configs (
    org_id           TEXT PRIMARY KEY REFERENCES orgs(id) ON DELETE CASCADE,
    issuer           TEXT NOT NULL,
    client_id        TEXT NOT NULL,
    client_secret    TEXT,
    redirect_uri     TEXT NOT NULL,
    allowed_domains  TEXT NOT NULL DEFAULT '[]',
    default_role     TEXT NOT NULL,
    updated_at       INTEGER NOT NULL
);
