//! The route planner: turns the requested models, the `provider` preferences and live
//! endpoint health into an ordered list of attempts, or an explicit `availability` error
//! naming the constraint that excluded each candidate. Pure: no I/O, randomness injected.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use rand::Rng;

use super::health::{Availability, HealthTable};
use super::prefs::{ModelRef, Partition, ProviderPrefs, SortBy, Variant};
use crate::snapshot::{EndpointEntry, ModelEntry, OrgCatalog};

/// One upstream attempt: a catalog model served by one of its endpoints.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub model: Arc<ModelEntry>,
    pub endpoint: Arc<EndpointEntry>,
    /// The endpoint is ejected or being probed; tried only after healthy ones.
    pub degraded: bool,
}

/// A predicate over providers (the key's guardrails: allowlist, ZDR-only, no-training).
pub type ProviderFilter =
    std::sync::Arc<dyn Fn(&crate::snapshot::ProviderEntry) -> bool + Send + Sync>;

/// What the request needs from an endpoint.
#[derive(Clone, Default)]
pub struct Needs {
    /// Providers the key may use; `None` permits all.
    pub provider_allowed: Option<ProviderFilter>,
    /// Parameters the client sent that not every endpoint honours ("tools", …).
    pub parameters: Vec<&'static str>,
    pub estimated_prompt_tokens: u64,
    pub max_output_tokens: Option<u32>,
}

impl std::fmt::Debug for Needs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Needs")
            .field("parameters", &self.parameters)
            .field("estimated_prompt_tokens", &self.estimated_prompt_tokens)
            .field("max_output_tokens", &self.max_output_tokens)
            .field("provider_filter", &self.provider_allowed.is_some())
            .finish()
    }
}

/// Why no endpoint is left, in OpenRouter's `availability` vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoRoute {
    /// `model_not_found`, `no_endpoints` or `constraint_filtered`.
    pub code: &'static str,
    pub requested_models: Vec<String>,
    pub excluded_by: Vec<&'static str>,
    pub affected_providers: Vec<String>,
    pub detail: String,
}

/// Matches a provider slug against a preference entry: a base slug (`openai`) matches
/// its tagged endpoints too (`openai/eu`).
fn slug_matches(pref: &str, slug: &str) -> bool {
    pref.eq_ignore_ascii_case(slug)
        || slug
            .split('/')
            .next()
            .is_some_and(|base| pref.eq_ignore_ascii_case(base))
}

fn total_price(e: &EndpointEntry) -> i64 {
    e.prices.input.saturating_add(e.prices.output)
}

#[derive(Default)]
struct Exclusions {
    reasons: BTreeSet<&'static str>,
    providers: BTreeSet<String>,
}

impl Exclusions {
    fn add(&mut self, reason: &'static str, e: &EndpointEntry) {
        self.reasons.insert(reason);
        self.providers.insert(e.provider.slug.clone());
    }
}

/// Applies the hard filters to one endpoint; returns the constraint that excludes it.
fn excluded_by(
    e: &EndpointEntry,
    variant: Option<Variant>,
    prefs: &ProviderPrefs,
    needs: &Needs,
) -> Option<&'static str> {
    let slug = &e.provider.slug;
    if needs
        .provider_allowed
        .as_ref()
        .is_some_and(|allowed| !allowed(&e.provider))
    {
        return Some("allowed_providers");
    }
    if !prefs.only.is_empty() && !prefs.only.iter().any(|p| slug_matches(p, slug)) {
        return Some("allowed_providers");
    }
    if !prefs.org_allowed.is_empty() && !prefs.org_allowed.iter().any(|p| slug_matches(p, slug)) {
        return Some("allowed_providers");
    }
    if prefs.ignore.iter().any(|p| slug_matches(p, slug)) {
        return Some("allowed_providers");
    }
    if !prefs.allow_fallbacks
        && !prefs.order.is_empty()
        && !prefs.order.iter().any(|p| slug_matches(p, slug))
    {
        return Some("allowed_providers");
    }
    if prefs.zdr && !e.provider.zero_data_retention {
        return Some("data_policy:zdr");
    }
    if prefs.deny_data_collection && e.provider.trains_on_prompts {
        return Some("data_policy:training");
    }
    if !prefs.quantizations.is_empty()
        && !prefs
            .quantizations
            .iter()
            .any(|q| q.eq_ignore_ascii_case(&e.quantization))
    {
        return Some("quantization");
    }
    let max = &prefs.max_price;
    if max.prompt.is_some_and(|m| e.prices.input > m)
        || max.completion.is_some_and(|m| e.prices.output > m)
        || max.request.is_some_and(|m| e.prices.per_request_nanos > m)
    {
        return Some("max_price");
    }
    if variant == Some(Variant::Free) && (total_price(e) > 0 || e.prices.per_request_nanos > 0) {
        return Some("max_price");
    }
    if prefs.require_parameters
        && !e.supported_parameters.is_empty()
        && !needs
            .parameters
            .iter()
            .all(|p| e.supported_parameters.iter().any(|s| s == p))
    {
        return Some("require_parameters");
    }
    let context = u64::from(e.context_length);
    let wanted_output = needs.max_output_tokens.map_or(0, u64::from);
    if context > 0 && needs.estimated_prompt_tokens + wanted_output > context {
        return Some("context_length");
    }
    if e.max_output_tokens > 0
        && needs
            .max_output_tokens
            .is_some_and(|m| m > e.max_output_tokens)
    {
        return Some("context_length");
    }
    None
}

fn effective_sort(prefs: &ProviderPrefs, variant: Option<Variant>) -> Option<SortBy> {
    match variant {
        Some(Variant::Nitro) => Some(SortBy::Throughput),
        Some(Variant::Floor) => Some(SortBy::Price),
        _ => prefs.sort,
    }
}

fn sort_key(health: &HealthTable, now: Instant, by: SortBy, e: &EndpointEntry) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    match by {
        SortBy::Price => total_price(e) as f64,
        // Unknown throughput sorts after measured endpoints; higher is better.
        SortBy::Throughput => -health.stats(&e.id, now).throughput_ewma_tps.unwrap_or(0.0),
        SortBy::Latency => health.stats(&e.id, now).ttft_ewma_ms.unwrap_or(f64::MAX),
    }
}

/// Default balancing (OpenRouter's rule): pick among endpoints weighted by the inverse
/// square of their price; the rest follow as fallbacks in price order.
fn balance<R: Rng>(mut endpoints: Vec<Arc<EndpointEntry>>, rng: &mut R) -> Vec<Arc<EndpointEntry>> {
    if endpoints.len() < 2 {
        return endpoints;
    }
    endpoints.sort_by_key(|e| total_price(e));
    #[allow(clippy::cast_precision_loss)]
    let weights: Vec<f64> = endpoints
        .iter()
        .map(|e| {
            // Free endpoints get the weight of a one-nano price: far above any paid one.
            let p = total_price(e).max(1) as f64;
            1.0 / (p * p)
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let mut pick = rng.random::<f64>() * total;
    let mut chosen = 0;
    for (i, w) in weights.iter().enumerate() {
        if pick < *w {
            chosen = i;
            break;
        }
        pick -= w;
    }
    let first = endpoints.remove(chosen);
    endpoints.insert(0, first);
    endpoints
}

fn order_endpoints<R: Rng>(
    candidates: Vec<Arc<EndpointEntry>>,
    prefs: &ProviderPrefs,
    variant: Option<Variant>,
    health: &HealthTable,
    now: Instant,
    rng: &mut R,
) -> Vec<Arc<EndpointEntry>> {
    let (mut ordered, rest): (Vec<_>, Vec<_>) = if prefs.order.is_empty() {
        (Vec::new(), candidates)
    } else {
        let mut ordered = Vec::new();
        let mut rest = candidates;
        for pref in &prefs.order {
            let (hit, miss): (Vec<_>, Vec<_>) = rest
                .into_iter()
                .partition(|e| slug_matches(pref, &e.provider.slug));
            ordered.extend(hit);
            rest = miss;
        }
        (ordered, rest)
    };
    let rest = match effective_sort(prefs, variant) {
        Some(by) => {
            let mut rest = rest;
            rest.sort_by(|a, b| {
                sort_key(health, now, by, a).total_cmp(&sort_key(health, now, by, b))
            });
            rest
        }
        None => balance(rest, rng),
    };
    ordered.extend(rest);
    if !prefs.allow_fallbacks {
        ordered.truncate(1);
    }
    ordered
}

/// A requested model, its endpoints that passed the filters, and its variant.
type ModelCandidates = (Arc<ModelEntry>, Vec<Arc<EndpointEntry>>, Option<Variant>);

/// Plans the attempts for one request.
pub fn plan<R: Rng>(
    catalog: &OrgCatalog,
    requested: &[ModelRef],
    prefs: &ProviderPrefs,
    needs: &Needs,
    health: &HealthTable,
    now: Instant,
    rng: &mut R,
) -> Result<Vec<Attempt>, NoRoute> {
    let requested_ids: Vec<String> = requested.iter().map(|r| r.id.clone()).collect();
    let mut exclusions = Exclusions::default();
    let mut known_models = 0;
    let mut per_model: Vec<ModelCandidates> = Vec::new();

    for r in requested {
        let Some(model) = catalog.model(&r.id) else {
            continue;
        };
        known_models += 1;
        let mut candidates = Vec::new();
        let model_prefs = prefs.for_model(&model.id);
        for e in &model.endpoints {
            match excluded_by(e, r.variant, &model_prefs, needs) {
                Some(reason) => exclusions.add(reason, e),
                None => candidates.push(e.clone()),
            }
        }
        per_model.push((model.clone(), candidates, r.variant));
    }

    if known_models == 0 {
        let detail = format!(
            "model `{}` is not in this organization's catalog",
            requested_ids.join("`, `")
        );
        return Err(NoRoute {
            code: "model_not_found",
            requested_models: requested_ids,
            excluded_by: Vec::new(),
            affected_providers: Vec::new(),
            detail,
        });
    }

    let mut attempts: Vec<Attempt> = Vec::new();
    match prefs.partition {
        Partition::Model => {
            for (model, candidates, variant) in per_model {
                let model_prefs = prefs.for_model(&model.id);
                for endpoint in order_endpoints(candidates, &model_prefs, variant, health, now, rng)
                {
                    attempts.push(Attempt {
                        model: model.clone(),
                        endpoint,
                        degraded: false,
                    });
                }
            }
        }
        Partition::None => {
            let sort = prefs.sort.unwrap_or(SortBy::Price);
            let mut all: Vec<(Arc<ModelEntry>, Arc<EndpointEntry>)> = per_model
                .into_iter()
                .flat_map(|(m, es, _)| es.into_iter().map(move |e| (m.clone(), e)))
                .collect();
            all.sort_by(|a, b| {
                sort_key(health, now, sort, &a.1).total_cmp(&sort_key(health, now, sort, &b.1))
            });
            attempts.extend(all.into_iter().map(|(model, endpoint)| Attempt {
                model,
                endpoint,
                degraded: false,
            }));
        }
    }

    // Tools and images cannot be dropped silently: when every remaining endpoint says what
    // it supports and none supports one of them, that is an explicit error even without
    // `require_parameters` (OpenRouter: "No endpoints found that support tool use").
    if !attempts.is_empty() {
        for (param, what) in [("tools", "tool use"), ("vision", "image input")] {
            let declared = attempts
                .iter()
                .all(|a| !a.endpoint.supported_parameters.is_empty());
            let none_can = attempts
                .iter()
                .all(|a| !a.endpoint.supported_parameters.iter().any(|p| p == param));
            if needs.parameters.contains(&param) && declared && none_can {
                return Err(NoRoute {
                    code: "no_endpoints",
                    requested_models: requested_ids,
                    excluded_by: vec!["require_parameters"],
                    affected_providers: attempts
                        .iter()
                        .map(|a| a.endpoint.provider.slug.clone())
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect(),
                    detail: format!("No endpoints found that support {what}"),
                });
            }
        }
        // Soft preference: endpoints that honour everything sent go first.
        attempts.sort_by_key(|a| {
            let s = &a.endpoint.supported_parameters;
            !s.is_empty() && !needs.parameters.iter().all(|p| s.iter().any(|x| x == p))
        });
    }

    if attempts.is_empty() {
        let had_endpoints = exclusions.reasons.is_empty();
        return Err(NoRoute {
            code: if had_endpoints {
                "no_endpoints"
            } else {
                "constraint_filtered"
            },
            requested_models: requested_ids,
            excluded_by: exclusions.reasons.into_iter().collect(),
            affected_providers: exclusions.providers.into_iter().collect(),
            detail: if had_endpoints {
                "the requested models have no endpoints configured".into()
            } else {
                "every endpoint of the requested models was excluded by the request's constraints"
                    .into()
            },
        });
    }

    // Ejected endpoints go last (stable), so a healthy alternative is always tried first,
    // and an ejected one still serves when it is all that is left.
    for a in &mut attempts {
        a.degraded = health.availability(&a.endpoint.id, now) != Availability::Healthy;
    }
    attempts.sort_by_key(|a| a.degraded);
    Ok(attempts)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use switchyard_proto::{PriceSheet, pb};

    use super::*;
    use crate::routing::prefs::MaxPrice;
    use crate::snapshot::Snapshot;

    /// One org, model `m/a` with endpoints on providers p1 (cheap) and p2 (dear, zdr, fp8),
    /// and model `m/b` on p2.
    fn catalog() -> Snapshot {
        let provider = |id: &str, zdr: bool| pb::Provider {
            id: id.into(),
            org_id: "o".into(),
            slug: id.into(),
            name: id.into(),
            kind: pb::ProviderKind::OpenaiCompatible as i32,
            base_url: "http://127.0.0.1:9".into(),
            zero_data_retention: zdr,
            trains_on_prompts: !zdr,
            ..Default::default()
        };
        let endpoint = |id: &str, provider: &str, price: i64, quant: &str| pb::Endpoint {
            id: id.into(),
            provider_id: provider.into(),
            upstream_model: "x".into(),
            context_length: 1000,
            max_output_tokens: 500,
            prices: Some(
                (&PriceSheet {
                    input: price,
                    output: price,
                    ..Default::default()
                })
                    .into(),
            ),
            quantization: quant.into(),
            supported_parameters: if provider == "p1" {
                vec!["tools".into()]
            } else {
                Vec::new()
            },
        };
        Snapshot::try_from(pb::ConfigSnapshot {
            version: 1,
            orgs: vec![pb::Org {
                id: "o".into(),
                name: "o".into(),
                ..Default::default()
            }],
            providers: vec![provider("p1", false), provider("p2", true)],
            models: vec![
                pb::Model {
                    org_id: "o".into(),
                    id: "m/a".into(),
                    endpoints: vec![
                        endpoint("a1", "p1", 1_000, "fp8"),
                        endpoint("a2", "p2", 10_000, "bf16"),
                    ],
                    ..Default::default()
                },
                pb::Model {
                    org_id: "o".into(),
                    id: "m/b".into(),
                    endpoints: vec![endpoint("b2", "p2", 5_000, "bf16")],
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
        .unwrap()
    }

    fn run(requested: &[&str], prefs: ProviderPrefs, needs: Needs) -> Result<Vec<String>, NoRoute> {
        let snap = catalog();
        let refs: Vec<ModelRef> = requested.iter().map(|m| ModelRef::parse(m)).collect();
        let mut rng = StdRng::seed_from_u64(7);
        plan(
            snap.org("o").unwrap(),
            &refs,
            &prefs,
            &needs,
            &HealthTable::default(),
            Instant::now(),
            &mut rng,
        )
        .map(|a| a.iter().map(|a| a.endpoint.id.clone()).collect())
    }

    #[test]
    fn model_fallbacks_follow_the_requested_order() {
        let ids = run(
            &["m/a", "m/b"],
            ProviderPrefs {
                sort: Some(SortBy::Price),
                ..Default::default()
            },
            Needs::default(),
        )
        .unwrap();
        assert_eq!(ids, vec!["a1", "a2", "b2"]);
        let ids = run(
            &["nobody/x", "m/b"],
            ProviderPrefs::default(),
            Needs::default(),
        )
        .unwrap();
        assert_eq!(ids, vec!["b2"]);
    }

    #[test]
    fn order_only_ignore_and_no_fallbacks() {
        let order = ProviderPrefs {
            order: vec!["p2".into()],
            ..Default::default()
        };
        assert_eq!(
            run(&["m/a"], order.clone(), Needs::default()).unwrap(),
            vec!["a2", "a1"]
        );
        let strict = ProviderPrefs {
            allow_fallbacks: false,
            ..order
        };
        assert_eq!(run(&["m/a"], strict, Needs::default()).unwrap(), vec!["a2"]);
        let only = ProviderPrefs {
            only: vec!["p1".into()],
            ..Default::default()
        };
        assert_eq!(
            run(&["m/a", "m/b"], only, Needs::default()).unwrap(),
            vec!["a1"]
        );
        let ignore = ProviderPrefs {
            ignore: vec!["p1".into()],
            ..Default::default()
        };
        assert_eq!(run(&["m/a"], ignore, Needs::default()).unwrap(), vec!["a2"]);
    }

    #[test]
    fn hard_filters_name_the_constraint() {
        let cheap = ProviderPrefs {
            max_price: MaxPrice {
                prompt: Some(500),
                ..Default::default()
            },
            ..Default::default()
        };
        let err = run(&["m/a"], cheap, Needs::default()).unwrap_err();
        assert_eq!(err.code, "constraint_filtered");
        assert_eq!(err.excluded_by, vec!["max_price"]);
        assert_eq!(err.affected_providers, vec!["p1", "p2"]);

        let zdr = ProviderPrefs {
            zdr: true,
            ..Default::default()
        };
        assert_eq!(run(&["m/a"], zdr, Needs::default()).unwrap(), vec!["a2"]);
        let deny = ProviderPrefs {
            deny_data_collection: true,
            ..Default::default()
        };
        assert_eq!(run(&["m/a"], deny, Needs::default()).unwrap(), vec!["a2"]);
        let quant = ProviderPrefs {
            quantizations: vec!["fp8".into()],
            ..Default::default()
        };
        assert_eq!(run(&["m/a"], quant, Needs::default()).unwrap(), vec!["a1"]);

        let tools = Needs {
            parameters: vec!["response_format"],
            ..Default::default()
        };
        let require = ProviderPrefs {
            require_parameters: true,
            ..Default::default()
        };
        // p1 lists its parameters and lacks response_format; p2 lists none (unrestricted).
        assert_eq!(run(&["m/a"], require, tools).unwrap(), vec!["a2"]);

        let long = Needs {
            estimated_prompt_tokens: 900,
            max_output_tokens: Some(200),
            ..Default::default()
        };
        let err = run(&["m/a"], ProviderPrefs::default(), long).unwrap_err();
        assert_eq!(err.excluded_by, vec!["context_length"]);

        let err = run(&["nobody/x"], ProviderPrefs::default(), Needs::default()).unwrap_err();
        assert_eq!(err.code, "model_not_found");
    }

    #[test]
    fn tools_nobody_supports_are_an_explicit_error_and_capable_endpoints_go_first() {
        // p1's endpoint declares ["tools"]; p2's declares nothing (unrestricted).
        let tools = Needs {
            parameters: vec!["tools"],
            ..Default::default()
        };
        let only_declared = ProviderPrefs {
            only: vec!["p1".into()],
            ..Default::default()
        };
        assert_eq!(
            run(&["m/a"], only_declared, tools.clone()).unwrap(),
            vec!["a1"]
        );
        let vision = Needs {
            parameters: vec!["vision"],
            ..Default::default()
        };
        let only_p1 = ProviderPrefs {
            only: vec!["p1".into()],
            ..Default::default()
        };
        let err = run(&["m/a"], only_p1, vision).unwrap_err();
        assert_eq!(err.detail, "No endpoints found that support image input");
        assert_eq!(err.excluded_by, vec!["require_parameters"]);
    }

    #[test]
    fn variants_sort_and_filter() {
        assert_eq!(
            run(&["m/a:floor"], ProviderPrefs::default(), Needs::default()).unwrap(),
            vec!["a1", "a2"]
        );
        let err = run(&["m/a:free"], ProviderPrefs::default(), Needs::default()).unwrap_err();
        assert_eq!(err.excluded_by, vec!["max_price"]);
    }

    #[test]
    fn partition_none_sorts_across_models() {
        let prefs = ProviderPrefs {
            partition: Partition::None,
            sort: Some(SortBy::Price),
            ..Default::default()
        };
        assert_eq!(
            run(&["m/a", "m/b"], prefs, Needs::default()).unwrap(),
            vec!["a1", "b2", "a2"]
        );
    }

    #[test]
    fn default_balancing_is_inverse_square_of_price() {
        let snap = catalog();
        let refs = [ModelRef::parse("m/a")];
        let mut rng = StdRng::seed_from_u64(1);
        let health = HealthTable::default();
        let mut cheap_first = 0;
        for _ in 0..2000 {
            let a = plan(
                snap.org("o").unwrap(),
                &refs,
                &ProviderPrefs::default(),
                &Needs::default(),
                &health,
                Instant::now(),
                &mut rng,
            )
            .unwrap();
            assert_eq!(a.len(), 2, "the other endpoint stays as a fallback");
            if a[0].endpoint.id == "a1" {
                cheap_first += 1;
            }
        }
        // Prices 2000 vs 20000: weights 1/4e6 vs 1/4e8, so the cheap one leads ~99% of the time.
        assert!(cheap_first > 1940, "{cheap_first}");
    }

    #[test]
    fn ejected_endpoints_go_last_but_stay_available() {
        let snap = catalog();
        let health = HealthTable::default();
        let now = Instant::now();
        for _ in 0..5 {
            health.record_failure("a1", now);
        }
        let mut rng = StdRng::seed_from_u64(3);
        let prefs = ProviderPrefs {
            sort: Some(SortBy::Price),
            ..Default::default()
        };
        let a = plan(
            snap.org("o").unwrap(),
            &[ModelRef::parse("m/a")],
            &prefs,
            &Needs::default(),
            &health,
            now,
            &mut rng,
        )
        .unwrap();
        assert_eq!(
            a.iter().map(|a| a.endpoint.id.as_str()).collect::<Vec<_>>(),
            vec!["a2", "a1"]
        );
        assert!(a[1].degraded);
    }
}
