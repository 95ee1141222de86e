//! Prepaid credits: `GET /api/v1/credits` (OpenRouter's shape), manual grants and refunds,
//! the credit account's transactions, Stripe Checkout top-ups and Stripe's webhook.
//!
//! Every change is a balanced ledger posting; nothing is ever updated in place.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_proto::{GenerationId, Money};
use uuid::Uuid;

use super::audit::{Change, record as audit_record};
use super::principal::{Actor, Principal};
use super::timefmt::iso;
use super::{AppState, JsonBody};
use crate::billing::stripe::{self, SIGNATURE_TOLERANCE_SECS};
use crate::error::ApiError;
use crate::identity::Permission;
use crate::store::{
    CheckoutRow, LedgerQuery, Posting, StripeOutcome, accounts, now_ms, platform_accounts,
    posting_kinds,
};

fn usd(nanos: i64) -> f64 {
    Money::from_nanos(nanos).as_usd_f64()
}

fn is_management_key(principal: &Principal) -> bool {
    matches!(
        principal.actor,
        Actor::Key {
            kind: crate::store::KeyKind::Management,
            ..
        }
    )
}

/// Money moves (grants, refunds, top-ups) need `billing.write`; a management key, the
/// operator's automation credential, may do them too (OpenRouter's management keys do).
fn require_billing_write(principal: &Principal) -> Result<(), ApiError> {
    if is_management_key(principal) {
        return Ok(());
    }
    principal.require(Permission::BillingWrite)
}

fn require_billing_read(principal: &Principal) -> Result<(), ApiError> {
    if is_management_key(principal) {
        return Ok(());
    }
    principal.require(Permission::BillingRead)
}

/// A USD amount as clients send it: a JSON number or a decimal string.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum UsdAmount {
    Number(f64),
    Text(String),
}

impl UsdAmount {
    pub(crate) fn to_money(&self, field: &str) -> Result<Money, ApiError> {
        match self {
            UsdAmount::Number(n) => Money::from_usd_f64(*n),
            UsdAmount::Text(t) => Money::parse_usd(t),
        }
        .map_err(|e| ApiError::BadRequest(format!("`{field}` (USD): {e}")))
    }
}

pub async fn totals(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    // OpenRouter answers `/credits` for any key of the account; sessions need `billing.read`.
    if principal.key().is_none() {
        principal.require(Permission::BillingRead)?;
    }
    let t = state.store.rollup_credit_totals(principal.org_id()).await?;
    Ok(Json(json!({
        "data": {
            "total_credits": usd(t.credits_nanos),
            "total_usage": usd(t.usage_nanos),
            "balance": usd(t.balance_nanos),
            "total_credits_nanos": t.credits_nanos,
            "total_usage_nanos": t.usage_nanos,
            "balance_nanos": t.balance_nanos,
        }
    })))
}

#[derive(Deserialize)]
pub struct GrantBody {
    amount: Option<UsdAmount>,
    reason: Option<String>,
    /// `grant` (default) adds credits; `refund` returns spend (counted against usage).
    kind: Option<String>,
    /// The generation a refund is for (`gen-…`); its cost bounds the refund.
    generation_id: Option<String>,
}

pub async fn grant(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<GrantBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_billing_write(&principal)?;
    let org = principal.org_id().to_owned();
    let amount = body
        .amount
        .as_ref()
        .ok_or_else(|| ApiError::BadRequest("`amount` (USD) is required".into()))?
        .to_money("amount")?;
    if amount <= Money::ZERO {
        return Err(ApiError::BadRequest("`amount` must be positive".into()));
    }
    let reason = body.reason.unwrap_or_default().trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::BadRequest(
            "`reason` is required (1-500 characters): it is kept with the ledger entry".into(),
        ));
    }
    let kind = match body.kind.as_deref().unwrap_or("grant") {
        "grant" => posting_kinds::GRANT,
        "refund" => posting_kinds::REFUND,
        other => {
            return Err(ApiError::BadRequest(format!(
                "`kind` must be `grant` or `refund`, not `{other}`"
            )));
        }
    };
    let mut ref_id = None;
    if let Some(text) = &body.generation_id {
        if kind != posting_kinds::REFUND {
            return Err(ApiError::BadRequest(
                "`generation_id` only goes with `kind: refund`".into(),
            ));
        }
        let id: GenerationId = text.parse().map_err(|_| {
            ApiError::BadRequest(format!("`{text}` is not a generation id (gen-<uuid>)"))
        })?;
        let request_id = id.uuid().to_string();
        let row = state
            .store
            .get_usage(&org, &request_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("generation {id} not found")))?;
        let adjusted: i64 = state
            .store
            .list_adjustments(&org, &request_id)
            .await?
            .iter()
            .map(|a| a.delta_nanos)
            .sum();
        let refunded: i64 = state
            .store
            .list_ledger(
                &org,
                &LedgerQuery {
                    account: Some(accounts::ORG_CREDITS.into()),
                    kind: Some(posting_kinds::REFUND.into()),
                    before_id: None,
                    limit: 10_000,
                },
            )
            .await?
            .iter()
            .filter(|e| e.ref_id.as_deref() == Some(request_id.as_str()))
            .map(|e| e.amount_nanos)
            .sum();
        let refundable = row.cost_nanos + adjusted - refunded;
        if amount.nanos() > refundable {
            return Err(ApiError::BadRequest(format!(
                "generation {id} has {} left to refund; asked for {amount}",
                Money::from_nanos(refundable.max(0))
            )));
        }
        ref_id = Some(request_id);
    }
    let contra = if kind == posting_kinds::GRANT {
        platform_accounts::GRANTS
    } else {
        accounts::PLATFORM_REVENUE
    };
    let posting = Posting {
        id: Uuid::now_v7().to_string(),
        org_id: org.clone(),
        kind,
        memo: reason.clone(),
        ref_id,
        created_at: now_ms(),
        legs: vec![
            (accounts::ORG_CREDITS.to_owned(), amount.nanos()),
            (contra.to_owned(), -amount.nanos()),
        ],
    };
    state.store.post(&posting).await?;
    let totals = state.store.rollup_credit_totals(&org).await?;
    let data = json!({
        "id": posting.id,
        "kind": kind,
        "amount": usd(amount.nanos()),
        "amount_nanos": amount.nanos(),
        "reason": reason,
        "generation_id": posting.ref_id.as_deref().and_then(|r| Uuid::parse_str(r).ok()).map(|u| GenerationId::from_uuid(u).to_string()),
        "created_at": iso(posting.created_at),
        "balance": usd(totals.balance_nanos),
    });
    audit_record(
        &state,
        &principal,
        Change {
            action: if kind == posting_kinds::GRANT {
                "credits.grant"
            } else {
                "credits.refund"
            },
            target_type: "org",
            target_id: &org,
            before: None,
            after: Some(&data),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "data": data }))))
}

#[derive(Deserialize)]
pub struct TransactionsQuery {
    kind: Option<String>,
    limit: Option<i64>,
    /// Cursor: the `next_before` of the previous page.
    before: Option<i64>,
}

pub async fn transactions(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<TransactionsQuery>,
) -> Result<Json<Value>, ApiError> {
    require_billing_read(&principal)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let entries = state
        .store
        .list_ledger(
            principal.org_id(),
            &LedgerQuery {
                account: Some(accounts::ORG_CREDITS.into()),
                kind: q.kind,
                before_id: q.before,
                limit,
            },
        )
        .await?;
    let next = (i64::try_from(entries.len()).unwrap_or(0) == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let data: Vec<Value> = entries
        .iter()
        .map(|e| {
            let generation = e
                .request_id
                .as_deref()
                .or(e.ref_id.as_deref())
                .and_then(|r| Uuid::parse_str(r).ok())
                .map(|u| GenerationId::from_uuid(u).to_string());
            json!({
                "id": e.id,
                "kind": e.kind,
                "amount": usd(e.amount_nanos),
                "amount_nanos": e.amount_nanos,
                "posting_id": e.posting_id.as_deref().or(e.request_id.as_deref()),
                "generation_id": generation,
                "reference": e.ref_id,
                "memo": e.memo,
                "created_at": iso(e.created_at),
            })
        })
        .collect();
    Ok(Json(json!({ "data": data, "next_before": next })))
}

#[derive(Deserialize)]
pub struct CheckoutBody {
    amount: Option<UsdAmount>,
}

const MIN_TOPUP_CENTS: i64 = 100;
const MAX_TOPUP_CENTS: i64 = 10_000_000;
const NANOS_PER_CENT: i64 = 10_000_000;

pub async fn checkout(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CheckoutBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_billing_write(&principal)?;
    let stripe = state.stripe.clone().ok_or_else(|| {
        ApiError::NotFound("Stripe top-ups are not configured on this control plane".into())
    })?;
    let amount = body
        .amount
        .as_ref()
        .ok_or_else(|| ApiError::BadRequest("`amount` (USD) is required".into()))?
        .to_money("amount")?;
    if amount.nanos() % NANOS_PER_CENT != 0 {
        return Err(ApiError::BadRequest("`amount` must be whole cents".into()));
    }
    let cents = amount.nanos() / NANOS_PER_CENT;
    if !(MIN_TOPUP_CENTS..=MAX_TOPUP_CENTS).contains(&cents) {
        return Err(ApiError::BadRequest(
            "`amount` must be between $1 and $100000".into(),
        ));
    }
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 255)
        .map_or_else(
            || Uuid::now_v7().to_string(),
            |k| format!("{}:{k}", principal.org_id()),
        );
    let session = stripe
        .create_checkout_session(principal.org_id(), cents, &idempotency_key)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "creating a Stripe Checkout Session failed");
            ApiError::Internal(format!("Stripe: {e}"))
        })?;
    let url = session.url.clone().unwrap_or_default();
    let (actor_type, actor_id) = principal.audit_actor();
    let row = CheckoutRow {
        id: session.id.clone(),
        org_id: principal.org_id().to_owned(),
        amount_nanos: amount.nanos(),
        url: url.clone(),
        created_by: format!("{actor_type}:{actor_id}"),
        created_at: now_ms(),
        completed_at: None,
    };
    match state.store.create_checkout(&row).await {
        // The same Idempotency-Key returned the session already recorded.
        Ok(()) | Err(crate::store::StoreError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let data = json!({
        "id": session.id,
        "url": url,
        "amount": usd(amount.nanos()),
    });
    audit_record(
        &state,
        &principal,
        Change {
            action: "credits.checkout",
            target_type: "checkout_session",
            target_id: &row.id,
            before: None,
            after: Some(&data),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "data": data }))))
}

/// Stripe's webhook: no credentials but the signature, so every failure is a bare 400 and
/// changes nothing.
pub async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let stripe = state.stripe.clone().ok_or_else(|| {
        ApiError::NotFound("Stripe top-ups are not configured on this control plane".into())
    })?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    stripe::verify_signature(
        signature,
        &body,
        &stripe.config().webhook_secret,
        now_ms() / 1000,
        SIGNATURE_TOLERANCE_SECS,
    )
    .map_err(|e| {
        tracing::warn!(error = %e, "rejected a Stripe webhook");
        ApiError::BadRequest(format!("invalid Stripe signature: {e}"))
    })?;
    let event: stripe::Event = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("not a Stripe event: {e}")))?;
    // An auto top-up that did not succeed at once (or whose answer was lost) is settled by
    // its PaymentIntent's event; the credit posting is keyed by the intent, so it lands once.
    if event.kind == "payment_intent.succeeded"
        && event.data.object.object.as_deref() == Some("payment_intent")
        && event.data.object.status.as_deref() == Some("succeeded")
    {
        let (Some(intent), Some(attempt)) = (
            event.data.object.id.as_deref(),
            event.data.object.metadata.get("auto_topup_id"),
        ) else {
            return Ok(Json(json!({ "received": true, "handled": false })));
        };
        let handled = match state
            .store
            .finish_auto_topup(attempt, Some(intent), true, "", now_ms())
            .await
        {
            Ok(()) => "auto_topup_settled",
            Err(crate::store::StoreError::NotFound) => "unknown_auto_topup",
            Err(e) => return Err(e.into()),
        };
        return Ok(Json(json!({ "received": true, "handled": handled })));
    }
    let completes = matches!(
        event.kind.as_str(),
        "checkout.session.completed" | "checkout.session.async_payment_succeeded"
    ) && event.data.object.object.as_deref() == Some("checkout.session")
        && event.data.object.payment_status.as_deref() == Some("paid");
    let Some(session_id) = event.data.object.id.as_deref().filter(|_| completes) else {
        return Ok(Json(json!({ "received": true, "handled": false })));
    };
    let outcome = state
        .store
        .complete_checkout(&event.id, &event.kind, session_id, now_ms())
        .await?;
    let handled = match &outcome {
        StripeOutcome::Credited {
            org_id,
            amount_nanos,
        } => {
            tracing::info!(%org_id, amount = %Money::from_nanos(*amount_nanos), event = %event.id, "Stripe top-up credited");
            "credited"
        }
        StripeOutcome::DuplicateEvent => "duplicate_event",
        StripeOutcome::AlreadyCompleted => "already_completed",
        StripeOutcome::UnknownSession => {
            tracing::warn!(session = %session_id, event = %event.id, "Stripe event for a Checkout Session this control plane did not create");
            "unknown_session"
        }
    };
    Ok(Json(json!({ "received": true, "handled": handled })))
}
