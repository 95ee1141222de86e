//! An org's money settings: `GET /api/v1/billing/settings`, `PUT /api/v1/billing/platform-fee`
//! (owner or management key: the operator's lever when reselling) and
//! `PUT /api/v1/billing/auto-topup` (billing.write), plus `GET /api/v1/billing/auto-topups`,
//! the attempts made.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_proto::Money;

use super::audit::{Change, record as audit_record};
use super::principal::{Actor, Principal};
use super::timefmt::iso;
use super::{AppState, JsonBody};
use crate::billing::fees::MAX_FEE_BPS;
use crate::error::ApiError;
use crate::identity::Permission;
use crate::store::{BillingSettings, KeyKind, Role, now_ms};

fn is_management_key(principal: &Principal) -> bool {
    matches!(
        principal.actor,
        Actor::Key {
            kind: KeyKind::Management,
            ..
        }
    )
}

fn usd(nanos: i64) -> f64 {
    Money::from_nanos(nanos).as_usd_f64()
}

pub fn settings_json(s: &BillingSettings) -> Value {
    let hint = |id: &str| {
        (!id.is_empty()).then(|| {
            let tail: String = id
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("...{tail}")
        })
    };
    json!({
        "platform_fee_bps": s.platform_fee_bps,
        "auto_topup": {
            "enabled": s.auto_topup_enabled,
            "threshold": usd(s.auto_topup_threshold_nanos),
            "threshold_nanos": s.auto_topup_threshold_nanos,
            "amount": usd(s.auto_topup_amount_nanos),
            "amount_nanos": s.auto_topup_amount_nanos,
            "stripe_customer": hint(&s.stripe_customer_id),
            "stripe_payment_method": hint(&s.stripe_payment_method_id),
        },
        "updated_at": (s.updated_at > 0).then(|| iso(s.updated_at)),
    })
}

pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    if !is_management_key(&principal) {
        principal.require(Permission::BillingRead)?;
    }
    let s = state.store.billing_settings(principal.org_id()).await?;
    Ok(Json(json!({ "data": settings_json(&s) })))
}

#[derive(Deserialize)]
pub struct FeeBody {
    bps: Option<i64>,
}

pub async fn put_platform_fee(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<FeeBody>,
) -> Result<Json<Value>, ApiError> {
    // The fee is the operator's price, not a billing preference: owners and the operator's
    // management key only.
    if !is_management_key(&principal) && principal.role != Some(Role::Owner) {
        return Err(ApiError::Forbidden(
            "only an owner or a management key may set the platform fee".into(),
        ));
    }
    let bps = body
        .bps
        .ok_or_else(|| ApiError::BadRequest("`bps` (basis points, 0-10000) is required".into()))?;
    if !(0..=MAX_FEE_BPS).contains(&bps) {
        return Err(ApiError::BadRequest(format!(
            "`bps` must be between 0 and {MAX_FEE_BPS} (100 %), not {bps}"
        )));
    }
    let before = state.store.billing_settings(principal.org_id()).await?;
    let after = BillingSettings {
        platform_fee_bps: bps,
        updated_at: now_ms(),
        ..before.clone()
    };
    state.store.set_billing_settings(&after).await?;
    let (b, a) = (settings_json(&before), settings_json(&after));
    audit_record(
        &state,
        &principal,
        Change {
            action: "billing.platform_fee",
            target_type: "org",
            target_id: principal.org_id(),
            before: Some(&b),
            after: Some(&a),
        },
    )
    .await?;
    Ok(Json(json!({ "data": a })))
}

#[derive(Deserialize)]
pub struct AutoTopupBody {
    enabled: Option<bool>,
    threshold: Option<super::credits::UsdAmount>,
    amount: Option<super::credits::UsdAmount>,
    stripe_customer_id: Option<String>,
    stripe_payment_method_id: Option<String>,
}

/// Stripe's object ids: a prefix, an underscore, then letters and digits.
fn valid_stripe_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 250
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

pub async fn put_auto_topup(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<AutoTopupBody>,
) -> Result<Json<Value>, ApiError> {
    if !is_management_key(&principal) {
        principal.require(Permission::BillingWrite)?;
    }
    let before = state.store.billing_settings(principal.org_id()).await?;
    let mut after = before.clone();
    if let Some(t) = &body.threshold {
        after.auto_topup_threshold_nanos = t.to_money("threshold")?.nanos();
    }
    if let Some(a) = &body.amount {
        after.auto_topup_amount_nanos = a.to_money("amount")?.nanos();
    }
    if let Some(c) = body.stripe_customer_id {
        after.stripe_customer_id = c;
    }
    if let Some(pm) = body.stripe_payment_method_id {
        after.stripe_payment_method_id = pm;
    }
    after.auto_topup_enabled = body.enabled.unwrap_or(before.auto_topup_enabled);
    if after.auto_topup_enabled {
        if after.auto_topup_threshold_nanos <= 0 {
            return Err(ApiError::BadRequest(
                "`threshold` (USD) must be positive to enable auto top-up".into(),
            ));
        }
        let cents = after.auto_topup_amount_nanos / 10_000_000;
        if after.auto_topup_amount_nanos % 10_000_000 != 0 || !(100..=10_000_000).contains(&cents) {
            return Err(ApiError::BadRequest(
                "`amount` must be whole cents between $1 and $100000".into(),
            ));
        }
        if !valid_stripe_id(&after.stripe_customer_id, "cus_") {
            return Err(ApiError::BadRequest(
                "`stripe_customer_id` (cus_…) is required to enable auto top-up".into(),
            ));
        }
        if !valid_stripe_id(&after.stripe_payment_method_id, "pm_") {
            return Err(ApiError::BadRequest(
                "`stripe_payment_method_id` (pm_…, saved for off-session use) is required to enable auto top-up".into(),
            ));
        }
        if state.stripe.is_none() {
            return Err(ApiError::BadRequest(
                "Stripe is not configured on this control plane; auto top-up cannot be enabled"
                    .into(),
            ));
        }
    }
    after.updated_at = now_ms();
    state.store.set_billing_settings(&after).await?;
    // The balance may already be below the new threshold: check now rather than at the next
    // ingested batch.
    if let (true, Some(stripe)) = (after.auto_topup_enabled, state.stripe.clone()) {
        let (store, settings) = (state.store.clone(), after.clone());
        tokio::spawn(async move {
            if let Err(err) =
                crate::billing::auto_topup::check_org(store.as_ref(), &stripe, &settings).await
            {
                tracing::warn!(org_id = %settings.org_id, error = %err, "auto top-up check failed");
            }
        });
    }
    let (b, a) = (settings_json(&before), settings_json(&after));
    audit_record(
        &state,
        &principal,
        Change {
            action: "billing.auto_topup",
            target_type: "org",
            target_id: principal.org_id(),
            before: Some(&b),
            after: Some(&a),
        },
    )
    .await?;
    Ok(Json(json!({ "data": a })))
}

pub async fn list_auto_topups(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    if !is_management_key(&principal) {
        principal.require(Permission::BillingRead)?;
    }
    let rows = state.store.list_auto_topups(principal.org_id()).await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "crossing": r.crossing,
                "amount": usd(r.amount_nanos),
                "balance_at_trigger": usd(r.balance_nanos),
                "payment_intent": r.payment_intent_id,
                "status": r.status,
                "error": if r.error.is_empty() { Value::Null } else { json!(r.error) },
                "created_at": iso(r.created_at),
                "completed_at": r.completed_at.map(iso),
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}
