//! Real headless Chromium for the portal tests: Debian's `chromium` driven through
//! `chromedriver` (WebDriver) with fantoccini. Each [`Browser`] has its own chromedriver
//! process on a free port and its own profile directory; screenshots go to
//! `target/test-artifacts/portal/`.
//!
//! If Chromium or chromedriver is missing the test fails with how to install them
//! (`apt-get install chromium chromium-driver`; `.ci/run` does it); it is never skipped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// A headless Chromium session; the driver process is killed on drop.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
    artifacts: PathBuf,
}

fn find(candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find(|c| std::path::Path::new(c).exists())
        .map(|c| (*c).to_owned())
}

/// Where screenshots are kept: `target/test-artifacts/portal` of this workspace.
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("test-artifacts").join("portal")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Self {
        let driver = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
            .expect("chromedriver is missing: apt-get install chromium chromium-driver");
        let chromium = find(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"])
            .expect("chromium is missing: apt-get install chromium chromium-driver");
        let port = crate::oidc::free_port();
        let driver = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        // Wait until the driver answers.
        let http = reqwest::Client::new();
        let mut ready = false;
        for _ in 0..100 {
            if http
                .get(format!("{url}/status"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "chromedriver did not answer on {url} within 10 s");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a Chromium session through chromedriver");
        let artifacts = artifacts_dir();
        std::fs::create_dir_all(&artifacts).unwrap();
        Self {
            client,
            _driver: driver,
            _profile: profile,
            artifacts,
        }
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The text of the first element matching `css` (waiting up to 5 s for it); on
    /// failure the panic shows the page's main text.
    pub async fn text(&self, css: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                return el.text().await.unwrap();
            }
            if tokio::time::Instant::now() > deadline {
                let main = match self.client.find(Locator::Css("body")).await {
                    Ok(b) => b.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                panic!("no element {css} on {}:\n{main}", self.url().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether an element matches `css` now.
    pub async fn exists(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    /// Replaces the value of the field matching `css` with `value`.
    pub async fn fill(&self, css: &str, value: &str) {
        let el = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no field {css}: {e}"));
        el.clear().await.unwrap();
        el.send_keys(value).await.unwrap();
    }

    /// Clicks the element matching `css` and waits until the next page has loaded (a
    /// marker set on the old document is gone and the new one is complete).
    pub async fn click(&self, css: &str) {
        self.client
            .execute("window.__smartchatOld = true;", vec![])
            .await
            .unwrap();
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("nothing to click at {css}: {e}"))
            .click()
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let done = self
                .client
                .execute(
                    "return window.__smartchatOld === undefined && document.readyState === 'complete';",
                    vec![],
                )
                .await
                .ok()
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            if done {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "clicking {css} did not load a new page within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    /// Waits (up to `secs`) until `css` matches an element whose text satisfies `pred`,
    /// reloading the page between tries when `reload`; returns that text.
    pub async fn wait_for(
        &self,
        css: &str,
        secs: u64,
        reload: bool,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            for el in self.client.find_all(Locator::Css(css)).await.unwrap() {
                if let Ok(t) = el.text().await {
                    if pred(&t) {
                        return t;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nothing at {css} matched within {secs} s on {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
            if reload {
                self.client.refresh().await.unwrap();
            }
        }
    }

    /// Saves a PNG screenshot as `<name>.png` among the test artifacts; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let path = self.artifacts.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Ends the WebDriver session.
    pub async fn close(self) {
        self.client.close().await.unwrap();
    }
}
