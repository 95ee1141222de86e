//! Budget alerts: when a budget's spend in its window reaches 50, 80 or 100 % of its limit,
//! one JSON POST to the org's webhook. Each (budget, window, threshold) is claimed with a
//! row in `budget_alerts` before the call, so restarts and replicas never send it twice;
//! a failed delivery is retried a few times and then marked `failed`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_gateway::ssrf::{UrlPolicy, check_url};
use switchyard_proto::Money;
use tokio_util::sync::CancellationToken;

use super::{Resolved, resolved_row, window_spend};
use crate::api::timefmt::iso;
use crate::store::{AlertRow, BudgetRow, Store, StoreResult, now_ms};

pub const THRESHOLDS: [i64; 3] = [50, 80, 100];
/// Deliveries tried per alert before it is marked `failed`.
const MAX_ATTEMPTS: i64 = 5;

/// How long an evaluation waits after usage arrived, so a burst of batches costs one.
const AFTER_INGEST_PAUSE: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy)]
pub struct AlertConfig {
    /// How often budgets are re-evaluated even without new usage.
    pub interval: Duration,
    /// Webhook URLs are re-checked at send time (the operator may have tightened it).
    pub policy: UrlPolicy,
}

/// Thresholds `spent` has reached of `limit` (none for a zero limit: nothing to measure).
pub fn reached(spent: i64, limit: i64) -> Vec<i64> {
    if limit <= 0 {
        return Vec::new();
    }
    THRESHOLDS
        .iter()
        .copied()
        .filter(|t| i128::from(spent) * 100 >= i128::from(limit) * i128::from(*t))
        .collect()
}

fn payload(budget: &BudgetRow, alert: &AlertRow) -> Value {
    json!({
        "type": "budget.threshold",
        "org_id": budget.org_id,
        "budget_id": budget.id,
        "name": budget.name,
        "scope": { "kind": budget.scope_kind, "id": budget.scope_id },
        "window": budget.period,
        "window_start": iso(alert.window_start),
        "threshold_percent": alert.threshold,
        "limit": Money::from_nanos(alert.limit_nanos).as_usd_f64(),
        "spent": Money::from_nanos(alert.spent_nanos).as_usd_f64(),
        "limit_nanos": alert.limit_nanos,
        "spent_nanos": alert.spent_nanos,
    })
}

async fn deliver(
    http: &reqwest::Client,
    policy: UrlPolicy,
    url: &str,
    body: &Value,
) -> Result<(), String> {
    check_url(url, policy).map_err(|why| format!("webhook URL {why}"))?;
    let response = http
        .post(url)
        .header(
            "user-agent",
            concat!("switchyard/", env!("CARGO_PKG_VERSION")),
        )
        .json(body)
        .send()
        .await
        .map_err(|e| format!("webhook request failed: {e}"))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("webhook answered {}", response.status()))
    }
}

async fn send(
    store: &dyn Store,
    http: &reqwest::Client,
    policy: UrlPolicy,
    url: &str,
    budget: &BudgetRow,
    alert: &AlertRow,
) -> StoreResult<bool> {
    let now = now_ms();
    match deliver(http, policy, url, &payload(budget, alert)).await {
        Ok(()) => {
            store
                .finish_alert(
                    &alert.budget_id,
                    alert.window_start,
                    alert.threshold,
                    "delivered",
                    "",
                    now,
                )
                .await?;
            tracing::info!(org_id = %budget.org_id, budget_id = %budget.id, threshold = alert.threshold, "budget alert delivered");
            Ok(true)
        }
        Err(err) => {
            let status = if alert.attempts + 1 >= MAX_ATTEMPTS {
                "failed"
            } else {
                "pending"
            };
            tracing::warn!(org_id = %budget.org_id, budget_id = %budget.id, threshold = alert.threshold, error = %err, status, "budget alert not delivered");
            store
                .finish_alert(
                    &alert.budget_id,
                    alert.window_start,
                    alert.threshold,
                    status,
                    &err,
                    now,
                )
                .await?;
            Ok(false)
        }
    }
}

/// One pass: retries undelivered alerts, then claims and sends newly reached thresholds.
/// Returns how many alerts were delivered.
pub async fn evaluate_once(
    store: &dyn Store,
    http: &reqwest::Client,
    policy: UrlPolicy,
    now: i64,
) -> StoreResult<usize> {
    let mut delivered = 0;
    for alert in store.pending_alerts(100).await? {
        let settings = store.get_budget_settings(&alert.org_id).await?;
        let (Some(url), Ok(budget)) = (
            settings.alert_webhook_url,
            store.get_budget(&alert.org_id, &alert.budget_id).await,
        ) else {
            // Webhook removed or budget deleted: nothing left to notify.
            store
                .finish_alert(
                    &alert.budget_id,
                    alert.window_start,
                    alert.threshold,
                    "failed",
                    "no webhook or budget any more",
                    now,
                )
                .await?;
            continue;
        };
        delivered += usize::from(send(store, http, policy, &url, &budget, &alert).await?);
    }
    for settings in store.all_budget_settings().await? {
        let Some(url) = settings.alert_webhook_url else {
            continue;
        };
        for budget in store.list_budgets(&settings.org_id).await? {
            let Some(resolved): Option<Resolved> = resolved_row(&budget) else {
                continue;
            };
            let spent = window_spend(store, &budget.org_id, &resolved, now).await?;
            let (window_start, _) = resolved.window.bounds(now);
            for threshold in reached(spent, budget.limit_nanos) {
                let alert = AlertRow {
                    budget_id: budget.id.clone(),
                    window_start,
                    threshold,
                    org_id: budget.org_id.clone(),
                    spent_nanos: spent,
                    limit_nanos: budget.limit_nanos,
                    status: "pending".into(),
                    attempts: 0,
                    last_error: String::new(),
                    created_at: now,
                    delivered_at: None,
                };
                if store.claim_alert(&alert).await? {
                    delivered +=
                        usize::from(send(store, http, policy, &url, &budget, &alert).await?);
                }
            }
        }
    }
    Ok(delivered)
}

/// Re-evaluates budgets after each ingested usage batch and every `interval`, until
/// `shutdown` fires.
pub async fn run(
    store: Arc<dyn Store>,
    wake: Arc<tokio::sync::Notify>,
    config: AlertConfig,
    shutdown: CancellationToken,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    loop {
        let woken = tokio::select! {
            () = shutdown.cancelled() => return,
            () = wake.notified() => true,
            () = tokio::time::sleep(config.interval) => false,
        };
        if woken {
            // Batches arrive every few ms under load; evaluating after each one was a
            // few queries per batch for an answer that changes at thresholds. Later
            // batches of the pause are covered by this evaluation.
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(AFTER_INGEST_PAUSE) => {}
            }
        }
        if let Err(err) = evaluate_once(&*store, &http, config.policy, now_ms()).await {
            tracing::warn!(error = %err, "evaluating budget alerts failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_reached_at_exactly_50_80_and_100_percent() {
        assert_eq!(reached(499, 1_000), Vec::<i64>::new());
        assert_eq!(reached(500, 1_000), vec![50]);
        assert_eq!(reached(799, 1_000), vec![50]);
        assert_eq!(reached(800, 1_000), vec![50, 80]);
        assert_eq!(reached(1_000, 1_000), vec![50, 80, 100]);
        assert_eq!(reached(5_000, 1_000), vec![50, 80, 100]);
        assert_eq!(reached(10, 0), Vec::<i64>::new());
    }
}
