//! The subscriber base of a benchmark: a CSV both servers load (contract
//! states active, reduced, blocked, released, cancelled), and liberad's
//! database filled from it: contracts and logins through liberad's own
//! import, and, as a fixture written in bulk, the running releases of the
//! `released` contracts with, optionally, a session online for each.

use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use liberad::config::{DatabaseConfig, DatabaseUrl};
use liberad::model::AccountingEvent;
use liberad::model::Actor;

#[derive(Clone, Debug, clap::Args)]
pub struct SubscribersArgs {
    /// How many logins (one contract each).
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Percentages of each state, e.g. active=85,reduced=3,blocked=8,released=3,cancelled=1.
    #[arg(
        long,
        default_value = "active=85,reduced=3,blocked=8,released=3,cancelled=1"
    )]
    pub mix: String,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Clone, Debug, clap::Args)]
pub struct SeedArgs {
    /// liberad's database, sqlite://PATH or postgres://…
    #[arg(long)]
    pub database: String,
    /// The CSV `subscribers` wrote.
    #[arg(long)]
    pub subscribers: PathBuf,
    /// When the releases of `released` contracts end, in seconds from now.
    #[arg(long, default_value_t = 172_800)]
    pub release_ends_in: i64,
    /// Instead, when they end, in Unix seconds.
    #[arg(long)]
    pub release_ends_at: Option<i64>,
    /// Put one session online for each released contract, on NAS
    /// 127.0.0.1 (so that their end is enforced).
    #[arg(long)]
    pub online_released: bool,
}

const STATES: [&str; 5] = ["active", "reduced", "blocked", "released", "cancelled"];

/// The state of each of 100 buckets, from a mix.
fn buckets(mix: &str) -> Result<Vec<&'static str>, String> {
    let mut out = Vec::with_capacity(100);
    for part in mix.split(',').filter(|p| !p.is_empty()) {
        let (name, percent) = part
            .split_once('=')
            .ok_or_else(|| format!("--mix: {part:?} is not STATE=PERCENT"))?;
        let state = STATES
            .iter()
            .find(|s| **s == name.trim())
            .ok_or_else(|| format!("--mix: unknown state {name:?}"))?;
        let percent: usize = percent
            .trim()
            .parse()
            .map_err(|_| format!("--mix: {percent:?} is not a whole percentage"))?;
        out.extend(std::iter::repeat_n(*state, percent));
    }
    if out.len() != 100 {
        return Err(format!(
            "--mix: the percentages add up to {}, not 100",
            out.len()
        ));
    }
    Ok(out)
}

pub fn subscribers(args: &SubscribersArgs) -> Result<(), String> {
    let buckets = buckets(&args.mix)?;
    let mut text = String::with_capacity(args.count as usize * 56 + 64);
    text.push_str("contract_id,state,username,password,reply\n");
    for i in 0..args.count {
        // Spread the states evenly rather than in runs.
        let state = buckets[((i * 37) % 100) as usize];
        let _ = writeln!(
            text,
            "c{i},{state},user{i},pw{i},Mikrotik-Rate-Limit = 10M/10M"
        );
    }
    std::fs::write(&args.out, text).map_err(|e| format!("cannot write {}: {e}", args.out.display()))
}

/// Fills liberad's database; returns what it wrote.
pub async fn seed(args: &SeedArgs) -> Result<String, String> {
    let csv = std::fs::read_to_string(&args.subscribers)
        .map_err(|e| format!("cannot read {}: {e}", args.subscribers.display()))?;
    // liberad has no `released` state: a released contract is a blocked
    // one with a running release.
    let mut released = Vec::new();
    let mut text = String::with_capacity(csv.len());
    for (n, line) in csv.lines().enumerate() {
        let mut fields: Vec<&str> = line.splitn(5, ',').collect();
        if n > 0 && fields.get(1) == Some(&"released") {
            released.push((fields[0].to_owned(), fields[2].to_owned()));
            fields[1] = "blocked";
        }
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    let mut rows = liberad::import::stream(
        move || Ok(std::io::Cursor::new(text.into_bytes())),
        |_| Ok(()),
    )
    .await
    .map_err(|e| e.to_string())?;
    let config = DatabaseConfig::default();
    let store = liberad::store::open(&config, &args.database)
        .await
        .map_err(|e| e.to_string())?;
    let now = Utc::now();
    let app = liberad::app::App::new(
        std::sync::Arc::clone(&store),
        std::sync::Arc::new(liberad::clock::FixedClock(now - Duration::days(3))),
        chrono_tz::UTC,
    );
    let outcome = app
        .import(&Actor::default(), &mut rows, false)
        .await
        .map_err(|e| e.to_string())?;
    if !outcome.applied {
        return Err(format!(
            "{} rows rejected: {:?}",
            outcome.rejected_total,
            outcome.rejected.first()
        ));
    }
    let counts = outcome.counts;
    let started = now - Duration::days(1);
    let ends = match args.release_ends_at {
        Some(at) => DateTime::from_timestamp(at, 0).ok_or("--release-ends-at: out of range")?,
        None => now + Duration::seconds(args.release_ends_in),
    };
    insert_releases(&args.database, &released, started, ends).await?;
    if args.online_released {
        for chunk in released.chunks(10_000) {
            let events: Vec<AccountingEvent> = chunk
                .iter()
                .map(|(_, user)| AccountingEvent {
                    at: now,
                    nas_name: "bench".into(),
                    nas_identity: "127.0.0.1".into(),
                    nas_address: "127.0.0.1".into(),
                    nas_ip_address: Some("127.0.0.1".into()),
                    username: user.clone(),
                    acct_session_id: format!("online-{user}"),
                    ..AccountingEvent::default()
                })
                .collect();
            store
                .record_accounting(&events)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    store.close().await;
    Ok(format!(
        "{} contracts, {} logins, {} running releases ending at {}{}",
        counts.contracts_created,
        counts.logins_created,
        released.len(),
        ends.to_rfc3339(),
        if args.online_released {
            ", each with a session online"
        } else {
            ""
        }
    ))
}

/// The releases, in one transaction of multi-row inserts (the contract ids
/// are the generated `c<N>`, safe to write into the statement).
async fn insert_releases(
    url: &str,
    contracts: &[(String, String)],
    started: DateTime<Utc>,
    ends: DateTime<Utc>,
) -> Result<(), String> {
    let mut sql = String::from("BEGIN;\n");
    for chunk in contracts.chunks(1000) {
        sql.push_str(
            "INSERT INTO releases (contract_id, started_at, ends_at, operator, reason) VALUES ",
        );
        for (i, (contract, _)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            let _ = write!(
                sql,
                "('{contract}', {}, {}, 'bench', 'benchmark fixture')",
                started.timestamp(),
                ends.timestamp()
            );
        }
        sql.push_str(";\n");
    }
    sql.push_str("COMMIT;\n");
    let error = |e: sqlx::Error| format!("cannot write the releases: {e}");
    match DatabaseUrl::parse(url)? {
        DatabaseUrl::Sqlite(path) => {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let pool = sqlx::SqlitePool::connect_with(options)
                .await
                .map_err(error)?;
            sqlx::raw_sql(&sql).execute(&pool).await.map_err(error)?;
            pool.close().await;
        }
        DatabaseUrl::Postgres(url) => {
            let pool = sqlx::PgPool::connect(&url).await.map_err(error)?;
            sqlx::raw_sql(&sql).execute(&pool).await.map_err(error)?;
            pool.close().await;
        }
    }
    Ok(())
}
