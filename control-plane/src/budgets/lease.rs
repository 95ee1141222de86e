//! How much of a budget a gateway node may be granted. Pure arithmetic, so the bound is
//! testable without a database.
//!
//! For one budget and window: `S` is the ledger spend of the window, and for each node `n`,
//! `G_n` is what it was granted, `C_n` what it reported as consumed and `S_n` its spend the
//! ledger already holds. A node may still add `E_n = max(G_n, C_n) - S_n` to the ledger (its
//! unspent slice plus settled-but-not-yet-shipped usage). A grant keeps
//! `S + Σ E_n <= limit`, so the ledger can exceed the limit only by what a node admits beyond
//! its slice: actual cost above a request's estimate, and the org's overdraft when the
//! control plane is unreachable.

/// One node's lease as the control plane sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeLease {
    pub granted: i64,
    pub consumed: i64,
    pub expires_at: i64,
    /// Spend of this node in the window that the ledger already holds.
    pub ledger_spent: i64,
}

impl NodeLease {
    /// What this node may still add to the ledger. A lease not renewed for `dead_after_ms`
    /// past its expiry belongs to a node presumed gone: its unused grant is freed, its
    /// reported consumption still counts until the ledger has it.
    pub fn exposure(&self, now: i64, dead_after_ms: i64) -> i64 {
        let base = if now > self.expires_at.saturating_add(dead_after_ms) {
            self.consumed
        } else {
            self.granted.max(self.consumed)
        };
        base.saturating_sub(self.ledger_spent).max(0)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// Most one node may hold unspent (0 = no cap).
    pub per_gateway: i64,
    /// Most all nodes together may hold unspent (0 = no cap).
    pub per_org: i64,
}

/// The terms of one grant decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Terms {
    pub limit: i64,
    /// Ledger spend of the window, all nodes.
    pub spent: i64,
    pub want: i64,
    pub caps: Caps,
    pub now: i64,
    pub dead_after_ms: i64,
}

/// The grant for `me` (never negative) and the other nodes' total exposure.
pub fn grant(t: &Terms, me: &NodeLease, others: &[NodeLease]) -> (i64, i64) {
    let Terms {
        limit,
        spent,
        want,
        caps,
        now,
        dead_after_ms,
    } = *t;
    let others_out: i128 = others
        .iter()
        .map(|n| i128::from(n.exposure(now, dead_after_ms)))
        .sum();
    let (g_me, c_me, s_me) = (
        i128::from(me.granted),
        i128::from(me.consumed),
        i128::from(me.ledger_spent),
    );
    // S + others + max(G_me + g, C_me) - S_me <= limit.
    let mut room = i128::from(limit) - i128::from(spent) - others_out + s_me - g_me;
    if caps.per_gateway > 0 {
        // This node's unspent slice after the grant: G_me + g - max(C_me, S_me).
        room = room.min(i128::from(caps.per_gateway) - (g_me - c_me.max(s_me)));
    }
    if caps.per_org > 0 {
        room = room.min(i128::from(caps.per_org) - others_out + s_me - g_me);
    }
    let g = room.min(i128::from(want.max(0))).max(0);
    (
        i64::try_from(g).unwrap_or(0),
        i64::try_from(others_out).unwrap_or(i64::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn live(granted: i64, consumed: i64, ledger_spent: i64) -> NodeLease {
        NodeLease {
            granted,
            consumed,
            expires_at: NOW + 30_000,
            ledger_spent,
        }
    }

    fn ask(limit: i64, spent: i64, want: i64, caps: Caps) -> Terms {
        Terms {
            limit,
            spent,
            want,
            caps,
            now: NOW,
            dead_after_ms: 60_000,
        }
    }

    #[test]
    fn grants_never_exceed_limit_minus_spent_minus_other_slices() {
        let others = [live(300, 100, 100), live(200, 0, 0)];
        // Ledger: 100 spent (by node 1). Others may still add 200 + 200.
        let terms = ask(1_000, 100, 10_000, Caps::default());
        assert_eq!(grant(&terms, &live(0, 0, 0), &others), (500, 400));
        // Everything handed out: S + sum(E) == limit.
        assert_eq!(grant(&terms, &live(500, 0, 0), &others).0, 0);
    }

    #[test]
    fn reported_but_unshipped_consumption_still_counts() {
        // A node consumed all of its 300 but the ledger has none of it yet.
        let terms = ask(1_000, 0, 10_000, Caps::default());
        assert_eq!(
            grant(&terms, &live(0, 0, 0), &[live(300, 300, 0)]),
            (700, 300)
        );
    }

    #[test]
    fn dead_nodes_release_their_unused_slice_only() {
        let dead = NodeLease {
            granted: 500,
            consumed: 120,
            expires_at: NOW - 120_000,
            ledger_spent: 20,
        };
        assert_eq!(dead.exposure(NOW, 60_000), 100);
        assert_eq!(dead.exposure(NOW - 100_000, 60_000), 480);
    }

    #[test]
    fn per_gateway_and_per_org_caps_bound_outstanding_slices() {
        let caps = Caps {
            per_gateway: 100,
            per_org: 250,
        };
        let terms = ask(10_000, 0, 1_000, caps);
        // The node holds 60 unspent already: 40 more at most.
        assert_eq!(grant(&terms, &live(80, 20, 20), &[]).0, 40);
        // Others hold 200 unspent: the org cap leaves 50.
        let others = [live(100, 0, 0), live(100, 0, 0)];
        assert_eq!(grant(&terms, &live(0, 0, 0), &others).0, 50);
    }

    #[test]
    fn overspent_budgets_grant_nothing_and_never_negative() {
        assert_eq!(
            grant(
                &ask(1_000, 1_500, 100, Caps::default()),
                &live(0, 0, 0),
                &[]
            )
            .0,
            0
        );
        assert_eq!(
            grant(&ask(1_000, 0, -5, Caps::default()), &live(0, 0, 0), &[]).0,
            0
        );
    }
}
