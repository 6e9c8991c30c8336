//! Experiments: a stable share of a tenant's sessions gets a variant (a model or a system prompt).
//!
//! Guarantee: a session's assignment depends only on the experiment's name, the session id and the share:
//! `xxh3_64(name ‖ 0x00 ‖ session_id)`, a hash with a fixed specification and no per-process key (unlike
//! std's `RandomState`), mapped to [0, 1) and compared with the share. So every instance, before and after
//! a restart, puts a session in the same group on every turn, and growing a share only adds sessions.
//! Each experiment hashes independently: adding or removing one never reshuffles another. A session may
//! therefore fall into two experiments (at 5% each, 0.25% of sessions); its variant then lists both, in
//! configuration order, and a conflicting override is taken from the first.

use xxhash_rust::xxh3::xxh3_64;

use super::policy::{Experiment, RoutePolicy, Tier};

/// Where `session_id` falls for experiment `name`, uniformly in [0, 1).
pub fn position(name: &str, session_id: &str) -> f64 {
    let mut bytes = Vec::with_capacity(name.len() + 1 + session_id.len());
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(session_id.as_bytes());
    // The top 53 bits fill an f64 mantissa exactly.
    (xxh3_64(&bytes) >> 11) as f64 / (1u64 << 53) as f64
}

pub fn assigned(e: &Experiment, session_id: &str) -> bool {
    position(&e.name, session_id) < e.share
}

/// What a session's experiments do to one turn.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// Variants of every experiment the session is in, comma-separated; `None` when in none.
    pub variant: Option<String>,
    /// (experiment name, variant) of each, for metrics.
    pub experiments: Vec<(String, String)>,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
}

/// The experiments `session_id` is in and their overrides for a turn routed to `tier`.
pub fn apply(policy: &RoutePolicy, session_id: &str, tier: Tier) -> Applied {
    let mut applied = Applied::default();
    let mut variants = Vec::new();
    for e in policy.experiments.iter().filter(|e| assigned(e, session_id)) {
        variants.push(e.variant_name().to_string());
        applied.experiments.push((e.name.clone(), e.variant_name().to_string()));
        if e.tier.is_none_or(|t| t == tier) {
            applied.model = applied.model.or_else(|| e.model.clone());
        }
        applied.system_prompt = applied.system_prompt.or_else(|| e.system_prompt.clone());
    }
    if !variants.is_empty() {
        applied.variant = Some(variants.join(","));
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xxh3_64 of `prompt-v2\0user1:conv1`, computed once: pins the assignment across versions and machines.
    const GOLDEN: u64 = 0x901a_ae8a_2965_fd5e;

    fn experiment(name: &str, share: f64) -> Experiment {
        Experiment { name: name.into(), share, variant: None, model: None, tier: None, system_prompt: None }
    }

    #[test]
    fn assignment_is_stable_and_its_share_is_within_half_a_point() {
        let e = experiment("prompt-v2", 0.05);
        let ids: Vec<String> = (0..100_000).map(|i| format!("user{i}:conv{}", i * 7919 % 1000)).collect();
        let inside = ids.iter().filter(|id| assigned(&e, id)).count();
        let share = inside as f64 / ids.len() as f64;
        assert!((share - 0.05).abs() <= 0.005, "share {share}");
        // Stable: a fixed, specified hash; this value is the same on every machine and every run.
        assert_eq!(position("prompt-v2", "user1:conv7919"), position("prompt-v2", "user1:conv7919"));
        assert_eq!(xxh3_64(b""), 0x2d06_8005_38d3_94c2, "the reference implementation's test vector");
        assert_eq!(xxh3_64(b"prompt-v2\0user1:conv1"), GOLDEN, "xxh3 is a specified algorithm");
        // Growing a share only adds sessions.
        let wider = experiment("prompt-v2", 0.10);
        assert!(ids.iter().filter(|id| assigned(&e, id)).all(|id| assigned(&wider, id)));
        // Another experiment's assignment is independent of this one's.
        let other = experiment("model-flash", 0.05);
        let both = ids.iter().filter(|id| assigned(&e, id) && assigned(&other, id)).count() as f64;
        assert!((both / ids.len() as f64 - 0.0025).abs() < 0.001, "overlap {both}");
    }

    #[test]
    fn overrides_apply_to_their_tier_and_every_turn_records_the_variant() {
        let mut flash = experiment("flash", 1.0);
        flash.tier = Some(Tier::Cheap);
        flash.model = Some("gemini-2.0-flash".into());
        flash.variant = Some("flash-cheap".into());
        let policy = RoutePolicy { experiments: vec![flash, experiment("nobody", 0.0)], ..RoutePolicy::default() };
        let cheap = apply(&policy, "s1", Tier::Cheap);
        assert_eq!(cheap.variant.as_deref(), Some("flash-cheap"));
        assert_eq!(cheap.model.as_deref(), Some("gemini-2.0-flash"));
        let capable = apply(&policy, "s1", Tier::Capable);
        assert_eq!(capable.variant.as_deref(), Some("flash-cheap"), "the session is in the experiment");
        assert_eq!(capable.model, None, "the override is for cheap turns only");
        assert_eq!(apply(&RoutePolicy::default(), "s1", Tier::Cheap), Applied::default());
    }
}
