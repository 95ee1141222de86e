//! Guardrails: per-org, per-team and per-key rules checked on every request before routing.
//! Pure and synchronous (no I/O): the policy is compiled once per config snapshot and
//! applied in microseconds on the hot path.
//!
//! What a policy can say (`switchyard.v1.GuardrailPolicy`):
//! - model and provider allowlists (empty = unrestricted; `author/*` allows an author),
//! - route only to zero-data-retention providers, or only to ones that do not train on
//!   prompts (`data_collection: deny`),
//! - a maximum prompt size in characters,
//! - content rules: a regex (linear-time `regex` crate: no backreferences or lookaround, so
//!   no catastrophic backtracking) or a built-in detector (email, phone, payment card with
//!   Luhn check, IBAN, US SSN, API-key-like secrets, prompt-injection phrases), each with an
//!   action: redact (replace with `[REDACTED:<rule>]`), block (403, naming the rule) or flag.
//!
//! Combining scopes (org ∩ team ∩ key ∩ the key's own allowlists) uses `Policy::merge`:
//! allowlists intersect, ZDR and data-collection flags OR, the smaller prompt limit wins,
//! rules add up. A narrower scope can therefore only tighten.
//!
//! # Integration (request path)
//!
//! After auth, before routing:
//!
//! ```text
//! let outcome = guardrails::apply(&key.guardrails, &mut request)
//!     .map_err(|v| /* 403 with v.error_body() */)?;
//! // when choosing endpoints, skip those with !key.guardrails.allows_provider(&endpoint.provider)
//! // log/return outcome.flags and outcome.redactions (rule names and counts only)
//! ```
//!
//! Content rules see message text (string contents and the `text` of content parts) and
//! `prompt`; tool-call arguments and images are not inspected.

mod detectors;

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;

use regex::Regex;
use serde_json::{Value, json};
use switchyard_proto::pb;

pub use detectors::{Detector, Detectors, luhn, valid_iban};

use crate::chat_request::ChatRequest;
use crate::snapshot::ProviderEntry;

/// Same ceiling the control plane validates with: bounds compiled size and matching cost.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Redact,
    Block,
    Flag,
}

#[derive(Clone)]
enum Matcher {
    Regex(Regex),
    Builtin(Detector),
}

#[derive(Clone)]
struct Rule {
    name: String,
    matcher: Matcher,
    action: Action,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.matcher {
            Matcher::Regex(_) => "regex",
            Matcher::Builtin(d) => d.as_str(),
        };
        write!(f, "Rule({}: {kind} → {:?})", self.name, self.action)
    }
}

/// A compiled guardrail policy. `Policy::default()` allows everything.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `None` = unrestricted. After merging, an empty set allows nothing.
    allowed_models: Option<BTreeSet<String>>,
    allowed_providers: Option<BTreeSet<String>>,
    pub zdr_only: bool,
    pub deny_data_collection: bool,
    pub max_prompt_chars: Option<u32>,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid guardrail policy: {0}")]
pub struct PolicyError(String);

/// Why a request is refused. Answer it with 403 and `error_body()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GuardrailViolation {
    /// The rule's name, or `model_allowlist` / `max_prompt_size`.
    pub rule: String,
    /// `regex`, a detector name, `model_allowlist` or `max_prompt_size`.
    pub kind: String,
    pub message: String,
    /// For prompt injection: the phrases found (our own patterns' matches). Never holds
    /// matched personal data or secrets.
    pub patterns: Vec<String>,
}

impl GuardrailViolation {
    pub const STATUS: u16 = 403;

    /// OpenRouter's guardrail error shape:
    /// `{"error":{"code":403,"message":"Request blocked: …","metadata":{"error_type":"guardrail", …}}}`.
    pub fn error_body(&self) -> Value {
        let mut metadata =
            json!({ "error_type": "guardrail", "rule": self.rule, "rule_kind": self.kind });
        if !self.patterns.is_empty() {
            metadata["patterns"] = json!(self.patterns);
        }
        json!({ "error": { "code": Self::STATUS, "message": self.message, "metadata": metadata } })
    }
}

/// What `apply` did to an allowed request: rule names and counts, never matched text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `(rule, number of redactions)`.
    pub redactions: Vec<(String, usize)>,
    /// Names of `flag` rules that matched.
    pub flags: Vec<String>,
}

impl Outcome {
    pub fn is_clean(&self) -> bool {
        self.redactions.is_empty() && self.flags.is_empty()
    }
}

fn set_of(list: &[String]) -> Option<BTreeSet<String>> {
    (!list.is_empty()).then(|| list.iter().map(|s| s.trim().to_owned()).collect())
}

fn intersect(
    a: &Option<BTreeSet<String>>,
    b: &Option<BTreeSet<String>>,
) -> Option<BTreeSet<String>> {
    match (a, b) {
        (None, None) => None,
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (Some(x), Some(y)) => {
            // `author/*` entries intersect with the concrete ids they cover.
            let covers = |set: &BTreeSet<String>, id: &str| listed(set, id);
            let mut out: BTreeSet<String> = x.iter().filter(|id| covers(y, id)).cloned().collect();
            out.extend(y.iter().filter(|id| covers(x, id)).cloned());
            Some(out)
        }
    }
}

/// `id` is in `set` exactly, by its base id (without a `:variant`), or by `author/*`.
fn listed(set: &BTreeSet<String>, id: &str) -> bool {
    let base = id.split_once(':').map_or(id, |(b, _)| b);
    set.contains(id)
        || set.contains(base)
        || base
            .split_once('/')
            .is_some_and(|(author, _)| set.contains(&format!("{author}/*")))
}

impl Policy {
    /// Compiles a snapshot policy. Fails on a regex the control plane should have refused.
    pub fn from_pb(p: &pb::GuardrailPolicy) -> Result<Self, PolicyError> {
        Detectors::get().map_err(|e| PolicyError(format!("built-in detectors: {e}")))?;
        let mut rules = Vec::with_capacity(p.rules.len());
        for r in &p.rules {
            let action = match pb::GuardrailAction::try_from(r.action) {
                Ok(pb::GuardrailAction::Redact) => Action::Redact,
                Ok(pb::GuardrailAction::Block) => Action::Block,
                Ok(pb::GuardrailAction::Flag) => Action::Flag,
                _ => {
                    return Err(PolicyError(format!(
                        "rule `{}` has unknown action {}",
                        r.name, r.action
                    )));
                }
            };
            use pb::ContentRuleKind as K;
            let matcher = match K::try_from(r.kind) {
                Ok(K::Regex) => Matcher::Regex(
                    regex::RegexBuilder::new(&r.pattern)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|e| PolicyError(format!("rule `{}`: {e}", r.name)))?,
                ),
                Ok(K::Email) => Matcher::Builtin(Detector::Email),
                Ok(K::Phone) => Matcher::Builtin(Detector::Phone),
                Ok(K::PaymentCard) => Matcher::Builtin(Detector::PaymentCard),
                Ok(K::Iban) => Matcher::Builtin(Detector::Iban),
                Ok(K::UsSsn) => Matcher::Builtin(Detector::UsSsn),
                Ok(K::Secret) => Matcher::Builtin(Detector::Secret),
                Ok(K::PromptInjection) => Matcher::Builtin(Detector::PromptInjection),
                _ => {
                    return Err(PolicyError(format!(
                        "rule `{}` has unknown kind {}",
                        r.name, r.kind
                    )));
                }
            };
            rules.push(Rule {
                name: r.name.clone(),
                matcher,
                action,
            });
        }
        Ok(Policy {
            allowed_models: set_of(&p.allowed_models),
            allowed_providers: set_of(&p.allowed_providers),
            zdr_only: p.zdr_only,
            deny_data_collection: p.deny_data_collection,
            max_prompt_chars: (p.max_prompt_chars > 0).then_some(p.max_prompt_chars),
            rules,
        })
    }

    /// A policy of allowlists only (a key's own `allowed_models` / `allowed_providers`).
    pub fn allowlists(models: &[String], providers: &[String]) -> Self {
        Policy {
            allowed_models: set_of(models),
            allowed_providers: set_of(providers),
            ..Policy::default()
        }
    }

    /// Both policies at once: the stricter of each setting, all rules of both.
    pub fn merge(&self, other: &Policy) -> Policy {
        Policy {
            allowed_models: intersect(&self.allowed_models, &other.allowed_models),
            allowed_providers: intersect(&self.allowed_providers, &other.allowed_providers),
            zdr_only: self.zdr_only || other.zdr_only,
            deny_data_collection: self.deny_data_collection || other.deny_data_collection,
            max_prompt_chars: match (self.max_prompt_chars, other.max_prompt_chars) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            rules: self.rules.iter().chain(&other.rules).cloned().collect(),
        }
    }

    pub fn is_unrestricted(&self) -> bool {
        self.allowed_models.is_none()
            && self.allowed_providers.is_none()
            && !self.zdr_only
            && !self.deny_data_collection
            && self.max_prompt_chars.is_none()
            && self.rules.is_empty()
    }

    pub fn allows_model(&self, model: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|set| listed(set, model))
    }

    /// Whether requests may be routed to `provider` (allowlist by slug, ZDR, training).
    pub fn allows_provider(&self, provider: &ProviderEntry) -> bool {
        self.allows_provider_slug(&provider.slug)
            && (!self.zdr_only || provider.zero_data_retention)
            && (!self.deny_data_collection || !provider.trains_on_prompts)
    }

    pub fn allows_provider_slug(&self, slug: &str) -> bool {
        self.allowed_providers
            .as_ref()
            .is_none_or(|set| set.contains(slug))
    }
}

/// Checks models and prompt size and runs the content rules over `request`, redacting in
/// place. `Err` means: refuse with 403 and `GuardrailViolation::error_body`.
pub fn apply(policy: &Policy, request: &mut ChatRequest) -> Result<Outcome, GuardrailViolation> {
    if policy.is_unrestricted() {
        return Ok(Outcome::default());
    }
    let mut models: Vec<String> = request.model.iter().cloned().collect();
    if let Some(Value::Array(list)) = request.extra.get("models") {
        models.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    check_models(policy, models.iter().map(String::as_str))?;
    // Shared access first: taking the messages mutably drops the form the client wrote them
    // in (sent on verbatim otherwise), so only a redaction that has something to do takes it.
    let mut shared: Vec<&str> = Vec::new();
    for message in request.messages.iter().flatten() {
        match &message.content {
            Value::String(s) => shared.push(s),
            Value::Array(parts) => shared.extend(
                parts
                    .iter()
                    .filter_map(|part| part.get("text").and_then(Value::as_str)),
            ),
            _ => {}
        }
    }
    shared.extend(request.prompt.as_deref());
    let scan = scan(policy, &shared)?;
    if !scan.redacts {
        return Ok(scan.outcome);
    }
    let mut texts: Vec<&mut String> = Vec::new();
    for message in request.messages.iter_mut().flatten() {
        match &mut message.content {
            Value::String(s) => texts.push(s),
            Value::Array(parts) => {
                for part in parts {
                    if let Some(Value::String(s)) = part.get_mut("text") {
                        texts.push(s);
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(prompt) = request.prompt.as_mut() {
        texts.push(prompt);
    }
    redact(policy, texts, scan.outcome)
}

/// The model allowlist alone, for request shapes other than chat completions.
pub fn check_models<'a>(
    policy: &Policy,
    models: impl IntoIterator<Item = &'a str>,
) -> Result<(), GuardrailViolation> {
    for model in models {
        if !policy.allows_model(model) {
            return Err(GuardrailViolation {
                rule: "model_allowlist".into(),
                kind: "model_allowlist".into(),
                message: format!("Request blocked: model `{model}` is not allowed for this key"),
                patterns: Vec::new(),
            });
        }
    }
    Ok(())
}

/// Prompt size and content rules over the prompt's texts, for any request shape.
pub fn apply_to_texts(
    policy: &Policy,
    texts: Vec<&mut String>,
) -> Result<Outcome, GuardrailViolation> {
    let shared: Vec<&str> = texts.iter().map(|t| t.as_str()).collect();
    let scan = scan(policy, &shared)?;
    if !scan.redacts {
        return Ok(scan.outcome);
    }
    redact(policy, texts, scan.outcome)
}

/// What the rules make of the texts as sent, before any redaction could hide a match.
struct Scan {
    outcome: Outcome,
    /// A redact rule matches somewhere.
    redacts: bool,
}

fn detectors() -> Result<&'static Detectors, GuardrailViolation> {
    Detectors::get().map_err(|_| GuardrailViolation {
        rule: "guardrails".into(),
        kind: "internal".into(),
        message: "Request blocked: guardrails are unavailable".into(),
        patterns: Vec::new(),
    })
}

fn find(detectors: &Detectors, rule: &Rule, text: &str) -> Vec<Range<usize>> {
    match &rule.matcher {
        Matcher::Regex(re) => re
            .find_iter(text)
            .map(|m| m.range())
            .filter(|r| !r.is_empty())
            .collect(),
        Matcher::Builtin(d) => detectors.find(*d, text),
    }
}

/// Prompt size, then block and flag rules; and whether a redact rule has anything to do.
fn scan(policy: &Policy, texts: &[&str]) -> Result<Scan, GuardrailViolation> {
    if let Some(max) = policy.max_prompt_chars {
        let total: usize = texts.iter().map(|t| t.chars().count()).sum();
        if total > max as usize {
            return Err(GuardrailViolation {
                rule: "max_prompt_size".into(),
                kind: "max_prompt_size".into(),
                message: format!(
                    "Request blocked: the prompt has {total} characters, more than the {max} allowed"
                ),
                patterns: Vec::new(),
            });
        }
    }
    let mut outcome = Outcome::default();
    if policy.rules.is_empty() {
        return Ok(Scan {
            outcome,
            redacts: false,
        });
    }
    let detectors = detectors()?;
    // Blocks and flags look at the text as sent, before any redaction could hide a match.
    for rule in policy.rules.iter().filter(|r| r.action != Action::Redact) {
        let mut hits: Vec<String> = Vec::new();
        for text in texts {
            for range in find(detectors, rule, text) {
                hits.push(text[range].to_owned());
            }
        }
        if hits.is_empty() {
            continue;
        }
        if rule.action == Action::Block {
            let (message, patterns) = match &rule.matcher {
                Matcher::Builtin(Detector::PromptInjection) => {
                    let mut phrases: Vec<String> = hits
                        .iter()
                        .map(|h| {
                            h.split_whitespace()
                                .collect::<Vec<_>>()
                                .join(" ")
                                .to_lowercase()
                        })
                        .collect();
                    phrases.dedup();
                    (
                        "Request blocked: prompt injection patterns detected".to_owned(),
                        phrases,
                    )
                }
                Matcher::Builtin(d) => (
                    format!(
                        "Request blocked: sensitive information detected ({}) by rule `{}`",
                        d.as_str(),
                        rule.name
                    ),
                    Vec::new(),
                ),
                Matcher::Regex(_) => (
                    format!("Request blocked by guardrail rule `{}`", rule.name),
                    Vec::new(),
                ),
            };
            return Err(GuardrailViolation {
                rule: rule.name.clone(),
                kind: match &rule.matcher {
                    Matcher::Regex(_) => "regex".into(),
                    Matcher::Builtin(d) => d.as_str().into(),
                },
                message,
                patterns,
            });
        }
        outcome.flags.push(rule.name.clone());
    }
    let redacts = policy
        .rules
        .iter()
        .filter(|r| r.action == Action::Redact)
        .any(|rule| {
            texts
                .iter()
                .any(|text| !find(detectors, rule, text).is_empty())
        });
    Ok(Scan { outcome, redacts })
}

/// Applies the redact rules in place, adding their counts to `outcome`.
fn redact(
    policy: &Policy,
    mut texts: Vec<&mut String>,
    mut outcome: Outcome,
) -> Result<Outcome, GuardrailViolation> {
    let detectors = detectors()?;
    for rule in policy.rules.iter().filter(|r| r.action == Action::Redact) {
        let replacement = format!("[REDACTED:{}]", rule.name);
        let mut count = 0;
        for text in &mut texts {
            let ranges = find(detectors, rule, text);
            if ranges.is_empty() {
                continue;
            }
            count += ranges.len();
            let mut out = String::with_capacity(text.len());
            let mut last = 0;
            for r in ranges {
                out.push_str(&text[last..r.start]);
                out.push_str(&replacement);
                last = r.end;
            }
            out.push_str(&text[last..]);
            **text = out;
        }
        if count > 0 {
            outcome.redactions.push((rule.name.clone(), count));
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests;
