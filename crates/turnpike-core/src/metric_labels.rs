//! The `tenant` label of Turnpike's metrics: one rule, used by every stage, the gateway and the tools.
//!
//! Guarantee: a metric's `tenant` label takes at most [`MAX_LABELLED_TENANTS`] + 1 values in a process, so a
//! platform with thousands of tenants cannot blow up Prometheus' series. The tenants file chooses them:
//!
//! ```toml
//! [metrics]
//! tenants = ["acme", "globex"]   # these get their own label value; every other tenant is "other"
//! ```
//!
//! Without `[metrics] tenants`, every tenant that has a `[tenants.NAME]` table of its own gets its label (in
//! name order, the first [`MAX_LABELLED_TENANTS`]): a tenant somebody configured is one somebody watches.
//! Without a tenants file, every tenant is `other`. A list longer than the bound is a start-up error, not a
//! silent cut, because whoever wrote it expects each named tenant on the dashboard.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::tenants::{TenantConfigError, TenantsConfig};

/// The label value of every tenant without one of its own.
pub const OTHER: &str = "other";

/// Most tenants with a label value of their own.
pub const MAX_LABELLED_TENANTS: usize = 50;

/// Tenant id → label value.
#[derive(Clone, Debug, Default)]
pub struct TenantLabels {
    /// The values are leaked once per process (at most [`MAX_LABELLED_TENANTS`] short strings), so a label
    /// costs no allocation per recorded sample.
    named: HashMap<String, &'static str>,
}

impl TenantLabels {
    /// The rule of the module comment, from a parsed tenants file.
    pub fn from_config(config: &TenantsConfig) -> Result<TenantLabels, TenantConfigError> {
        let chosen: Vec<String> = match config.metric_tenants() {
            Some(list) if list.len() > MAX_LABELLED_TENANTS => {
                return Err(TenantConfigError::Invalid(format!(
                    "metrics.tenants names {} tenants; at most {MAX_LABELLED_TENANTS} get a label of their own",
                    list.len()
                )))
            }
            Some(list) => list.to_vec(),
            None => {
                let mut all: Vec<String> = config.tenants().map(str::to_string).collect();
                all.sort();
                all.truncate(MAX_LABELLED_TENANTS);
                all
            }
        };
        Ok(Self::named(chosen))
    }

    /// Exactly these tenants get their own label value.
    pub fn named(tenants: impl IntoIterator<Item = String>) -> TenantLabels {
        let mut named = HashMap::new();
        for t in tenants {
            if t == OTHER || t.is_empty() {
                continue;
            }
            named.entry(t).or_insert_with_key(|t| &*Box::leak(t.clone().into_boxed_str()));
        }
        TenantLabels { named }
    }

    /// `tenant`'s label value: its id when it has a label of its own, else [`OTHER`].
    pub fn label(&self, tenant: &str) -> &'static str {
        self.named.get(tenant).copied().unwrap_or(OTHER)
    }

    /// The tenants with a label of their own, in name order.
    pub fn labelled(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self.named.values().copied().collect();
        v.sort_unstable();
        v
    }
}

static LABELS: OnceLock<TenantLabels> = OnceLock::new();

/// Sets the process' rule from the tenants file named by `TURNPIKE_TENANTS_CONFIG`; binaries call it at
/// start-up so a bad `[metrics]` table stops them there. Later calls return the rule already in force.
pub fn init_from_env() -> Result<&'static TenantLabels, TenantConfigError> {
    if let Some(l) = LABELS.get() {
        return Ok(l);
    }
    let labels = TenantLabels::from_config(&TenantsConfig::from_env()?)?;
    Ok(LABELS.get_or_init(|| labels))
}

/// The `tenant` label value for `tenant` under the process' rule (read from the environment on first use
/// when [`init_from_env`] was not called; an unreadable file then labels every tenant `other`, and the stage
/// that reads the same file for its policies reports the error).
pub fn tenant_label(tenant: &str) -> &'static str {
    // Not through `init_from_env`: initialising the cell from inside its own initialiser deadlocks.
    let labels = LABELS
        .get_or_init(|| TenantsConfig::from_env().and_then(|c| TenantLabels::from_config(&c)).unwrap_or_default());
    labels.label(tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_list_names_the_labelled_tenants_and_everyone_else_is_other() {
        let cfg = TenantsConfig::parse(
            "[metrics]\ntenants = [\"acme\", \"globex\"]\n[tenants.initech.context]\nbudget_tokens = 1\n",
        )
        .unwrap();
        let l = TenantLabels::from_config(&cfg).unwrap();
        assert_eq!(l.label("acme"), "acme");
        assert_eq!(l.label("globex"), "globex");
        assert_eq!(l.label("initech"), OTHER, "configured but not in the metrics list");
        assert_eq!(l.label("someone-new"), OTHER);
        assert_eq!(l.labelled(), vec!["acme", "globex"]);
    }

    #[test]
    fn without_a_list_the_configured_tenants_are_labelled_up_to_the_bound() {
        let mut file = String::new();
        for i in 0..(MAX_LABELLED_TENANTS + 7) {
            file.push_str(&format!("[tenants.t{i:03}.context]\nbudget_tokens = 1\n"));
        }
        let l = TenantLabels::from_config(&TenantsConfig::parse(&file).unwrap()).unwrap();
        assert_eq!(l.labelled().len(), MAX_LABELLED_TENANTS);
        assert_eq!(l.label("t000"), "t000", "name order: the first ones keep their label");
        assert_eq!(l.label(&format!("t{:03}", MAX_LABELLED_TENANTS + 1)), OTHER);
        // A million distinct tenants still make at most MAX + 1 label values.
        let values: std::collections::HashSet<&str> = (0..1_000_000).map(|i| l.label(&format!("t{i:03}"))).collect();
        assert_eq!(values.len(), MAX_LABELLED_TENANTS + 1);
    }

    #[test]
    fn no_tenants_file_labels_everyone_other() {
        let l = TenantLabels::from_config(&TenantsConfig::default()).unwrap();
        assert_eq!(l.label("demo"), OTHER);
        assert!(l.labelled().is_empty());
    }

    #[test]
    fn a_list_over_the_bound_or_a_typo_in_metrics_stops_start_up() {
        let names: Vec<String> = (0..=MAX_LABELLED_TENANTS).map(|i| format!("\"t{i}\"")).collect();
        let cfg = TenantsConfig::parse(&format!("[metrics]\ntenants = [{}]", names.join(","))).unwrap();
        let err = TenantLabels::from_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("at most 50"), "{err}");
        let err = TenantsConfig::parse("[metrics]\ntenant = [\"a\"]").unwrap_err().to_string();
        assert!(err.contains("metrics.tenant"), "{err}");
        assert!(TenantsConfig::parse("[metrics]\ntenants = \"acme\"").is_err(), "a string is not a list");
    }

    #[test]
    fn the_process_rule_initialises_itself_on_first_use() {
        // Stages in tests run without `init_from_env`: the first label must not wait on itself.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(tenant_label("someone")).unwrap());
        let label = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("tenant_label deadlocked");
        assert_eq!(label, OTHER);
        assert_eq!(init_from_env().unwrap().label("someone"), OTHER, "init after first use returns the rule");
    }

    #[test]
    fn a_tenant_called_other_cannot_be_told_from_the_rest() {
        let l = TenantLabels::named(["other".to_string(), "acme".into(), "acme".into()]);
        assert_eq!(l.labelled(), vec!["acme"]);
        assert_eq!(l.label("other"), OTHER);
    }
}
