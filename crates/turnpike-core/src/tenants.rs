//! Per-tenant settings: one TOML file (named by `TURNPIKE_TENANTS_CONFIG`) holds, per concern ("section"),
//! defaults for every tenant and overrides for some.
//!
//! ```toml
//! [defaults.context]
//! budget_tokens = 8000
//!
//! [tenants.acme.context]
//! budget_tokens = 4000          # acme's context budget; the rest of acme's context policy is the default
//!
//! [tenants.acme.guard.topics]
//! denied = ["politics"]
//! ```
//!
//! Guarantee: a tenant's settings are the section's defaults deep-merged with the tenant's overrides (tables
//! merge key by key, any other value replaces), then deserialised into the consumer's own policy type, so a
//! typo is caught by that type's `deny_unknown_fields` at start-up, for every tenant, not at the first turn.
//! Section names are checked against [`SECTIONS`] when the file is loaded. A tenant that is not listed gets
//! the defaults; there is no way for one tenant's lookup to return another tenant's settings.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;

/// Every section a component reads. A section name outside this list is a configuration error.
pub const SECTIONS: &[&str] = &["guard", "context", "memory", "knowledge", "route", "gateway", "llm", "helpdesk"];

#[derive(Debug, thiserror::Error)]
pub enum TenantConfigError {
    #[error("cannot read tenants config {path}: {message}")]
    Read { path: String, message: String },
    #[error("tenants config: {0}")]
    Invalid(String),
}

/// The parsed file. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct TenantsConfig {
    defaults: toml::Table,
    tenants: HashMap<String, toml::Table>,
    /// `[metrics] tenants = [...]`: the tenants that get a `tenant` label of their own (see
    /// [`crate::metric_labels`]); `None` when the file does not say.
    metric_tenants: Option<Vec<String>>,
}

impl TenantsConfig {
    /// The file named by `TURNPIKE_TENANTS_CONFIG`, or an empty config (every tenant gets each type's
    /// defaults) when the variable is unset or empty.
    pub fn from_env() -> Result<TenantsConfig, TenantConfigError> {
        match std::env::var_os("TURNPIKE_TENANTS_CONFIG").filter(|p| !p.is_empty()) {
            Some(path) => Self::load(Path::new(&path)),
            None => Ok(Self::default()),
        }
    }

    pub fn load(path: &Path) -> Result<TenantsConfig, TenantConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TenantConfigError::Read { path: path.display().to_string(), message: e.to_string() })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<TenantsConfig, TenantConfigError> {
        let mut root: toml::Table =
            text.parse().map_err(|e: toml::de::Error| TenantConfigError::Invalid(e.to_string()))?;
        let defaults = take_table(&mut root, "defaults")?.unwrap_or_default();
        check_sections("defaults", &defaults)?;
        let mut tenants = HashMap::new();
        for (tenant, value) in take_table(&mut root, "tenants")?.unwrap_or_default() {
            let toml::Value::Table(t) = value else {
                return Err(TenantConfigError::Invalid(format!("tenants.{tenant} must be a table")));
            };
            check_sections(&format!("tenants.{tenant}"), &t)?;
            tenants.insert(tenant, t);
        }
        let metric_tenants = match take_table(&mut root, "metrics")? {
            Some(m) => metric_tenants(m)?,
            None => None,
        };
        if let Some(key) = root.keys().next() {
            return Err(TenantConfigError::Invalid(format!(
                "unknown top-level key `{key}` (expected defaults, tenants, metrics)"
            )));
        }
        Ok(TenantsConfig { defaults, tenants, metric_tenants })
    }

    /// Tenants that have overrides of their own.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.tenants.keys().map(String::as_str)
    }

    /// The tenants named by `[metrics] tenants`, when the file names them.
    pub fn metric_tenants(&self) -> Option<&[String]> {
        self.metric_tenants.as_deref()
    }

    /// Section `name` for every tenant, deserialised into `P`.
    pub fn section<P: DeserializeOwned>(&self, name: &str) -> Result<PerTenant<P>, TenantConfigError> {
        assert!(SECTIONS.contains(&name), "section {name} missing from turnpike_core::tenants::SECTIONS");
        let base = self.defaults.get(name).cloned().unwrap_or_else(|| toml::Value::Table(Default::default()));
        let default = decode::<P>(&format!("defaults.{name}"), base.clone())?;
        let mut tenants = HashMap::new();
        for (tenant, t) in &self.tenants {
            if let Some(over) = t.get(name) {
                let mut merged = base.clone();
                merge(&mut merged, over.clone());
                tenants.insert(tenant.clone(), Arc::new(decode::<P>(&format!("tenants.{tenant}.{name}"), merged)?));
            }
        }
        Ok(PerTenant { default: Arc::new(default), tenants })
    }
}

/// One policy type's settings for every tenant.
#[derive(Debug)]
pub struct PerTenant<P> {
    default: Arc<P>,
    tenants: HashMap<String, Arc<P>>,
}

impl<P> Clone for PerTenant<P> {
    fn clone(&self) -> Self {
        PerTenant { default: self.default.clone(), tenants: self.tenants.clone() }
    }
}

impl<P> PerTenant<P> {
    /// The same settings for every tenant.
    pub fn uniform(p: P) -> Self {
        PerTenant { default: Arc::new(p), tenants: HashMap::new() }
    }

    /// Adds or replaces one tenant's settings (tests and programmatic set-up).
    pub fn with_tenant(mut self, tenant: &str, p: P) -> Self {
        self.tenants.insert(tenant.to_string(), Arc::new(p));
        self
    }

    /// `tenant`'s settings, or the defaults when it has none of its own.
    pub fn get(&self, tenant: &str) -> &P {
        self.tenants.get(tenant).unwrap_or(&self.default)
    }

    /// Whether `tenant` has settings of its own (else it gets the defaults).
    pub fn has_own(&self, tenant: &str) -> bool {
        self.tenants.contains_key(tenant)
    }

    /// The same tenants with each settings value converted (e.g. compiled), failing on the first error.
    pub fn try_map<Q, E>(&self, f: impl Fn(&P) -> Result<Q, E>) -> Result<PerTenant<Q>, E> {
        let mut tenants = HashMap::with_capacity(self.tenants.len());
        for (t, p) in &self.tenants {
            tenants.insert(t.clone(), Arc::new(f(p)?));
        }
        Ok(PerTenant { default: Arc::new(f(&self.default)?), tenants })
    }

    pub fn default_settings(&self) -> &P {
        &self.default
    }

    /// Every distinct settings value with the tenants it applies to (`None` = the defaults).
    pub fn iter(&self) -> impl Iterator<Item = (Option<&str>, &P)> {
        std::iter::once((None, &*self.default)).chain(self.tenants.iter().map(|(t, p)| (Some(t.as_str()), &**p)))
    }
}

impl<P: Default> Default for PerTenant<P> {
    fn default() -> Self {
        Self::uniform(P::default())
    }
}

fn take_table(root: &mut toml::Table, key: &str) -> Result<Option<toml::Table>, TenantConfigError> {
    match root.remove(key) {
        None => Ok(None),
        Some(toml::Value::Table(t)) => Ok(Some(t)),
        Some(_) => Err(TenantConfigError::Invalid(format!("`{key}` must be a table"))),
    }
}

/// `[metrics]`: only `tenants`, a list of tenant ids.
fn metric_tenants(mut m: toml::Table) -> Result<Option<Vec<String>>, TenantConfigError> {
    let list = match m.remove("tenants") {
        None => None,
        Some(v) => Some(
            v.try_into::<Vec<String>>()
                .map_err(|_| TenantConfigError::Invalid("metrics.tenants must be a list of tenant ids".into()))?,
        ),
    };
    match m.keys().next() {
        Some(k) => Err(TenantConfigError::Invalid(format!("unknown key `metrics.{k}` (known: tenants)"))),
        None => Ok(list),
    }
}

fn check_sections(at: &str, t: &toml::Table) -> Result<(), TenantConfigError> {
    match t.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
        Some(k) => {
            Err(TenantConfigError::Invalid(format!("unknown section `{at}.{k}` (known: {})", SECTIONS.join(", "))))
        }
        None => Ok(()),
    }
}

fn decode<P: DeserializeOwned>(at: &str, v: toml::Value) -> Result<P, TenantConfigError> {
    v.try_into().map_err(|e: toml::de::Error| TenantConfigError::Invalid(format!("{at}: {}", e.message())))
}

/// Deep merge: tables merge key by key, anything else (including arrays) replaces.
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Ctx {
        budget_tokens: u32,
        history: Hist,
        words: Vec<String>,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Hist {
        turns: u32,
        verbatim: u32,
    }
    impl Default for Ctx {
        fn default() -> Self {
            Ctx { budget_tokens: 8000, history: Hist::default(), words: vec!["a".into()] }
        }
    }
    impl Default for Hist {
        fn default() -> Self {
            Hist { turns: 20, verbatim: 6 }
        }
    }

    const FILE: &str = r#"
        [defaults.context]
        budget_tokens = 6000
        [tenants.acme.context.history]
        turns = 5
        [tenants.acme.context]
        words = ["x"]
        [tenants.beta.guard]
        anything = 1
    "#;

    #[test]
    fn tenants_get_defaults_merged_with_their_overrides() {
        let cfg = TenantsConfig::parse(FILE).unwrap();
        let ctx = cfg.section::<Ctx>("context").unwrap();
        let acme = ctx.get("acme");
        assert_eq!(acme.budget_tokens, 6000, "file default applies");
        assert_eq!(acme.history, Hist { turns: 5, verbatim: 6 }, "nested tables merge key by key");
        assert_eq!(acme.words, vec!["x".to_string()], "arrays replace");
        assert_eq!(ctx.get("beta").budget_tokens, 6000, "beta has no context overrides");
        assert_eq!(ctx.get("unknown"), ctx.default_settings());
        assert_eq!(ctx.get("unknown").words, vec!["a".to_string()], "type default when the file is silent");
    }

    #[test]
    fn typos_fail_at_load_for_the_tenant_that_has_them() {
        let err = TenantsConfig::parse("[tenants.acme.context]\nbudget_tokenz = 1").unwrap().section::<Ctx>("context");
        assert!(err.unwrap_err().to_string().contains("tenants.acme.context"));
        let err = TenantsConfig::parse("[tenants.acme.contxt]\nbudget_tokens = 1").unwrap_err();
        assert!(err.to_string().contains("unknown section `tenants.acme.contxt`"), "{err}");
        assert!(TenantsConfig::parse("[tenant.acme.context]").is_err(), "top-level typo");
    }

    #[test]
    fn an_empty_config_gives_type_defaults() {
        let ctx = TenantsConfig::default().section::<Ctx>("context").unwrap();
        assert_eq!(*ctx.get("any"), Ctx::default());
    }
}
