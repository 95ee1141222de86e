//! Guardrail policy documents as the REST API takes them and the database stores them (JSON),
//! validated here with the same `regex` engine the gateways use, so a policy that reaches a
//! snapshot always compiles there (a bad one would make gateways reject the whole snapshot).

use serde::{Deserialize, Serialize};
use switchyard_proto::pb;

pub const SCOPES: [&str; 3] = ["org", "team", "key"];
const MAX_RULES: usize = 100;
const MAX_PATTERN: usize = 2_000;
/// Compiled-size ceiling per regex: bounds gateway memory and matching cost.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    Regex,
    Email,
    Phone,
    PaymentCard,
    Iban,
    UsSsn,
    Secret,
    PromptInjection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Redact,
    Block,
    Flag,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    pub kind: RuleKind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pattern: String,
    pub action: Action,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    #[serde(default)]
    pub allowed_models: Vec<String>,
    #[serde(default)]
    pub allowed_providers: Vec<String>,
    #[serde(default)]
    pub zdr_only: bool,
    #[serde(default)]
    pub deny_data_collection: bool,
    /// 0 = no limit.
    #[serde(default)]
    pub max_prompt_chars: u32,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl PolicyDoc {
    /// Checks names, patterns and actions; `Err` says what is wrong, for a 400.
    pub fn validate(&self) -> Result<(), String> {
        if self.rules.len() > MAX_RULES {
            return Err(format!("at most {MAX_RULES} rules"));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.name.trim().is_empty() || rule.name.len() > 100 {
                return Err(format!("rules[{i}].name must be 1 to 100 characters"));
            }
            match rule.kind {
                RuleKind::Regex => {
                    if rule.pattern.is_empty() || rule.pattern.len() > MAX_PATTERN {
                        return Err(format!(
                            "rules[{i}].pattern must be 1 to {MAX_PATTERN} characters"
                        ));
                    }
                    regex::RegexBuilder::new(&rule.pattern)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|e| format!("rules[{i}].pattern: {e}"))?;
                }
                _ if !rule.pattern.is_empty() => {
                    return Err(format!("rules[{i}].pattern is only for kind `regex`"));
                }
                _ => {}
            }
            if rule.kind == RuleKind::PromptInjection && rule.action == Action::Redact {
                return Err(format!(
                    "rules[{i}]: prompt_injection rules flag or block, they cannot redact"
                ));
            }
        }
        for list in [&self.allowed_models, &self.allowed_providers] {
            if list.len() > 1_000 || list.iter().any(|s| s.trim().is_empty() || s.len() > 200) {
                return Err("allowlist entries must be 1 to 200 characters, at most 1000".into());
            }
        }
        Ok(())
    }

    pub fn to_pb(&self) -> pb::GuardrailPolicy {
        pb::GuardrailPolicy {
            allowed_models: self.allowed_models.clone(),
            allowed_providers: self.allowed_providers.clone(),
            zdr_only: self.zdr_only,
            deny_data_collection: self.deny_data_collection,
            max_prompt_chars: self.max_prompt_chars,
            rules: self
                .rules
                .iter()
                .map(|r| pb::ContentRule {
                    name: r.name.clone(),
                    kind: match r.kind {
                        RuleKind::Regex => pb::ContentRuleKind::Regex,
                        RuleKind::Email => pb::ContentRuleKind::Email,
                        RuleKind::Phone => pb::ContentRuleKind::Phone,
                        RuleKind::PaymentCard => pb::ContentRuleKind::PaymentCard,
                        RuleKind::Iban => pb::ContentRuleKind::Iban,
                        RuleKind::UsSsn => pb::ContentRuleKind::UsSsn,
                        RuleKind::Secret => pb::ContentRuleKind::Secret,
                        RuleKind::PromptInjection => pb::ContentRuleKind::PromptInjection,
                    } as i32,
                    pattern: r.pattern.clone(),
                    action: match r.action {
                        Action::Redact => pb::GuardrailAction::Redact,
                        Action::Block => pb::GuardrailAction::Block,
                        Action::Flag => pb::GuardrailAction::Flag,
                    } as i32,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_catches_bad_regexes_and_misplaced_fields() {
        let rule = |kind, pattern: &str, action| Rule {
            name: "r".into(),
            kind,
            pattern: pattern.into(),
            action,
        };
        let doc = |rules| PolicyDoc {
            rules,
            ..PolicyDoc::default()
        };
        assert!(
            doc(vec![rule(RuleKind::Regex, "(?i)acme-\\d+", Action::Block)])
                .validate()
                .is_ok()
        );
        // Backreferences need backtracking: the linear-time engine refuses them.
        assert!(
            doc(vec![rule(RuleKind::Regex, "(a)\\1", Action::Block)])
                .validate()
                .is_err()
        );
        assert!(
            doc(vec![rule(RuleKind::Email, "x", Action::Redact)])
                .validate()
                .is_err()
        );
        assert!(
            doc(vec![rule(RuleKind::PromptInjection, "", Action::Redact)])
                .validate()
                .is_err()
        );
        let parsed: Result<PolicyDoc, _> = serde_json::from_str(r#"{"rules":[],"nope":1}"#);
        assert!(parsed.is_err());
    }
}
