//! The `smartchat` binary: one program, one subcommand per job.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use smartchat_api::boot;
use smartchat_core::config::{Config, LogFormat, Secret};
use smartchat_core::crypto::MasterKey;
use smartchat_core::crypto::keyring::Keyring;
use smartchat_core::db::{DbPool, OpenOptions, Schema};
use smartchat_core::ids::{Handle, PhoneNumberId, TenantId};
use smartchat_core::store::{NewTenant, Profile, Store};

/// smartchat: compliance-first AI messaging for WhatsApp Business.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// A TOML configuration file (environment variables SMARTCHAT_* override it).
    #[arg(long, global = true, env = "SMARTCHAT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (embedded default: SQLite and keys under ./data, 127.0.0.1:8080).
    Serve,
    /// Apply database migrations (main database and key store) and exit.
    Migrate,
    /// Manage tenants (businesses).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage the key hierarchy.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The audit ledger: status, checkpoints, proofs, export for auditors.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Play the customer in the sandbox: type messages, see the assistant answer, end to end
    /// through the same pipeline (numbers connected without an access token reply into
    /// the sandbox instead of Meta).
    Chat {
        /// Tenant id or handle.
        #[arg(long)]
        tenant: String,
        /// The customer's WhatsApp number (digits) in the sandbox.
        #[arg(long, default_value = "919000000001")]
        from: String,
    },
    /// Policies as code: the effective policy, tenant tightening, registry changes, records.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Conversation search: rebuild the encrypted indexes from the database.
    #[command(subcommand)]
    Search(SearchCommand),
    /// Retention: run the pass the server runs every hour (purge terminated tenants past
    /// their export window unless held; expire messages past their retention; delete done
    /// jobs older than SMARTCHAT_DONE_JOBS_KEPT_DAYS, 7 by default).
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// What the background still has to do: the job queue by state (and how long the oldest
    /// due job has waited), ledger drafts not yet sequenced, search feed rows not yet indexed.
    Status,
}

#[derive(Debug, Subcommand)]
enum SearchCommand {
    /// Rebuild the search index of one tenant (or of every active tenant) from the
    /// database, with progress. Run it with the server stopped, or on the indexing process's
    /// data directory.
    Reindex {
        /// Tenant id or handle; every active tenant when omitted.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum RetentionCommand {
    /// Run one retention pass now and print what it did.
    Run,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Print the effective policy of a tenant (or the platform policy) as TOML.
    Show {
        /// Tenant id or handle; the platform policy when omitted.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Tighten a tenant's policy from a TOML file of overrides (refused if any rule loosens).
    Set {
        /// Tenant id or handle.
        #[arg(long)]
        tenant: String,
        /// The overrides file (see policies/README.md).
        #[arg(long)]
        file: PathBuf,
    },
    /// List the sub-processor registry changes a tenant was notified of.
    Notices {
        /// Tenant id or handle.
        #[arg(long)]
        tenant: String,
    },
    /// Record a tenant's objection to a registry change: the change stays denied for it.
    Object {
        /// Tenant id or handle.
        #[arg(long)]
        tenant: String,
        /// The change id (from `policy notices`).
        #[arg(long)]
        change: String,
    },
    /// The records of processing activities (GDPR Art. 30(2)) for a tenant, from the policy
    /// and the ledger.
    Records {
        /// Tenant id or handle.
        #[arg(long)]
        tenant: String,
        /// Print JSON instead of Markdown.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Sequence pending entries and print the ledger's size, head and public key.
    Status,
    /// Sequence pending entries and sign a checkpoint of the head.
    Checkpoint,
    /// Write an export bundle (entries, checkpoints, consistency proofs, public key) for
    /// `smartchat-verify`.
    Export {
        /// Output file.
        #[arg(long, short)]
        out: PathBuf,
        /// First sequence number.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// One past the last sequence number (default: the latest checkpoint's size; a
        /// checkpoint is signed first so the bundle covers everything sequenced).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Print a c2sp.org/tlog-proof that entry SEQ is in the latest checkpoint.
    Prove {
        /// Sequence number.
        seq: u64,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant and, optionally, connect its WhatsApp number.
    Create(CreateTenant),
    /// List tenants.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one tenant (by id or handle) with its business profile.
    Show {
        /// Tenant id or handle.
        tenant: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show or set the tenant's AI provider chain (failover order; the offline assistant
    /// always ends it).
    Providers {
        /// Tenant id or handle.
        tenant: String,
        /// Comma-separated chain, e.g. `deepseek,openai`; an empty string for the offline
        /// assistant only.
        #[arg(long, conflicts_with = "default")]
        set: Option<String>,
        /// Return to the platform's default chain (every configured provider).
        #[arg(long)]
        default: bool,
    },
    /// Terminate a tenant's contract: its numbers stop, its data can be exported until the
    /// policy's export window closes, then the retention pass deletes it.
    Terminate {
        /// Tenant id or handle.
        tenant: String,
    },
}

#[derive(Debug, Args)]
struct CreateTenant {
    /// Business name.
    #[arg(long)]
    name: String,
    /// Public handle (a-z, 0-9, '-'); derived from the name when omitted.
    #[arg(long)]
    handle: Option<String>,
    /// Business type (salon, clinic, ...).
    #[arg(long = "type", default_value = "business")]
    business_type: String,
    /// A JSON file with the full business profile (hours, services, staff, booking links).
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Meta's phone number id of the WhatsApp Business number.
    #[arg(long)]
    phone_number_id: Option<String>,
    /// The Graph API access token for that number (stored encrypted).
    #[arg(long, env = "SMARTCHAT_TENANT_ACCESS_TOKEN", hide_env_values = true)]
    access_token: Option<String>,
    /// The WhatsApp Business Account id the number belongs to (template status webhooks
    /// and template sync use it).
    #[arg(long, requires = "phone_number_id")]
    waba_id: Option<String>,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Re-wrap every tenant key under a new master key (data is not re-encrypted).
    RotateMaster {
        /// File holding the new master key; generated when omitted (only when the current
        /// key comes from the key file, which then receives the new key).
        #[arg(long)]
        new_key_file: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("smartchat: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    for (name, nearest) in smartchat_core::config::unread_env_vars(names.iter().map(String::as_str))
    {
        match nearest {
            Some(n) => tracing::warn!(
                variable = %name,
                "not a smartchat setting, ignored: did you mean {n}?"
            ),
            None => tracing::warn!(variable = %name, "not a smartchat setting, ignored"),
        }
    }
    match run(cli.command, config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smartchat: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SMARTCHAT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config).await,
        Command::Ledger(cmd) => ledger(cmd, config).await,
        Command::Policy(cmd) => policy(cmd, config).await,
        Command::Chat { tenant, from } => chat(config, tenant, from).await,
        Command::Search(cmd) => search(cmd, config).await,
        Command::Status => status(config).await,
        Command::Retention(RetentionCommand::Run) => {
            let (services, report) = boot::open(&config).await?;
            print_boot(&config, &report);
            let pipeline = smartchat_api::pipeline::Pipeline::new(services.store.clone(), &config)?;
            let r =
                smartchat_api::account::run_retention(&pipeline, time::OffsetDateTime::now_utc())
                    .await?;
            services.ledger.sequence_all().await?;
            println!(
                "retention: {} tenants purged ({} rows), {} waiting for a legal hold, {} messages expired, {} done jobs pruned, {} requests left open half-way resumed",
                r.purged_tenants,
                r.purged_rows,
                r.held_tenants,
                r.expired_messages,
                r.pruned_jobs,
                r.resumed_requests
            );
            Ok(())
        }
        Command::Migrate => {
            let (_, report) = boot::open(&config).await?;
            print_boot(&config, &report);
            println!("migrations applied: {}", report.migrations_applied);
            Ok(())
        }
        Command::Tenant(t) => tenant(t, config).await,
        Command::Keys(KeysCommand::RotateMaster { new_key_file }) => {
            rotate_master(config, new_key_file).await
        }
    }
}

fn print_boot(config: &Config, report: &boot::BootReport) {
    if let Some(p) = &report.generated_master_key {
        eprintln!(
            "\n!!! WARNING: generated a NEW MASTER KEY at {}.\n!!! Every tenant key is wrapped by it: \
             back it up somewhere safe and apart from the databases.\n!!! Lose it and every tenant's data \
             is unreadable. For production set SMARTCHAT_MASTER_KEY or SMARTCHAT_MASTER_KEY_FILE.\n",
            p.display()
        );
    }
    if report.keystore_initialized {
        eprintln!("created key store at {}", config.keystore_url);
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let (services, report) = boot::open(&config).await?;
    print_boot(&config, &report);
    // PostgreSQL on this host first, then this process's request threads, then its
    // background (smartchat_core::priority says why).
    if config.autogroup_nice > 0 {
        use smartchat_core::priority::{Autogroup, lower_own_autogroup};
        match lower_own_autogroup(config.autogroup_nice) {
            Ok(Autogroup::Own(n)) => tracing::info!(nice = n, "scheduling autogroup lowered"),
            Ok(Autogroup::Shared) => tracing::info!(
                "the scheduling autogroup is the session's (started from a shell): left as it \
                 is; `setsid smartchat serve` or a service manager gives the server its own"
            ),
            Ok(Autogroup::Unsupported) => {}
            Err(reason) => tracing::warn!(%reason, "the scheduling autogroup keeps its weight"),
        }
    }
    smartchat_api::auth::check_bind_allowed(config.bind, config.oidc.is_some())
        .map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("cannot listen on {} (SMARTCHAT_BIND)", config.bind))?;
    let addr = listener.local_addr()?;
    println!("smartchat listening on http://{addr}");
    println!("  database:  {}", config.database_url);
    println!("  key store: {}", config.keystore_url);
    println!("  data dir:  {}", config.data_dir.display());
    println!("  ledger key: {}", services.ledger.vkey());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let analytics = smartchat_core::analytics::Analytics::open(
        &config.analytics_url,
        &smartchat_core::db::OpenOptions {
            sqlite_sync: config.sqlite_sync,
            ..smartchat_core::db::OpenOptions::default()
        },
    )
    .await?;
    let pipeline = smartchat_api::pipeline::Pipeline::new(services.store.clone(), &config)?
        .with_analytics(analytics);
    let search = if config.search_indexer {
        let search = smartchat_api::search::Search::with_priority(
            services.store.clone(),
            config.data_dir.join("search"),
            config.background_priority,
        )?;
        Some(search)
    } else {
        None
    };
    // Pipeline workers, ledger sequencer, indexer, follow-ups and retention: below the
    // webhook's priority, on pools of their own.
    let background = smartchat_api::background::Background::start(
        smartchat_api::background::BackgroundWork {
            pipeline: pipeline.clone(),
            ledger: services.ledger.clone(),
            search: search.clone(),
            run_jobs: true,
            follow_ups: Some(std::time::Duration::from_secs(
                config.follow_up_interval_secs,
            )),
            retention: true,
            priority: config.background_priority,
        },
        &stop_rx,
    )?;
    let auth = match &config.oidc {
        Some(o) => {
            let cfg = smartchat_api::auth::AuthConfig::new(
                &o.issuer,
                &o.client_id,
                o.client_secret
                    .as_ref()
                    .map(|s| secrecy::SecretString::from(s.expose().to_owned())),
                &o.redirect_url,
                &o.audience,
            );
            smartchat_api::auth::AuthState::with_oidc(services.store.clone(), &cfg)
                .await
                .map_err(|e| anyhow::anyhow!("OpenID provider {}: {e}", o.issuer))?
        }
        None => {
            let (otl, token) = smartchat_api::auth::OneTimeLogin::generate();
            println!(
                "  log in once: {}",
                smartchat_api::auth::OneTimeLogin::url(addr, &token)
            );
            smartchat_api::auth::AuthState::local(services.store.clone(), otl)
        }
    };
    let purge = {
        let auth = auth.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(300)) => {
                        if let Err(e) = auth.members().purge_expired().await {
                            tracing::warn!(error = %e, "could not purge expired sessions");
                        }
                    }
                }
            }
        })
    };
    let mut state = smartchat_api::app::AppState::new(services, pipeline, auth, &config);
    if let Some(search) = search {
        state = state.with_search(search);
    }
    let app = smartchat_api::app::router(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        shutdown_signal().await;
    })
    .await?;
    let _ = stop_tx.send(true);
    purge.await?;
    background.join().await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn status(config: Config) -> anyhow::Result<()> {
    let (services, report) = boot::open(&config).await?;
    print_boot(&config, &report);
    let s = smartchat_api::metrics::Snapshot::gather(&services.store, &services.ledger).await?;
    let q = &s.jobs;
    println!(
        "jobs ({}): {} due, {} later, {} running, {} dead, {} done (pruned after {} days)",
        smartchat_api::pipeline::QUEUE,
        q.due,
        q.later,
        q.running,
        q.dead,
        q.done,
        config.done_jobs_kept_days
    );
    match q.oldest_due_micros {
        Some(us) => println!("oldest due job waiting: {:.1} s", us as f64 / 1e6),
        None => println!("oldest due job waiting: none due"),
    }
    println!("ledger drafts to sequence: {}", s.ledger_pending);
    println!("ledger entries: {}", s.ledger_entries);
    match s.checkpoint_age_secs {
        Some(age) => println!("newest signed checkpoint: {age:.0} s old"),
        None => println!("newest signed checkpoint: none yet"),
    }
    println!("search feed rows to index: {}", s.search_backlog);
    Ok(())
}

async fn ledger(cmd: LedgerCommand, config: Config) -> anyhow::Result<()> {
    let (services, report) = boot::open(&config).await?;
    print_boot(&config, &report);
    let ledger = &services.ledger;
    ledger.sequence_all().await?;
    match cmd {
        LedgerCommand::Status => {
            let size = ledger.size().await?;
            let cp = ledger.latest_checkpoint().await?;
            println!("entries:    {size}");
            println!("pending:    {}", ledger.pending().await?);
            match cp {
                Some(cp) => println!(
                    "checkpoint: size {} signed at {} (unix micros)",
                    cp.size, cp.created_micros
                ),
                None => println!("checkpoint: none yet"),
            }
            println!("public key: {}", ledger.vkey());
        }
        LedgerCommand::Checkpoint => match ledger.checkpoint().await? {
            Some(cp) => print!("{}", cp.note),
            None => println!("the ledger is empty; nothing to sign"),
        },
        LedgerCommand::Export { out, from, to } => {
            if to.is_none() {
                ledger.checkpoint().await?;
            }
            let file = std::fs::File::create(&out)
                .with_context(|| format!("creating {}", out.display()))?;
            let (from, to, w) = ledger
                .export(from, to, std::io::BufWriter::new(file))
                .await?;
            w.into_inner()
                .map_err(|e| anyhow::anyhow!("writing {}: {}", out.display(), e.error()))?
                .sync_all()?;
            println!("wrote entries {from}..{to} to {}", out.display());
            println!(
                "verify with: smartchat-verify {} --key '{}'",
                out.display(),
                ledger.vkey()
            );
        }
        LedgerCommand::Prove { seq } => {
            let proof = ledger.tlog_proof(seq).await?;
            print!("{}", proof.render());
        }
    }
    Ok(())
}

async fn tenant(cmd: TenantCommand, config: Config) -> anyhow::Result<()> {
    let (services, report) = boot::open(&config).await?;
    let store = services.store;
    print_boot(&config, &report);
    match cmd {
        TenantCommand::Create(c) => {
            let mut profile = match &c.profile {
                Some(p) => serde_json::from_str::<serde_json::Value>(
                    &std::fs::read_to_string(p)
                        .with_context(|| format!("reading {}", p.display()))?,
                )
                .with_context(|| format!("{} is not valid JSON", p.display()))?,
                None => serde_json::json!({}),
            };
            if let Some(obj) = profile.as_object_mut() {
                obj.insert("name".into(), c.name.clone().into());
                obj.entry("business_type")
                    .or_insert(c.business_type.clone().into());
            } else {
                anyhow::bail!("the profile file must hold a JSON object");
            }
            let handle: Handle = match &c.handle {
                Some(h) => h.parse()?,
                None => smartchat_api::portal::setup::slug(&c.name)
                    .parse()
                    .context("cannot derive a handle from the name; pass --handle")?,
            };
            let phone_number_id: Option<PhoneNumberId> =
                c.phone_number_id.as_deref().map(str::parse).transpose()?;
            if let Some(w) = &c.waba_id {
                anyhow::ensure!(
                    !w.is_empty() && w.len() <= 64 && w.bytes().all(|b| b.is_ascii_digit()),
                    "--waba-id: a WhatsApp Business Account id is digits"
                );
            }
            if phone_number_id.is_some() && c.access_token.is_none() {
                eprintln!(
                    "no --access-token: replies on this number go to the sandbox (smartchat chat), not to Meta"
                );
            }
            let id = store
                .create_tenant(NewTenant {
                    handle: handle.clone(),
                    profile: Profile(profile),
                    phone_number_id: phone_number_id.clone(),
                    access_token: Some(Secret::new(c.access_token.unwrap_or_default())),
                })
                .await?;
            if let (Some(pnid), Some(waba)) = (&phone_number_id, &c.waba_id) {
                store.set_waba_id(id, pnid, waba).await?;
            }
            services.ledger.sequence_all().await?;
            println!("created tenant {id} (handle {handle})");
            Ok(())
        }
        TenantCommand::Terminate { tenant } => {
            let id = resolve_tenant(&store, &tenant).await?;
            let a = store
                .terminate_tenant(
                    id,
                    smartchat_ledger::Actor::System,
                    time::OffsetDateTime::now_utc(),
                )
                .await?;
            services.ledger.sequence_all().await?;
            println!(
                "tenant {id}: {}; data deleted after {}",
                a.status,
                a.purge_after
                    .and_then(|p| time::OffsetDateTime::from_unix_timestamp(p / 1_000_000).ok())
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            );
            Ok(())
        }
        TenantCommand::List { json } => {
            let list = store.list_tenants().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<36}  {:<20}  {:<10}  NAME", "ID", "HANDLE", "STATUS");
                for t in list {
                    println!(
                        "{:<36}  {:<20}  {:<10}  {}",
                        t.id,
                        t.handle,
                        t.status,
                        t.name.as_deref().unwrap_or("<key shredded>")
                    );
                }
            }
            Ok(())
        }
        TenantCommand::Show { tenant, json } => {
            let id = resolve_tenant(&store, &tenant).await?;
            let view = store.tenant(id).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "tenant": view.summary,
                        "profile": view.profile.0,
                    }))?
                );
            } else {
                println!("id:       {}", view.summary.id);
                println!("handle:   {}", view.summary.handle);
                println!("status:   {}", view.summary.status);
                println!("numbers:  {}", view.summary.phone_number_ids.join(", "));
                println!(
                    "profile:\n{}",
                    serde_json::to_string_pretty(&view.profile.0)?
                );
            }
            Ok(())
        }
        TenantCommand::Providers {
            tenant,
            set,
            default,
        } => {
            let id = resolve_tenant(&store, &tenant).await?;
            if default || set.is_some() {
                let chain: Option<Vec<String>> = set.map(|s| {
                    s.split(',')
                        .map(|n| n.trim().to_owned())
                        .filter(|n| !n.is_empty())
                        .collect()
                });
                store
                    .set_provider_chain(id, chain.as_deref(), smartchat_ledger::Actor::System)
                    .await?;
                services.ledger.sequence_all().await?;
            }
            match store.provider_chain(id).await? {
                None => println!(
                    "providers: the platform's default (every configured provider), then offline"
                ),
                Some(c) if c.is_empty() => println!("providers: offline assistant only"),
                Some(c) => println!("providers: {}, then offline", c.join(", ")),
            }
            Ok(())
        }
    }
}

async fn policy(cmd: PolicyCommand, config: Config) -> anyhow::Result<()> {
    let (services, report) = boot::open(&config).await?;
    print_boot(&config, &report);
    let store = &services.store;
    let pol = &store.policy;
    match cmd {
        PolicyCommand::Show { tenant: None } => {
            println!("# platform policy, version {}", pol.platform().version());
            print!("{}", pol.platform().to_toml_string()?);
        }
        PolicyCommand::Show { tenant: Some(t) } => {
            let id = resolve_tenant(store, &t).await?;
            let eff = pol.effective(id).await?;
            println!(
                "# effective policy of tenant {id}, version {}",
                eff.version()
            );
            print!("{}", eff.to_toml_string()?);
        }
        PolicyCommand::Set { tenant, file } => {
            let id = resolve_tenant(store, &tenant).await?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let overrides = smartchat_policies::TenantOverrides::from_toml_str(
                &text,
                &file.display().to_string(),
            )?;
            let v = pol
                .set_overrides(id, &overrides, smartchat_ledger::Actor::System)
                .await?;
            services.ledger.sequence_all().await?;
            println!("tenant {id} now runs policy version {v}");
        }
        PolicyCommand::Notices { tenant } => {
            let id = resolve_tenant(store, &tenant).await?;
            let notices = pol.notices(id).await?;
            if notices.is_empty() {
                println!("no registry changes were announced to this tenant");
            }
            for n in notices {
                println!(
                    "{}  {}  {:?}  effective {}{}",
                    n.change.id.0,
                    n.change.processor.as_str(),
                    n.change.change,
                    n.change.effective_at,
                    if n.objected_at.is_some() {
                        "  (objected)"
                    } else {
                        ""
                    }
                );
            }
        }
        PolicyCommand::Object { tenant, change } => {
            let id = resolve_tenant(store, &tenant).await?;
            pol.object(id, &change, smartchat_ledger::Actor::System)
                .await?;
            services.ledger.sequence_all().await?;
            println!("objection recorded: {change} stays denied for tenant {id}");
        }
        PolicyCommand::Records { tenant, json } => {
            let id = resolve_tenant(store, &tenant).await?;
            let records = smartchat_api::settings::records_of(store, &services.ledger, id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                print!("{}", records.to_markdown());
            }
        }
    }
    Ok(())
}

async fn chat(config: Config, tenant: String, from: String) -> anyhow::Result<()> {
    use std::io::BufRead as _;
    let (services, report) = boot::open(&config).await?;
    print_boot(&config, &report);
    let store = services.store.clone();
    let id = resolve_tenant(&store, &tenant).await?;
    let view = store.tenant(id).await?;
    let from: smartchat_core::ids::PhoneNumber = from.parse()?;
    let analytics = smartchat_core::analytics::Analytics::open(
        &config.analytics_url,
        &smartchat_core::db::OpenOptions::default(),
    )
    .await?;
    let pipeline =
        smartchat_api::pipeline::Pipeline::new(store.clone(), &config)?.with_analytics(analytics);
    let Some(pnid) = smartchat_api::pipeline::sandbox_number(&pipeline, id).await? else {
        anyhow::bail!(
            "tenant {} has no sandbox number (one without an access token); create one with --phone-number-id and no --access-token",
            view.summary.handle
        );
    };
    println!(
        "sandbox chat with {} as +{}; an empty line ends it",
        view.summary.name.as_deref().unwrap_or("the business"),
        from.digits()
    );
    let mut shown = std::collections::HashSet::new();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            break;
        }
        let parsed = smartchat_api::pipeline::sandbox_payload(&pnid, &from, &line)?;
        smartchat_api::pipeline::ingest(&pipeline, &parsed).await?;
        smartchat_api::pipeline::drain(&pipeline).await?;
        services.ledger.sequence_all().await?;
        let Some(sid) = store
            .find_subject(id, smartchat_core::crypto::BlindKind::WaId, from.digits())
            .await?
        else {
            anyhow::bail!("the message was not stored");
        };
        let msgs = store.subject_messages(id, sid).await?;
        for m in msgs.iter().filter(|m| m.row.direction == "out") {
            if shown.insert(m.row.id.clone()) {
                println!(
                    "{}> {} [{}]",
                    m.row.author,
                    m.body.as_deref().unwrap_or(""),
                    m.row.status
                );
            }
        }
    }
    Ok(())
}

async fn search(cmd: SearchCommand, config: Config) -> anyhow::Result<()> {
    let (services, report) = boot::open(&config).await?;
    print_boot(&config, &report);
    let store = services.store.clone();
    let SearchCommand::Reindex { tenant } = cmd;
    let tenants = match tenant {
        Some(t) => vec![resolve_tenant(&store, &t).await?],
        None => store
            .list_tenants()
            .await?
            .into_iter()
            .filter(|t| t.status == "active")
            .map(|t| t.id)
            .collect(),
    };
    let search = smartchat_api::search::Search::new(store.clone(), config.data_dir.join("search"))?;
    for id in tenants {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} messages ({per_sec}, {eta} left)",
            )
            .map_err(|e| anyhow::anyhow!("progress bar: {e}"))?
            .progress_chars("=> "),
        );
        bar.set_message(format!("tenant {id}"));
        let b = bar.clone();
        let n = search
            .rebuild(id, move |done, total| {
                b.set_length(total);
                b.set_position(done);
            })
            .await?;
        bar.finish_and_clear();
        // The bar draws only on a terminal; the result is printed either way.
        println!("tenant {id}: {n} messages indexed");
    }
    // Apply whatever arrived meanwhile, then leave the feed to the server's indexer.
    search.apply_pending().await?;
    Ok(())
}

async fn resolve_tenant(store: &Store, s: &str) -> anyhow::Result<TenantId> {
    if let Ok(id) = s.parse::<TenantId>() {
        return Ok(id);
    }
    let handle: Handle = s.parse().context("not a tenant id or handle")?;
    Ok(store.tenant_by_handle(&handle).await?)
}

async fn rotate_master(config: Config, new_key_file: Option<PathBuf>) -> anyhow::Result<()> {
    let opts = OpenOptions::default();
    let keystore = DbPool::open(&config.keystore_url, &opts).await?;
    keystore.migrate(Schema::Keystore).await?;
    let mut report = boot::BootReport::default();
    let old = boot::load_master_key(&config, &keystore, &mut report).await?;
    if report.generated_master_key.is_some() {
        anyhow::bail!("there was no master key to rotate; a first one was just created");
    }
    let (new, write_to) = match &new_key_file {
        Some(p) => (
            MasterKey::parse(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            )?,
            None,
        ),
        None => {
            if config.master_key.is_some() {
                anyhow::bail!(
                    "the master key comes from SMARTCHAT_MASTER_KEY; pass --new-key-file with the new key"
                );
            }
            (MasterKey::generate(), Some(config.master_key_file.clone()))
        }
    };
    // Write the new key beside the old one first, so that a crash after the key store
    // commits still leaves the new key on disk.
    let staged = config.master_key_file.with_extension("new");
    if write_to.is_some() {
        boot::write_key_file(&staged, &new)?;
    }
    let n = Keyring::rotate_master(&keystore, &old, &new).await?;
    if let Some(path) = write_to {
        let backup = path.with_extension("old");
        std::fs::copy(&path, &backup).with_context(|| format!("backing up {}", path.display()))?;
        std::fs::rename(&staged, &path)
            .with_context(|| format!("installing the new key at {}", path.display()))?;
        println!(
            "new master key written to {} (previous key kept at {} — destroy it once backups are safe)",
            path.display(),
            backup.display()
        );
    }
    println!("re-wrapped {n} keys under master key {}", new.recipient());
    Ok(())
}
