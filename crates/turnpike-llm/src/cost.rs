//! [`Pricing`]: what a call costs, from the provider's own usage figures.
//!
//! Guarantees: the cost of a call is computed only from the [`Usage`] the provider streamed (never from
//! an estimate of the text), with cached input at its own price; a model missing from the table is
//! reported as unpriced (`None`), never silently costed at $0 by [`Pricing::cost_micros`]; a versioned
//! model name (`claude-sonnet-4-20250514`) takes the price of its longest listed family prefix.
//! [`Pricing::upper_bound_micros`] never underestimates a call whose output is capped by `max_tokens`
//! (byte-level tokenisers emit at most one token per byte of input), which is what budget reservations
//! need.

use serde::Deserialize;

use crate::{ChatRequest, Usage};

/// Dollars per million tokens (= micro-dollars per token).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Price {
    pub model: String,
    pub input: f64,
    pub output: f64,
    pub cached_input: f64,
}

/// The seed's February 2026 input/output prices; cached-input prices are the providers' published ones
/// for the same models (the seed lists none).
pub fn default_prices() -> Vec<Price> {
    let p =
        |m: &str, input: f64, output: f64, cached_input: f64| Price { model: m.into(), input, output, cached_input };
    vec![
        p("gpt-4o-mini", 0.15, 0.60, 0.075),
        p("gemini-2.0-flash", 0.10, 0.40, 0.025),
        p("gpt-4o", 2.50, 10.0, 1.25),
        p("claude-sonnet-4", 3.0, 15.0, 0.30),
    ]
}

/// A price table.
#[derive(Clone, Debug, PartialEq)]
pub struct Pricing {
    prices: Vec<Price>,
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing { prices: default_prices() }
    }
}

impl Pricing {
    pub fn new(prices: Vec<Price>) -> Self {
        Pricing { prices }
    }

    /// The exact entry, else the longest entry that is a `-`-separated prefix of `model`.
    pub fn price(&self, model: &str) -> Option<&Price> {
        self.prices.iter().find(|p| p.model == model).or_else(|| {
            self.prices
                .iter()
                .filter(|p| model.strip_prefix(p.model.as_str()).is_some_and(|rest| rest.starts_with('-')))
                .max_by_key(|p| p.model.len())
        })
    }

    /// Micro-dollars for `usage` on `model`; `None` if the model is not priced.
    pub fn cost_micros(&self, model: &str, usage: &Usage) -> Option<i64> {
        let p = self.price(model)?;
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let uncached = f64::from(usage.input_tokens - cached);
        Some(
            (uncached * p.input + f64::from(cached) * p.cached_input + f64::from(usage.output_tokens) * p.output)
                .round() as i64,
        )
    }

    /// The most `req` can cost on `model` with its output capped at `max_output_tokens`: every input byte
    /// a full-price token. `None` if the model is not priced.
    pub fn upper_bound_micros(&self, model: &str, req: &ChatRequest, max_output_tokens: u32) -> Option<i64> {
        self.upper_bound_rounds_micros(model, req, max_output_tokens, 1, 0)
    }

    /// The same bound for a tool loop of `rounds` model calls whose input grows by at most
    /// `growth_tokens` per round (the previous reply plus capped tool results).
    pub fn upper_bound_rounds_micros(
        &self,
        model: &str,
        req: &ChatRequest,
        max_output_tokens: u32,
        rounds: u32,
        growth_tokens: u64,
    ) -> Option<i64> {
        let p = self.price(model)?;
        let bytes: usize = req
            .messages
            .iter()
            .map(|m| {
                m.content.len() + 4 + m.tool_calls.iter().map(|c| c.name.len() + c.arguments.len() + 8).sum::<usize>()
            })
            .sum();
        let tools: usize =
            req.tools.iter().map(|t| t.name.len() + t.description.len() + t.parameters.to_string().len()).sum();
        let rounds = f64::from(rounds.max(1));
        // Round r (0-based) reads the request plus r rounds of growth: sum = R*base + growth*R(R-1)/2.
        let input = rounds * (bytes + tools) as f64 + growth_tokens as f64 * rounds * (rounds - 1.0) / 2.0;
        Some((input * p.input + rounds * f64::from(max_output_tokens) * p.output).ceil() as i64)
    }
}

/// Cost of a call in micro-dollars from a plain price list; 0 for an unknown model (kept for callers
/// that only need a number; prefer [`Pricing::cost_micros`], which says "unpriced").
pub fn cost_micros(prices: &[Price], model: &str, input: u32, output: u32, cached: u32) -> i64 {
    let usage = Usage { input_tokens: input, output_tokens: output, cached_input_tokens: cached };
    Pricing { prices: prices.to_vec() }.cost_micros(model, &usage).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChatMessage;

    #[test]
    fn cost_uses_the_price_table() {
        let prices = default_prices();
        // 1,000 input and 500 output tokens of gpt-4o-mini: 150 + 300 micro-dollars.
        assert_eq!(cost_micros(&prices, "gpt-4o-mini", 1000, 500, 0), 450);
        assert_eq!(cost_micros(&prices, "gpt-4o", 1000, 100, 0), 3500);
        assert_eq!(cost_micros(&prices, "unknown", 1000, 100, 0), 0);
        // 400 of 1,000 input tokens from the cache: 600 * 3 + 400 * 0.3 + 100 * 15.
        let pricing = Pricing::default();
        let usage = Usage { input_tokens: 1000, output_tokens: 100, cached_input_tokens: 400 };
        assert_eq!(pricing.cost_micros("claude-sonnet-4-20250514", &usage), Some(3420));
        assert_eq!(pricing.cost_micros("gpt-4o-mini-2024-07-18", &usage).map(|c| c > 0), Some(true));
        assert_eq!(pricing.price("gpt-4o-2024-08-06").map(|p| p.model.as_str()), Some("gpt-4o"));
        assert_eq!(pricing.cost_micros("gpt-4", &usage), None, "a prefix must end at a '-'");
    }

    #[test]
    fn upper_bound_covers_the_largest_possible_call() {
        let pricing = Pricing::default();
        let req = ChatRequest::new("gpt-4o", vec![ChatMessage::user("hello world")]);
        let bound = pricing.upper_bound_micros("gpt-4o", &req, 100).unwrap();
        // At most 15 input tokens (11 bytes + role overhead) and 100 output tokens.
        let worst = Usage { input_tokens: 15, output_tokens: 100, cached_input_tokens: 0 };
        assert!(bound >= pricing.cost_micros("gpt-4o", &worst).unwrap());
    }
}
