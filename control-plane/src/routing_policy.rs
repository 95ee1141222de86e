//! An org's routing policy as operators write it (JSON through the API, stored as JSON) and
//! as gateways receive it (`pb::RoutingPolicy`).

use serde::{Deserialize, Serialize};
use switchyard_proto::pb;

const SORTS: &[&str] = &["price", "throughput", "latency"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingPolicy {
    /// Appended to every request's `models[]`.
    #[serde(default)]
    pub default_fallback_models: Vec<String>,
    /// Requests may only use these provider slugs (empty = all).
    #[serde(default)]
    pub allowed_providers: Vec<String>,
    /// Unioned with every request's `provider.ignore`.
    #[serde(default)]
    pub ignored_providers: Vec<String>,
    /// `price`, `throughput`, `latency`, or absent for price-weighted balancing.
    #[serde(default)]
    pub default_sort: Option<String>,
    #[serde(default)]
    pub model_overrides: Vec<ModelOverride>,
    /// Caching defaults: `{"response_cache_ttl_secs": 300, "auto_breakpoints": true}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CachePolicy>,
}

/// An org's caching defaults (see the README's "Caching" section).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachePolicy {
    /// Cache every answer this many seconds unless a request opts out (0 = on request only).
    #[serde(default)]
    pub response_cache_ttl_secs: u32,
    /// Add Anthropic prompt-cache breakpoints when a request has none.
    #[serde(default)]
    pub auto_breakpoints: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelOverride {
    pub model: String,
    #[serde(default)]
    pub order: Vec<String>,
    #[serde(default)]
    pub ignore: Vec<String>,
    #[serde(default)]
    pub sort: Option<String>,
    #[serde(default = "yes")]
    pub allow_fallbacks: bool,
}

fn yes() -> bool {
    true
}

impl RoutingPolicy {
    /// Checks what serde cannot: sort names, model ids, duplicate overrides.
    pub fn validate(&self) -> Result<(), String> {
        let check_sort = |field: &str, sort: &Option<String>| match sort.as_deref() {
            Some(s) if !SORTS.contains(&s) => Err(format!(
                "`{field}` must be one of {}, not `{s}`",
                SORTS.join(", ")
            )),
            _ => Ok(()),
        };
        check_sort("default_sort", &self.default_sort)?;
        if let Some(cache) = &self.cache
            && cache.response_cache_ttl_secs > 86_400
        {
            return Err(format!(
                "`cache.response_cache_ttl_secs` must be at most 86400 (one day), not {}",
                cache.response_cache_ttl_secs
            ));
        }
        for (i, m) in self.default_fallback_models.iter().enumerate() {
            if !m.contains('/') {
                return Err(format!(
                    "default_fallback_models[{i}] must look like author/slug, not `{m}`"
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, o) in self.model_overrides.iter().enumerate() {
            if !seen.insert(o.model.as_str()) {
                return Err(format!("model_overrides[{i}]: `{}` appears twice", o.model));
            }
            check_sort(&format!("model_overrides[{i}].sort"), &o.sort)?;
        }
        Ok(())
    }

    pub fn to_pb(&self) -> pb::RoutingPolicy {
        pb::RoutingPolicy {
            default_fallback_models: self.default_fallback_models.clone(),
            allowed_providers: self.allowed_providers.clone(),
            ignored_providers: self.ignored_providers.clone(),
            default_sort: self.default_sort.clone().unwrap_or_default(),
            model_overrides: self
                .model_overrides
                .iter()
                .map(|o| pb::ModelRoutingOverride {
                    model: o.model.clone(),
                    order: o.order.clone(),
                    ignore: o.ignore.clone(),
                    sort: o.sort.clone().unwrap_or_default(),
                    allow_fallbacks: o.allow_fallbacks,
                })
                .collect(),
            cache: self.cache.as_ref().map(|c| pb::CachePolicy {
                response_cache_ttl_secs: c.response_cache_ttl_secs,
                auto_breakpoints: c.auto_breakpoints,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_with_messages_naming_the_field() {
        let ok: RoutingPolicy = serde_json::from_str(r#"{"default_fallback_models":["a/b"],"default_sort":"price","model_overrides":[{"model":"a/b","order":["x"]}]}"#).unwrap();
        assert!(ok.validate().is_ok());
        assert!(ok.model_overrides[0].allow_fallbacks);
        let bad: RoutingPolicy = serde_json::from_str(r#"{"default_sort":"fastest"}"#).unwrap();
        assert!(bad.validate().unwrap_err().contains("default_sort"));
        let dup: RoutingPolicy =
            serde_json::from_str(r#"{"model_overrides":[{"model":"a/b"},{"model":"a/b"}]}"#)
                .unwrap();
        assert!(dup.validate().unwrap_err().contains("twice"));
        assert!(
            serde_json::from_str::<RoutingPolicy>(r#"{"allowed":["x"]}"#).is_err(),
            "unknown fields are refused"
        );
    }
}
