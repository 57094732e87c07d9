//! The store on a PostgreSQL server, for sites whose kiosks and desks share one gallery.
//! The same tables, seals, ledger and audit chain as the SQLite file (`schema_postgres.sql`
//! is the same schema in PostgreSQL's words), opened with the same care: a database that
//! holds anything but Vouch's tables is refused and never written to, a newer schema is
//! refused, and a sealed store without its key file is refused.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::sql::{Db, OptionalExtension, params};
use super::{SCHEMA_VERSION, Store, keys_for};
use crate::error::{StoreError, StoreResult};

/// Opening a store takes this session lock, so that two kiosks starting at once against
/// an empty database do not both create the schema (one does; the other finds it).
const PREPARE_LOCK: i64 = 0x564F_5544;
/// The server's schema, step by step: the schema each step reaches, and its SQL. The
/// server store began at schema 3 (the SQLite file's schema then), so its first step
/// makes that whole; a later schema is one more step here and one in `migrations()`.
const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (3, include_str!("schema_postgres.sql")),
    (4, include_str!("schema_postgres_v4.sql")),
];

/// How long a kiosk waits for an unreachable server before it says so.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long data sent to the server may go unacknowledged before the connection counts
/// as lost.
const SILENT_SERVER: Duration = Duration::from_secs(10);

/// Whether `--db` names a server (`postgres://` or `postgresql://`) rather than a file.
pub fn is_server(db: &Path) -> bool {
    db.to_str()
        .is_some_and(|text| text.starts_with("postgres://") || text.starts_with("postgresql://"))
}

/// Connects to the server `url` names; returns the client and the address to name in
/// messages (never the password).
fn connect(url: &str) -> StoreResult<Db> {
    let refused = |reason: String| StoreError::Server {
        reason,
        location: PathBuf::from("the server named by --db"),
    };
    let mut config = postgres::Config::from_str(url).map_err(|e| refused(e.to_string()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    // A cable pulled mid-statement shows as a lost connection after this long, not after
    // the system's TCP retries (minutes), so the kiosk turns to its outbox.
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(SILENT_SERVER);
    }
    if config.get_application_name().is_none() {
        config.application_name("vouch");
    }
    let location = describe(&config);
    let client =
        open_client(&config).map_err(|e| super::sql::server_error(e, Path::new(&location)))?;
    Ok(Db::postgres(client, config, &location))
}

/// The site's own certificate authority, for a server whose certificate it signed: the
/// PEM file `--db-ca` (or this variable) names.
pub const CA_VARIABLE: &str = "VOUCH_DB_CA";
static SITE_CA: std::sync::RwLock<Option<PathBuf>> = std::sync::RwLock::new(None);

/// Trusts the certificate authority in the PEM file `path` (besides the system's roots)
/// for every server connection this process makes from now on; returns the one trusted
/// before, to put back.
pub fn trust_site_ca(path: Option<PathBuf>) -> Option<PathBuf> {
    let mut trusted = SITE_CA
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    std::mem::replace(&mut *trusted, path)
}

fn site_ca() -> Option<PathBuf> {
    SITE_CA
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
        .or_else(|| std::env::var_os(CA_VARIABLE).map(PathBuf::from))
}

/// A session with the server `config` names. Unless the URL says `sslmode=disable`, the
/// connection is TLS (rustls) whenever the server offers it, and always with
/// `sslmode=require`; the server's certificate must chain to the system's roots or to
/// the site's CA (`trust_site_ca`), and carry the host's name (stricter than libpq's
/// `require`, which checks neither).
pub(super) fn open_client(config: &postgres::Config) -> Result<postgres::Client, postgres::Error> {
    if config.get_ssl_mode() == postgres::config::SslMode::Disable {
        return config.connect(postgres::NoTls);
    }
    config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls_config()))
}

fn tls_config() -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = site_ca() {
        match CertificateDer::pem_file_iter(&path) {
            Ok(certs) => {
                let (added, ignored) = roots.add_parsable_certificates(certs.flatten());
                if added == 0 || ignored > 0 {
                    tracing::warn!(path = %Path::new(&path).display(), added, ignored, "the site's CA file held certificates that could not be used");
                }
            }
            Err(error) => {
                tracing::error!(path = %Path::new(&path).display(), %error, "the site's CA file could not be read");
            }
        }
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// `postgres://user@host:port/dbname`, without the password.
fn describe(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or_default(),
        config.get_dbname().unwrap_or_default()
    )
}

/// The schema version of the Vouch store in this database; 0 when it holds no table at
/// all; `Foreign` when it holds tables that are not a Vouch store.
fn schema_version(db: &Db) -> StoreResult<i64> {
    let has_meta: bool = db.query_row(
        "SELECT to_regclass('vouch_meta') IS NOT NULL",
        params![],
        |row| row.get(0),
    )?;
    let foreign = || StoreError::Foreign {
        path: db.location().to_path_buf(),
    };
    if !has_meta {
        let tables: i64 = db.query_row(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()",
            params![],
            |row| row.get(0),
        )?;
        return if tables == 0 { Ok(0) } else { Err(foreign()) };
    }
    db.query_row(
        "SELECT application, schema_version FROM vouch_meta WHERE id = 1",
        params![],
        |row| Ok((row.get::<String>(0)?, row.get::<i64>(1)?)),
    )
    .optional()?
    .filter(|(application, _)| application == "vouch")
    .map(|(_, version)| version)
    .ok_or_else(foreign)
}

impl Store {
    /// Opens the store on the server `url` names to read and write, creating its schema in
    /// an empty database. Its key file (`key_path`) must be the one every kiosk of the
    /// site shares: it is made only with a new store.
    pub fn open_server(url: &str, key_path: &Path) -> StoreResult<Self> {
        let db = connect(url)?;
        db.execute("SELECT pg_advisory_lock(?1)", params![PREPARE_LOCK])?;
        let location = db.location().to_path_buf();
        let mut store = Self {
            conn: db,
            path: location.clone(),
            keys: None,
            read_only: false,
            outbox: None,
        };
        // On failure the connection closes, and the lock with it.
        store.prepare_server(key_path)?;
        store
            .conn
            .execute("SELECT pg_advisory_unlock(?1)", params![PREPARE_LOCK])?;
        Ok(store)
    }

    fn prepare_server(&mut self, key_path: &Path) -> StoreResult<()> {
        let version = schema_version(&self.conn)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Newer {
                found: version,
                known: SCHEMA_VERSION,
                path: self.path.clone(),
            });
        }
        let keys = keys_for(version, key_path)?;
        for (reaches, sql) in POSTGRES_MIGRATIONS {
            if *reaches > version {
                // Each step sets `vouch_meta.schema_version` itself, in its transaction.
                self.conn.execute_batch(&format!("BEGIN; {sql} COMMIT;"))?;
            }
        }
        self.seal_unsealed(version, keys)
    }

    /// Opens the store on a server without writing to it: every transaction of this
    /// session is read-only, so a command that only reads cannot change the site.
    pub fn open_server_read_only(url: &str, key_path: &Path) -> StoreResult<Self> {
        let db = connect(url)?;
        db.set_session("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")?;
        let path = db.location().to_path_buf();
        match schema_version(&db)? {
            0 => {
                return Err(StoreError::Io {
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                    path,
                });
            }
            version if version < SCHEMA_VERSION => return Err(StoreError::Older { path }),
            version if version > SCHEMA_VERSION => {
                return Err(StoreError::Newer {
                    found: version,
                    known: SCHEMA_VERSION,
                    path,
                });
            }
            _ => {}
        }
        Ok(Self {
            conn: db,
            path,
            keys: super::Keys::load(key_path)?,
            read_only: true,
            outbox: None,
        })
    }
}

/// The channel every write that changes who is enrolled notifies, inside its transaction
/// (so the note leaves at commit, never for a rolled-back write).
pub const GALLERY_CHANNEL: &str = "vouch_gallery";
/// More people than this in one write: the note says "everything" (a notification carries
/// under 8000 bytes).
const MOST_PEOPLE_NAMED: usize = 500;
/// How often a quiet listener checks that its server is still there.
const LISTENER_CHECK: Duration = Duration::from_secs(2);

/// What changed in the enrolled gallery, as another kiosk or desk said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GalleryChange {
    /// These people were enrolled, re-enrolled, re-embedded or deleted: read them again.
    People(Vec<i64>),
    /// The site's decision rules changed (bands, a person's offset, a PIN, the repeat
    /// window): only what a kiosk keeps to decide without the server is read again.
    Rules,
    /// Read the whole gallery again: a write named too many people, or this kiosk was cut
    /// off from the server and may have missed notes.
    Everything,
}

/// The note of a write that changed settings only.
const RULES_PAYLOAD: &str = "rules";

impl GalleryChange {
    /// A note's changes: "*", or its tokens ("rules", person ids); anything unreadable
    /// is "everything".
    fn from_payload(payload: &str) -> Vec<Self> {
        if payload == "*" {
            return vec![GalleryChange::Everything];
        }
        let mut rules = false;
        let mut people = Vec::new();
        for token in payload.split(',') {
            match (token, token.parse::<i64>()) {
                (RULES_PAYLOAD, _) => rules = true,
                (_, Ok(person_id)) => people.push(person_id),
                (_, Err(_)) => return vec![GalleryChange::Everything],
            }
        }
        let mut changes = Vec::new();
        if rules {
            changes.push(GalleryChange::Rules);
        }
        if !people.is_empty() {
            changes.push(GalleryChange::People(people));
        }
        changes
    }
}

/// The people a write changed in the gallery, as its notification says them.
pub(super) fn gallery_payload(
    db: &Db,
    changes: &super::ledger::Changes,
) -> StoreResult<Option<String>> {
    let mut people = std::collections::BTreeSet::new();
    for (table, keys) in changes
        .put
        .iter()
        .map(|(t, rows)| (t, rows.keys().cloned().collect::<Vec<_>>()))
        .chain(
            changes
                .gone
                .iter()
                .map(|(t, keys)| (t, keys.iter().cloned().collect())),
        )
    {
        match table.as_str() {
            "people" => people.extend(keys.iter().filter_map(|k| k.parse::<i64>().ok())),
            "templates" => {
                if keys.len() > MOST_PEOPLE_NAMED {
                    return Ok(Some("*".into()));
                }
                // One statement for any number of ids (a statement per list would be
                // prepared anew on the server each time).
                let ids: Vec<String> = keys
                    .iter()
                    .filter_map(|k| k.parse::<i64>().ok())
                    .map(|id| id.to_string())
                    .collect();
                if !ids.is_empty() {
                    let owners = db.query_map(
                        "SELECT DISTINCT person_id FROM templates
                         WHERE id = ANY (string_to_array(?1, ',')::bigint[])",
                        params![ids.join(",")],
                        |row| row.get::<i64>(0),
                    )?;
                    people.extend(owners);
                }
            }
            _ => {}
        }
    }
    let rules = changes.put.contains_key("settings") || changes.gone.contains_key("settings");
    if people.len() > MOST_PEOPLE_NAMED
        || (people.is_empty() && changes.gone.contains_key("templates"))
    {
        return Ok(Some("*".into()));
    }
    let tokens: Vec<String> = rules
        .then(|| RULES_PAYLOAD.to_string())
        .into_iter()
        .chain(people.iter().map(i64::to_string))
        .collect();
    Ok((!tokens.is_empty()).then(|| tokens.join(",")))
}

/// A kiosk's ear on the server: a connection of its own that listens on
/// `GALLERY_CHANNEL` in a thread and hands over what it hears. When the server goes
/// away it keeps trying to reconnect, and once back says `Everything`.
pub struct GalleryFeed {
    changes: std::sync::mpsc::Receiver<GalleryChange>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Whether the listener has the server now.
    connected: std::sync::Arc<std::sync::atomic::AtomicBool>,
    listener: Option<std::thread::JoinHandle<()>>,
}

impl GalleryFeed {
    /// Starts listening on the server `url` names; fails at once when it cannot be reached.
    pub fn listen(url: &str) -> StoreResult<Self> {
        let first = listening(url)?;
        let (send, changes) = std::sync::mpsc::channel();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connected = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let listener = {
            let url = url.to_string();
            let (stop, connected) = (
                std::sync::Arc::clone(&stop),
                std::sync::Arc::clone(&connected),
            );
            std::thread::Builder::new()
                .name("gallery feed".into())
                .spawn(move || listen_until_stopped(&url, first, &send, &stop, &connected))
                .map_err(|e| StoreError::Io {
                    source: e,
                    path: PathBuf::from("the gallery feed's thread"),
                })?
        };
        Ok(Self {
            changes,
            stop,
            connected,
            listener: Some(listener),
        })
    }

    /// Whether the server answered the feed's last check (every `LISTENER_CHECK`): a
    /// kiosk that finds it gone works from its gallery, roster and outbox.
    pub fn connected(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every change heard since the last call, oldest first.
    pub fn pending(&self) -> Vec<GalleryChange> {
        self.changes.try_iter().collect()
    }

    /// The next change, waiting up to `timeout`.
    pub fn next_within(&self, timeout: Duration) -> Option<GalleryChange> {
        self.changes.recv_timeout(timeout).ok()
    }
}

impl Drop for GalleryFeed {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(listener) = self.listener.take() {
            let _ = listener.join();
        }
    }
}

fn listening(url: &str) -> StoreResult<postgres::Client> {
    let db = connect(url)?;
    db.execute_batch(&format!("LISTEN {GALLERY_CHANNEL}"))?;
    Ok(db.into_client().expect("connect makes a server connection"))
}

fn listen_until_stopped(
    url: &str,
    mut client: postgres::Client,
    send: &std::sync::mpsc::Sender<GalleryChange>,
    stop: &std::sync::atomic::AtomicBool,
    connected: &std::sync::atomic::AtomicBool,
) {
    use postgres::fallible_iterator::FallibleIterator;
    use std::sync::atomic::Ordering;
    let mut last_check = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut lost = false;
        {
            let mut notifications = client.notifications();
            let mut heard = notifications.timeout_iter(Duration::from_millis(100));
            loop {
                match heard.next() {
                    Ok(Some(note)) => {
                        for change in GalleryChange::from_payload(note.payload()) {
                            if send.send(change).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        lost = true;
                        break;
                    }
                }
            }
        }
        if !lost && last_check.elapsed() >= LISTENER_CHECK {
            lost = client.is_valid(LISTENER_CHECK).is_err();
            last_check = std::time::Instant::now();
        }
        if lost {
            connected.store(false, Ordering::Relaxed);
            tracing::warn!("the gallery feed lost the server; reconnecting");
            let mut wait = Duration::from_millis(200);
            client = loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(wait);
                match listening(url) {
                    Ok(client) => break client,
                    Err(error) => {
                        tracing::debug!(%error, "the server is still away");
                        wait = (wait * 2).min(Duration::from_secs(2));
                    }
                }
            };
            connected.store(true, Ordering::Relaxed);
            tracing::info!("the gallery feed is back: reloading the whole gallery");
            if send.send(GalleryChange::Everything).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::GalleryChange;

    #[test]
    fn the_servers_migrations_reach_the_files_schema() {
        let steps: Vec<i64> = super::POSTGRES_MIGRATIONS.iter().map(|(v, _)| *v).collect();
        assert!(steps.is_sorted(), "{steps:?}");
        assert_eq!(steps.last(), Some(&super::SCHEMA_VERSION));
        for (reaches, sql) in super::POSTGRES_MIGRATIONS {
            assert!(
                sql.contains(&format!("schema_version) VALUES (1, 'vouch', {reaches})"))
                    || sql.contains(&format!("SET schema_version = {reaches}")),
                "the step to {reaches} records it in vouch_meta"
            );
        }
    }

    #[test]
    fn a_note_names_people_or_asks_for_everything() {
        assert_eq!(
            GalleryChange::from_payload("3,17"),
            vec![GalleryChange::People(vec![3, 17])]
        );
        assert_eq!(
            GalleryChange::from_payload("rules"),
            vec![GalleryChange::Rules]
        );
        assert_eq!(
            GalleryChange::from_payload("rules,4"),
            vec![GalleryChange::Rules, GalleryChange::People(vec![4])]
        );
        for payload in ["*", "", "3,x", "9999999999999999999999"] {
            assert_eq!(
                GalleryChange::from_payload(payload),
                vec![GalleryChange::Everything]
            );
        }
    }
}
