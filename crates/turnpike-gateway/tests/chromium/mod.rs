//! Headless Chromium for tests, driven over WebDriver (chromedriver + the `fantoccini` client).
//!
//! Uses Debian's `chromium` and `chromium-driver` packages; without them a test fails (never skips) and says
//! what to install. Chromium runs with a fresh profile and without any background networking: this
//! machine's network refuses everything but the loopback, and a browser phoning home would only add noise.
//! chromedriver and the browsers it starts share one process group, killed as a whole on drop, so a failing
//! test leaves no browser behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const MISSING: &str = "headless Chromium is needed: `apt-get install chromium chromium-driver` (Debian's packages)";

/// A browser session; the driver and its browser processes die with it.
pub struct Browser {
    pub client: fantoccini::Client,
    _driver: Driver,
}

/// chromedriver's process group and the browser profile, removed on drop (also when a start-up step panics).
struct Driver {
    child: Child,
    profile: PathBuf,
}

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).flat_map(|dir| names.iter().map(move |n| dir.join(n))).find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port()
}

/// Starts chromedriver and opens a headless Chromium session.
pub async fn start() -> Browser {
    let chromium = on_path(&["chromium", "chromium-browser"]).unwrap_or_else(|| panic!("no chromium: {MISSING}"));
    let chromedriver = on_path(&["chromedriver"]).unwrap_or_else(|| panic!("no chromedriver: {MISSING}"));
    let profile = std::env::temp_dir().join(format!("turnpike-chromium-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&profile).unwrap();
    let port = free_port();
    let log = std::fs::File::create(profile.join("chromedriver.log")).unwrap();
    let child = {
        use std::os::unix::process::CommandExt;
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {MISSING}", chromedriver.display()))
    };
    let driver = Driver { child, profile };
    let client = connect(port, &chromium, &driver.profile).await;
    client.set_window_size(1000, 800).await.unwrap();
    Browser { client, _driver: driver }
}

async fn connect(port: u16, chromium: &Path, profile: &Path) -> fantoccini::Client {
    let http = reqwest::Client::new();
    let status = format!("http://127.0.0.1:{port}/status");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = match http.get(&status).send().await {
            Ok(r) => r.json::<serde_json::Value>().await.map(|v| v["value"]["ready"] == true).unwrap_or(false),
            Err(_) => false,
        };
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "chromedriver did not get ready on port {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--disable-crash-reporter",
        "--disable-breakpad",
    ];
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.join("profile").display()));
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": chromium, "args": args},
    });
    let serde_json::Value::Object(caps) = caps else { unreachable!() };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    fantoccini::ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap_or_else(|e| panic!("chromedriver could not start {}: {e}", chromium.display()))
}

impl Browser {
    /// Ends the session (the browser quits), then the driver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group this test started (its id is chromedriver's pid): chromedriver and the Chromium
        // processes under it.
        if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
            if pgid > 1 {
                // SAFETY: kill(2) with a negative pid signals that process group and touches no memory.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
