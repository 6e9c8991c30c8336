//! Budgets against the real Redis (`TURNPIKE_REDIS_URL`, default the local stack's): 50 concurrent
//! LLM calls against a budget that fits 10 never spend more than the budget, and cost comes from the
//! streamed usage.

use std::sync::Arc;
use std::time::Duration;

use turnpike_llm::breaker::BreakerConfig;
use turnpike_llm::mock::{self, MockConfig};
use turnpike_llm::{
    collect, BudgetError, Budgets, Chain, ChatMessage, ChatRequest, Deployment, OpenAiClient, OpenAiConfig, Pricing,
    RetryPolicy, Usage,
};

async fn budgets() -> Budgets {
    let url = std::env::var("TURNPIKE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url).unwrap();
    Budgets::new(client.get_connection_manager().await.unwrap(), format!("test:budget:{}", uuid_like()))
}

/// Unique per test run, so reruns and parallel runs never share keys.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{}-{nanos}", std::process::id())
}

#[tokio::test]
async fn fifty_concurrent_requests_never_overshoot_a_budget_that_fits_ten() {
    // Paced so the 50 calls really overlap: reservations race while earlier calls are still streaming.
    let server =
        mock::spawn(MockConfig { ttft: Duration::from_millis(50), tokens_per_sec: 200, ..MockConfig::instant() })
            .await
            .unwrap();
    let client = OpenAiClient::new(OpenAiConfig::new(server.base_url())).unwrap();
    let chain = Arc::new(Chain::new(
        "capable",
        vec![Deployment::new("openai", "gpt-4o", client.into(), BreakerConfig::default())],
        RetryPolicy::default(),
    ));
    let pricing = Arc::new(Pricing::default());
    let budgets = budgets().await;
    let key = budgets.key("tenant:acme", "2026-02-14");

    let max_tokens = 30;
    let mut req = ChatRequest::new("gpt-4o", vec![ChatMessage::system("Be brief."), ChatMessage::user("hello")]);
    req.max_tokens = Some(max_tokens);
    let estimate = pricing.upper_bound_micros("gpt-4o", &req, max_tokens).unwrap();
    let limit = 10 * estimate;

    let mut tasks = Vec::new();
    for i in 0..50 {
        let (chain, pricing, budgets, key, req) =
            (Arc::clone(&chain), Arc::clone(&pricing), budgets.clone(), key.clone(), req.clone());
        tasks.push(tokio::spawn(async move {
            let reservation = match budgets.reserve(&[(key.clone(), limit)], estimate, &format!("turn-{i}")).await {
                Ok(r) => r,
                Err(BudgetError::Exceeded { .. }) => return None,
                Err(e) => panic!("{e}"),
            };
            let answer = chain.stream(&req).await.unwrap();
            let reply = collect(answer.events).await.unwrap();
            let usage: Usage = reply.usage.expect("streamed calls report usage");
            let cost = pricing.cost_micros(&answer.model, &usage).unwrap();
            assert!(cost > 0 && cost <= estimate, "cost {cost} within its reservation {estimate}");
            assert!(budgets.settle(&reservation, cost).await.unwrap());
            assert!(!budgets.settle(&reservation, cost).await.unwrap(), "settling twice is a no-op");
            Some(cost)
        }));
    }
    let mut costs = Vec::new();
    for task in tasks {
        costs.extend(task.await.unwrap());
    }
    let (spent, reserved) = budgets.usage(&key).await.unwrap();
    assert_eq!(costs.len(), 10, "exactly the 10 calls that fit were admitted");
    assert_eq!(spent, costs.iter().sum::<i64>(), "spend is the providers' usage, not the estimate");
    assert!(spent <= limit, "spent {spent} > budget {limit}");
    assert_eq!(reserved, 0);
    assert_eq!(server.stats().requests, 10, "refused requests never reach the provider");
}

#[tokio::test]
async fn a_redelivered_turn_reserves_once_and_a_release_frees_the_budget() {
    let budgets = budgets().await;
    let key = budgets.key("user:acme:u1", "2026-02-14");
    let scopes = [(key.clone(), 100)];
    let first = budgets.reserve(&scopes, 60, "turn-1").await.unwrap();
    budgets.reserve(&scopes, 60, "turn-1").await.unwrap();
    assert_eq!(budgets.usage(&key).await.unwrap(), (0, 60), "same id: one reservation");
    let refused = budgets.reserve(&scopes, 60, "turn-2").await.unwrap_err();
    assert!(matches!(refused, BudgetError::Exceeded { spent: 0, reserved: 60, .. }), "{refused:?}");
    assert!(budgets.settle(&first, 0).await.unwrap());
    assert_eq!(budgets.usage(&key).await.unwrap(), (0, 0));
    budgets.reserve(&scopes, 60, "turn-2").await.unwrap();
}

#[tokio::test]
async fn tenant_and_user_budgets_are_reserved_together_or_not_at_all() {
    let budgets = budgets().await;
    let (tenant, user) = (budgets.key("tenant:acme", "d1"), budgets.key("user:acme:u1", "d1"));
    let scopes = [(tenant.clone(), 1000), (user.clone(), 100)];
    let first = budgets.reserve(&scopes, 80, "turn-1").await.unwrap();
    // The user's budget refuses: the tenant's is left untouched.
    let refused = budgets.reserve(&scopes, 80, "turn-2").await.unwrap_err();
    assert!(matches!(&refused, BudgetError::Exceeded { scope, limit: 100, .. } if *scope == user), "{refused:?}");
    assert_eq!(budgets.usage(&tenant).await.unwrap(), (0, 80));
    // Settled from the actual cost in both scopes.
    assert!(budgets.settle(&first, 30).await.unwrap());
    assert_eq!(budgets.usage(&tenant).await.unwrap(), (30, 0));
    assert_eq!(budgets.usage(&user).await.unwrap(), (30, 0));
}
