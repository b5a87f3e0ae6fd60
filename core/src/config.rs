//! The one typed configuration: defaults, then a TOML file, then `SMARTCHAT_*` environment
//! variables. A bad value stops start-up with the key and what was expected.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::db::{DbUrl, SqliteSync};
use crate::error::CoreError;

/// A secret string that never prints.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The server's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the embedded defaults keep their files (`SMARTCHAT_DATA_DIR`, `./data`).
    pub data_dir: PathBuf,
    /// The main database (`SMARTCHAT_DATABASE_URL`, `sqlite://<data_dir>/smartchat.db`).
    pub database_url: DbUrl,
    /// The key store (`SMARTCHAT_KEYSTORE_URL`, `sqlite://<data_dir>/keys.db`).
    pub keystore_url: DbUrl,
    /// The anonymized analytics store (`SMARTCHAT_ANALYTICS_URL`,
    /// `sqlite://<data_dir>/analytics.db`): a database apart from the raw data.
    pub analytics_url: DbUrl,
    /// Listen address (`SMARTCHAT_BIND`, `127.0.0.1:8080`).
    pub bind: SocketAddr,
    /// The master key itself (`SMARTCHAT_MASTER_KEY`), if given inline.
    pub master_key: Option<Secret>,
    /// The master key file (`SMARTCHAT_MASTER_KEY_FILE`, `<data_dir>/master.key`).
    pub master_key_file: PathBuf,
    /// SQLite durability (`SMARTCHAT_SQLITE_SYNC`: `normal` or `full`; default `normal`).
    pub sqlite_sync: SqliteSync,
    /// Pool size (`SMARTCHAT_MAX_CONNECTIONS`, 16).
    pub max_connections: usize,
    /// The ledger's origin line in checkpoints (`SMARTCHAT_LEDGER_ORIGIN`).
    pub ledger_origin: String,
    /// The platform policy file (`SMARTCHAT_POLICY_FILE`; default: the embedded policy).
    pub policy_file: Option<PathBuf>,
    /// Log format (`SMARTCHAT_LOG_FORMAT`: `text` or `json`).
    pub log_format: LogFormat,
    /// Meta app secret for webhook signatures (`SMARTCHAT_META_APP_SECRET`).
    pub meta_app_secret: Option<Secret>,
    /// Webhook subscription verify token (`SMARTCHAT_META_VERIFY_TOKEN`).
    pub meta_verify_token: Option<Secret>,
    /// Graph API base URL (`SMARTCHAT_META_GRAPH_URL`).
    pub meta_graph_url: String,
    /// OpenAI API key (`SMARTCHAT_OPENAI_API_KEY`).
    pub openai_api_key: Option<Secret>,
    /// OpenAI base URL (`SMARTCHAT_OPENAI_BASE_URL`).
    pub openai_base_url: String,
    /// DeepSeek API key (`SMARTCHAT_DEEPSEEK_API_KEY`).
    pub deepseek_api_key: Option<Secret>,
    /// DeepSeek base URL (`SMARTCHAT_DEEPSEEK_BASE_URL`).
    pub deepseek_base_url: String,
    /// OpenID Connect for the portal and API; `None` on the embedded default.
    pub oidc: Option<OidcConfig>,
    /// Whether this process runs the search indexer (`SMARTCHAT_SEARCH_INDEXER`, default
    /// true). The index lives under `<data_dir>/search`; with several server processes on
    /// one database exactly one runs the indexer and serves search.
    pub search_indexer: bool,
    /// Seconds between two runs of the follow-up evaluator (`SMARTCHAT_FOLLOW_UP_INTERVAL_SECS`,
    /// default 60, 1 to 3600).
    pub follow_up_interval_secs: u64,
    /// Days a done job is kept before the retention pass deletes it
    /// (`SMARTCHAT_DONE_JOBS_KEPT_DAYS`, default 7, 1 to 365; [`crate::jobs::prune_done`]).
    pub done_jobs_kept_days: u64,
    /// Pipeline jobs (replies, sends, leads, follow-ups, rights requests) one server process
    /// runs at once (`SMARTCHAT_PIPELINE_CONCURRENCY`, default 16, 1 to 1024): a job waiting
    /// on an AI provider, on the Graph API or on a number's rate limit does not hold up the
    /// others. Their database work takes turns, a few at a time, whatever this is.
    pub pipeline_concurrency: u64,
    /// How the background work (pipeline jobs, ledger sequencer, search indexer,
    /// follow-ups, retention) is scheduled against the webhook and the API
    /// (`SMARTCHAT_BACKGROUND_PRIORITY`: `idle`, the default, `low` or `normal`; see
    /// [`crate::priority`]).
    pub background_priority: crate::priority::BackgroundPriority,
    /// The `nice` value `serve` gives its scheduling autogroup, so that PostgreSQL on the
    /// same host wins the CPU over this process's background (`SMARTCHAT_AUTOGROUP_NICE`,
    /// default 10, 0 to 19; 0 leaves it; see [`crate::priority::lower_own_autogroup`]).
    pub autogroup_nice: u64,
    /// The bearer token `GET /metrics` asks for (`SMARTCHAT_METRICS_TOKEN`, at least 16
    /// characters); unset, the endpoint is off.
    pub metrics_token: Option<Secret>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (`SMARTCHAT_TRUSTED_PROXIES`:
    /// addresses or CIDR ranges, comma-separated; none by default, so the connection's peer
    /// is the client). Per-address limits count the client, not the proxy.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The address customers reach this server at (`SMARTCHAT_PUBLIC_URL`, default
    /// `http://<bind>`): tracked booking links point at `<public_url>/b/<token>`.
    pub public_url: String,
}

/// OpenID Connect settings (`SMARTCHAT_OIDC_*`). Set the issuer and all of these are
/// required except the client secret.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// `SMARTCHAT_OIDC_ISSUER`.
    pub issuer: String,
    /// `SMARTCHAT_OIDC_CLIENT_ID`.
    pub client_id: String,
    /// `SMARTCHAT_OIDC_CLIENT_SECRET`.
    pub client_secret: Option<Secret>,
    /// `SMARTCHAT_OIDC_REDIRECT_URL` (`<public base>/auth/callback`).
    pub redirect_url: String,
    /// `SMARTCHAT_OIDC_AUDIENCE`: the audience of API access tokens.
    pub audience: String,
}

/// The TOML file's shape: every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    keystore_url: Option<String>,
    analytics_url: Option<String>,
    bind: Option<String>,
    master_key: Option<Secret>,
    master_key_file: Option<PathBuf>,
    sqlite_sync: Option<String>,
    max_connections: Option<usize>,
    ledger_origin: Option<String>,
    policy_file: Option<PathBuf>,
    log_format: Option<String>,
    meta_app_secret: Option<Secret>,
    meta_verify_token: Option<Secret>,
    meta_graph_url: Option<String>,
    openai_api_key: Option<Secret>,
    openai_base_url: Option<String>,
    deepseek_api_key: Option<Secret>,
    deepseek_base_url: Option<String>,
    oidc_issuer: Option<String>,
    oidc_client_id: Option<String>,
    oidc_client_secret: Option<Secret>,
    oidc_redirect_url: Option<String>,
    oidc_audience: Option<String>,
    search_indexer: Option<bool>,
    public_url: Option<String>,
    follow_up_interval_secs: Option<u64>,
    done_jobs_kept_days: Option<u64>,
    pipeline_concurrency: Option<u64>,
    background_priority: Option<String>,
    autogroup_nice: Option<u64>,
    metrics_token: Option<Secret>,
    trusted_proxies: Option<Vec<String>>,
}

/// Pipeline jobs a server process runs at once by default ([`Config::pipeline_concurrency`]).
pub const PIPELINE_CONCURRENCY: u64 = 16;

/// Every environment variable [`Config`] reads (the README's settings table lists each).
pub const ENV_VARS: &[&str] = &[
    "SMARTCHAT_DATA_DIR",
    "SMARTCHAT_DATABASE_URL",
    "SMARTCHAT_KEYSTORE_URL",
    "SMARTCHAT_ANALYTICS_URL",
    "SMARTCHAT_BIND",
    "SMARTCHAT_MASTER_KEY",
    "SMARTCHAT_MASTER_KEY_FILE",
    "SMARTCHAT_SQLITE_SYNC",
    "SMARTCHAT_MAX_CONNECTIONS",
    "SMARTCHAT_LEDGER_ORIGIN",
    "SMARTCHAT_POLICY_FILE",
    "SMARTCHAT_LOG_FORMAT",
    "SMARTCHAT_META_APP_SECRET",
    "SMARTCHAT_META_VERIFY_TOKEN",
    "SMARTCHAT_META_GRAPH_URL",
    "SMARTCHAT_OPENAI_API_KEY",
    "SMARTCHAT_OPENAI_BASE_URL",
    "SMARTCHAT_DEEPSEEK_API_KEY",
    "SMARTCHAT_DEEPSEEK_BASE_URL",
    "SMARTCHAT_OIDC_ISSUER",
    "SMARTCHAT_OIDC_CLIENT_ID",
    "SMARTCHAT_OIDC_CLIENT_SECRET",
    "SMARTCHAT_OIDC_REDIRECT_URL",
    "SMARTCHAT_OIDC_AUDIENCE",
    "SMARTCHAT_SEARCH_INDEXER",
    "SMARTCHAT_PUBLIC_URL",
    "SMARTCHAT_FOLLOW_UP_INTERVAL_SECS",
    "SMARTCHAT_DONE_JOBS_KEPT_DAYS",
    "SMARTCHAT_PIPELINE_CONCURRENCY",
    "SMARTCHAT_BACKGROUND_PRIORITY",
    "SMARTCHAT_AUTOGROUP_NICE",
    "SMARTCHAT_METRICS_TOKEN",
    "SMARTCHAT_TRUSTED_PROXIES",
];

/// The shortest `SMARTCHAT_METRICS_TOKEN` accepted.
pub const METRICS_TOKEN_MIN: usize = 16;

/// The other `SMARTCHAT_*` variables the binaries read: the config file's path and the log
/// filter (`smartchat`), a tenant's access token (`smartchat tenant`), the ledger key
/// (`smartchat-verify`).
pub const OTHER_ENV_VARS: &[&str] = &[
    "SMARTCHAT_CONFIG",
    "SMARTCHAT_LOG",
    "SMARTCHAT_TENANT_ACCESS_TOKEN",
    "SMARTCHAT_LEDGER_KEY",
];

/// The `SMARTCHAT_*` names among `names` that nothing of smartchat reads, sorted, each with
/// the name it most likely misspells (the nearest known one, at most three edits away).
///
/// The TOML file refuses an unknown key; the environment is shared with other programs, so
/// an unknown variable is reported (`smartchat` logs a warning), not refused. Only names:
/// values are never looked at.
pub fn unread_env_vars<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, Option<&'static str>)> {
    let known = || ENV_VARS.iter().chain(OTHER_ENV_VARS).copied();
    let mut out: Vec<_> = names
        .into_iter()
        .filter(|n| n.starts_with("SMARTCHAT_") && !known().any(|k| k == *n))
        .map(|n| {
            let nearest = known()
                .map(|k| (edit_distance(n, k), k))
                .min()
                .filter(|(d, _)| *d <= 3)
                .map(|(_, k)| k);
            (n.to_owned(), nearest)
        })
        .collect();
    out.sort();
    out
}

/// An address (a range of one) or a CIDR range.
fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// Levenshtein distance over bytes (variable names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

impl Config {
    /// Loads from an optional TOML file and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, CoreError> {
        let env: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("SMARTCHAT_"))
            .collect();
        Self::load_from(file, &env)
    }

    /// Loads from an optional TOML file and the given variables (tests pass their own).
    pub fn load_from(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Self, CoreError> {
        let fc: FileConfig = match file {
            None => FileConfig::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| CoreError::Io {
                    path: p.to_path_buf(),
                    reason: e.to_string(),
                })?;
                toml::from_str(&text).map_err(|e| {
                    let (line, col) = e.span().map(|s| line_col(&text, s.start)).unwrap_or((0, 0));
                    CoreError::Config {
                        key: format!("{}:{line}:{col}", p.display()),
                        reason: e.message().to_owned(),
                    }
                })?
            }
        };
        let get = |var: &str| env.get(var).filter(|v| !v.is_empty()).cloned();

        let data_dir = get("SMARTCHAT_DATA_DIR")
            .map(PathBuf::from)
            .or(fc.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let database_url = parse_url(
            "SMARTCHAT_DATABASE_URL",
            get("SMARTCHAT_DATABASE_URL").or(fc.database_url),
            &data_dir,
            "smartchat.db",
        )?;
        let keystore_url = parse_url(
            "SMARTCHAT_KEYSTORE_URL",
            get("SMARTCHAT_KEYSTORE_URL").or(fc.keystore_url),
            &data_dir,
            "keys.db",
        )?;
        if keystore_url == database_url {
            return Err(CoreError::Config {
                key: "SMARTCHAT_KEYSTORE_URL".into(),
                reason: "the key store must be a different database from SMARTCHAT_DATABASE_URL, \
                         so that database backups never contain tenant keys"
                    .into(),
            });
        }
        let analytics_url = parse_url(
            "SMARTCHAT_ANALYTICS_URL",
            get("SMARTCHAT_ANALYTICS_URL").or(fc.analytics_url),
            &data_dir,
            "analytics.db",
        )?;
        if analytics_url == database_url || analytics_url == keystore_url {
            return Err(CoreError::Config {
                key: "SMARTCHAT_ANALYTICS_URL".into(),
                reason: "the analytics store must be a database of its own, apart from the raw data and the keys"
                    .into(),
            });
        }
        let bind_s = get("SMARTCHAT_BIND")
            .or(fc.bind)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let bind = bind_s.parse().map_err(|_| CoreError::Config {
            key: "SMARTCHAT_BIND".into(),
            reason: format!("expected host:port such as 127.0.0.1:8080, got {bind_s:?}"),
        })?;
        let sqlite_sync = match get("SMARTCHAT_SQLITE_SYNC")
            .or(fc.sqlite_sync)
            .unwrap_or_else(|| "normal".into())
            .to_ascii_lowercase()
            .as_str()
        {
            "normal" => SqliteSync::Normal,
            "full" => SqliteSync::Full,
            other => {
                return Err(CoreError::Config {
                    key: "SMARTCHAT_SQLITE_SYNC".into(),
                    reason: format!("expected normal or full, got {other:?}"),
                });
            }
        };
        let max_connections = match get("SMARTCHAT_MAX_CONNECTIONS") {
            Some(v) => v
                .parse()
                .ok()
                .filter(|n: &usize| *n > 0 && *n <= 1000)
                .ok_or_else(|| CoreError::Config {
                    key: "SMARTCHAT_MAX_CONNECTIONS".into(),
                    reason: format!("expected a whole number from 1 to 1000, got {v:?}"),
                })?,
            None => fc.max_connections.unwrap_or(16),
        };
        let log_format = match get("SMARTCHAT_LOG_FORMAT")
            .or(fc.log_format)
            .unwrap_or_else(|| "text".into())
            .as_str()
        {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(CoreError::Config {
                    key: "SMARTCHAT_LOG_FORMAT".into(),
                    reason: format!("expected text or json, got {other:?}"),
                });
            }
        };
        let secret = |var: &str, f: Option<Secret>| get(var).map(Secret).or(f);
        let url = |var: &str, f: Option<String>, default: &str| -> Result<String, CoreError> {
            let v = get(var).or(f).unwrap_or_else(|| default.to_owned());
            url::Url::parse(&v).map_err(|_| CoreError::Config {
                key: var.into(),
                reason: format!("expected an http(s) URL, got {v:?}"),
            })?;
            Ok(v.trim_end_matches('/').to_owned())
        };
        let oidc = match get("SMARTCHAT_OIDC_ISSUER").or(fc.oidc_issuer) {
            None => None,
            Some(issuer) => {
                let need = |var: &str, v: Option<String>| {
                    v.ok_or_else(|| CoreError::Config {
                        key: var.into(),
                        reason: "required when SMARTCHAT_OIDC_ISSUER is set".into(),
                    })
                };
                Some(OidcConfig {
                    client_id: need(
                        "SMARTCHAT_OIDC_CLIENT_ID",
                        get("SMARTCHAT_OIDC_CLIENT_ID").or(fc.oidc_client_id),
                    )?,
                    client_secret: secret("SMARTCHAT_OIDC_CLIENT_SECRET", fc.oidc_client_secret),
                    redirect_url: need(
                        "SMARTCHAT_OIDC_REDIRECT_URL",
                        get("SMARTCHAT_OIDC_REDIRECT_URL").or(fc.oidc_redirect_url),
                    )?,
                    audience: need(
                        "SMARTCHAT_OIDC_AUDIENCE",
                        get("SMARTCHAT_OIDC_AUDIENCE").or(fc.oidc_audience),
                    )?,
                    issuer,
                })
            }
        };
        let search_indexer = match get("SMARTCHAT_SEARCH_INDEXER") {
            None => fc.search_indexer.unwrap_or(true),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => {
                    return Err(CoreError::Config {
                        key: "SMARTCHAT_SEARCH_INDEXER".into(),
                        reason: format!("expected true or false, got {v:?}"),
                    });
                }
            },
        };
        let public_url = url(
            "SMARTCHAT_PUBLIC_URL",
            fc.public_url,
            &format!("http://{bind}"),
        )?;
        // A whole number from the environment, else the file, else the default, within
        // `range` (`unit` names it in the error).
        let bounded = |var: &str,
                       f: Option<u64>,
                       default: u64,
                       range: std::ops::RangeInclusive<u64>,
                       unit: &str|
         -> Result<u64, CoreError> {
            let n = match get(var) {
                None => f.unwrap_or(default),
                Some(v) => v.parse().map_err(|_| CoreError::Config {
                    key: var.into(),
                    reason: format!("expected {unit}, got {v:?}"),
                })?,
            };
            if !range.contains(&n) {
                return Err(CoreError::Config {
                    key: var.into(),
                    reason: format!("{} to {} {unit}", range.start(), range.end()),
                });
            }
            Ok(n)
        };
        let follow_up_interval_secs = bounded(
            "SMARTCHAT_FOLLOW_UP_INTERVAL_SECS",
            fc.follow_up_interval_secs,
            60,
            1..=3600,
            "seconds",
        )?;
        let done_jobs_kept_days = bounded(
            "SMARTCHAT_DONE_JOBS_KEPT_DAYS",
            fc.done_jobs_kept_days,
            crate::jobs::DONE_KEPT.as_secs() / 86_400,
            1..=365,
            "days",
        )?;
        let pipeline_concurrency = bounded(
            "SMARTCHAT_PIPELINE_CONCURRENCY",
            fc.pipeline_concurrency,
            PIPELINE_CONCURRENCY,
            1..=1024,
            "jobs",
        )?;
        let background_priority =
            match get("SMARTCHAT_BACKGROUND_PRIORITY").or(fc.background_priority) {
                None => crate::priority::BackgroundPriority::default(),
                Some(v) => crate::priority::BackgroundPriority::parse(&v).ok_or_else(|| {
                    CoreError::Config {
                        key: "SMARTCHAT_BACKGROUND_PRIORITY".into(),
                        reason: format!("expected idle, low or normal, got {v:?}"),
                    }
                })?,
            };
        let autogroup_nice = bounded(
            "SMARTCHAT_AUTOGROUP_NICE",
            fc.autogroup_nice,
            crate::priority::AUTOGROUP_NICE,
            0..=19,
            "(a nice value)",
        )?;
        let metrics_token = secret("SMARTCHAT_METRICS_TOKEN", fc.metrics_token);
        if metrics_token
            .as_ref()
            .is_some_and(|t| t.expose().chars().count() < METRICS_TOKEN_MIN)
        {
            return Err(CoreError::Config {
                key: "SMARTCHAT_METRICS_TOKEN".into(),
                reason: format!("expected at least {METRICS_TOKEN_MIN} characters"),
            });
        }
        let proxies: Vec<String> = match get("SMARTCHAT_TRUSTED_PROXIES") {
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            None => fc.trusted_proxies.unwrap_or_default(),
        };
        let trusted_proxies = proxies
            .iter()
            .map(|p| parse_net(p))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| CoreError::Config {
                key: "SMARTCHAT_TRUSTED_PROXIES".into(),
                reason: format!(
                    "expected IP addresses or CIDR ranges (10.0.0.0/8, ::1), got {proxies:?}"
                ),
            })?;
        Ok(Self {
            metrics_token,
            trusted_proxies,
            follow_up_interval_secs,
            done_jobs_kept_days,
            pipeline_concurrency,
            background_priority,
            autogroup_nice,
            analytics_url,
            oidc,
            search_indexer,
            public_url,
            master_key_file: get("SMARTCHAT_MASTER_KEY_FILE")
                .map(PathBuf::from)
                .or(fc.master_key_file)
                .unwrap_or_else(|| data_dir.join("master.key")),
            master_key: secret("SMARTCHAT_MASTER_KEY", fc.master_key),
            policy_file: get("SMARTCHAT_POLICY_FILE")
                .map(PathBuf::from)
                .or(fc.policy_file),
            ledger_origin: get("SMARTCHAT_LEDGER_ORIGIN")
                .or(fc.ledger_origin)
                .unwrap_or_else(|| "smartchat.local/ledger".into()),
            meta_app_secret: secret("SMARTCHAT_META_APP_SECRET", fc.meta_app_secret),
            meta_verify_token: secret("SMARTCHAT_META_VERIFY_TOKEN", fc.meta_verify_token),
            meta_graph_url: url(
                "SMARTCHAT_META_GRAPH_URL",
                fc.meta_graph_url,
                "https://graph.facebook.com",
            )?,
            openai_api_key: secret("SMARTCHAT_OPENAI_API_KEY", fc.openai_api_key),
            openai_base_url: url(
                "SMARTCHAT_OPENAI_BASE_URL",
                fc.openai_base_url,
                "https://api.openai.com/v1",
            )?,
            deepseek_api_key: secret("SMARTCHAT_DEEPSEEK_API_KEY", fc.deepseek_api_key),
            deepseek_base_url: url(
                "SMARTCHAT_DEEPSEEK_BASE_URL",
                fc.deepseek_base_url,
                "https://api.deepseek.com",
            )?,
            data_dir,
            database_url,
            keystore_url,
            bind,
            sqlite_sync,
            max_connections,
            log_format,
        })
    }
}

fn parse_url(
    var: &str,
    v: Option<String>,
    data_dir: &Path,
    file: &str,
) -> Result<DbUrl, CoreError> {
    match v {
        None => Ok(DbUrl::Sqlite(data_dir.join(file))),
        Some(s) => s.parse().map_err(|e: CoreError| match e {
            CoreError::Config { reason, .. } => CoreError::Config {
                key: var.into(),
                reason,
            },
            other => other,
        }),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, str::len) + 1;
    (line, col)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn autogroup_nice_from_env_and_file_within_0_to_19() {
        let c = Config::load_from(None, &env(&[("SMARTCHAT_AUTOGROUP_NICE", "0")])).unwrap();
        assert_eq!(c.autogroup_nice, 0);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("smartchat.toml");
        std::fs::write(&p, "autogroup_nice = 19\n").unwrap();
        assert_eq!(
            Config::load_from(Some(&p), &env(&[]))
                .unwrap()
                .autogroup_nice,
            19
        );
        for bad in ["20", "-1", "ten"] {
            let e = Config::load_from(None, &env(&[("SMARTCHAT_AUTOGROUP_NICE", bad)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("SMARTCHAT_AUTOGROUP_NICE"), "{bad}: {e}");
        }
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let c = Config::load_from(None, &env(&[])).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(
            c.database_url,
            DbUrl::Sqlite(PathBuf::from("./data/smartchat.db"))
        );
        assert_eq!(
            c.keystore_url,
            DbUrl::Sqlite(PathBuf::from("./data/keys.db"))
        );
        assert_eq!(c.master_key_file, PathBuf::from("./data/master.key"));
        assert_eq!(c.sqlite_sync, SqliteSync::Normal);
        assert_eq!(c.done_jobs_kept_days, 7);
        assert_eq!(c.pipeline_concurrency, PIPELINE_CONCURRENCY);
        assert_eq!(c.autogroup_nice, crate::priority::AUTOGROUP_NICE);
        assert_eq!(
            c.background_priority,
            crate::priority::BackgroundPriority::Idle
        );
    }

    #[test]
    fn env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "bind = \"127.0.0.1:9000\"\ndata_dir = \"/srv/x\"\n").unwrap();
        let c = Config::load_from(Some(&p), &env(&[("SMARTCHAT_BIND", "127.0.0.1:9100")])).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:9100");
        assert_eq!(c.data_dir, PathBuf::from("/srv/x"));
        std::fs::write(&p, "done_jobs_kept_days = 30\n").unwrap();
        assert_eq!(
            Config::load_from(Some(&p), &env(&[]))
                .unwrap()
                .done_jobs_kept_days,
            30
        );
        let c = Config::load_from(Some(&p), &env(&[("SMARTCHAT_DONE_JOBS_KEPT_DAYS", "2")]));
        assert_eq!(c.unwrap().done_jobs_kept_days, 2);
        std::fs::write(&p, "pipeline_concurrency = 4\n").unwrap();
        let c = Config::load_from(Some(&p), &env(&[])).unwrap();
        assert_eq!(c.pipeline_concurrency, 4);
        let c = Config::load_from(Some(&p), &env(&[("SMARTCHAT_PIPELINE_CONCURRENCY", "64")]));
        assert_eq!(c.unwrap().pipeline_concurrency, 64);
        for bad in ["0", "1025", "many"] {
            let e = Config::load_from(None, &env(&[("SMARTCHAT_PIPELINE_CONCURRENCY", bad)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("SMARTCHAT_PIPELINE_CONCURRENCY"), "{bad}: {e}");
        }
        std::fs::write(&p, "background_priority = \"low\"\n").unwrap();
        let c = Config::load_from(Some(&p), &env(&[])).unwrap();
        assert_eq!(
            c.background_priority,
            crate::priority::BackgroundPriority::Low
        );
        let c = Config::load_from(
            Some(&p),
            &env(&[("SMARTCHAT_BACKGROUND_PRIORITY", "normal")]),
        )
        .unwrap();
        assert_eq!(
            c.background_priority,
            crate::priority::BackgroundPriority::Normal
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = Config::load_from(None, &env(&[("SMARTCHAT_BIND", "nope")])).unwrap_err();
        assert!(e.to_string().contains("SMARTCHAT_BIND"), "{e}");
        let e =
            Config::load_from(None, &env(&[("SMARTCHAT_DATABASE_URL", "mysql://x")])).unwrap_err();
        assert!(e.to_string().contains("SMARTCHAT_DATABASE_URL"), "{e}");
        let e = Config::load_from(None, &env(&[("SMARTCHAT_SQLITE_SYNC", "off")])).unwrap_err();
        assert!(e.to_string().contains("normal or full"), "{e}");
        let e = Config::load_from(None, &env(&[("SMARTCHAT_BACKGROUND_PRIORITY", "high")]))
            .unwrap_err();
        assert!(
            e.to_string().contains("SMARTCHAT_BACKGROUND_PRIORITY"),
            "{e}"
        );
        assert!(e.to_string().contains("idle, low or normal"), "{e}");
        for bad in ["0", "366", "a week"] {
            let e = Config::load_from(None, &env(&[("SMARTCHAT_DONE_JOBS_KEPT_DAYS", bad)]))
                .unwrap_err();
            assert!(
                e.to_string().contains("SMARTCHAT_DONE_JOBS_KEPT_DAYS"),
                "{e}"
            );
        }
        let e = Config::load_from(
            None,
            &env(&[
                ("SMARTCHAT_DATABASE_URL", "sqlite://a.db"),
                ("SMARTCHAT_KEYSTORE_URL", "sqlite://a.db"),
            ]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("different database"), "{e}");
    }

    #[test]
    fn file_errors_name_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "bind = \"127.0.0.1:9000\"\nbogus_key = 1\n").unwrap();
        let e = Config::load_from(Some(&p), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml:2"), "{e}");
        assert!(e.contains("bogus_key"), "{e}");
    }

    #[test]
    fn secrets_do_not_print() {
        let c =
            Config::load_from(None, &env(&[("SMARTCHAT_OPENAI_API_KEY", "sk-live-123")])).unwrap();
        assert!(!format!("{c:?}").contains("sk-live-123"));
    }

    #[test]
    fn reports_unread_smartchat_variables_with_the_name_they_likely_misspell() {
        let got = unread_env_vars([
            "SMARTCHAT_OPENAI_APIKEY",
            "SMARTCHAT_BIND",
            "SMARTCHAT_LOG",
            "PATH",
            "SMARTCHAT_DATABSE_URL",
            "SMARTCHAT_SOMETHING_ELSE_ENTIRELY",
        ]);
        assert_eq!(
            got,
            vec![
                (
                    "SMARTCHAT_DATABSE_URL".to_owned(),
                    Some("SMARTCHAT_DATABASE_URL")
                ),
                (
                    "SMARTCHAT_OPENAI_APIKEY".to_owned(),
                    Some("SMARTCHAT_OPENAI_API_KEY")
                ),
                ("SMARTCHAT_SOMETHING_ELSE_ENTIRELY".to_owned(), None),
            ]
        );
        assert!(unread_env_vars(ENV_VARS.iter().chain(OTHER_ENV_VARS).copied()).is_empty());
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn env_vars_lists_exactly_what_load_reads_and_the_readme_names_each() {
        // Every name quoted in this file is listed, and read somewhere besides the list.
        let source = include_str!("config.rs");
        let quoted: std::collections::BTreeSet<&str> = source
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|q| {
                q.starts_with("SMARTCHAT_")
                    && q[10..].chars().all(|c| c.is_ascii_uppercase() || c == '_')
                    && q.len() > 10
            })
            .collect();
        let mut listed: std::collections::BTreeSet<&str> = ENV_VARS.iter().copied().collect();
        listed.extend(OTHER_ENV_VARS);
        // The tests above quote made-up names on purpose.
        let made_up = [
            "SMARTCHAT_OPENAI_APIKEY",
            "SMARTCHAT_DATABSE_URL",
            "SMARTCHAT_SOMETHING_ELSE_ENTIRELY",
        ];
        let unlisted: Vec<_> = quoted
            .iter()
            .filter(|q| !listed.contains(*q) && !made_up.contains(*q))
            .collect();
        assert!(unlisted.is_empty(), "read but not listed: {unlisted:?}");
        for v in ENV_VARS {
            assert!(
                source.matches(&format!("\"{v}\"")).count() >= 2,
                "{v} is listed but never read"
            );
        }
        let readme = include_str!("../../README.md");
        for v in ENV_VARS
            .iter()
            .chain(&["SMARTCHAT_CONFIG", "SMARTCHAT_LOG"])
        {
            assert!(
                readme.contains(&format!("`{v}`")),
                "README does not name {v}"
            );
        }
    }

    #[test]
    fn metrics_token_is_optional_and_at_least_16_characters() {
        assert!(
            Config::load_from(None, &env(&[]))
                .unwrap()
                .metrics_token
                .is_none()
        );
        let e = Config::load_from(None, &env(&[("SMARTCHAT_METRICS_TOKEN", "short")])).unwrap_err();
        assert!(e.to_string().contains("SMARTCHAT_METRICS_TOKEN"), "{e}");
        let c = Config::load_from(
            None,
            &env(&[("SMARTCHAT_METRICS_TOKEN", "0123456789abcdef")]),
        )
        .unwrap();
        assert_eq!(c.metrics_token.unwrap().expose(), "0123456789abcdef");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_ranges() {
        assert!(
            Config::load_from(None, &env(&[]))
                .unwrap()
                .trusted_proxies
                .is_empty()
        );
        let c = Config::load_from(
            None,
            &env(&[("SMARTCHAT_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,::1")]),
        )
        .unwrap();
        let nets: Vec<String> = c.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
        let e = Config::load_from(
            None,
            &env(&[("SMARTCHAT_TRUSTED_PROXIES", "10.0.0.0/8,proxy.local")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("SMARTCHAT_TRUSTED_PROXIES"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("smartchat.toml");
        std::fs::write(&p, "trusted_proxies = [\"192.168.0.0/16\"]\n").unwrap();
        let c = Config::load_from(Some(&p), &env(&[])).unwrap();
        assert_eq!(c.trusted_proxies[0].to_string(), "192.168.0.0/16");
    }
}
