//! Routing preferences as clients send them: OpenRouter's `provider` object, `models[]`,
//! model variant suffixes and the deprecated `route` field.

use serde::Deserialize;
use serde_json::{Map, Value};
use switchyard_proto::money::per_token_usd_to_nanos_per_mtok;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Price,
    Throughput,
    Latency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partition {
    /// Each model's endpoints in turn (the default).
    #[default]
    Model,
    /// All listed models' endpoints sorted together.
    None,
}

/// Hard price ceilings in nano-USD per million tokens (request: nano-USD per request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaxPrice {
    pub prompt: Option<i64>,
    pub completion: Option<i64>,
    pub request: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderPrefs {
    pub order: Vec<String>,
    pub only: Vec<String>,
    pub ignore: Vec<String>,
    pub allow_fallbacks: bool,
    pub require_parameters: bool,
    pub deny_data_collection: bool,
    pub zdr: bool,
    pub quantizations: Vec<String>,
    pub sort: Option<SortBy>,
    pub partition: Partition,
    pub max_price: MaxPrice,
    /// The org's ceiling on providers (its routing policy); empty = all.
    pub org_allowed: Vec<String>,
    /// The org's per-model overrides, applied where the request did not say otherwise.
    pub model_overrides: Vec<ModelOverride>,
}

/// An org's routing override for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelOverride {
    pub model: String,
    pub order: Vec<String>,
    pub ignore: Vec<String>,
    pub sort: Option<SortBy>,
    pub allow_fallbacks: bool,
}

impl ProviderPrefs {
    /// Folds the org's routing policy into the request's preferences: the request narrows
    /// the org's choices and never widens them.
    pub fn with_org_policy(mut self, policy: &switchyard_proto::pb::RoutingPolicy) -> Self {
        self.org_allowed = policy.allowed_providers.clone();
        for slug in &policy.ignored_providers {
            if !self.ignore.contains(slug) {
                self.ignore.push(slug.clone());
            }
        }
        if self.sort.is_none() {
            self.sort = sort_by(&policy.default_sort).ok();
        }
        self.model_overrides = policy
            .model_overrides
            .iter()
            .map(|o| ModelOverride {
                model: o.model.clone(),
                order: o.order.clone(),
                ignore: o.ignore.clone(),
                sort: sort_by(&o.sort).ok(),
                allow_fallbacks: o.allow_fallbacks,
            })
            .collect();
        self
    }

    /// The preferences for one model: the org's override for it fills what the request
    /// left open (order, sort), and its ignores add up.
    pub fn for_model(&self, model: &str) -> std::borrow::Cow<'_, ProviderPrefs> {
        let Some(o) = self.model_overrides.iter().find(|o| o.model == model) else {
            return std::borrow::Cow::Borrowed(self);
        };
        let mut p = self.clone();
        if p.order.is_empty() && !o.order.is_empty() {
            p.order = o.order.clone();
            p.allow_fallbacks = p.allow_fallbacks && o.allow_fallbacks;
        }
        p.ignore.extend(o.ignore.iter().cloned());
        if p.sort.is_none() {
            p.sort = o.sort;
        }
        std::borrow::Cow::Owned(p)
    }
}

impl Default for ProviderPrefs {
    fn default() -> Self {
        Self {
            order: Vec::new(),
            only: Vec::new(),
            ignore: Vec::new(),
            allow_fallbacks: true,
            require_parameters: false,
            deny_data_collection: false,
            zdr: false,
            quantizations: Vec::new(),
            sort: None,
            partition: Partition::Model,
            max_price: MaxPrice::default(),
            org_allowed: Vec::new(),
            model_overrides: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SortField {
    Name(String),
    Object {
        by: Option<String>,
        partition: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PriceField {
    Text(String),
    Number(f64),
}

#[derive(Deserialize, Default)]
struct RawMaxPrice {
    prompt: Option<PriceField>,
    completion: Option<PriceField>,
    request: Option<PriceField>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawPrefs {
    order: Option<Vec<String>>,
    only: Option<Vec<String>>,
    ignore: Option<Vec<String>>,
    allow_fallbacks: Option<bool>,
    require_parameters: Option<bool>,
    data_collection: Option<String>,
    zdr: Option<bool>,
    quantizations: Option<Vec<String>>,
    sort: Option<SortField>,
    max_price: Option<RawMaxPrice>,
}

fn bad(msg: String) -> ApiError {
    ApiError::BadRequest(msg)
}

fn sort_by(name: &str) -> Result<SortBy, ApiError> {
    match name {
        "price" => Ok(SortBy::Price),
        "throughput" => Ok(SortBy::Throughput),
        "latency" => Ok(SortBy::Latency),
        other => Err(bad(format!(
            "`provider.sort` must be price, throughput or latency, not `{other}`"
        ))),
    }
}

/// `max_price` prompt/completion are USD per million tokens; request is USD per request.
fn usd_per_million(field: &str, value: Option<PriceField>) -> Result<Option<i64>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    let text = match value {
        PriceField::Text(t) => t,
        PriceField::Number(n) if n.is_finite() && n >= 0.0 => format!("{n}"),
        PriceField::Number(_) => {
            return Err(bad(format!(
                "`provider.max_price.{field}` must be a non-negative number"
            )));
        }
    };
    // USD per million tokens is USD per token shifted six decimal places: shift the text and
    // reuse the exact per-token parser, so no float ever touches a price.
    let per_token = shift_decimal_left(&text, 6).ok_or_else(|| {
        bad(format!(
            "`provider.max_price.{field}` is not a decimal number"
        ))
    })?;
    per_token_usd_to_nanos_per_mtok(&per_token)
        .map(Some)
        .map_err(|e| bad(format!("`provider.max_price.{field}`: {e}")))
}

/// "2.5" shifted left by 6 places is "0.0000025".
fn shift_decimal_left(text: &str, places: usize) -> Option<String> {
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{whole}{frac}");
    let point = whole.len();
    let padded = format!("{}{digits}", "0".repeat(places + 1));
    let split = padded.len() - digits.len() + point - places;
    let whole = padded[..split].trim_start_matches('0');
    Some(format!(
        "{}.{}",
        if whole.is_empty() { "0" } else { whole },
        &padded[split..]
    ))
}

impl ProviderPrefs {
    /// Parses the request's `provider` object and deprecated `route`.
    pub fn from_request(extra: &Map<String, Value>) -> Result<Self, ApiError> {
        let mut prefs = ProviderPrefs::default();
        if let Some(value) = extra.get("provider").filter(|v| !v.is_null()) {
            let raw: RawPrefs = serde_json::from_value(value.clone())
                .map_err(|e| bad(format!("`provider` is invalid: {e}")))?;
            prefs.order = raw.order.unwrap_or_default();
            prefs.only = raw.only.unwrap_or_default();
            prefs.ignore = raw.ignore.unwrap_or_default();
            prefs.allow_fallbacks = raw.allow_fallbacks.unwrap_or(true);
            prefs.require_parameters = raw.require_parameters.unwrap_or(false);
            prefs.deny_data_collection = match raw.data_collection.as_deref() {
                None | Some("allow") => false,
                Some("deny") => true,
                Some(other) => {
                    return Err(bad(format!(
                        "`provider.data_collection` must be allow or deny, not `{other}`"
                    )));
                }
            };
            prefs.zdr = raw.zdr.unwrap_or(false);
            prefs.quantizations = raw.quantizations.unwrap_or_default();
            match raw.sort {
                None => {}
                Some(SortField::Name(name)) => prefs.sort = Some(sort_by(&name)?),
                Some(SortField::Object { by, partition }) => {
                    prefs.sort = by.as_deref().map(sort_by).transpose()?;
                    prefs.partition = match partition.as_deref() {
                        None | Some("model") => Partition::Model,
                        Some("none") => Partition::None,
                        Some(other) => {
                            return Err(bad(format!(
                                "`provider.sort.partition` must be model or none, not `{other}`"
                            )));
                        }
                    };
                }
            }
            if let Some(max) = raw.max_price {
                prefs.max_price = MaxPrice {
                    prompt: usd_per_million("prompt", max.prompt)?,
                    completion: usd_per_million("completion", max.completion)?,
                    request: match max.request {
                        None => None,
                        Some(PriceField::Text(t)) => Some(parse_usd(&t)?),
                        Some(PriceField::Number(n)) => Some(parse_usd(&format!("{n}"))?),
                    },
                };
            }
        }
        // Deprecated `route: "fallback"` is `partition: model`, `"sort"` is `partition: none`.
        if let Some(route) = extra.get("route").and_then(Value::as_str)
            && route == "sort"
        {
            prefs.partition = Partition::None;
        }
        Ok(prefs)
    }
}

fn parse_usd(text: &str) -> Result<i64, ApiError> {
    switchyard_proto::Money::parse_usd(text)
        .map(switchyard_proto::Money::nanos)
        .map_err(|e| bad(format!("`provider.max_price.request`: {e}")))
}

/// A model reference with its variant suffix split off (`openai/gpt-4o:nitro`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub id: String,
    pub variant: Option<Variant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Sort by throughput.
    Nitro,
    /// Sort by price.
    Floor,
    /// Only endpoints that cost nothing.
    Free,
}

impl ModelRef {
    pub fn parse(text: &str) -> ModelRef {
        let variant = |suffix: &str| match suffix {
            "nitro" => Some(Variant::Nitro),
            "floor" => Some(Variant::Floor),
            "free" => Some(Variant::Free),
            _ => None,
        };
        match text.rsplit_once(':') {
            Some((id, suffix)) if variant(suffix).is_some() => ModelRef {
                id: id.to_owned(),
                variant: variant(suffix),
            },
            _ => ModelRef {
                id: text.to_owned(),
                variant: None,
            },
        }
    }
}

/// The primary model and the `models[]` fallbacks, in order, without duplicates.
pub fn requested_models(
    primary: &str,
    extra: &Map<String, Value>,
) -> Result<Vec<ModelRef>, ApiError> {
    let mut out: Vec<ModelRef> = Vec::new();
    let mut push = |text: &str| {
        let r = ModelRef::parse(text);
        if !out.contains(&r) {
            out.push(r);
        }
    };
    if !primary.is_empty() {
        push(primary);
    }
    match extra.get("models") {
        None | Some(Value::Null) => {}
        Some(Value::Array(models)) => {
            for (i, m) in models.iter().enumerate() {
                let text = m
                    .as_str()
                    .ok_or_else(|| bad(format!("models[{i}] must be a string")))?;
                push(text);
            }
        }
        Some(_) => return Err(bad("`models` must be an array of model ids".into())),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn prefs(v: Value) -> Result<ProviderPrefs, ApiError> {
        let mut m = Map::new();
        m.insert("provider".into(), v);
        ProviderPrefs::from_request(&m)
    }

    #[test]
    fn parses_the_provider_object() {
        let p = prefs(json!({
            "order": ["a", "b"], "allow_fallbacks": false, "require_parameters": true,
            "data_collection": "deny", "zdr": true, "quantizations": ["fp8"],
            "sort": {"by": "latency", "partition": "none"},
            "max_price": {"prompt": "1.5", "completion": 2, "request": "0.01"}
        }))
        .unwrap();
        assert_eq!(p.order, vec!["a", "b"]);
        assert!(!p.allow_fallbacks && p.require_parameters && p.deny_data_collection && p.zdr);
        assert_eq!(p.sort, Some(SortBy::Latency));
        assert_eq!(p.partition, Partition::None);
        assert_eq!(p.max_price.prompt, Some(1_500_000_000));
        assert_eq!(p.max_price.completion, Some(2_000_000_000));
        assert_eq!(p.max_price.request, Some(10_000_000));
        assert_eq!(
            prefs(json!({"sort": "price"})).unwrap().sort,
            Some(SortBy::Price)
        );
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        assert!(
            prefs(json!({"sort": "fastest"}))
                .unwrap_err()
                .to_string()
                .contains("provider.sort")
        );
        assert!(
            prefs(json!({"data_collection": "maybe"}))
                .unwrap_err()
                .to_string()
                .contains("data_collection")
        );
        assert!(
            prefs(json!({"max_price": {"prompt": "cheap"}}))
                .unwrap_err()
                .to_string()
                .contains("max_price.prompt")
        );
        assert!(
            prefs(json!({"order": "a"}))
                .unwrap_err()
                .to_string()
                .contains("provider")
        );
    }

    #[test]
    fn shifts_decimals_exactly() {
        assert_eq!(shift_decimal_left("2.5", 6).unwrap(), "0.0000025");
        assert_eq!(shift_decimal_left("15", 6).unwrap(), "0.000015");
        assert_eq!(shift_decimal_left("1234567", 6).unwrap(), "1.234567");
        assert!(shift_decimal_left("1e3", 6).is_none());
    }

    #[test]
    fn splits_variants_and_merges_fallback_models() {
        assert_eq!(
            ModelRef::parse("a/b:nitro"),
            ModelRef {
                id: "a/b".into(),
                variant: Some(Variant::Nitro)
            }
        );
        assert_eq!(
            ModelRef::parse("a/b:thing"),
            ModelRef {
                id: "a/b:thing".into(),
                variant: None
            }
        );
        let mut m = Map::new();
        m.insert("models".into(), json!(["a/b", "c/d", "c/d:floor"]));
        let refs = requested_models("a/b", &m).unwrap();
        assert_eq!(refs.len(), 3);
        assert_eq!(refs[1].id, "c/d");
    }
}
