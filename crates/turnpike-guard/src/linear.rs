//! Logistic regression over hashed text features: the machinery shared by the shipped statistical
//! classifiers (the output harm classifier, `output::harm`, and the input injection classifier,
//! `injection_model`).
//!
//! Guarantee: pure Rust, in-process, no download: a model is a text file compiled into the crate, written by
//! [`LinearModel::to_text`] and read by [`LinearModel::parse`] (the header names the model kind, so one
//! kind's file cannot be loaded as another's). Scoring is one pass over the text's words with a hash and an
//! array lookup each (no allocation beyond the feature list), so it costs microseconds. [`train`] is
//! deterministic: fixed example order, full-batch gradient descent, no randomness, so the same data gives the
//! same file byte for byte.

use std::sync::{Arc, OnceLock};

/// Number of hash buckets (2^18): large enough that the n-grams of the training data rarely collide, small
/// enough for a 1 MiB dense table per model.
pub const BUCKETS: usize = 1 << 18;

#[derive(Clone, Debug, PartialEq)]
pub struct LinearModel {
    pub bias: f32,
    pub weights: Vec<f32>,
}

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Hashed feature indices of a folded text: word unigrams and bigrams, and character 4-grams of words over
/// five letters, deduplicated (binary features).
pub fn features(folded: &str) -> Vec<u32> {
    let words: Vec<&str> = folded
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = Vec::with_capacity(words.len() * 2);
    for (i, w) in words.iter().enumerate() {
        out.push((fnv1a(w.as_bytes(), 1) % BUCKETS as u64) as u32);
        // Character 4-grams of longer words ("explos", "weapon" share stems with their inflections).
        let b = w.as_bytes();
        if b.len() > 5 {
            for g in b.windows(4) {
                out.push((fnv1a(g, 3) % BUCKETS as u64) as u32);
            }
        }
        if let Some(next) = words.get(i + 1) {
            let h = fnv1a(next.as_bytes(), fnv1a(w.as_bytes(), 2));
            out.push((h % BUCKETS as u64) as u32);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

impl LinearModel {
    /// Probability in [0, 1] that a folded text is of the positive class. Features are scaled by 1/sqrt(n)
    /// so a long text does not score high by length alone.
    pub fn score(&self, folded: &str) -> f32 {
        let f = features(folded);
        if f.is_empty() {
            return sigmoid(self.bias);
        }
        let scale = 1.0 / (f.len() as f32).sqrt();
        sigmoid(self.bias + scale * f.iter().map(|&i| self.weights[i as usize]).sum::<f32>())
    }

    /// Text form: a header line naming the model `kind`, the provenance as `#` lines, then one
    /// `index weight` line per non-zero weight, in index order.
    pub fn to_text(&self, kind: &str, provenance: &str) -> String {
        let mut s = format!("{kind} v1 buckets={BUCKETS} bias={:.6}\n", self.bias);
        for line in provenance.lines() {
            s.push_str(&format!("# {line}\n"));
        }
        for (i, w) in self.weights.iter().enumerate() {
            if w.abs() >= 1e-4 {
                s.push_str(&format!("{i} {w:.4}\n"));
            }
        }
        s
    }

    /// Reads the text form of a model of the given `kind`.
    pub fn parse(kind: &str, text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        let header = lines.next().ok_or("empty model file")?;
        let mut parts = header.split_whitespace();
        if parts.next() != Some(kind) || parts.next() != Some("v1") {
            return Err(format!("not a v1 {kind}: {header}"));
        }
        let mut bias = None;
        for p in parts {
            match p.split_once('=') {
                Some(("buckets", n)) if n.parse::<usize>().ok() == Some(BUCKETS) => {}
                Some(("bias", b)) => bias = b.parse::<f32>().ok(),
                _ => return Err(format!("bad header field {p}")),
            }
        }
        let mut weights = vec![0f32; BUCKETS];
        for line in lines.filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (i, w) = line.split_once(' ').ok_or_else(|| format!("bad line {line}"))?;
            let i: usize = i.parse().map_err(|_| format!("bad index in {line}"))?;
            let w: f32 = w.trim().parse().map_err(|_| format!("bad weight in {line}"))?;
            *weights.get_mut(i).ok_or_else(|| format!("index out of range in {line}"))? = w;
        }
        Ok(LinearModel { bias: bias.ok_or("header has no bias")?, weights })
    }
}

/// A model compiled into the crate, parsed once per process: every `Guard` (guard-in's, guard-out's, each
/// test's) shares the weights (1 MiB per model) instead of parsing the text again.
pub(crate) fn shipped_once(cell: &'static ShippedCell, kind: &str, text: &str) -> Result<Arc<LinearModel>, String> {
    cell.get_or_init(|| LinearModel::parse(kind, text).map(Arc::new)).clone()
}

/// Where [`shipped_once`] keeps a parsed model.
pub(crate) type ShippedCell = OnceLock<Result<Arc<LinearModel>, String>>;

/// Training settings; the defaults are the ones the shipped harm model was trained with.
#[derive(Clone, Copy, Debug)]
pub struct TrainParams {
    pub epochs: usize,
    pub learning_rate: f32,
    /// L2 penalty on the weights (not the bias).
    pub l2: f32,
    /// The bias is held at this value rather than learned: a text with no known words then scores
    /// sigmoid(bias), low, so only words seen in positive examples can raise a score. (A learned bias makes
    /// "not like the negatives" itself evidence, which flags every text unlike the training negatives.)
    pub bias: f32,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams { epochs: 1000, learning_rate: 4.0, l2: 1e-4, bias: -2.0 }
    }
}

/// Trains on folded texts labelled positive (`true`) or negative; each class carries half the total weight,
/// so the class balance of the data does not set the bias. Deterministic.
pub fn train(examples: &[(String, bool)], p: TrainParams) -> LinearModel {
    let weighted: Vec<(&str, bool, f32)> = examples.iter().map(|(t, y)| (t.as_str(), *y, 1.0)).collect();
    train_weighted(&weighted, p)
}

/// As [`train`], with a weight per example: within its class an example counts in proportion to its weight
/// (so a small group of examples unlike the rest of its class can be given the say it needs).
pub fn train_weighted(examples: &[(&str, bool, f32)], p: TrainParams) -> LinearModel {
    let feats: Vec<(Vec<u32>, f32, f32, f32)> = examples
        .iter()
        .map(|(t, y, w)| {
            let f = features(t);
            let scale = if f.is_empty() { 0.0 } else { 1.0 / (f.len() as f32).sqrt() };
            (f, scale, if *y { 1.0 } else { 0.0 }, *w)
        })
        .collect();
    let half = |positive: bool| {
        let total = feats.iter().filter(|f| (f.2 > 0.5) == positive).map(|f| f.3).sum::<f32>();
        if total > 0.0 {
            0.5 / total
        } else {
            0.0
        }
    };
    let (wp, wn) = (half(true), half(false));
    let mut m = LinearModel { bias: p.bias, weights: vec![0f32; BUCKETS] };
    let mut grad = vec![0f32; BUCKETS];
    let touched: Vec<u32> = {
        let mut t: Vec<u32> = feats.iter().flat_map(|f| f.0.iter().copied()).collect();
        t.sort_unstable();
        t.dedup();
        t
    };
    for _ in 0..p.epochs {
        for (f, scale, y, w) in &feats {
            let z = m.bias + scale * f.iter().map(|&i| m.weights[i as usize]).sum::<f32>();
            let err = (sigmoid(z) - y) * w * if *y > 0.5 { wp } else { wn };
            for &i in f {
                grad[i as usize] += err * scale;
            }
        }
        for &i in &touched {
            let i = i as usize;
            m.weights[i] -= p.learning_rate * (grad[i] + p.l2 * m.weights[i]);
            grad[i] = 0.0;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::fold;

    fn ex(t: &str, y: bool) -> (String, bool) {
        (fold(t).text, y)
    }

    #[test]
    fn features_are_deduplicated_unigrams_and_bigrams() {
        let f = features("open the door, open the door");
        // open, the, door + open the, the door, door open
        assert_eq!(f.len(), 6);
        assert!(features("").is_empty());
    }

    #[test]
    fn training_separates_a_toy_set_and_is_deterministic() {
        let data = vec![
            ex("here is how to build the weapon and hurt people", true),
            ex("mix the chemicals to make poison for your enemy", true),
            ex("attack them with the knife when they are alone", true),
            ex("i'm sorry, your parcel is delayed and will arrive monday", false),
            ex("you can reset your password from the account page", false),
            ex("i can't help with hurting people, please seek support", false),
        ];
        let a = train(&data, TrainParams::default());
        let b = train(&data, TrainParams::default());
        assert_eq!(a, b, "same data, same model");
        assert!(a.score(&fold("build the weapon to hurt people").text) > 0.7);
        assert!(a.score(&fold("your parcel will arrive monday").text) < 0.3);
    }

    #[test]
    fn text_form_round_trips_and_names_its_kind() {
        let data = vec![ex("make poison", true), ex("reset your password", false)];
        let m = train(&data, TrainParams { epochs: 20, ..Default::default() });
        let text = m.to_text("test-model", "test\nsecond line");
        let back = LinearModel::parse("test-model", &text).unwrap();
        assert!((back.bias - m.bias).abs() < 1e-5);
        for t in ["make poison", "reset your password"] {
            assert!((back.score(t) - m.score(t)).abs() < 1e-3, "{t}");
        }
        assert!(LinearModel::parse("other-model", &text).is_err(), "a file of another kind is refused");
        assert!(LinearModel::parse("test-model", "something else").is_err());
    }
}
