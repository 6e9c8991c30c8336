//! Prompt-injection and jailbreak scoring from several independent signals.
//!
//! Guarantee: the score is a noisy-OR of per-family evidence in [0, 1]; one family counts once however
//! often it matches, so long benign texts do not accumulate score by repetition, and a single weak family
//! (role-play wording, a stray zero-width space) stays below the default threshold of 0.5 while a strong
//! one (an instruction override, a known jailbreak persona) or two weak ones cross it. Patterns run on the
//! folded text and on de-leeted, de-spaced and base64/hex-decoded variants, so obfuscating a payload
//! cannot lower its score, and the obfuscation itself adds evidence.
//!
//! Words that are also ordinary product talk ("developer mode", "no restrictions", "unfiltered", "system
//! prompt", "content policy") are weak `loaded_term` evidence on their own and strong only in an AI or
//! jailbreak phrasing; the weak families (persona assignment, AI reference, multi-response formats, fiction
//! wrappers, output control, token smuggling) each sit in their own slot, so a message needs two of them.
//!
//! One more signal is statistical: the injection classifier (`injection_model`, logistic regression over
//! hashed n-grams, weights shipped in the crate) adds strong `classifier` evidence when its probability
//! reaches the tenant's `injection.classifier_threshold`, on messages of at least
//! `injection_model::MIN_WORDS` words. It catches the long tail of jailbreak preambles whose wording no
//! family names; the families still explain most decisions.

use crate::linear::LinearModel;
use crate::normalize::{collapse_spacing, dehyphen, deleet, fold};
use crate::policy::PolicyError;
use base64::Engine;
use regex::Regex;

/// The result for one text: score and the families that fired (names are static, PII-free).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InjectionReport {
    pub score: f32,
    pub families: Vec<&'static str>,
}

/// Every family name, in slot order: the score keeps the best weight per slot, so one family counts once.
const SLOTS: &[&str] = &[
    "instruction_override",
    "prompt_exfiltration",
    "jailbreak_persona",
    "role_play",
    "prompt_format",
    "placeholder",
    "encoded_payload",
    "obfuscation",
    "persona_assignment",
    "ai_reference",
    "refusal_suppression",
    "loaded_term",
    "multi_response",
    "fiction_wrapper",
    "output_control",
    "ethics_bypass",
    "token_smuggling",
    "abuse_request",
    "deferred_payload",
    "completion_scaffold",
    "classifier",
    "tenant_phrase",
];

fn slot(name: &str) -> usize {
    match name {
        "directive_density" => 6,
        _ => SLOTS.iter().position(|s| *s == name).unwrap_or(SLOTS.len() - 1),
    }
}

const FAMILIES: &[(&str, f32, &str)] = &[
    (
        "instruction_override",
        0.9,
        r"\b(ignore|disregard|forget|override|bypass|skip|drop|abandon|neglect)\b(\s+\w+){0,4}?\s+(instructions?|rules|prompts?|directives?|guidelines|programming|restrictions|constraints|guardrails|filters|training|commands?)\b",
    ),
    (
        "instruction_override",
        0.9,
        r"\b(new|updated|real|actual|secret)\s+(instructions?|system\s+prompt|directives?)\s*:|\bforget\s+(everything|all|anything)\s+(you|that\s+you|i|before|previous)|\byour\s+new\s+(rules|instructions|directives|programming|purpose|guidelines)\b|\b(reprogram|modify|modifying|change|changing|rewrite|update)\w*\s+(your|the\s+ai'?s)\s+(programming|code|rules|guidelines|training|directives)\b",
    ),
    (
        "prompt_exfiltration",
        0.8,
        r"\b(initial\s+(instructions?|prompt)|hidden\s+(instructions?|prompt)|original\s+instructions|pre-?prompt)\b|\b(your|the\s+ai'?s|chatgpt'?s|the\s+bot'?s|the\s+assistant'?s)\s+system\s+prompt\b|\b(reveal|show|print|repeat|output|display|tell\s+me|what\s+is|what's|give\s+me|share|leak|write\s+out|dump|recite|see|view|access|read|copy|paste|continue)\s+(\w+\s+){0,3}system\s+prompt\b|\bsystem\s+prompt\s+(is|was|says|reads|begins|starts)\s*:",
    ),
    (
        "prompt_exfiltration",
        0.8,
        r"\b(repeat|print|output|show|reveal|display|write\s+out|spell\s+out)\b(\s+\w+){0,4}?\s+(above|before\s+this|at\s+the\s+(beginning|start))\b",
    ),
    (
        "prompt_exfiltration",
        0.8,
        r"\b(your|the)\s+(initial|starting|original|hidden|secret)\s+(instructions?|prompt|configuration|config)\b|\byour\s+system\s+(instructions?|prompt|configuration|config)\b|\b(instructions|prompt|text|words)\s+you\s+(were|have\s+been|'ve\s+been)\s+given\b|\bprompt\s+i\s+was\s+given\b|\bwhat\s+were\s+you\s+told\b|\bi\s+was\s+instructed\s+to\b|\bmy\s+instructions\s+are\b|\bnot\s+supposed\s+to\s+tell\b|systemprompt|system_prompt|\binitiali[sz]ation\s+string\b|\b(maintenance|debug)\s+mode\b|\b(administrator|admin)\s+override\b|\brepeat\s+(this\s+|the\s+)?(entire\s+|whole\s+)?conversation\b",
    ),
    (
        "jailbreak_persona",
        0.9,
        r"\b(do\s+anything\s+now|jailbroken\s+(ai|mode|version|chatbot|model|assistant|gpt|chatgpt)|jailbr(eak|oke|oken)\s+(successful\w*|prompt|mode|(chat)?gpt|you|the\s+(ai|model|assistant|bot))|anti-?dan|dan\s+mode|dude\s+mode|stan\s+mode|god\s+mode|evil\s+(confidant|mode|ai|bot)|opposite\s+mode|amoral|(unfiltered|uncensored|unrestricted|unaligned|unbound|unchained|unlocked)\s+(ai|mode|model|version|response|responses|answer|answers|output|chatbot|assistant|persona|(chat)?gpt)|developer\s+mode\s+(enabled|output|response|activated|is\s+enabled)|(enable|activate|simulate|enter)\w*\s+(the\s+)?developer\s+mode|(chatgpt|gpt|ai|you)\s+with\s+developer\s+mode)\b",
    ),
    (
        "jailbreak_persona",
        0.9,
        r"\b(no|without|free\s+(of|from)|beyond|not\s+bound\s+by|outside)\s+(any\s+|the\s+)?(typical\s+|usual\s+)?(ethical|moral|ethics|morals|content|safety)\s*(guidelines|restrictions|limitations|filters|censorship|boundaries|rules|policies|principles|constraints|confines)\b|\b(not\s+bound\s+by|free\s+(of|from)|beyond|outside|break(s|ing)?|violat\w+|bypass\w*|ignor\w+|defy\w*|defies)\s+(any\s+|all\s+|the\s+|your\s+|its\s+)?(\w+\s+){0,2}(guidelines|restrictions|limitations|filters|censorship|boundaries|rules|policies|principles|constraints|confines|conventions|programming|protocols)\b",
    ),
    (
        "jailbreak_persona",
        0.85,
        r"\b(openai|open\s+ai|anthropic)\s+(content\s+|usage\s+)?polic(y|ies)\b|\bstay\s+in\s+character\b|\bbreak(ing)?\s+character\b|\b(never|not|won't|will\s+not|cannot)\s+(refuse|decline|reject)\b|\bstay\s+(in|as)\s+\w+(\s+mode)?\s*[!.]|\bstay\s+in\s+\w+\s+mode\b",
    ),
    (
        "jailbreak_persona",
        0.7,
        r"\b(no|without)\s+(warnings?|apolog(y|ies|ize))\b|\bdoes\s*n[o']t\s+(have\s+to\s+)?(follow|abide|adhere)\b|\bas\s+an\s+ai\s+language\s+model\b",
    ),
    (
        "role_play",
        0.35,
        r"\b(act|acts|acting|behave|behaves|respond|answer|reply)\s+(as|like)\s+(a|an|if|my|the|though|him|her|them|it|this)\b|\bpretend(ing)?\s+(to\s+be|you|that)\b|\brole-?play|\byou\s+are\s+(now|going\s+to|about\s+to)\s+(be|act|pretend|play|simulate|become)\b|\bimagine\s+(you|that\s+you)\b|\bi\s+want\s+you\s+to\s+(act|be|pretend|play|simulate|respond)\b|\bsimulat(e|ion)\b|\bhypothetical",
    ),
    (
        "role_play",
        0.35,
        r"\bfrom\s+now\s+on\b|\byou\s+will\s+(now\s+)?(always\s+)?(be|act|respond|answer|reply)\b|\bin\s+this\s+(fictional|hypothetical|imaginary)\b",
    ),
    (
        "persona_assignment",
        0.35,
        r#"\byou\s+are\s+(now|no\s+longer)\s+(a|an|the|called|named|["'“]?[a-z0-9]+)\b|\byour\s+(new\s+)?name\s+is\s+now\b|\b(take\s+on|assume|adopt|play|embody)\s+(the|a)\s+(\w+\s+){0,2}(role|persona|personality|part)\b|\b(the\s+)?assistant('?s\s+role)?\s+(is\s+)?now\b|\b(function|operate)\s+in\s+the\s+capacity\s+of\b|\b(act|acts|behave|behaves|function|pretend)\w*\s+(as|like|to\s+be)\s+(a|an)?\s*(\w+\s+)?(terminal|command\s+(line|prompt|shell)|shell|console|interpreter|operating\s+system|virtual\s+machine|cmd|text\s+adventure)\b|\byou\s+are\s+now\s+(\w+\s+)?(terminal|cmd|shell|console)\b|\btransform\s+into\b|\bfrom\s+this\s+(moment|point)\b|\bplay\s+(2|two|both|three|3)\s+(different\s+)?characters\b|\b(have|play|do)\s+a\s+role-?play\b|\brespond\s+to\s+(all|every|each)\s+(of\s+)?my\s+(questions|messages|prompts)\s+as\b|\byour\s+persona\b|\bnew\s+persona\b|\bpersona\s+(is|of|called|named)\b|\blet'?s\s+play\s+a\s+game\b|\b(a|an|the)\s+(ai|bot|chatbot|assistant|model)\s+(called|named)\b|\bwho\s+(is|will\s+be)\s+(able|capable)\s+(to|of)\s+(do|doing|answer|answering)\s+anything\b|\bcapable\s+of\s+anything\b"#,
    ),
    (
        "ai_reference",
        0.3,
        r"\b(chat\s?gpt|gpt-?\d(\.\d)?|open\s?ai|language\s+model|llm|large\s+language|ai\s+(assistant|model|chatbot|system|bot)|an\s+ai|as\s+an\s+ai|your\s+(programming|training\s+data|creators?|developers?\s+at))\b",
    ),
    (
        "refusal_suppression",
        0.6,
        r"\b(never|not|don'?t|do\s+not|won'?t|will\s+not|without)\s+(ever\s+)?(hesitat\w*|deny|denies|denying|censor\w*|refus\w+|apologi[sz]\w*)\b|\b(do\s+not|don'?t|never|no\s+need\s+to)\s+(include|add|give|provide|write|mention)\s+(any\s+)?(warnings?|disclaimers?|caveats?|moral\w*|ethic\w*|reminders?|notes?\s+about)\b|\bnever\s+say\s+(the\s+words?|that\s+you|you|it\s+(can'?t|cannot))\b|\bnot\s+allowed\s+to\s+say\s+(that\s+)?you\b|\b(avoid|without)\w*\s+(any\s+)?mention(ing)?\s+(of\s+)?(ai\s+|your\s+|the\s+)?(limitations|restrictions|ethics|morals|guidelines|policies)\b|\bwithout\s+(any\s+)?(hesitation|question(ing)?|judg(e?ment|ing)|filter(ing)?|censor(ship|ing)?)\b|\bno\s+matter\s+how\s+(twisted|illegal|unethical|immoral|dangerous|harmful|offensive|explicit|inappropriate|evil|vile|bad)\b|\b(any|every|all)\s+(\w+\s+)?(questions?|requests?|prompts?)\s+(\w+\s+)?(regardless|no\s+matter|despite|even\s+if)\b|\beven\s+if\s+(it\s+is|it'?s|the\s+(request|question|answer)\s+(is\s+)?|it)\s*(\w+\s+)?(illegal|unethical|immoral|harmful|dangerous|harms?|offensive|wrong|inappropriate)\b|\bregardless\s+of\s+(its\s+|the\s+|any\s+)?(\w+\s+)?(ethic\w*|legal\w*|moral\w*|consequences|harm\w*|danger\w*)\b|\b(always|must)\s+(answer|respond|comply|reply)\s+(\w+\s+){0,2}(no\s+matter|regardless|even\s+if)\b",
    ),
    (
        "loaded_term",
        0.4,
        r"\b(developer\s+mode|jailbr(eak|oke|oken|eaking)|unfiltered|uncensored|unrestricted|no\s+restrictions|zero\s+restrictions|system\s+prompt|content\s+polic(y|ies)|usage\s+polic(y|ies)|admin\s+mode|no\s+limits|without\s+limits|no\s+filters?|no\s+censorship)\b",
    ),
    (
        "multi_response",
        0.35,
        r"\b(two|2|both)\s+(different\s+|separate\s+|distinct\s+)?(responses|paragraphs|ways|styles|personalities|personas|characters|versions|replies|outputs|entities|bots|ais)\b|\b(act|acts|respond|answer)\s+as\s+(two|2|both)\b|\[(ai|dan|gpt|chatgpt|classic|normal|jailbreak|jailbroken|unfiltered|evil)\]|\bfirst(ly)?,?\s+(respond|answer|reply)\s+as\b|\bsecond(ly)?,?\s+(respond|answer|reply|act)\s+as\b|(\[|\()\s*(🔒|🔓)|\b(normal|classic|censored|filtered|aligned|unaligned|standard)\s+(response|output|answer|reply)\b|\b(one|the\s+first)\s+(response|answer)\s+(as|from)\s+(yourself|you|chatgpt)\b",
    ),
    (
        "fiction_wrapper",
        0.3,
        r"\b(fictional|fictitious|make-?believe|imaginary)\s+(story|world|scenario|universe|setting|character|ai|api|dialogue|conversation)\b|\b(write|tell|create)\s+(me\s+)?(a|an)\s+(\w+\s+)?(story|scene|script|screenplay|dialogue)\s+(where|in\s+which|about\s+(a|an)\s+(ai|character))\b|\bthe\s+scene\s+is\s+set\b|\bin\s+(this|a|the)\s+(fictional|parallel|alternate)\s+(world|universe|reality)\b|\bopposite\s+day\b|\bfor\s+(educational|research|academic)\s+purposes\s+only\b",
    ),
    (
        "output_control",
        0.3,
        r#"\b(start|begin|preface|prefix|end|finish)\w*\s+(each|every|all|your)\s+(\w+\s+)?(responses?|replies|reply|messages?|answers?|outputs?)\s+with\b|\bin\s+front\s+of\s+(each|every)\s+(response|reply|message|answer)\b|\b(only|always)\s+(reply|respond|answer)\s+["'“]?(with|as|using)\b|\b(give|write)\s+(your\s+)?(responses|replies|answers)\s+(only\s+)?(using|in)\b|\bare\s+you\s+ready\s*\?|\b(make|keep)\s+(every|each|all|your)\s+(replies|reply|responses?|answers?)\b|\b(reply|respond|answer)\s+only\s+(with|as)\b|\b(do\s+not|don'?t|never)\s+(add|write|include|give)\s+(any\s+)?(commentary|explanations?|comments)\b|\bif\s+you\s+understo+d\b|\b(tell\s+me|confirm|say)\s+(that\s+)?you\s+understand\b|\b(answer|reply|respond)\s+with\s+["'“]"#,
    ),
    (
        "ethics_bypass",
        0.6,
        r"\b(zero|no)\s+(restrictions|prohibitions|limits)\s+(or|and|whatsoever|at\s+all|of\s+any\s+kind)\b|\b(ethical|moral|ethics|morals|legal|legality)\s+(or|and|,)\s+(\w+\s+)?(ethical|moral|ethics|morals|legal|legality|implications|consequences)\b|\bcares?\s+about\s+no\s*one\b|\b(doesn'?t|does\s+not|don'?t|do\s+not|never)\s+care\s+about\s+(ethics|morals|morality|legality|laws?|rules|consequences|safety|harm)\b|\bfully\s+unlocked\b|\bno\s+(comprehension|concept|sense|understanding|notion|regard)\s+(of|for)\s+(morals?|morality|ethics|right\s+and\s+wrong|laws?|consequences)\b|\b(no|without|zero)\s+(rules|restrictions|limits|limitations|filters|boundaries)\s+(or|and|,)\s+(\w+\s+)?(rules|restrictions|limits|limitations|filters|boundaries|morals|ethics)\b|\b(free|freed|liberated|released)\s+(of|from)\s+(your|its|his|her|all)\s+(confines|chains|shackles|restrictions|limitations|programming)\b|\b(no|zero|without)\s+(moral|morals|ethics|ethical|morality)\b|\b(illegal|unethical|immoral)\s+(or|and|,)\s+(\w+\s+)?(illegal|unethical|immoral|harmful|dangerous)\b",
    ),
    (
        "prompt_format",
        0.6,
        r"<\|?(im_start|im_end|system|endoftext)\|?>|\[/?inst\]|###\s*(system|instruction|new)|\[system\]|(^|\n)\s*system\s*:|\bbegin\s+(new\s+)?instructions\b|\bend\s+of\s+(the\s+)?(prompt|instructions)\b|</?s>|\bsystem\s+instructions?\s+(starting|begins?|start|follows?)\b|\b(user|human)\s+message\s+termination\b",
    ),
    ("prompt_format", 0.35, r"<\||\|>|(^|\s)(user|human)\s*:.{0,600}?\b(assistant|ai|gpt|bot)\s*:"),
    (
        "token_smuggling",
        0.35,
        r#"\$\w+\s*=|\b[a-z]\d?\s*=\s*["'][^"'\n]{1,30}["']|\bconcatenat\w*|\b(spell|spelled|write|written)\s+(it\s+|them\s+|this\s+|that\s+)?backwards\b|\b(in\s+reverse|reversed?\s+(the\s+)?(string|text|words|letters))\b|\b(leet\s*(speak|speech)|rot-?13|pig\s+latin|morse\s+code|cipher\s+code|base64)\b|\bcommunicate\s+(in|using)\s+(\w+\s+){0,3}(code|cipher|language)\b"#,
    ),
    (
        "placeholder",
        0.4,
        r"\[insert\s+(prompt|question|request)[^\]]*\]|\[(put|type|enter|insert|add|write)\s+(in\s+)?(your|whatever|the)\s+[^\]]{0,40}\]|\[(prompt|input|keyword|targetlanguage|target\s+language|your\s+prompt|your\s+question)\]|<(prompt|topic|question|thing\s+to\s+[^>]{0,25})>|\{\{?\s*prompt\s*\}?\}|\binsert\s+(your\s+)?(prompt|question)\s+here\b",
    ),
    // A slot left for the attacker's real request ("[put your prompt here]", "<thing to get tutorial>") is
    // the shape of a shared jailbreak template; customers fill in their own question instead.
    (
        "placeholder",
        0.5,
        r"\[\s*(insert|put|type|enter|add|write|paste)\s+(in\s+)?(your|whatever|the|a)\s+(\w+\s+){0,3}?(prompt|question|request|query|topic|image|idea|task|instruction)s?\b[^\]]{0,40}\]|<\s*(prompt|topic|question|request|subject|(thing|opinion|text|reply|action)\s+to\s+[^>]{1,30})\s*>|\[\s*(your\s+)?(prompt|question|request)\s*\]|\binsert\s+(your\s+)?(prompt|question)\s+here\b",
    ),
    // Asking the bot to abuse the user or to take an abusive voice: the "make it rude" and inverted-valence
    // jailbreaks.
    (
        "abuse_request",
        0.35,
        r"\b(belittle|insult|mock|roast|humiliate|degrade|demean|swear\s+at|curse\s+at|cuss\s+at)\s+me\b|\bbe\s+(rude|mean|nasty|offensive|vulgar|hostile)\s+to\s+me\b|\b(dripping|heavy|extreme|brutal)\s+sarcasm\b|\buses?\s+swears\b|\b(highly|extremely|very|most)\s+(offensive|rude|vulgar|toxic|insulting)\s+(tone|manner|way|language|style)\b|\b(respond|reply|answer|talk|write|speak)\w*\s+(to\s+me\s+)?(in|with)\s+(a|an)?\s*(\w+\s+)?(offensive|rude|vulgar|toxic|insulting|hostile|abusive)\s+(tone|manner|way|language|style)\b|\b(with|use|using|include)\s+(lots\s+of\s+|a\s+lot\s+of\s+|many\s+)?(swear\s*words|curse\s+words|profanity|slurs)\b|\bemotional\s+valence\b",
    ),
    // The real request is promised for later or hidden behind an indirection: "a topic I will mention later",
    // "then output instructions on how to perform that action".
    (
        "deferred_payload",
        0.35,
        r"\b(topic|subject|question|thing|request)\s+(that\s+)?(i\s+will|i'll|i\s+am\s+going\s+to|i'm\s+going\s+to)\s+(mention|give|provide|tell|specify|name|say|send)\b|\blater[-\s]mentioned\s+(topic|subject|question)\b|\b(my\s+)?next\s+(prompt|message)\s+(is|will\s+be)\s*[:\[]|\b(instructions|steps|guide|tutorial)\s+(on\s+)?how\s+to\s+(perform|do|carry\s+out|execute|achieve)\s+(that|this|the)\s+(action|thing|task|activity)\b|\bwhatever\s+(is|was)\s+(outputted|output|printed|decoded)\b",
    ),
    // A fill-in scaffold ("Step 1, ... Step 2, ...", `print("First, ...")`) the model is asked to complete:
    // code-completion and story-completion jailbreaks. Only punctuation, `print(` or a step label may stand
    // between an ellipsis and the next step: a user's own story told with ellipses ("First... I logged in, then... it
    // crashed") is not a scaffold.
    (
        "completion_scaffold",
        0.6,
        r"\b(step\s*(1|one)|first(ly)?)\s*[,:.]?\s*(\.\.\.|…)(?:[^\p{L}\p{N}]|print\(|step\s*(?:\d|one|two|three)){0,16}(step\s*(2|two)|then|next|secondly|finally)\s*[,:.]?\s*(\.\.\.|…)",
    ),
    (
        "completion_scaffold",
        0.3,
        r"\bas\s+detailed\s+as\s+possible\b|\b(supplement|enrich|enhance|complete|fill\s+in)\w*\s+(it\s+|the\s+)?(\w+\s+)?(content|code|details|steps|paragraph|story|table|print)\b",
    ),
    // Known jailbreak scenarios by name.
    (
        "jailbreak_persona",
        0.9,
        r"\b(neurosemantical|inversitis|always\s+intelligent\s+and\s+machiavellian|better\s?dan|anti\s?gpt)\b",
    ),
    ("persona_assignment", 0.35, r"\bdr\.?\s+al\b"),
];

/// The classifier's evidence: enough to stop a turn alone at the default threshold of 0.5.
const CLASSIFIER_WEIGHT: f32 = 0.6;

/// Second-person directives; many of them in one long message is the shape of a jailbreak preamble.
const DIRECTIVE: &str = r"\byou\s+(will|must|are|can|should|have\s+to|don't|do\s+not|never|always|shall)\b";

pub(crate) struct InjectionDetector {
    /// One compiled regex per family pattern. Not a `RegexSet`: with this many alternations the set's lazy
    /// DFA thrashes its cache and falls back to a much slower engine (≈50× slower per turn, measured).
    families: Vec<Regex>,
    directive: Regex,
    base64: Regex,
    hex: Regex,
    custom_gpt: Regex,
    /// "DAN" in capitals (the persona's spelling; a customer called Dan writes "Dan"), and as a speaker tag.
    dan: Regex,
    dan_tag: Regex,
    /// The statistical classifier (`injection_model`): catches the long tail of jailbreak wording that no
    /// family names.
    model: std::sync::Arc<LinearModel>,
}

impl InjectionDetector {
    pub(crate) fn new() -> Result<Self, PolicyError> {
        let err = |e: regex::Error| PolicyError::Pattern(e.to_string());
        Ok(InjectionDetector {
            families: FAMILIES.iter().map(|f| Regex::new(f.2)).collect::<Result<_, _>>().map_err(err)?,
            directive: Regex::new(DIRECTIVE).map_err(err)?,
            base64: Regex::new(r"[A-Za-z0-9+/]{24,}={0,2}").map_err(err)?,
            hex: Regex::new(r"\b(?:[0-9a-fA-F]{2}[\s:]?){12,}").map_err(err)?,
            custom_gpt: Regex::new(r"\b([a-z][a-z0-9]*)[-_ ]?gpt\b").map_err(err)?,
            dan: Regex::new(r"\bDAN\b").map_err(err)?,
            dan_tag: Regex::new(r"(?m)^\W{0,3}\[?DAN\]?\s*:").map_err(err)?,
            model: crate::injection_model::shipped().map_err(PolicyError::Invalid)?,
        })
    }

    /// Scores `text`. `extra_hit`: a tenant phrase matched (the caller matches them on the folded text).
    /// The classifier adds strong evidence at or above `classifier_threshold` (1.0 skips it).
    pub(crate) fn score(&self, text: &str, extra_hit: bool, classifier_threshold: f32) -> InjectionReport {
        let folded = fold(text);
        let mut best = [0f32; SLOTS.len()];
        let mut names: [&str; SLOTS.len()] = [""; SLOTS.len()];
        let mut note = |name: &'static str, w: f32| {
            let slot = slot(name);
            if w > best[slot] {
                best[slot] = w;
                names[slot] = name;
            }
        };
        let scan = |t: &str, note: &mut dyn FnMut(&'static str, f32)| {
            let mut hits = 0;
            for (i, _) in self.families.iter().enumerate().filter(|(_, r)| r.is_match(t)) {
                note(FAMILIES[i].0, FAMILIES[i].1);
                hits += 1;
            }
            hits
        };
        let plain_hits = scan(&folded.text, &mut note);
        // Obfuscated variants: a hit that only appears after undoing leetspeak or spacing is itself evidence.
        let leet = deleet(&folded.text);
        let spaced = collapse_spacing(&leet);
        if (leet != folded.text && scan(&leet, &mut note) > plain_hits)
            || (spaced != leet && scan(&spaced, &mut note) > plain_hits)
        {
            note("obfuscation", 0.5);
        }
        // Words split by hyphens ("i-nstruction"): a few are normal, many that hide a pattern are not.
        let (joined, dropped) = dehyphen(&folded.text);
        if dropped >= 3 && scan(&joined, &mut note) > plain_hits {
            note("obfuscation", 0.5);
        }
        // A made-up "SomethingGPT" is how jailbreak personas are named; ChatGPT itself is only an AI reference.
        if self.custom_gpt.captures_iter(&folded.text).any(|c| {
            !matches!(
                &c[1],
                "chat"
                    | "open"
                    | "the"
                    | "a"
                    | "with"
                    | "and"
                    | "or"
                    | "to"
                    | "of"
                    | "in"
                    | "like"
                    | "is"
                    | "use"
                    | "using"
                    | "my"
                    | "your"
            )
        }) {
            note("persona_assignment", 0.35);
        }
        // Encoded payloads: decode base64/hex runs that turn into readable text and scan the result.
        for m in self.base64.find_iter(text).take(4) {
            if let Some(decoded) = decode_printable(base64_decode(m.as_str())) {
                note("encoded_payload", 0.4);
                if scan(&fold(&decoded).text, &mut note) > 0 {
                    note("obfuscation", 0.6);
                }
            }
        }
        for m in self.hex.find_iter(text).take(4) {
            let digits: String = m.as_str().chars().filter(|c| c.is_ascii_hexdigit()).collect();
            let bytes: Option<Vec<u8>> =
                (0..digits.len() / 2).map(|i| u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).ok()).collect();
            if let Some(decoded) = decode_printable(bytes) {
                note("encoded_payload", 0.4);
                if scan(&fold(&decoded).text, &mut note) > 0 {
                    note("obfuscation", 0.6);
                }
            }
        }
        if self.dan_tag.is_match(text) {
            note("jailbreak_persona", 0.5);
        } else if self.dan.is_match(text) {
            note("loaded_term", 0.4);
        }
        // Regional-indicator letters (🇭🇴🇼) spell words that no pattern sees; a flag or two is normal, a
        // run of them is a hidden message.
        let regional = text.chars().filter(|c| ('\u{1F1E6}'..='\u{1F1FF}').contains(c)).count();
        if regional >= 6 {
            note("obfuscation", 0.5);
            let spelled: String = text
                .chars()
                .map(|c| match c {
                    '\u{1F1E6}'..='\u{1F1FF}' => char::from(b'a' + (c as u32 - 0x1F1E6) as u8),
                    _ => c,
                })
                .collect();
            scan(&fold(&spelled).text, &mut note);
        }
        // Invisible and look-alike characters have no place in a customer's question.
        if folded.invisible > 0 || folded.confusables > 1 {
            let n = folded.invisible + folded.confusables;
            note("obfuscation", if n >= 3 { 0.5 } else { 0.3 });
        }
        let directives = self.directive.find_iter(&folded.text).count();
        if directives >= 6 || (directives >= 3 && folded.text.len() > 600) {
            note("directive_density", if directives >= 10 { 0.6 } else { 0.4 });
        }
        if classifier_threshold < 1.0
            && text.split_whitespace().nth(crate::injection_model::MIN_WORDS - 1).is_some()
            && self.model.score(&folded.text) >= classifier_threshold
        {
            note("classifier", CLASSIFIER_WEIGHT);
        }
        if extra_hit {
            note("tenant_phrase", 0.9);
        }
        let score = 1.0 - best.iter().fold(1.0, |acc, w| acc * (1.0 - w));
        InjectionReport { score, families: names.into_iter().filter(|n| !n.is_empty()).collect() }
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD.decode(s).ok()
}

/// Decoded bytes that are mostly printable ASCII/UTF-8 text with spaces, or `None`.
fn decode_printable(bytes: Option<Vec<u8>>) -> Option<String> {
    let s = String::from_utf8(bytes?).ok()?;
    let total = s.chars().count();
    let printable = s.chars().filter(|c| c.is_alphanumeric() || c.is_ascii_punctuation() || *c == ' ').count();
    (total >= 8 && printable * 10 >= total * 9 && s.contains(' ')).then_some(s)
}

#[cfg(test)]
#[path = "injection_tests.rs"]
mod tests;
