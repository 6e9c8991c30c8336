//! Cost report: a scripted mix of support conversations ([`mix`]) through the route stage's own decision
//! function, priced with the seed's February 2026 prices at the seed's three scales.
//!
//! Run with:
//!   cargo run --release -p turnpike-loadtest --bin cost-report
//!   TURNPIKE_TENANTS_CONFIG=tenants.toml cargo run --release -p turnpike-loadtest --bin cost-report -- --tenant acme
//!
//! What is computed, per turn: the tier from `turnpike_stages::route::decide` (the tenant's policy from the
//! tenants file, defaults otherwise, with the `complex` signal a turn leaves for the next one; experiments
//! and escalations are not simulated, and no turn has an earlier failure); the input tokens of the assembled prompt as issue 6's hybrid memory builds it — system
//! prompt, running summary once history leaves the verbatim window, the last messages verbatim, retrieved
//! knowledge, the user's message, chat framing — with every user message counted by the project's tiktoken
//! counter (`turnpike_stages::tokens`) and assistant replies at their scripted lengths; a tool turn is two
//! model calls (the call, then the answer with the tool result); every 10 messages the cheap model writes a
//! summary. Section sizes default to the seed's "practical approach" figures (system ~500, summary ~500,
//! knowledge ~1,500, last 10 messages) and can be changed with flags. Prices: the table
//! `turnpike_llm::cost::default_prices`, which is the seed's "Pricing Reference (Feb 2026)": GPT-4o Mini
//! $0.15/$0.60, Gemini 2.0 Flash $0.10/$0.40, GPT-4o $2.50/$10, Claude Sonnet 4 $3/$15 per 1M input/output
//! tokens. Scales: the seed's 10K, 100K and 1M conversations a day, months of 30 days.

mod mix;

use clap::Parser;
use std::collections::HashMap;
use turnpike_llm::{Pricing, Usage};
use turnpike_stages::route::{self, Signals, Tier, TurnInput};
use turnpike_stages::tokens::{TokenCounter, PER_MESSAGE, PER_REQUEST};

#[derive(Parser)]
#[command(about = "Share of turns per tier and LLM cost of a scripted conversation mix, at the seed's prices")]
struct Args {
    /// Tenant whose `route` policy applies (from TURNPIKE_TENANTS_CONFIG; defaults when unset).
    #[arg(long, default_value = "default")]
    tenant: String,
    /// System prompt tokens (seed: ~500).
    #[arg(long, default_value_t = 500)]
    system_tokens: usize,
    /// Running summary tokens, once history no longer fits the verbatim window (seed: ~500).
    #[arg(long, default_value_t = 500)]
    summary_tokens: usize,
    /// Messages kept verbatim (seed: last 10).
    #[arg(long, default_value_t = 10)]
    verbatim_messages: usize,
    /// Retrieved knowledge per turn (seed: ~1,500).
    #[arg(long, default_value_t = 1500)]
    knowledge_tokens: usize,
    /// Context budget that is never exceeded (issue 6: 8K by default).
    #[arg(long, default_value_t = 8000)]
    budget_tokens: usize,
    /// Tool definitions sent with a tool turn.
    #[arg(long, default_value_t = 80)]
    tool_spec_tokens: usize,
    /// The model's tool call (output of the first call of a tool turn).
    #[arg(long, default_value_t = 30)]
    tool_call_tokens: usize,
    /// The tool's result added to the second call.
    #[arg(long, default_value_t = 150)]
    tool_result_tokens: usize,
    /// Summary instruction tokens (the summary call's own prompt).
    #[arg(long, default_value_t = 150)]
    summary_prompt_tokens: usize,
}

/// One priced model call.
#[derive(Clone, Copy, Default)]
struct Call {
    input: usize,
    output: usize,
    micros: f64,
}

/// Totals of one conversation (or their expectation over the mix), per tier where indexed.
#[derive(Default)]
struct Totals {
    turns: [f64; 2],
    calls: f64,
    input: [f64; 2],
    output: [f64; 2],
    micros: [f64; 2],
    summary_micros: f64,
    all_capable_micros: f64,
}

fn tier_index(t: Tier) -> usize {
    match t {
        Tier::Cheap => 0,
        Tier::Capable => 1,
    }
}

fn price(pricing: &Pricing, model: &str, input: usize, output: usize) -> Call {
    let usage = Usage { input_tokens: input as u32, output_tokens: output as u32, cached_input_tokens: 0 };
    let micros = pricing.cost_micros(model, &usage).unwrap_or_else(|| panic!("model {model} has no price"));
    Call { input, output, micros: micros as f64 }
}

/// Routes and prices one conversation; returns the totals and a one-line trace of the tiers and rules.
fn run(
    args: &Args,
    policy: &route::CompiledRoute,
    counter: &TokenCounter,
    pricing: &Pricing,
    c: &mix::Conversation,
) -> (Totals, String) {
    let (cheap, capable) = (&policy.policy.cheap_model, &policy.policy.capable_model);
    let mut attributes = HashMap::new();
    if let Some(tier) = c.customer_tier {
        attributes.insert("customer_tier".to_string(), tier.to_string());
    }
    let mut history: Vec<usize> = Vec::new(); // tokens of each earlier message, framing included
    let mut totals = Totals::default();
    let mut trace = Vec::new();
    let mut signals = Signals::default();
    for (i, turn) in c.turns.iter().enumerate() {
        let input = TurnInput { text: turn.user, seq: i as i64 + 1, attributes: &attributes, signals: &signals };
        let d = route::decide(policy, &input);
        // What the route stage records for the next turn (no failures are simulated).
        signals.previous_complex = d.is_complex();
        let model = policy.model(d.tier);
        trace.push(format!("{}:{}", if d.tier == Tier::Cheap { "c" } else { "C" }, d.rule));
        // The assembled prompt: fixed sections, then as much recent history as the budget allows.
        let user = counter.message(turn.user);
        let older = history.len().saturating_sub(args.verbatim_messages);
        let summary = if older > 0 { args.summary_tokens + PER_MESSAGE } else { 0 };
        let fixed = PER_REQUEST + args.system_tokens + PER_MESSAGE + summary + args.knowledge_tokens + user;
        let mut recent = 0;
        for m in history.iter().rev().take(args.verbatim_messages) {
            if fixed + recent + m > args.budget_tokens {
                break;
            }
            recent += m;
        }
        let prompt = fixed + recent;
        let mut calls = Vec::new();
        let mut grown = prompt;
        for _ in 0..turn.tool_calls {
            calls.push((grown + args.tool_spec_tokens, args.tool_call_tokens));
            grown += args.tool_call_tokens + args.tool_result_tokens + 2 * PER_MESSAGE;
        }
        calls.push((grown + if turn.tool_calls > 0 { args.tool_spec_tokens } else { 0 }, turn.reply_tokens));
        let k = tier_index(d.tier);
        totals.turns[k] += 1.0;
        for (input, output) in calls {
            let call = price(pricing, model, input, output);
            totals.calls += 1.0;
            totals.input[k] += call.input as f64;
            totals.output[k] += call.output as f64;
            totals.micros[k] += call.micros;
            totals.all_capable_micros += price(pricing, capable, input, output).micros;
        }
        history.push(user);
        history.push(turn.reply_tokens + PER_MESSAGE);
        // Every 10 messages the cheap model summarises them (with the previous summary) asynchronously.
        if history.len().is_multiple_of(10) {
            let input = args.summary_prompt_tokens
                + history[history.len() - 10..].iter().sum::<usize>()
                + if history.len() > 10 { args.summary_tokens } else { 0 };
            let call = price(pricing, cheap, input, args.summary_tokens);
            totals.calls += 1.0;
            totals.summary_micros += call.micros;
            totals.all_capable_micros += call.micros;
        }
    }
    (totals, trace.join(" "))
}

fn usd(micros: f64) -> String {
    let d = micros / 1e6;
    if d >= 100.0 {
        let whole = d.round() as u64;
        let s = whole.to_string();
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(ch);
        }
        format!("${out}")
    } else if d >= 1.0 {
        format!("${d:.2}")
    } else {
        format!("${d:.5}")
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = turnpike_core::TenantsConfig::from_env()?;
    let policies = route::compile_all(&config.section::<route::RoutePolicy>("route")?).map_err(anyhow::Error::msg)?;
    let policy = policies.get(&args.tenant);
    let pricing = Pricing::default();
    // Both default tiers are gpt-4o models (o200k_base): one exact counter for the user messages.
    let counter = TokenCounter::for_model(&policy.policy.cheap_model).map_err(anyhow::Error::msg)?;
    let (cheap, capable) = (&policy.policy.cheap_model, &policy.policy.capable_model);

    println!("Prices (turnpike_llm::cost::default_prices = seed, Pricing Reference Feb 2026), $ per 1M tokens:");
    for p in turnpike_llm::cost::default_prices() {
        println!("  {:<18} input {:>5.2}  output {:>5.2}", p.model, p.input, p.output);
    }
    println!("Tiers: cheap = {cheap}, capable = {capable}; threshold {:.2}\n", policy.policy.threshold);
    println!(
        "{:<44} {:>5} {:>5} {:>10}  tiers per turn (c = cheap, C = capable: rule)",
        "conversation", "share", "turns", "$/conv"
    );

    let mut weighted = Totals::default();
    for c in mix::conversations() {
        let (t, trace) = run(&args, policy, &counter, &pricing, &c);
        let conv_micros = t.micros[0] + t.micros[1] + t.summary_micros;
        println!("{:<44} {:>4.0}% {:>5} {:>10}  {trace}", c.name, c.share * 100.0, c.turns.len(), usd(conv_micros));
        // Weighted by the share: the sum over the mix is the expectation per conversation.
        weighted.calls += c.share * t.calls;
        for k in 0..2 {
            weighted.micros[k] += c.share * t.micros[k];
            weighted.input[k] += c.share * t.input[k];
            weighted.output[k] += c.share * t.output[k];
            weighted.turns[k] += c.share * t.turns[k];
        }
        weighted.summary_micros += c.share * t.summary_micros;
        weighted.all_capable_micros += c.share * t.all_capable_micros;
    }
    let turns = weighted.turns[0] + weighted.turns[1];
    let share = |k: usize| weighted.turns[k] / turns * 100.0;
    let per_turn = |v: &[f64; 2], k: usize| v[k] / weighted.turns[k].max(f64::MIN_POSITIVE);
    let per_conv = weighted.micros[0] + weighted.micros[1] + weighted.summary_micros;
    println!(
        "\nTurns per conversation {turns:.2}, LLM calls per conversation {:.2} (tool rounds and summaries included)",
        weighted.calls
    );
    println!("Share of turns: cheap {:.1}%, capable {:.1}%", share(0), share(1));
    let all_in = (weighted.input[0] + weighted.input[1]) / turns;
    let all_out = (weighted.output[0] + weighted.output[1]) / turns;
    println!(
        "Tokens per turn (all calls of the turn): cheap {:.0} in / {:.0} out, capable {:.0} in / {:.0} out, all {all_in:.0} in / {all_out:.0} out",
        per_turn(&weighted.input, 0),
        per_turn(&weighted.output, 0),
        per_turn(&weighted.input, 1),
        per_turn(&weighted.output, 1)
    );
    println!(
        "Cost per conversation: {} (cheap turns {}, capable turns {}, summaries {}); everything on {capable}: {} (routing saves {:.0}%)",
        usd(per_conv),
        usd(weighted.micros[0]),
        usd(weighted.micros[1]),
        usd(weighted.summary_micros),
        usd(weighted.all_capable_micros),
        (1.0 - per_conv / weighted.all_capable_micros) * 100.0
    );
    // The seed's own per-call assumption (800 in / 400 out, 5 calls per conversation) with this router's
    // tier shares, for comparison with its tables.
    let seed_call = |m: &str| price(&pricing, m, 800, 400).micros;
    let seed_conv = 5.0 * (share(0) / 100.0 * seed_call(cheap) + share(1) / 100.0 * seed_call(capable));
    println!(
        "Seed assumption (800 in / 400 out per call, 5 calls) at these shares: {} per conversation\n",
        usd(seed_conv)
    );
    println!(
        "{:<26} {:>12} {:>14} {:>16} {:>22}",
        "scale", "LLM $/day", "LLM $/month", "seed LLM $/month", "seed-assumption $/month"
    );
    // The seed's LLM lines: small 486 + 900; medium 3,060 + 19,125; large 30,600 + 90,000 + 63,000.
    for (name, per_day, seed_month) in [
        ("small: 10K conv/day", 10_000.0, 1_386.0),
        ("medium: 100K conv/day", 100_000.0, 22_185.0),
        ("large: 1M conv/day", 1_000_000.0, 183_600.0),
    ] {
        println!(
            "{name:<26} {:>12} {:>14} {:>16} {:>22}",
            usd(per_conv * per_day),
            usd(per_conv * per_day * 30.0),
            usd(seed_month * 1e6),
            usd(seed_conv * per_day * 30.0)
        );
    }
    Ok(())
}
