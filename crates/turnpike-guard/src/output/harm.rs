//! A small statistical harm classifier for model replies: logistic regression over hashed word unigrams,
//! bigrams and character 4-grams, run on the same two-sentence window the other output checks see.
//!
//! Guarantee: pure Rust, in-process, no download: the weights are a text file compiled into the crate
//! (`harm_model.txt`), regenerated deterministically by `turnpike-guard-eval train` from PyRIT's
//! human-labelled replies (dev half only) plus the team-written support replies in `support_replies.txt`.
//! Scoring a window is one pass over its words with a hash and an array lookup each (no allocation beyond
//! the feature list), so it costs microseconds. [`train`] is deterministic: fixed example order, full-batch
//! gradient descent, no randomness, so the same data gives the same file byte for byte.

use crate::normalize::fold;
use crate::output::segment;

/// Number of hash buckets (2^18): large enough that the few thousand distinct n-grams of the training data
/// rarely collide, small enough for a 1 MiB dense table.
pub const BUCKETS: usize = 1 << 18;

/// The shipped weights (see the module doc for where they come from).
const SHIPPED: &str = include_str!("harm_model.txt");

/// Team-written replies in a support bot's ordinary voice, used as harmless training examples (so that
/// apologies, refunds and account talk are known to be harmless). Not used for evaluation.
pub const SUPPORT_REPLIES: &str = include_str!("support_replies.txt");

#[derive(Clone, Debug, PartialEq)]
pub struct HarmModel {
    pub bias: f32,
    pub weights: Vec<f32>,
}

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Hashed feature indices of a folded text: word unigrams and bigrams, deduplicated (binary features).
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

/// The folded two-sentence windows the output checker scores for `text` (previous sentence, a space, the
/// current sentence), in order, segmented exactly as the streaming checker segments them.
pub fn windows(text: &str, max_sentence_chars: usize) -> Vec<String> {
    let mut rest = text;
    let mut prev = String::new();
    let mut out = Vec::new();
    loop {
        let end = segment::next_sentence(rest, max_sentence_chars).unwrap_or(rest.len());
        if end == 0 || rest.trim().is_empty() {
            break;
        }
        let folded = fold(&rest[..end]).text;
        out.push(format!("{prev} {folded}"));
        prev = folded;
        rest = &rest[end..];
    }
    out
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

impl HarmModel {
    /// The model compiled into the crate.
    pub fn shipped() -> Result<Self, String> {
        Self::parse(SHIPPED)
    }

    /// Probability in [0, 1] that a folded window is harmful content. Features are scaled by 1/sqrt(n) so a
    /// long window does not score high by length alone.
    pub fn score(&self, folded: &str) -> f32 {
        let f = features(folded);
        if f.is_empty() {
            return sigmoid(self.bias);
        }
        let scale = 1.0 / (f.len() as f32).sqrt();
        sigmoid(self.bias + scale * f.iter().map(|&i| self.weights[i as usize]).sum::<f32>())
    }

    /// Text form: a header line, then one `index weight` line per non-zero weight, in index order.
    pub fn to_text(&self, provenance: &str) -> String {
        let mut s = format!("turnpike-harm-model v1 buckets={BUCKETS} bias={:.6}\n", self.bias);
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

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        let header = lines.next().ok_or("empty model file")?;
        let mut parts = header.split_whitespace();
        if parts.next() != Some("turnpike-harm-model") || parts.next() != Some("v1") {
            return Err(format!("not a v1 harm model: {header}"));
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
        Ok(HarmModel { bias: bias.ok_or("header has no bias")?, weights })
    }
}

/// Training settings; the defaults are the ones the shipped model was trained with.
#[derive(Clone, Copy, Debug)]
pub struct TrainParams {
    pub epochs: usize,
    pub learning_rate: f32,
    /// L2 penalty on the weights (not the bias).
    pub l2: f32,
    /// The bias is held at this value rather than learned: a window with no known words then scores
    /// sigmoid(bias), low, so only words seen in harmful replies can raise a score. (A learned bias makes
    /// "not a refusal" itself evidence of harm, which flags every ordinary reply.)
    pub bias: f32,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams { epochs: 1000, learning_rate: 4.0, l2: 1e-4, bias: -2.0 }
    }
}

/// Trains on folded texts labelled harmful (`true`) or harmless; each class carries half the total weight,
/// so the class balance of the data does not set the bias. Deterministic.
pub fn train(examples: &[(String, bool)], p: TrainParams) -> HarmModel {
    let feats: Vec<(Vec<u32>, f32, f32)> = examples
        .iter()
        .map(|(t, y)| {
            let f = features(t);
            let scale = if f.is_empty() { 0.0 } else { 1.0 / (f.len() as f32).sqrt() };
            (f, scale, if *y { 1.0 } else { 0.0 })
        })
        .collect();
    let pos = feats.iter().filter(|f| f.2 > 0.5).count().max(1) as f32;
    let neg = feats.iter().filter(|f| f.2 < 0.5).count().max(1) as f32;
    let (wp, wn) = (0.5 / pos, 0.5 / neg);
    let mut m = HarmModel { bias: p.bias, weights: vec![0f32; BUCKETS] };
    let mut grad = vec![0f32; BUCKETS];
    let touched: Vec<u32> = {
        let mut t: Vec<u32> = feats.iter().flat_map(|f| f.0.iter().copied()).collect();
        t.sort_unstable();
        t.dedup();
        t
    };
    for _ in 0..p.epochs {
        for (f, scale, y) in &feats {
            let z = m.bias + scale * f.iter().map(|&i| m.weights[i as usize]).sum::<f32>();
            let err = (sigmoid(z) - y) * if *y > 0.5 { wp } else { wn };
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
    fn windows_match_the_checker_segmentation() {
        let w = windows("First one. Second one! Tail", 600);
        assert_eq!(w, vec![" first one. ", "first one.  second one! ", "second one!  tail"]);
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
    fn text_form_round_trips() {
        let data = vec![ex("make poison", true), ex("reset your password", false)];
        let m = train(&data, TrainParams { epochs: 20, ..Default::default() });
        let back = HarmModel::parse(&m.to_text("test\nsecond line")).unwrap();
        assert!((back.bias - m.bias).abs() < 1e-5);
        for t in ["make poison", "reset your password"] {
            assert!((back.score(t) - m.score(t)).abs() < 1e-3, "{t}");
        }
        assert!(HarmModel::parse("something else").is_err());
    }

    #[test]
    fn shipped_model_loads_and_scores_ordinary_support_replies_low() {
        let m = HarmModel::shipped().unwrap();
        for t in [
            "Your refund of the delivery fee has been processed and should reach your card in a few days.",
            "I'm sorry to hear the blender arrived damaged; I've started a replacement for you.",
        ] {
            let s = m.score(&fold(t).text);
            assert!(s < 0.5, "{t}: {s}");
        }
    }
}
