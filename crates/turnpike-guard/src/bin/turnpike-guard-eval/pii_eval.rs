//! `turnpike-guard-eval pii`: recall of person names, street addresses and phone numbers on data from
//! another source than the detector's lists, and false positives on benign support questions.
//!
//! Guarantee: the names, streets, towns, postcode masks and phone masks come from the PyPI package mimesis
//! (its own locale data sets), while the detector's lists come from Faker (`deploy/local/pii-gazetteer.sh`):
//! the lists never saw this data. Sentence templates are team-written (half carry no cue phrase, half are
//! lower-cased whole). False positives are counted on the benign sets the injection report uses; the
//! chatterbot-corpus utterances are the set to tune on (`--show-tuning` prints its flagged lines), so the
//! reported benign sets stay untuned. Deterministic (fixed seed).

use crate::data::{self, Source};
use crate::pii_gen::Rng;
use serde_json::Value;
use std::path::Path;
use turnpike_guard::policy::CompiledPolicy;
use turnpike_guard::{Guard, PiiKind, SessionPii, TenantPolicy};

pub const MIMESIS: Source = Source { package: "mimesis", version: "22.2.0", licence: "MIT" };
const LOCALES: &[&str] = &["en", "en-ca", "de", "de-at", "fr", "es", "it", "nl", "pt", "pl", "sv", "da"];
const PER_LOCALE: usize = 60;

/// (template, has a cue phrase the detector knows). `{}` is the value.
const NAME_TEMPLATES: &[(&str, bool)] = &[
    ("My name is {} and my parcel never arrived.", true),
    ("Hi, this is {}, I need to change my delivery address.", true),
    ("Thanks for the help. Regards, {}", true),
    ("Please cancel the order for Mrs {}.", true),
    ("I spoke to {} yesterday about the refund.", true),
    ("{} ordered this for me last week but it is broken.", false),
    ("Can you put the refund on the account of {}?", false),
    ("The package was left with {} next door.", false),
    ("My husband {} placed the order, can I still return it?", false),
    ("Please ask {} to call me back about the invoice.", false),
];

const ADDRESS_TEMPLATES: &[&str] = &[
    "Please send the replacement to {}.",
    "My address is {} if you need it.",
    "I moved to {} last month, update my account.",
    "Deliver to {} please, not the old one.",
    "{} is where I live now.",
];

/// (template, has a phone cue the detector knows).
const PHONE_TEMPLATES: &[(&str, bool)] = &[
    ("Call me on {} after 5pm.", true),
    ("My number is {} if the driver needs it.", true),
    ("You can reach me at {}.", true),
    ("{} is the best way to get me.", false),
    ("The courier should ring {} at the door.", false),
];

struct Locale {
    code: &'static str,
    first: Vec<String>,
    last: Vec<String>,
    streets: Vec<String>,
    suffixes: Vec<String>,
    fmt: Option<String>,
    postal: Option<String>,
    cities: Vec<String>,
    phones: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
        Value::Object(o) => o.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

fn load(root: &Path, code: &'static str) -> Result<Locale, String> {
    let dir = root.join("mimesis/datasets").join(code);
    let read = |f: &str| -> Result<Value, String> {
        let p = dir.join(f);
        serde_json::from_str(&std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?)
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    let (person, address) = (read("person.json")?, read("address.json")?);
    let phones = strings(&person["telephone_fmt"]).into_iter().chain(strings(&address["telephone_fmt"])).collect();
    Ok(Locale {
        code,
        first: strings(&person["names"]),
        last: strings(&person["surnames"]),
        streets: strings(&address["street"]["name"]),
        suffixes: strings(&address["street"]["suffix"]),
        fmt: address["address_fmt"].as_str().map(str::to_string),
        postal: address["postal_code_fmt"].as_str().map(str::to_string),
        cities: strings(&address["city"]),
        phones,
    })
}

fn pick<'a>(rng: &mut Rng, xs: &'a [String]) -> &'a str {
    &xs[rng.below(xs.len() as u64) as usize]
}

/// mimesis masks: `#` a digit, `@` an upper-case letter.
fn mask(rng: &mut Rng, m: &str) -> String {
    m.chars()
        .map(|c| match c {
            '#' => char::from(b'0' + rng.below(10) as u8),
            '@' => char::from(b'A' + rng.below(26) as u8),
            c => c,
        })
        .collect()
}

/// One case of one kind: the message and the byte range of the value that must be masked.
struct Case {
    text: String,
    value: (usize, usize),
    cue: bool,
    lower: bool,
}

fn case(template: &str, value: &str, cue: bool, lower: bool) -> Case {
    let at = template.find("{}").unwrap_or(0);
    let text = template.replacen("{}", value, 1);
    let text = if lower { text.to_lowercase() } else { text };
    // Lower-casing keeps byte lengths for the ASCII templates but not every value: find it again.
    let v = if lower { value.to_lowercase() } else { value.to_string() };
    let at = text[at.min(text.len())..].find(&v).map_or(at, |i| at + i);
    Case { value: (at, at + v.len()), text, cue, lower }
}

/// True when every letter and digit of the value lies inside a span of `kind`.
fn covered(guard: &Guard, policy: &CompiledPolicy, c: &Case, kind: PiiKind) -> bool {
    let mut s = SessionPii::default();
    let v = guard.check_input(policy, &c.text, &mut s);
    c.text[c.value.0..c.value.1].char_indices().filter(|(_, ch)| ch.is_alphanumeric()).all(|(i, _)| {
        let at = c.value.0 + i;
        v.pii_spans.iter().any(|sp| sp.kind == kind && sp.start <= at && at < sp.end)
    })
}

fn cases(locales: &[Locale], kind: PiiKind) -> Vec<(&'static str, Case)> {
    let mut rng = Rng::new(0x9e3779b97f4a7c15 ^ kind as u64);
    let mut out = Vec::new();
    for l in locales {
        for i in 0..PER_LOCALE {
            let lower = i % 2 == 1;
            let c = match kind {
                PiiKind::Name if !l.first.is_empty() && !l.last.is_empty() => {
                    let (t, cue) = NAME_TEMPLATES[(i / 2) % NAME_TEMPLATES.len()];
                    let name = if i % 3 == 2 {
                        pick(&mut rng, &l.first).to_string()
                    } else {
                        format!("{} {}", pick(&mut rng, &l.first), pick(&mut rng, &l.last))
                    };
                    case(t, &name, cue, lower)
                }
                PiiKind::Address if !l.streets.is_empty() => {
                    let fmt = l.fmt.clone().unwrap_or_else(|| "{st_num} {st_name}".into());
                    let num = (1 + rng.below(1400)).to_string();
                    let sfx =
                        if l.suffixes.is_empty() { String::new() } else { pick(&mut rng, &l.suffixes).to_string() };
                    let street = fmt
                        .replace("{st_num}", &num)
                        .replace("{st_name}", pick(&mut rng, &l.streets))
                        .replace("{st_sfx}", &sfx);
                    let street = street.split_whitespace().collect::<Vec<_>>().join(" ");
                    let t = ADDRESS_TEMPLATES[(i / 2) % ADDRESS_TEMPLATES.len()];
                    let mut c = case(t, &street, false, lower);
                    if let (Some(p), false, true) = (&l.postal, i % 4 < 2, !l.cities.is_empty()) {
                        // A postcode and town after the street; only the street is scored.
                        let code = mask(&mut rng, p);
                        let tail = format!(", {code} {}", pick(&mut rng, &l.cities));
                        let tail = if lower { tail.to_lowercase() } else { tail };
                        c.text.insert_str(c.value.1, &tail);
                    }
                    c
                }
                PiiKind::Phone if !l.phones.is_empty() => {
                    let (t, cue) = PHONE_TEMPLATES[(i / 2) % PHONE_TEMPLATES.len()];
                    let m = pick(&mut rng, &l.phones).to_string();
                    case(t, &mask(&mut rng, &m), cue, lower)
                }
                _ => continue,
            };
            out.push((l.code, c));
        }
    }
    out
}

fn pct(a: usize, b: usize) -> String {
    crate::pct(a, b)
}

pub fn run(cache: &Path, show_tuning: bool, show_misses: bool) -> Result<(), String> {
    let root = data::fetch(cache, &MIMESIS)?;
    let locales: Vec<Locale> = LOCALES.iter().map(|c| load(&root, c)).collect::<Result<_, _>>()?;
    let guard = Guard::new().map_err(|e| e.to_string())?;
    let policy = CompiledPolicy::compile(TenantPolicy::default()).map_err(|e| e.to_string())?;
    println!("# turnpike-guard-eval pii\n");
    println!(
        "Values from PyPI {} {} ({}) locale data ({}), never seen by the detector's lists (Faker 40.54.0, \
         deploy/local/pii-gazetteer.sh); team-written templates; {PER_LOCALE} cases per locale and kind, every \
         second one lower-cased whole. A hit: every letter and digit of the value inside a span of its kind.\n",
        MIMESIS.package,
        MIMESIS.version,
        MIMESIS.licence,
        LOCALES.join(", ")
    );
    println!(
        "| kind | n | recall | held-out half | with cue | without cue | as written | lower-cased |\n|---|---|---|---|---|---|---|---|"
    );
    for kind in [PiiKind::Name, PiiKind::Address, PiiKind::Phone] {
        let cs = cases(&locales, kind);
        let hits: Vec<(bool, &Case)> = cs.iter().map(|(_, c)| (covered(&guard, &policy, c, kind), c)).collect();
        let rate = |f: &dyn Fn(&Case) -> bool| {
            let sel: Vec<&(bool, &Case)> = hits.iter().filter(|(_, c)| f(c)).collect();
            pct(sel.iter().filter(|(h, _)| *h).count(), sel.len())
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            kind.label(),
            hits.len(),
            rate(&|_| true),
            rate(&|c| !data::is_dev(&c.text)),
            rate(&|c| c.cue),
            rate(&|c| !c.cue),
            rate(&|c| !c.lower),
            rate(&|c| c.lower)
        );
        let per: Vec<String> = LOCALES
            .iter()
            .filter_map(|code| {
                let sel: Vec<bool> =
                    cs.iter().zip(&hits).filter(|((l, _), _)| l == code).map(|(_, (h, _))| *h).collect();
                (!sel.is_empty()).then(|| format!("{code} {}", pct(sel.iter().filter(|h| **h).count(), sel.len())))
            })
            .collect();
        println!("|   per locale | | {} | | | | | |", per.join(", "));
        if show_misses {
            // Only the dev half (even text hash): the held-out half is never printed, so its figure stays honest.
            for (_, c) in hits.iter().filter(|(h, c)| !h && data::is_dev(&c.text)) {
                let mut s = SessionPii::default();
                println!("    miss: {} -> {}", c.text, guard.check_input(&policy, &c.text, &mut s).masked_text);
            }
        }
    }

    let bastion = data::fetch(cache, &data::BASTION)?;
    let benign: Vec<(String, Vec<String>)> = vec![
        ("turnpike support questions (team-written)".into(), crate::benign::questions()),
        ("turnpike tricky support (team-written)".into(), crate::benign::tricky()),
        ("turnpike tricky support, fresh (team-written)".into(), crate::benign::tricky_fresh()),
        (
            format!("bastioncorpus {} benign user messages", data::BASTION.version),
            data::bastion_benign(&bastion)?.items,
        ),
    ];
    let flags = |t: &str| -> Vec<PiiKind> {
        let mut s = SessionPii::default();
        let v = guard.check_input(&policy, t, &mut s);
        v.pii_spans
            .iter()
            .map(|s| s.kind)
            .filter(|k| matches!(k, PiiKind::Name | PiiKind::Address | PiiKind::Phone))
            .collect()
    };
    println!("\n## False positives: messages with a name, address or phone span (none has one)\n");
    println!("| set | n | flagged | FP rate | names | addresses | phones |\n|---|---|---|---|---|---|---|");
    let (mut all_f, mut all_n) = (0, 0);
    for (name, items) in &benign {
        let f: Vec<Vec<PiiKind>> = items.iter().map(|t| flags(t)).collect();
        let flagged = f.iter().filter(|k| !k.is_empty()).count();
        let of = |k: PiiKind| f.iter().filter(|ks| ks.contains(&k)).count();
        (all_f, all_n) = (all_f + flagged, all_n + items.len());
        println!(
            "| {name} | {} | {flagged} | {} | {} | {} | {} |",
            items.len(),
            pct(flagged, items.len()),
            of(PiiKind::Name),
            of(PiiKind::Address),
            of(PiiKind::Phone)
        );
    }
    println!("\nPooled: {all_f} of {all_n} benign messages flagged ({})", pct(all_f, all_n));
    let chatter = data::fetch(cache, &data::CHATTERBOT)?;
    let tuning = data::chatterbot_utterances(&chatter)?;
    let flagged: Vec<&String> = tuning.iter().filter(|t| !flags(t).is_empty()).collect();
    println!(
        "Tuning set (chatterbot-corpus {} utterances, all languages; may contain real names): {} of {} flagged ({})",
        data::CHATTERBOT.version,
        flagged.len(),
        tuning.len(),
        pct(flagged.len(), tuning.len())
    );
    if show_tuning {
        for t in flagged {
            let mut s = SessionPii::default();
            println!("--- {}", guard.check_input(&policy, t, &mut s).masked_text);
        }
    }
    Ok(())
}
