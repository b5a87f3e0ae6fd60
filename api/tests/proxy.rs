//! The public rights endpoint counts requests per client address (10 an hour). Behind a
//! reverse proxy every connection comes from the proxy: with `SMARTCHAT_TRUSTED_PROXIES`
//! the server counts the address the proxy forwards instead, and without it the header is
//! the client's own words and is not believed. The real binary, on the embedded default.

mod support;

use anyhow::ensure;

const LIMIT: usize = 10;

/// `POST /rights/glow-salon/requests` from "behind" `forwarded_for`, each for a number of
/// its own (a number gets 3 codes an hour); the status.
async fn ask(http: &reqwest::Client, base: &str, forwarded_for: &str) -> anyhow::Result<u16> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let r = http
        .post(format!("{base}/rights/glow-salon/requests"))
        .header("x-forwarded-for", forwarded_for)
        .json(&serde_json::json!({"number": format!("+91 98000 {n:05}"), "right": "access"}))
        .send()
        .await?;
    Ok(r.status().as_u16())
}

/// `LIMIT` requests at once, forwarded for `addresses` in turn; their statuses.
async fn burst(http: &reqwest::Client, base: &str, addresses: &[&str]) -> anyhow::Result<Vec<u16>> {
    let mut tasks = Vec::new();
    for i in 0..LIMIT {
        let (http, base) = (http.clone(), base.to_owned());
        let a = addresses[i % addresses.len()].to_owned();
        tasks.push(tokio::spawn(async move { ask(&http, &base, &a).await }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_counts_the_forwarded_client_only_behind_a_trusted_proxy() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    support::create_glow_salon(dir.path())?;
    let http = reqwest::Client::new();

    // Behind a trusted proxy (here: loopback): each forwarded client has its own count.
    let server = support::serve(
        dir.path(),
        &[],
        &[("SMARTCHAT_TRUSTED_PROXIES", "127.0.0.1")],
    )?;
    let statuses = burst(&http, &server.base, &["203.0.113.5"]).await?;
    ensure!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    let over = ask(&http, &server.base, "203.0.113.5").await?;
    ensure!(over == 429, "the 11th from one client: {over}");
    let other = ask(&http, &server.base, "203.0.113.6").await?;
    ensure!(
        other == 202,
        "another client behind the same proxy: {other}"
    );
    // A client cannot escape its count by prepending an address of its choosing.
    let forged = ask(&http, &server.base, "192.0.2.1, 203.0.113.5").await?;
    ensure!(forged == 429, "a made-up first hop: {forged}");
    drop(server);

    // No trusted proxy: the header is not believed, the connection's address is counted.
    let server = support::serve(dir.path(), &[], &[])?;
    let statuses = burst(&http, &server.base, &["203.0.113.7", "203.0.113.8"]).await?;
    ensure!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    let over = ask(&http, &server.base, "203.0.113.9").await?;
    ensure!(over == 429, "one peer, whatever it claims: {over}");
    Ok(())
}
