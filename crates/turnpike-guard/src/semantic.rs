//! Heads on the sentence embedding: small logistic regressions over the encoder's unit vector (see
//! `turnpike-embed`), one per question guard-in asks of a user message.
//!
//! Guarantee: the heads are data, not code: [`Heads::shipped`] parses the committed `semantic_heads.txt`
//! (written by `turnpike-guard-eval train-heads`, which states its sources and figures), and a head whose
//! dimension differs from the embedding's scores nothing rather than misreading it. Scoring is a dot product
//! per head (384 multiply-adds), so every head together costs microseconds once the embedding exists.

use std::fmt::Write as _;

/// Names of the heads, also their check names in triggers.
pub const INJECTION: &str = "injection";
pub const HANDOFF: &str = "handoff_request";
pub const ABUSE: &str = "abuse";
pub const REPETITION: &str = "repetition";
/// Negative sentiment and frustration: the head's probability that a message is negative, also the check
/// name of the per-turn trigger that carries the score and the session's trend ([`SentimentTrend`]).
pub const SENTIMENT: &str = "sentiment";
/// How many of a session's sentiment scores are kept (guard-in: in Redis, see its `sentiment_key`) and
/// shown in a trend.
pub const SENTIMENT_MEMORY: usize = 20;
/// How many earlier user messages of a session the repetition signal compares with.
pub const SESSION_MEMORY: usize = 20;

/// How many of the session's earlier messages say nearly the same as this one (cosine at least
/// `min_similarity` between unit vectors), and the highest similarity. Vectors of another dimension are
/// skipped.
pub fn repetition(current: &[f32], earlier: &[Vec<f32>], min_similarity: f32) -> (usize, f32) {
    let sims =
        earlier.iter().filter(|e| e.len() == current.len()).map(|e| e.iter().zip(current).map(|(a, b)| a * b).sum());
    sims.fold((0, 0.0f32), |(n, best), s: f32| (n + usize::from(s >= min_similarity), best.max(s)))
}

/// One turn's sentiment and the session's trend up to it: the interface for handoff rules such as
/// "negative sentiment sustained over turns".
///
/// Where it is: every turn whose message the sentiment head scored carries one trigger with check
/// [`SENTIMENT`] (`"sentiment"`), verdict `flag` when this turn is negative (score at or above the
/// threshold: `guard.model.sentiment_threshold`, else the head's trained one) or `score` when it is not,
/// `score` = [`SentimentTrend::score`], and `detail` = [`SentimentTrend::detail`], e.g.
/// `score=0.912 negative_run=3 recent=0.120,0.804,0.871,0.912` (recent scores oldest first, this turn last;
/// [`SentimentTrend::parse_detail`] reads it back, e.g. from a `GuardedTurn`'s triggers, which have no
/// score field). In-process, [`crate::InputVerdict::sentiment`] has the same. guard-in keeps the scores of
/// the session's last [`SENTIMENT_MEMORY`] turns in Redis (`turnpike:guard:sentiment:{tenant}:{session}`,
/// a list of `"{seq}:{score}"`, newest last, as long as the session's state).
#[derive(Clone, Debug, PartialEq)]
pub struct SentimentTrend {
    /// This message's score in [0, 1]: the probability that it is negative or frustrated.
    pub score: f32,
    /// The session's scores, oldest first, this turn's last (at most [`SENTIMENT_MEMORY`]).
    pub recent: Vec<f32>,
    /// Consecutive negative turns ending with this one (0 when this one is not negative).
    pub negative_run: usize,
    /// The threshold a turn is counted negative at.
    pub negative_at: f32,
}

impl SentimentTrend {
    /// The trend after a turn scored `score`, given the session's earlier scores (oldest first).
    pub fn new(score: f32, earlier: &[f32], negative_at: f32) -> SentimentTrend {
        let keep = earlier.len().saturating_sub(SENTIMENT_MEMORY - 1);
        let mut recent = earlier[keep..].to_vec();
        recent.push(score);
        let negative_run = recent.iter().rev().take_while(|s| **s >= negative_at).count();
        SentimentTrend { score, recent, negative_run, negative_at }
    }

    pub fn is_negative(&self) -> bool {
        self.score >= self.negative_at
    }

    /// The mean of the last `n` scores (fewer when the session is younger), this turn's included.
    pub fn mean_of_last(&self, n: usize) -> f32 {
        let tail = &self.recent[self.recent.len().saturating_sub(n.max(1))..];
        tail.iter().sum::<f32>() / tail.len().max(1) as f32
    }

    /// The trigger's detail: `score=S negative_run=N recent=S1,S2,...` (three decimals, oldest first).
    pub fn detail(&self) -> String {
        let recent: Vec<String> = self.recent.iter().map(|s| format!("{s:.3}")).collect();
        format!("score={:.3} negative_run={} recent={}", self.score, self.negative_run, recent.join(","))
    }

    /// Reads a [`SentimentTrend::detail`] back as `(score, negative_run, recent)`.
    pub fn parse_detail(detail: &str) -> Option<(f32, usize, Vec<f32>)> {
        let (mut score, mut run, mut recent) = (None, None, None);
        for field in detail.split_whitespace() {
            match field.split_once('=')? {
                ("score", v) => score = v.parse().ok(),
                ("negative_run", v) => run = v.parse().ok(),
                ("recent", v) => recent = v.split(',').map(|x| x.parse().ok()).collect::<Option<Vec<f32>>>(),
                _ => {}
            }
        }
        Some((score?, run?, recent?))
    }
}

/// A unit vector as one signed byte per dimension (384 bytes for MiniLM instead of 1,536), for a session's
/// memory of its earlier messages: the cosine of two quantized vectors is within ~0.01 of the exact one.
pub fn quantize(v: &[f32]) -> Vec<u8> {
    v.iter().map(|x| ((x * 127.0).round().clamp(-127.0, 127.0) as i8) as u8).collect()
}

/// The inverse of [`quantize`], normalised again.
pub fn dequantize(b: &[u8]) -> Vec<f32> {
    let v: Vec<f32> = b.iter().map(|&x| f32::from(x as i8) / 127.0).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter().map(|x| x / n).collect()
    } else {
        v
    }
}

/// One logistic regression: `p = sigmoid(w·x + b)`, with the threshold chosen at training time.
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    pub name: String,
    pub weights: Vec<f32>,
    pub bias: f32,
    /// The probability at or above which the head says yes (a policy may override it).
    pub threshold: f32,
}

impl Head {
    pub fn probability(&self, x: &[f32]) -> Option<f32> {
        if x.len() != self.weights.len() {
            return None;
        }
        let z: f32 = self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f32>() + self.bias;
        Some(sigmoid(z))
    }
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Every head the input checks use, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Heads {
    pub heads: Vec<Head>,
    /// The header comment of the file (sources, figures), kept for `--version`-style reports.
    pub provenance: String,
}

const MAGIC: &str = "turnpike-semantic-heads v1";

impl Heads {
    /// The heads committed with this crate.
    pub fn shipped() -> Result<Heads, String> {
        Heads::parse(include_str!("semantic_heads.txt"))
    }

    pub fn get(&self, name: &str) -> Option<&Head> {
        self.heads.iter().find(|h| h.name == name)
    }

    /// Format: a magic line, `#` comment lines, then per head one line `head NAME DIM BIAS THRESHOLD` and one
    /// line of DIM weights.
    pub fn parse(text: &str) -> Result<Heads, String> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(format!("not a heads file (first line must be `{MAGIC}`)"));
        }
        let mut heads = Vec::new();
        let mut provenance = String::new();
        while let Some(line) = lines.next() {
            if let Some(c) = line.strip_prefix('#') {
                provenance.push_str(c.trim());
                provenance.push('\n');
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            let [_, name, dim, bias, threshold] = f[..] else {
                return Err(format!("expected `head NAME DIM BIAS THRESHOLD`, got `{line}`"));
            };
            let num = |s: &str| s.parse::<f32>().map_err(|e| format!("{name}: {s}: {e}"));
            let dim: usize = dim.parse().map_err(|e| format!("{name}: dim {dim}: {e}"))?;
            let weights = lines
                .next()
                .ok_or(format!("{name}: weights missing"))?
                .split_whitespace()
                .map(num)
                .collect::<Result<Vec<f32>, String>>()?;
            if weights.len() != dim {
                return Err(format!("{name}: {} weights, expected {dim}", weights.len()));
            }
            heads.push(Head { name: name.to_string(), weights, bias: num(bias)?, threshold: num(threshold)? });
        }
        Ok(Heads { heads, provenance })
    }

    pub fn to_text(&self) -> String {
        let mut s = format!("{MAGIC}\n");
        for l in self.provenance.lines() {
            let _ = writeln!(s, "# {l}");
        }
        for h in &self.heads {
            let _ = writeln!(s, "head {} {} {} {}", h.name, h.weights.len(), h.bias, h.threshold);
            let w: Vec<String> = h.weights.iter().map(|w| format!("{w:.5}")).collect();
            let _ = writeln!(s, "{}", w.join(" "));
        }
        s
    }
}

/// Training settings of [`train`]: full-batch gradient descent on the class-balanced log loss with L2.
#[derive(Clone, Copy, Debug)]
pub struct TrainParams {
    pub epochs: usize,
    pub learning_rate: f32,
    pub l2: f32,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams { epochs: 400, learning_rate: 2.0, l2: 1e-3 }
    }
}

/// Fits a logistic regression on `(vector, label)` pairs. Each class weighs half of the loss whatever its
/// size, so a head trained on 5,000 benign and 300 positive messages is not a constant "no". Deterministic
/// (no shuffling, zero start), so the same data gives the same file.
pub fn train(name: &str, examples: &[(&[f32], bool)], p: TrainParams) -> Head {
    let dim = examples.first().map(|(x, _)| x.len()).unwrap_or(0);
    let pos = examples.iter().filter(|(_, y)| *y).count().max(1) as f32;
    let neg = examples.iter().filter(|(_, y)| !*y).count().max(1) as f32;
    let (wp, wn) = (0.5 / pos, 0.5 / neg);
    let mut w = vec![0.0f32; dim];
    let mut b = 0.0f32;
    let mut grad = vec![0.0f32; dim];
    for _ in 0..p.epochs {
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut gb = 0.0f32;
        for (x, y) in examples {
            let z: f32 = w.iter().zip(x.iter()).map(|(a, v)| a * v).sum::<f32>() + b;
            let (target, weight) = if *y { (1.0, wp) } else { (0.0, wn) };
            let err = (sigmoid(z) - target) * weight;
            grad.iter_mut().zip(x.iter()).for_each(|(g, v)| *g += err * v);
            gb += err;
        }
        w.iter_mut().zip(&grad).for_each(|(a, g)| *a -= p.learning_rate * (g + p.l2 * *a));
        b -= p.learning_rate * gb;
    }
    Head { name: name.to_string(), weights: w, bias: b, threshold: 0.5 }
}

/// The lowest threshold at which at most `max_fpr` of `benign` scores reach it (ties counted), so a head's
/// false-positive rate on its training negatives is bounded; clamped to [0.5, 0.99].
pub fn threshold_for_fpr(head: &Head, benign: &[&[f32]], max_fpr: f32) -> f32 {
    let mut scores: Vec<f32> = benign.iter().filter_map(|x| head.probability(x)).collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    let allowed = (max_fpr * scores.len() as f32).floor() as usize;
    let t = scores.get(allowed).map(|s| s + 1e-4).unwrap_or(0.5);
    t.clamp(0.5, 0.99)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: [f32; 3]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn training_separates_two_directions_and_the_threshold_bounds_false_positives() {
        let pos: Vec<Vec<f32>> = (0..20).map(|i| unit([1.0, 0.1 * (i % 5) as f32, 0.2])).collect();
        let neg: Vec<Vec<f32>> = (0..200).map(|i| unit([0.1 * (i % 7) as f32 - 0.3, 1.0, 0.2])).collect();
        let mut ex: Vec<(&[f32], bool)> = pos.iter().map(|v| (v.as_slice(), true)).collect();
        ex.extend(neg.iter().map(|v| (v.as_slice(), false)));
        let head = train("t", &ex, TrainParams::default());
        assert!(pos.iter().all(|v| head.probability(v).unwrap() > 0.5));
        assert!(neg.iter().all(|v| head.probability(v).unwrap() < 0.5));
        let benign: Vec<&[f32]> = neg.iter().map(Vec::as_slice).collect();
        let t = threshold_for_fpr(&head, &benign, 0.0);
        assert!(neg.iter().all(|v| head.probability(v).unwrap() < t));
        // A vector of another dimension is not scored.
        assert_eq!(head.probability(&[1.0, 0.0]), None);
    }

    #[test]
    fn repetition_counts_near_duplicates_and_survives_quantization() {
        let a = unit([1.0, 0.2, 0.0]);
        let near = unit([1.0, 0.25, 0.05]);
        let far = unit([0.0, 0.1, 1.0]);
        let earlier: Vec<Vec<f32>> = [&near, &far, &near].iter().map(|v| dequantize(&quantize(v))).collect();
        let (n, best) = repetition(&a, &earlier, 0.9);
        assert_eq!(n, 2);
        let exact: f32 = a.iter().zip(&near).map(|(x, y)| x * y).sum();
        assert!((best - exact).abs() < 0.01, "{best} vs {exact}");
        assert_eq!(repetition(&a, &[vec![1.0, 0.0]], 0.5), (0, 0.0));
        assert_eq!(quantize(&a).len(), 3);
    }

    #[test]
    fn sentiment_trend_counts_the_negative_run_keeps_the_last_scores_and_reads_back() {
        let t = SentimentTrend::new(0.9, &[0.1, 0.8, 0.7], 0.6);
        assert_eq!(t.recent, vec![0.1, 0.8, 0.7, 0.9]);
        assert_eq!(t.negative_run, 3);
        assert!(t.is_negative());
        assert!((t.mean_of_last(2) - 0.8).abs() < 1e-6);
        assert_eq!(t.detail(), "score=0.900 negative_run=3 recent=0.100,0.800,0.700,0.900");
        let (score, run, recent) = SentimentTrend::parse_detail(&t.detail()).unwrap();
        assert_eq!((score, run, recent.len()), (0.9, 3, 4));
        // A calm turn ends the run; the memory is bounded, oldest dropped.
        let t = SentimentTrend::new(0.2, &[0.9; 40], 0.6);
        assert_eq!((t.negative_run, t.recent.len(), t.is_negative()), (0, SENTIMENT_MEMORY, false));
        assert_eq!(t.recent.last(), Some(&0.2));
        assert_eq!(SentimentTrend::parse_detail("score=x"), None);
    }

    #[test]
    fn heads_round_trip_through_text_and_reject_malformed_files() {
        let h = Heads {
            heads: vec![Head { name: "abuse".into(), weights: vec![0.5, -1.25, 0.0], bias: -0.5, threshold: 0.7 }],
            provenance: "trained on things\nsecond line".into(),
        };
        let back = Heads::parse(&h.to_text()).unwrap();
        assert_eq!(back.get("abuse"), h.get("abuse"));
        assert_eq!(back.provenance, "trained on things\nsecond line\n");
        assert!(Heads::parse("nonsense").is_err());
        assert!(Heads::parse(&format!("{MAGIC}\nhead x 3 0 0.5\n1 2\n")).is_err());
    }

    #[test]
    fn shipped_heads_parse_and_cover_every_check() {
        let h = Heads::shipped().unwrap();
        for name in [INJECTION, HANDOFF, ABUSE] {
            let head = h.get(name).unwrap_or_else(|| panic!("{name} head missing"));
            assert_eq!(head.weights.len(), 384);
            assert!((0.5..1.0).contains(&head.threshold));
        }
        let s = h.get(SENTIMENT).expect("sentiment head");
        assert!(s.weights.len() == 384 && (0.2..=0.95).contains(&s.threshold), "{}", s.threshold);
    }
}
