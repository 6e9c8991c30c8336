//! Fuzz target of the tenants file (issue 20): whatever the text, loading it and reading every section for
//! every tenant returns settings or a configuration error, never a panic, and a tenant's lookup never
//! returns another listed tenant's own settings. Seeds: `tests/corpus/tenants/`.

use turnpike_core::tenants::{TenantsConfig, SECTIONS};
use turnpike_fuzz::proptest::prelude::*;

#[test]
fn fuzz_tenants_file() {
    let seeds = turnpike_fuzz::corpus(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/tenants"));
    turnpike_fuzz::run("tenants_file", 30_000, turnpike_fuzz::text_from(seeds), |text| {
        let Ok(cfg) = TenantsConfig::parse(&text) else { return Ok(()) };
        let tenants: Vec<String> = cfg.tenants().map(String::from).collect();
        for name in SECTIONS {
            let Ok(section) = cfg.section::<toml::Table>(name) else { continue };
            for t in &tenants {
                if section.has_own(t) {
                    for other in tenants.iter().filter(|o| *o != t) {
                        prop_assert!(!std::ptr::eq(section.get(t), section.get(other)), "{t} and {other} share");
                    }
                }
            }
            prop_assert!(std::ptr::eq(section.get("no-such-tenant"), section.default_settings()));
        }
        Ok(())
    });
}
