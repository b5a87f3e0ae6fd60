//! A real OpenID provider for the tests: the npm package `oidc-provider`, started per test
//! from `tests/oidc/provider.mjs` on a loopback port (see that file for what it offers).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;

/// The provider's one client.
pub const CLIENT_ID: &str = "smartchat";
/// Its secret.
pub const CLIENT_SECRET: &str = "smartchat-test-secret";
/// The API's audience (resource indicator) the provider issues access tokens for.
pub const AUDIENCE: &str = "https://api.smartchat.test/";

static NPM: Mutex<()> = Mutex::new(());

fn oidc_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// `npm ci` once if the provider's packages are missing.
fn ensure_node_modules() {
    let _g = NPM.lock().unwrap_or_else(|p| p.into_inner());
    let dir = oidc_dir();
    if dir.join("node_modules/oidc-provider/package.json").exists() {
        return;
    }
    let out = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run npm ({e}); install Node.js and npm, then `npm ci --prefix tests/oidc`"
            )
        });
    assert!(
        out.status.success(),
        "`npm ci --prefix tests/oidc` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running oidc-provider; killed on drop.
pub struct Provider {
    /// Its issuer URL.
    pub issuer: String,
    child: tokio::process::Child,
}

impl Provider {
    /// Starts on a free port, redirecting to `redirect_uri`.
    pub async fn start(redirect_uri: &str) -> Self {
        Self::start_on(free_port(), redirect_uri, "").await
    }

    /// Starts on `port` with keys named `test-rs256<kid_suffix>`.
    pub async fn start_on(port: u16, redirect_uri: &str, kid_suffix: &str) -> Self {
        ensure_node_modules();
        let mut child = tokio::process::Command::new("node")
            .arg(oidc_dir().join("provider.mjs"))
            .arg(port.to_string())
            .arg(redirect_uri)
            .arg(AUDIENCE)
            .arg(kid_suffix)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node must be installed to run the OIDC tests");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(iss) = line.strip_prefix("ready ") {
                    return iss.to_owned();
                }
            }
            panic!("oidc-provider exited before it was ready");
        })
        .await
        .expect("oidc-provider did not start within 30 s");
        // Keep draining its stdout: a closed pipe would kill it at its next notice.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { issuer, child }
    }

    /// Stops the process and waits until it has exited (its port is free again).
    pub async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }

    /// An access token for the API from the client-credentials grant.
    pub async fn client_credentials(&self) -> String {
        let res: Value = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "api"),
                ("resource", AUDIENCE),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        res["access_token"]
            .as_str()
            .expect("access token")
            .to_owned()
    }

    /// A token signed with the provider's own RS256 key, with any claims and `typ`.
    pub async fn sign(&self, claims: Value, typ: &str) -> String {
        reqwest::Client::new()
            .post(format!("{}/test/sign", self.issuer))
            .json(&json!({ "claims": claims, "typ": typ }))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}
