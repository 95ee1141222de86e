//! The canonical embeddings request (OpenAI's shape, plus OpenRouter's `input_type` and
//! routing fields), and the f32 encoding OpenAI's `encoding_format: "base64"` asks for.

use serde_json::{Map, Value};

use crate::chat_request::describe_json_error;
use crate::error::ApiError;

/// Fields the gateway acts on and does not send upstream.
const GATEWAY_ONLY_FIELDS: &[&str] = &["provider", "models", "plugins", "session_id", "trace"];

#[derive(Debug, Clone)]
pub struct EmbeddingsRequest {
    pub model: String,
    /// A string, an array of strings, a token array, or an array of token arrays.
    pub input: Value,
    pub encoding_format: Option<String>,
    pub dimensions: Option<u64>,
    /// OpenRouter's hint, e.g. `search_query` / `search_document`.
    pub input_type: Option<String>,
    /// Everything else the client sent, for OpenAI-format providers.
    pub extra: Map<String, Value>,
}

impl EmbeddingsRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(describe_json_error(&e)))?;
        let Value::Object(mut fields) = value else {
            return Err(ApiError::BadRequest(
                "request body must be a JSON object".into(),
            ));
        };
        let model = match fields.remove("model") {
            Some(Value::String(m)) if !m.is_empty() => m,
            _ => return Err(ApiError::BadRequest("`model` is required".into())),
        };
        let input = fields.remove("input").unwrap_or(Value::Null);
        let valid = match &input {
            Value::String(_) => true,
            Value::Array(items) => {
                !items.is_empty()
                    && (items.iter().all(Value::is_string)
                        || items.iter().all(Value::is_u64)
                        || items
                            .iter()
                            .all(|i| i.as_array().is_some_and(|t| t.iter().all(Value::is_u64))))
            }
            _ => false,
        };
        if !valid {
            return Err(ApiError::BadRequest(
                "`input` must be a string, an array of strings, or token arrays".into(),
            ));
        }
        let text = |v: Option<Value>| v.and_then(|v| v.as_str().map(str::to_owned));
        let encoding_format = text(fields.remove("encoding_format"));
        if encoding_format
            .as_deref()
            .is_some_and(|f| f != "float" && f != "base64")
        {
            return Err(ApiError::BadRequest(
                "`encoding_format` must be `float` or `base64`".into(),
            ));
        }
        let dimensions = fields.remove("dimensions").and_then(|d| d.as_u64());
        let input_type = text(fields.remove("input_type"));
        for field in GATEWAY_ONLY_FIELDS {
            fields.remove(*field);
        }
        Ok(Self {
            model,
            input,
            encoding_format,
            dimensions,
            input_type,
            extra: fields,
        })
    }

    /// The inputs as texts; `None` when they are token arrays.
    pub fn texts(&self) -> Option<Vec<&str>> {
        match &self.input {
            Value::String(s) => Some(vec![s.as_str()]),
            Value::Array(items) => items.iter().map(Value::as_str).collect(),
            _ => None,
        }
    }

    /// Size of the input, for estimating tokens when a provider does not count them.
    pub fn input_chars(&self) -> usize {
        match &self.input {
            Value::String(s) => s.len(),
            // A token array: four characters a token, the inverse of the estimate.
            Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => s.len(),
                    Value::Array(tokens) => tokens.len() * 4,
                    _ => 4,
                })
                .sum(),
            _ => 0,
        }
    }

    pub fn wants_base64(&self) -> bool {
        self.encoding_format.as_deref() == Some("base64")
    }
}

/// Little-endian f32s in standard base64, as OpenAI returns them for
/// `encoding_format: "base64"`. Small enough to keep here rather than add a dependency to
/// the hot path's crate for one call site.
pub fn base64_f32_le(values: &[f64]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    #[allow(clippy::cast_possible_truncation)] // f32 is the wire precision.
    let bytes: Vec<u8> = values
        .iter()
        .flat_map(|v| (*v as f32).to_le_bytes())
        .collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_vectors() {
        // 1.0f32 = 00 00 80 3f
        assert_eq!(base64_f32_le(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32_le(&[1.0, 1.0]), "AACAPwAAgD8=");
        assert_eq!(base64_f32_le(&[1.0, 1.0, 1.0]), "AACAPwAAgD8AAIA/");
    }

    #[test]
    fn parses_and_validates() {
        let r = EmbeddingsRequest::parse(
            br#"{"model":"m","input":["a b","c"],"encoding_format":"base64","provider":{"order":["x"]},"user":"u"}"#,
        )
        .unwrap();
        assert_eq!(r.texts().unwrap(), ["a b", "c"]);
        assert!(r.wants_base64());
        assert!(!r.extra.contains_key("provider"));
        assert_eq!(r.extra["user"], "u");
        assert!(
            EmbeddingsRequest::parse(br#"{"model":"m","input":[[1,2],[3]]}"#)
                .unwrap()
                .texts()
                .is_none()
        );
        assert!(EmbeddingsRequest::parse(br#"{"model":"m","input":[]}"#).is_err());
        assert!(
            EmbeddingsRequest::parse(br#"{"model":"m","input":"x","encoding_format":"hex"}"#)
                .is_err()
        );
    }
}
