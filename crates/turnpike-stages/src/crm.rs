//! VIP from the tenant's CRM (`guard.handoff.vip.crm_url`): when the turn's own attributes do not make the
//! customer a VIP, guard-in asks the CRM `GET {crm_url}?user_id=<user>` for the customer's attributes (a
//! JSON object; strings, numbers and booleans become attributes, e.g. `{"tier": "platinum"}` or
//! `{"vip": true}`) and the VIP trigger reads them as it reads the turn's.
//!
//! Guarantee: the CRM never fails or stalls a turn: a timeout (`crm_timeout_ms`), an error status or a body
//! that is not a JSON object means "no attributes", logged and counted in
//! `turnpike_crm_lookups_total{outcome}`. An answer is kept in Redis per tenant and user for
//! [`CACHE_SECS`], so the CRM is asked once per customer for a while and a redelivered turn decides as the
//! first delivery did.

use crate::Deps;
use redis::AsyncCommands;
use std::collections::HashMap;
use std::time::Duration;
use turnpike_guard::handoff::VipTrigger;

/// How long a CRM answer stands for the customer.
pub const CACHE_SECS: u64 = 600;

fn cache_key(tenant: &str, user: &str) -> String {
    format!("turnpike:crm:{tenant}:{user}")
}

/// The attributes of a CRM answer: the object's scalar fields as strings.
pub fn attributes_of(body: &serde_json::Value) -> Option<HashMap<String, String>> {
    let fields = body.as_object()?;
    Some(
        fields
            .iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k.clone(), s.clone())),
                serde_json::Value::Bool(_) | serde_json::Value::Number(_) => Some((k.clone(), v.to_string())),
                _ => None,
            })
            .collect(),
    )
}

/// The customer's CRM attributes (empty when the lookup is off or fails; see the module comment).
pub async fn lookup(
    deps: &Deps,
    http: &reqwest::Client,
    vip: &VipTrigger,
    tenant: &str,
    user: &str,
) -> HashMap<String, String> {
    if !vip.enabled || vip.crm_url.is_empty() || user.is_empty() {
        return HashMap::new();
    }
    let key = cache_key(tenant, user);
    let mut redis = deps.pool.clone();
    let cached: Result<Option<String>, _> = redis.get(&key).await;
    if let Ok(Some(c)) = cached {
        if let Some(a) = serde_json::from_str(&c).ok().as_ref().and_then(attributes_of) {
            metrics::counter!("turnpike_crm_lookups_total", "outcome" => "cached").increment(1);
            return a;
        }
    }
    let Ok(mut url) = reqwest::Url::parse(&vip.crm_url) else {
        metrics::counter!("turnpike_crm_lookups_total", "outcome" => "bad_url").increment(1);
        return HashMap::new();
    };
    url.query_pairs_mut().append_pair("user_id", user);
    let asked = http
        .get(url)
        .timeout(Duration::from_millis(vip.crm_timeout_ms))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status);
    let body = match asked {
        Ok(r) => r.json::<serde_json::Value>().await.ok(),
        Err(e) => {
            let outcome = if e.is_timeout() { "timeout" } else { "error" };
            tracing::warn!(tenant, outcome, error = %e, "CRM lookup failed; the customer is not treated as a VIP.");
            metrics::counter!("turnpike_crm_lookups_total", "outcome" => outcome).increment(1);
            return HashMap::new();
        }
    };
    let Some(attributes) = body.as_ref().and_then(attributes_of) else {
        metrics::counter!("turnpike_crm_lookups_total", "outcome" => "bad_answer").increment(1);
        return HashMap::new();
    };
    metrics::counter!("turnpike_crm_lookups_total", "outcome" => "ok").increment(1);
    let kept = serde_json::to_string(&attributes).unwrap_or_default();
    let stored: Result<(), _> = redis.set_ex(&key, kept, CACHE_SECS).await;
    if let Err(e) = stored {
        tracing::warn!(tenant, error = %e, "CRM answer not cached.");
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_fields_become_attributes_and_anything_else_is_no_answer() {
        let a = attributes_of(&serde_json::json!({"tier": "Platinum", "vip": true, "ltv": 12000, "tags": ["a"]}));
        let want: HashMap<String, String> =
            [("tier", "Platinum"), ("vip", "true"), ("ltv", "12000")].map(|(k, v)| (k.into(), v.into())).into();
        assert_eq!(a, Some(want));
        assert_eq!(attributes_of(&serde_json::json!(["tier"])), None);
    }
}
