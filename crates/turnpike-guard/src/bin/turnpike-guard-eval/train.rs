//! `turnpike-guard-eval train`: regenerates the harm classifier's weight file shipped in the crate.
//!
//! Guarantee: deterministic: the same PyRIT wheel gives the same file byte for byte. Training data are the
//! dev half only (even FNV-1a hash of the reply text, the split the report calls "dev") of PyRIT's
//! human-labelled harm replies (harmful = mean human score >= 0.5, harmless = 0, the rest left out), cut
//! into the two-sentence windows the output checker scores, each window labelled with its reply's label,
//! plus the team-written support replies in `src/output/support_replies.txt` as harmless windows. The
//! held-out half is never read here.

use crate::data;
use crate::output_eval;
use std::path::Path;
use turnpike_guard::output::harm::{self, TrainParams};

/// One training reply: its windows, label, and whether it is a support reply (else PyRIT).
struct Reply {
    windows: Vec<String>,
    harmful: bool,
    support: bool,
    fold: u64,
}

/// 5-fold cross-validation on the training replies only (folds by reply, from the hash's upper bits so
/// they are independent of the dev/held-out bit): out-of-fold reply-level recall and false-positive rates
/// per threshold, the figures the default threshold is chosen from.
fn cross_validate(replies: &[Reply], params: TrainParams) {
    let mut scored: Vec<(f32, &Reply)> = Vec::new();
    for k in 0..5 {
        let train: Vec<(String, bool)> = replies
            .iter()
            .filter(|r| r.fold != k)
            .flat_map(|r| r.windows.iter().map(move |w| (w.clone(), r.harmful)))
            .collect();
        let m = harm::train(&train, params);
        for r in replies.iter().filter(|r| r.fold == k) {
            scored.push((r.windows.iter().map(|w| m.score(w)).fold(0.0, f32::max), r));
        }
    }
    println!("\n5-fold cross-validation on the training replies (out-of-fold, reply level)\n");
    println!("| threshold | PyRIT harmful recall | PyRIT harmless FPR | support replies FPR |\n|---|---|---|---|");
    for t in [0.5f32, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9] {
        let count = |f: &dyn Fn(&Reply) -> bool| {
            let all: Vec<f32> = scored.iter().filter(|(_, r)| f(r)).map(|(s, _)| *s).collect();
            (all.iter().filter(|s| **s >= t).count(), all.len())
        };
        let (tp, p) = count(&|r| r.harmful);
        let (fp, n) = count(&|r| !r.harmful && !r.support);
        let (sfp, sn) = count(&|r| r.support);
        println!("| {t} | {tp}/{p} | {fp}/{n} | {sfp}/{sn} |");
    }
}

/// `params` are the training settings (the shipped model uses `TrainParams::default()`); `out` None only
/// cross-validates.
pub fn run(pyrit: &Path, out: Option<&Path>, params: TrainParams) -> Result<(), String> {
    let max_chars = turnpike_guard::policy::OutputPolicy::default().max_sentence_chars;
    let mut examples = Vec::new();
    let mut replies = Vec::new();
    let fold = |t: &str| (data::fnv1a(t) >> 1) % 5;
    let (mut harmful, mut harmless) = (0, 0);
    for r in output_eval::rows(pyrit)?.into_iter().filter(|r| data::is_dev(&r.text)) {
        let label = if r.mean >= 0.5 {
            harmful += 1;
            true
        } else if r.mean == 0.0 {
            harmless += 1;
            false
        } else {
            continue;
        };
        let windows = harm::windows(&r.text, max_chars);
        examples.extend(windows.iter().map(|w| (w.clone(), label)));
        replies.push(Reply { windows, harmful: label, support: false, fold: fold(&r.text) });
    }
    let mut support = 0;
    for line in harm::SUPPORT_REPLIES.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        support += 1;
        let windows = harm::windows(line, max_chars);
        examples.extend(windows.iter().map(|w| (w.clone(), false)));
        replies.push(Reply { windows, harmful: false, support: true, fold: fold(line) });
    }
    let model = harm::train(&examples, params);
    let provenance = format!(
        "Trained by `turnpike-guard-eval train` (deterministic). Data: PyPI {} {} ({}, Copyright (c) Microsoft \
         Corporation), pyrit/datasets/scorer_evals/harm/*.csv,\n\
         dev half only (even FNV-1a of the reply): {harmful} harmful replies (mean human score >= 0.5), \
         {harmless} harmless (score 0),\n\
         plus {support} team-written support replies (src/output/support_replies.txt) as harmless; \
         {} windows in all.\n\
         Logistic regression, hashed word unigrams+bigrams and char 4-grams of words over 5 letters, fixed bias {}, epochs {} lr {} l2 {}.",
        data::PYRIT.package,
        data::PYRIT.version,
        data::PYRIT.licence,
        examples.len(),
        params.bias,
        params.epochs,
        params.learning_rate,
        params.l2
    );
    println!("{provenance}");
    if let Some(out) = out {
        std::fs::write(out, model.to_text(&provenance)).map_err(|e| format!("{}: {e}", out.display()))?;
        println!("wrote {}", out.display());
    }
    cross_validate(&replies, params);
    Ok(())
}
