//! The reveal path of a turn's tool calls (issue 16 item 6): the model and Kafka only ever hold PII tokens
//! such as `[EMAIL_1]`, but a tool (an order lookup) needs the customer's real email.
//!
//! Guarantee: a tool's HTTP call carries the real values behind the tokens of its arguments, read from the
//! session's vault (tenant and session, as guard-in writes it) at the moment of the call; its result is
//! masked with the same tokens before it returns to the model, new values being stored in the vault first,
//! so every token the model may repeat can be revealed later (the agent's ticket, a later tool call).
//! Arguments are revealed inside their JSON strings, so a value can never break the JSON it goes into.

use std::sync::Arc;

use futures::future::BoxFuture;
use turnpike_guard::vault::{PiiVault, RedisVault};
use turnpike_guard::{PiiMasker, SessionPii};
use turnpike_llm::tools::ToolPii;
use turnpike_llm::LlmError;

/// One session's view of the vault, for one turn's tool calls.
pub struct VaultToolPii {
    pub vault: RedisVault,
    pub masker: Arc<PiiMasker>,
    /// `tenant:session`, the vault's key.
    pub session: String,
}

fn vault_error(e: turnpike_guard::VaultError) -> LlmError {
    LlmError::Config(format!("PII vault: {e}"))
}

/// Every string of `v` with its tokens replaced by their values.
fn reveal_strings(v: &mut serde_json::Value, pii: &SessionPii) {
    match v {
        serde_json::Value::String(s) => *s = pii.unmask(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|i| reveal_strings(i, pii)),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(|f| reveal_strings(f, pii)),
        _ => {}
    }
}

/// `arguments` with real values: inside the JSON's strings, or as plain text when it is not JSON (the tool
/// runner refuses such arguments before any call).
pub fn reveal_arguments(arguments: &str, pii: &SessionPii) -> String {
    match serde_json::from_str::<serde_json::Value>(arguments) {
        Ok(mut v) => {
            reveal_strings(&mut v, pii);
            v.to_string()
        }
        Err(_) => pii.unmask(arguments),
    }
}

impl ToolPii for VaultToolPii {
    fn reveal<'a>(&'a self, arguments: &'a str) -> BoxFuture<'a, Result<String, LlmError>> {
        Box::pin(async move {
            let pii = self.vault.load(&self.session).await.map_err(vault_error)?;
            Ok(reveal_arguments(arguments, &pii))
        })
    }

    fn mask<'a>(&'a self, result: &'a str) -> BoxFuture<'a, Result<String, LlmError>> {
        Box::pin(async move {
            let mut pii = self.vault.load(&self.session).await.map_err(vault_error)?;
            let masked = self.masker.mask(result, &mut pii);
            // Stored before the masked text leaves: every token the model sees can be revealed.
            self.vault.store(&self.session, &pii.take_new()).await.map_err(vault_error)?;
            Ok(masked)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_revealed_inside_json_strings_only_and_values_cannot_break_the_json() {
        let pii = SessionPii::from_entries([
            ("[EMAIL_1]".to_string(), "ada@example.com".to_string()),
            ("[NAME_1]".to_string(), "Ada \"Al\" O'Neil".to_string()),
        ]);
        let args = r#"{"email":"[EMAIL_1]","who":["[NAME_1]"],"n":1}"#;
        let revealed: serde_json::Value = serde_json::from_str(&reveal_arguments(args, &pii)).unwrap();
        assert_eq!(revealed, serde_json::json!({"email": "ada@example.com", "who": ["Ada \"Al\" O'Neil"], "n": 1}));
        assert_eq!(reveal_arguments("not json [EMAIL_1]", &pii), "not json ada@example.com");
    }

    #[test]
    fn a_result_is_masked_with_the_sessions_tokens_and_new_values_get_new_ones() {
        let masker = PiiMasker::new().unwrap();
        let mut pii = SessionPii::from_entries([("[EMAIL_1]".to_string(), "ada@example.com".to_string())]);
        let masked = masker.mask(r#"{"email":"ada@example.com","phone":"+44 20 7946 0958"}"#, &mut pii);
        assert_eq!(masked, r#"{"email":"[EMAIL_1]","phone":"[PHONE_1]"}"#);
        assert_eq!(pii.take_new(), vec![("[PHONE_1]".to_string(), "+44 20 7946 0958".to_string())]);
    }
}
