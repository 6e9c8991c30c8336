//! The web chat page: `GET /` and its assets under `/web/`, compiled into the binary (no files to deploy, no
//! build step). Guarantee: every response carries its exact content type, `X-Content-Type-Options: nosniff`
//! and a Content-Security-Policy that lets the page load and connect to nothing but this origin, so text a
//! reply contains can never run as script and the page cannot be framed. The page itself is in `web/`.

use axum::http::{header, HeaderName};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// Only this origin: the page's script and style files, and its WebSocket/fetch calls to the gateway
/// (CSP 3's `'self'` covers `ws:`/`wss:` of the same host). No inline script or style at all.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset { path: "/", content_type: "text/html; charset=utf-8", body: include_str!("../web/index.html") },
    Asset { path: "/web/app.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../web/app.js") },
    Asset { path: "/web/style.css", content_type: "text/css; charset=utf-8", body: include_str!("../web/style.css") },
    Asset { path: "/web/icon.svg", content_type: "image/svg+xml", body: include_str!("../web/icon.svg") },
];

/// The page's routes, for any router state: merge them into the gateway's router.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    ASSETS
        .iter()
        .fold(Router::new(), |router, asset| router.route(asset.path, get(move || async move { serve(asset) })))
}

fn serve(asset: &'static Asset) -> impl IntoResponse {
    let headers: [(HeaderName, &'static str); 6] = [
        (header::CONTENT_TYPE, asset.content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Small files: revalidate each time so a new gateway version's page is never mixed with an old script.
        (header::CACHE_CONTROL, "no-cache"),
    ];
    (headers, asset.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve_routes() -> String {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, routes::<()>()).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn serves_the_page_and_assets_with_their_types_and_a_strict_policy() {
        let base = serve_routes().await;
        let client = reqwest::Client::new();
        for (path, ty, marker) in [
            ("/", "text/html; charset=utf-8", "<form id=\"composer\""),
            ("/web/app.js", "text/javascript; charset=utf-8", "/v1/ws?access_token="),
            ("/web/style.css", "text/css; charset=utf-8", ".messages"),
            ("/web/icon.svg", "image/svg+xml", "<svg"),
        ] {
            let res = client.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            let h = res.headers();
            assert_eq!(h["content-type"], ty, "{path}");
            assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
            let csp = h["content-security-policy"].to_str().unwrap();
            assert!(csp.starts_with("default-src 'none';"), "{path}: {csp}");
            assert!(csp.contains("connect-src 'self'") && csp.contains("script-src 'self';"), "{path}: {csp}");
            assert!(!csp.contains("unsafe"), "{path}: {csp}");
            assert!(res.text().await.unwrap().contains(marker), "{path}");
        }
        let missing = client.get(format!("{base}/web/nope.js")).send().await.unwrap();
        assert_eq!(missing.status(), 404);
    }

    #[test]
    fn the_page_has_no_inline_script_or_style_and_loads_only_its_own_files() {
        let html = ASSETS[0].body;
        // The CSP would block inline code; this catches it before a browser does.
        assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains("style="), "inline code");
        let handlers = html.match_indices(" on").filter(|(at, _)| {
            let name: String = html[at + 3..].chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && html[at + 3 + name.len()..].starts_with('=')
        });
        assert_eq!(handlers.count(), 0, "inline event handler attributes");
        for url in ["/web/app.js", "/web/style.css", "/web/icon.svg"] {
            assert!(html.contains(&format!("\"{url}\"")), "{url} not referenced");
            assert!(ASSETS.iter().any(|a| a.path == url), "{url} not served");
        }
        assert!(!html.contains("http://") && !html.contains("https://"), "the page loads something from elsewhere");
        // Server text goes into the page as text, never as markup.
        assert!(!ASSETS[1].body.contains("innerHTML"));
    }
}
