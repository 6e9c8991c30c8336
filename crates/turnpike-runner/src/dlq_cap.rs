//! The dead-letter rate cap, per tenant.
//!
//! The cap exists to stop a stage whose own code poisons everything (a bad deploy) instead of letting it
//! dead-letter every record. Counted for the whole stage, it also let one producer sending garbage stop
//! ingest for every tenant. Guarantee: dead letters are counted per tenant per minute; a tenant past
//! `max_per_minute` costs only itself (its poison is still dead-lettered, nothing is lost, and it is counted
//! in `turnpike_stage_dead_letters_over_cap_total`), and the stage stops only when `tenants_to_stop`
//! attributed tenants are past the cap in the same minute — the signature of the stage failing, not of a
//! sender. A record that cannot be attributed (no key, not Avro, an empty tenant id) counts in an
//! "unattributed" bucket that is capped like a tenant but never stops the stage: the tenant of a record
//! that does not decode cannot be known, and a header saying so would be the sender's word.

use std::collections::HashMap;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

/// What counting one more dead letter means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cap {
    Within,
    /// This tenant (`None`: unattributed) is past the cap; `first` for the first letter past it this window.
    TenantOver {
        first: bool,
    },
    /// `tenants` attributed tenants are past the cap: stop the stage.
    Stop {
        tenants: usize,
    },
}

#[derive(Debug)]
pub(crate) struct DlqCap {
    max_per_minute: u32,
    tenants_to_stop: usize,
    started: Instant,
    by_tenant: HashMap<Option<String>, u32>,
}

impl DlqCap {
    pub(crate) fn new(max_per_minute: u32, tenants_to_stop: usize, now: Instant) -> DlqCap {
        DlqCap { max_per_minute, tenants_to_stop: tenants_to_stop.max(1), started: now, by_tenant: HashMap::new() }
    }

    /// Counts a dead letter of `tenant` (`None` or empty: unattributed) at `now`.
    pub(crate) fn count(&mut self, tenant: Option<&str>, now: Instant) -> Cap {
        if now.duration_since(self.started) >= WINDOW {
            self.started = now;
            self.by_tenant.clear();
        }
        let tenant = tenant.filter(|t| !t.is_empty()).map(str::to_string);
        let attributed = tenant.is_some();
        let n = self.by_tenant.entry(tenant).or_insert(0);
        *n = n.saturating_add(1);
        if *n <= self.max_per_minute {
            return Cap::Within;
        }
        let first = *n == self.max_per_minute + 1;
        if attributed && first {
            let over = self.by_tenant.iter().filter(|(t, n)| t.is_some() && **n > self.max_per_minute).count();
            if over >= self.tenants_to_stop {
                return Cap::Stop { tenants: over };
            }
        }
        Cap::TenantOver { first }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tenant_past_the_cap_costs_only_itself() {
        let t0 = Instant::now();
        let mut cap = DlqCap::new(3, 2, t0);
        for _ in 0..3 {
            assert_eq!(cap.count(Some("noisy"), t0), Cap::Within);
        }
        assert_eq!(cap.count(Some("noisy"), t0), Cap::TenantOver { first: true });
        assert_eq!(cap.count(Some("noisy"), t0), Cap::TenantOver { first: false });
        assert_eq!(cap.count(Some("acme"), t0), Cap::Within, "another tenant has its own allowance");
        for _ in 0..100 {
            assert_ne!(cap.count(None, t0), Cap::Stop { tenants: 0 });
            assert!(matches!(cap.count(Some(""), t0), Cap::Within | Cap::TenantOver { .. }));
        }
    }

    #[test]
    fn poison_from_enough_tenants_stops_the_stage_and_a_new_minute_starts_afresh() {
        let t0 = Instant::now();
        let mut cap = DlqCap::new(1, 2, t0);
        cap.count(Some("a"), t0);
        assert_eq!(cap.count(Some("a"), t0), Cap::TenantOver { first: true });
        cap.count(Some("b"), t0);
        assert_eq!(cap.count(Some("b"), t0), Cap::Stop { tenants: 2 });
        let later = t0 + WINDOW;
        assert_eq!(cap.count(Some("a"), later), Cap::Within);
        assert_eq!(cap.count(Some("b"), later), Cap::Within);
    }

    #[test]
    fn a_single_tenant_deployment_can_still_stop_on_a_bad_deploy() {
        let t0 = Instant::now();
        let mut cap = DlqCap::new(2, 1, t0);
        cap.count(Some("only"), t0);
        cap.count(Some("only"), t0);
        assert_eq!(cap.count(Some("only"), t0), Cap::Stop { tenants: 1 });
    }
}
