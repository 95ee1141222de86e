//! Optional auto top-up: when an org's credit balance falls below its threshold after usage
//! was ingested, charge its saved Stripe payment method off-session for the configured amount.
//!
//! Exactly once per threshold crossing: `begin_auto_topup` inserts the attempt row
//! `(org, crossing)` before Stripe is called (replicas racing get one row between them), the
//! row id is the PaymentIntent's idempotency key (a retried call cannot charge twice), and the
//! credit posting is keyed by the PaymentIntent (`auto_topup:<pi>`), shared with the webhook
//! path. A decline marks the attempt failed, which stops further charges until the org's
//! settings are saved again.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::stripe::StripeClient;
use crate::store::{AutoTopupRow, BillingSettings, Store, StoreResult, now_ms};

/// Checked at least this often even without ingestion (e.g. after a manual refund).
const SWEEP: Duration = Duration::from_secs(60);
/// How long a sweep waits after usage arrived, so a burst of batches costs one (as budget
/// alerts do).
const AFTER_INGEST_PAUSE: Duration = Duration::from_millis(200);
const NANOS_PER_CENT: i64 = 10_000_000;

/// One org: starts and settles an auto top-up if its balance is below the threshold.
pub async fn check_org(
    store: &dyn Store,
    stripe: &StripeClient,
    settings: &BillingSettings,
) -> StoreResult<Option<AutoTopupRow>> {
    if !settings.auto_topup_enabled
        || settings.auto_topup_amount_nanos < 100 * NANOS_PER_CENT
        || settings.stripe_customer_id.is_empty()
        || settings.stripe_payment_method_id.is_empty()
    {
        return Ok(None);
    }
    let balance = store
        .rollup_credit_totals(&settings.org_id)
        .await?
        .balance_nanos;
    if balance >= settings.auto_topup_threshold_nanos {
        return Ok(None);
    }
    let Some(row) = store
        .begin_auto_topup(
            &settings.org_id,
            settings.auto_topup_amount_nanos,
            balance,
            now_ms(),
        )
        .await?
    else {
        return Ok(None);
    };
    let charged = stripe
        .charge_off_session(
            &settings.org_id,
            settings.auto_topup_amount_nanos / NANOS_PER_CENT,
            &settings.stripe_customer_id,
            &settings.stripe_payment_method_id,
            &row.id,
        )
        .await;
    match charged {
        Ok(outcome) if outcome.succeeded => {
            tracing::info!(org_id = %settings.org_id, payment_intent = %outcome.id, crossing = row.crossing, "auto top-up charged");
            store
                .finish_auto_topup(&row.id, Some(&outcome.id), true, "", now_ms())
                .await?;
        }
        // `processing` / `requires_action`: the attempt stays pending; the
        // `payment_intent.succeeded` webhook credits it if the payment completes.
        Ok(outcome) => {
            tracing::warn!(org_id = %settings.org_id, payment_intent = %outcome.id, status = %outcome.status, "auto top-up not completed at once; waiting for Stripe's webhook");
        }
        Err(err) => {
            tracing::warn!(org_id = %settings.org_id, error = %err, "auto top-up charge failed; no further attempts until the settings are saved again");
            store
                .finish_auto_topup(&row.id, None, false, &err.to_string(), now_ms())
                .await?;
        }
    }
    Ok(Some(row))
}

/// Checks every org with auto top-up on.
pub async fn sweep(store: &dyn Store, stripe: &StripeClient) -> StoreResult<()> {
    for settings in store.auto_topup_orgs().await? {
        if let Err(err) = check_org(store, stripe, &settings).await {
            tracing::warn!(org_id = %settings.org_id, error = %err, "auto top-up check failed");
        }
    }
    Ok(())
}

/// Runs until `shutdown`: a sweep after ingested batches (coalesced) and every minute.
pub async fn run(
    store: Arc<dyn Store>,
    stripe: Arc<StripeClient>,
    ingested: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(err) = sweep(store.as_ref(), &stripe).await {
            tracing::warn!(error = %err, "auto top-up sweep failed");
        }
        let woken = tokio::select! {
            () = shutdown.cancelled() => return,
            () = ingested.notified() => true,
            () = tokio::time::sleep(SWEEP) => false,
        };
        if woken {
            // Under load batches land every few milliseconds; one sweep covers a burst.
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(AFTER_INGEST_PAUSE) => {}
            }
        }
    }
}
