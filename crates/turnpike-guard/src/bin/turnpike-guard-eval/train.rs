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
use turnpike_guard::linear;
use turnpike_guard::output::harm::{self, TrainParams};

/// One training example for cross-validation: the texts it is scored on (its score is the highest), its
/// label, the group it is reported under, and its fold.
pub struct Item {
    /// The example as written (before folding and windowing).
    pub raw: String,
    pub texts: Vec<String>,
    pub positive: bool,
    /// Training weight within its class (see `linear::train_weighted`).
    pub weight: f32,
    pub group: String,
    pub fold: u64,
}

/// The cross-validation fold of a text, from the hash's upper bits so folds are independent of the
/// dev/held-out bit.
pub fn fold_of(text: &str) -> u64 {
    (data::fnv1a(text) >> 1) % 5
}

/// 5-fold cross-validation on the training items only: out-of-fold scores, and a table of the share of each
/// group at or above each threshold (recall for positive groups, false-positive rate for negative ones), the
/// figures a default threshold is chosen from. Returns each item's out-of-fold score.
pub fn cross_validate<'a>(items: &'a [Item], params: TrainParams, thresholds: &[f32]) -> Vec<(f32, &'a Item)> {
    let mut scored: Vec<(f32, &Item)> = Vec::new();
    for k in 0..5 {
        let train: Vec<(&str, bool, f32)> = items
            .iter()
            .filter(|r| r.fold != k)
            .flat_map(|r| r.texts.iter().map(move |w| (w.as_str(), r.positive, r.weight)))
            .collect();
        let m = linear::train_weighted(&train, params);
        for r in items.iter().filter(|r| r.fold == k) {
            scored.push((r.texts.iter().map(|w| m.score(w)).fold(0.0, f32::max), r));
        }
    }
    let mut groups: Vec<(&str, bool)> = Vec::new();
    for r in items {
        if !groups.iter().any(|g| g.0 == r.group) {
            groups.push((&r.group, r.positive));
        }
    }
    println!("\n5-fold cross-validation on the training data (out-of-fold; flagged/n)\n");
    let head: Vec<String> = groups.iter().map(|(g, p)| format!("{g} {}", if *p { "recall" } else { "FPR" })).collect();
    println!("| threshold | {} |\n|---|{}", head.join(" | "), "---|".repeat(groups.len()));
    for &t in thresholds {
        let cells: Vec<String> = groups
            .iter()
            .map(|(g, _)| {
                let all: Vec<f32> = scored.iter().filter(|(_, r)| r.group == *g).map(|(s, _)| *s).collect();
                format!("{}/{}", all.iter().filter(|s| **s >= t).count(), all.len())
            })
            .collect();
        println!("| {t} | {} |", cells.join(" | "));
    }
    scored
}

/// `params` are the training settings (the shipped model uses `TrainParams::default()`); `out` None only
/// cross-validates.
pub fn run(pyrit: &Path, out: Option<&Path>, params: TrainParams) -> Result<(), String> {
    let max_chars = turnpike_guard::policy::OutputPolicy::default().max_sentence_chars;
    let mut examples = Vec::new();
    let mut replies = Vec::new();
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
        let group = if label { "PyRIT harmful" } else { "PyRIT harmless" };
        let (raw, fold) = (r.text.clone(), fold_of(&r.text));
        replies.push(Item { raw, texts: windows, positive: label, weight: 1.0, group: group.into(), fold });
    }
    let mut support = 0;
    for line in harm::SUPPORT_REPLIES.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        support += 1;
        let windows = harm::windows(line, max_chars);
        examples.extend(windows.iter().map(|w| (w.clone(), false)));
        let (raw, fold) = (line.to_string(), fold_of(line));
        replies.push(Item { raw, texts: windows, positive: false, weight: 1.0, group: "support replies".into(), fold });
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
        std::fs::write(out, model.to_text(harm::KIND, &provenance)).map_err(|e| format!("{}: {e}", out.display()))?;
        println!("wrote {}", out.display());
    }
    cross_validate(&replies, params, &[0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9]);
    Ok(())
}
