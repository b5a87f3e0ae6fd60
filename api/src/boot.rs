//! Start-up: configuration to a ready [`Store`]. Shared by `serve`, `migrate` and the
//! other commands, and by the tests.

use std::io::Write as _;
use std::path::Path;

use smartchat_core::CoreError;
use smartchat_core::config::Config;
use smartchat_core::crypto::MasterKey;
use smartchat_core::crypto::keyring::{Keyring, KeystoreState};
use smartchat_core::db::{DbPool, OpenOptions, Schema};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::store::Store;

/// What start-up did, for the operator.
#[derive(Debug, Default)]
pub struct BootReport {
    /// A master key was generated and written to this file.
    pub generated_master_key: Option<std::path::PathBuf>,
    /// The key store was sealed for the first time.
    pub keystore_initialized: bool,
    /// Main-database migrations applied.
    pub migrations_applied: usize,
    /// The platform policy version running.
    pub policy_version: Option<String>,
    /// Sub-processor registry changes announced at this start.
    pub policy_changes: usize,
    /// Tenant notices written for them.
    pub policy_notices: usize,
}

/// The platform policy: `SMARTCHAT_POLICY_FILE`, or the default embedded in the binary. A
/// file that does not load stops start-up with its path, line and reason.
pub fn load_policy(config: &Config) -> Result<smartchat_policies::Policy, CoreError> {
    let loaded = match &config.policy_file {
        Some(p) => smartchat_policies::Policy::load(p),
        None => smartchat_policies::Policy::platform_default(),
    };
    loaded.map_err(|e| CoreError::Config {
        key: "SMARTCHAT_POLICY_FILE".into(),
        reason: e.to_string(),
    })
}

/// What the server runs on, built once at start-up.
#[derive(Clone, Debug)]
pub struct Services {
    /// Databases and keys.
    pub store: Store,
    /// The audit ledger.
    pub ledger: Ledger,
}

/// Opens databases and keys, applying migrations.
pub async fn open(config: &Config) -> Result<(Services, BootReport), CoreError> {
    let opts = OpenOptions {
        max_connections: config.max_connections,
        sqlite_sync: config.sqlite_sync,
        ..OpenOptions::default()
    };
    let mut report = BootReport::default();
    let keystore = DbPool::open(&config.keystore_url, &opts).await?;
    let master = load_master_key(config, &keystore, &mut report).await?;
    let (keys, state) = Keyring::open(keystore, master).await?;
    report.keystore_initialized = state == KeystoreState::Initialized;
    let db = DbPool::open(&config.database_url, &opts).await?;
    report.migrations_applied = db.migrate(Schema::Main).await?;
    let ledger = Ledger::open(db.clone(), &keys, &config.ledger_origin).await?;
    let platform = std::sync::Arc::new(load_policy(config)?);
    let store = Store::new(db, keys, platform);
    let recorded = store
        .policy
        .record_platform(time::OffsetDateTime::now_utc())
        .await?;
    report.policy_changes = recorded.changes.len();
    report.policy_notices = recorded.notices;
    report.policy_version = Some(recorded.version.to_string());
    Ok((Services { store, ledger }, report))
}

/// The master key from `SMARTCHAT_MASTER_KEY`, else the key file; generated into the key
/// file only when the key store has never been sealed (the embedded default's first run).
pub async fn load_master_key(
    config: &Config,
    keystore: &DbPool,
    report: &mut BootReport,
) -> Result<MasterKey, CoreError> {
    if let Some(inline) = &config.master_key {
        return MasterKey::parse(inline.expose()).map_err(|_| CoreError::Config {
            key: "SMARTCHAT_MASTER_KEY".into(),
            reason: "expected an age X25519 secret key (AGE-SECRET-KEY-1…)".into(),
        });
    }
    let path = &config.master_key_file;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = MasterKey::parse(&text).map_err(|_| CoreError::Config {
                key: format!("SMARTCHAT_MASTER_KEY_FILE ({})", path.display()),
                reason: "the file does not hold an age X25519 secret key (AGE-SECRET-KEY-1…)"
                    .into(),
            })?;
            finish_interrupted_rotation(path, key, keystore).await
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(sealed) = Keyring::sealed_recipient(keystore).await? {
                return Err(CoreError::Config {
                    key: "SMARTCHAT_MASTER_KEY_FILE".into(),
                    reason: format!(
                        "{} does not exist, but the key store was sealed with master key {sealed}; \
                         restore that key file or set SMARTCHAT_MASTER_KEY (nothing was changed)",
                        path.display()
                    ),
                });
            }
            let key = MasterKey::generate();
            write_key_file(path, &key)?;
            report.generated_master_key = Some(path.clone());
            Ok(key)
        }
        Err(e) => Err(CoreError::Io {
            path: path.clone(),
            reason: e.to_string(),
        }),
    }
}

/// `keys rotate-master` stages the new key at `<file>.new`, commits the key store, then
/// renames. If it stopped between the commit and the rename, the staged key is the one the
/// key store is sealed with: install it now.
async fn finish_interrupted_rotation(
    path: &Path,
    key: MasterKey,
    keystore: &DbPool,
) -> Result<MasterKey, CoreError> {
    let Some(sealed) = Keyring::sealed_recipient(keystore).await? else {
        return Ok(key);
    };
    if sealed == key.recipient() {
        return Ok(key);
    }
    let staged = path.with_extension("new");
    if let Ok(text) = std::fs::read_to_string(&staged) {
        if let Ok(new) = MasterKey::parse(&text) {
            if new.recipient() == sealed {
                std::fs::rename(&staged, path).map_err(|e| CoreError::Io {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
                tracing::warn!("finished an interrupted master key rotation");
                return Ok(new);
            }
        }
    }
    // Keyring::open reports the mismatch with both recipients.
    Ok(key)
}

/// Writes a key file readable by its owner only, atomically (temp file, then rename).
pub fn write_key_file(path: &Path, key: &MasterKey) -> Result<(), CoreError> {
    let io = |e: std::io::Error| CoreError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io)?;
        writeln!(
            f,
            "# smartchat master key, public recipient {}",
            key.recipient()
        )
        .map_err(io)?;
        writeln!(
            f,
            "{}",
            secrecy::ExposeSecret::expose_secret(&key.to_secret_string())
        )
        .map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}
