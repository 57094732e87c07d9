//! The global options, resolved once: where the database, the weights and the training
//! runs live, which device runs the networks, who acts, and which signature model is in
//! force. The CLI and the window both build one from the same flags and open the store
//! and load the models through it, so they cannot disagree about any of these.

use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::error::Result;
use crate::face::FaceModels;
use crate::signature::{SIGNATURE_MODEL_FILE, SignatureModel};
use crate::store::{self, Store};
use crate::workflow::active_signature_model;

#[derive(Debug, Clone)]
pub struct Context {
    pub models_dir: PathBuf,
    /// A signature model named on the command line: used instead of the database's
    /// active one.
    pub signature_model: Option<PathBuf>,
    /// A SQLite file, or a PostgreSQL server's URL (`postgres://user@host/dbname`).
    pub db: PathBuf,
    /// The database's key file [default: beside the database, `<db>.key`; for a server,
    /// `postgres.key` in the user's data folder: every kiosk of a site needs a copy of
    /// the one made with the store].
    pub key: Option<PathBuf>,
    pub device: Device,
    /// Who acts: on a database without operator accounts, the name the audit log records;
    /// with accounts, the account a command logs in as (`login`).
    pub operator: String,
    /// The operator named explicitly (`--operator`), as opposed to `$USER`: the only name
    /// a command logs in as.
    pub login: Option<String>,
    /// Lowest detector score accepted as a face.
    pub min_face_score: f32,
    /// This machine's config file (`SiteConfig::path()`), which a switch of database
    /// writes.
    pub config: PathBuf,
    /// How the window looks on this machine (its config file's `theme`).
    pub theme: Theme,
}

/// The window's look: the system's, or one a site fixes for a machine (a kiosk in a
/// daylit lobby, a desk in a dim back office) whatever the system says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

/// Where a machine keeps its database settings, so that a kiosk started from a desktop
/// launcher (no flags) opens the site's server: `vouch.toml` in the user's config folder
/// (`~/.config/vouch/` on Linux), or the file `$VOUCH_CONFIG` names. Flags override it.
/// ```toml
/// db = "postgres://kiosk1@dbhost/vouch"
/// key = "/etc/vouch/site.key"
/// db_ca = "/etc/vouch/site-ca.pem"
/// theme = "light"    # or "dark"; the system's when absent
/// ```
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub db: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub db_ca: Option<PathBuf>,
    pub theme: Option<Theme>,
}

/// Whether `db` may be a machine's database from its config file: a server, or a database
/// file that is already there, named by its whole path. Opening a missing file makes an
/// empty database with a new key, so a mistyped address would leave a kiosk without its
/// staff and its operators (and anyone at a window without accounts may do everything);
/// a relative path names another file once the machine starts in another folder.
fn site_database(db: &Path) -> std::result::Result<(), String> {
    if store::is_server(db) {
        Ok(())
    } else if !db.is_absolute() {
        Err(format!(
            "{} is neither a server's address (postgres://…) nor a database file's whole path",
            db.display()
        ))
    } else if !db.is_file() {
        Err(format!("there is no database at {}", db.display()))
    } else {
        Ok(())
    }
}

impl SiteConfig {
    /// The config file's path, whether or not it exists.
    pub fn path() -> PathBuf {
        std::env::var_os("VOUCH_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                dirs::config_dir()
                    .unwrap_or_else(|| PathBuf::from("."))
                    .join("vouch")
                    .join("vouch.toml")
            })
    }

    /// The settings in the config file; none when there is no file. A file that does not
    /// read is an error naming it: a kiosk must not quietly fall back to a local database.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text)
                .map_err(|reason| crate::Error::Invalid(format!("{}: {reason}", path.display()))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(crate::Error::io(error, path)),
        }
    }

    /// The database this file (read from `path`) names, when it names one, checked as
    /// `site_database` says: a kiosk whose database went missing says so instead of
    /// starting on an empty one.
    pub fn database(&self, path: &Path) -> Result<Option<PathBuf>> {
        if let Some(db) = &self.db {
            site_database(db).map_err(|reason| {
                crate::Error::Invalid(format!(
                    "{}: {reason} (point this machine elsewhere with --db, or mend the file)",
                    path.display()
                ))
            })?;
        }
        Ok(self.db.clone())
    }

    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Replaces the config file with these settings, private to this user (a URL may
    /// carry a password), never half written.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            store::files::create_private_dir(dir)?;
        }
        let text = toml::to_string(self).map_err(|e| crate::Error::Invalid(e.to_string()))?;
        Ok(store::files::write_private(path, text.as_bytes())?)
    }
}

impl Context {
    /// `vouch.db` in the user's data folder (`~/.local/share/vouch/` on Linux).
    pub fn default_db() -> PathBuf {
        dirs::data_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("vouch")
            .join("vouch.db")
    }

    /// The signature model that ships in the models folder.
    pub fn shipped_signature_model(&self) -> PathBuf {
        self.models_dir.join(SIGNATURE_MODEL_FILE)
    }

    /// Whether `db` names a PostgreSQL server.
    pub fn on_server(&self) -> bool {
        store::is_server(&self.db)
    }

    /// The folder this machine keeps its own files in: beside the database file, so each
    /// site (each `--db`) keeps its own; the user's data folder for a server.
    fn local_dir(&self) -> PathBuf {
        if self.on_server() {
            Self::default_db().with_file_name("")
        } else {
            self.db.with_file_name("")
        }
    }

    /// Where training runs write their model versions.
    pub fn runs_dir(&self) -> PathBuf {
        self.local_dir().join("models")
    }

    /// Where the HTML reports of governed changes are saved.
    pub fn reports_dir(&self) -> PathBuf {
        self.local_dir().join("reports")
    }

    /// Where camera frames captured for enrollment are saved.
    pub fn captures_dir(&self) -> PathBuf {
        self.local_dir().join("captures")
    }

    /// This kiosk's outbox for the server `store` is on, beside the key file (as private
    /// as it): one per server (its host, port and database), so a punch queued for one
    /// site is never sent to another.
    pub fn outbox_path(&self, store: &Store) -> PathBuf {
        use sha2::Digest;
        let server = sha2::Sha256::digest(store.path().to_string_lossy().as_bytes());
        let name = format!("outbox-{}.db", &hex::encode(server)[..16]);
        self.key_path().with_file_name(name)
    }

    /// The database's key file.
    pub fn key_path(&self) -> PathBuf {
        match &self.key {
            Some(key) => key.clone(),
            None if self.on_server() => self.local_dir().join("postgres.key"),
            None => store::Keys::path_for(&self.db),
        }
    }

    /// Points this machine at the database `site` names from its next start (the config
    /// file): a server, or a database file that already exists, named by its whole path.
    /// That database is opened first, as the next start will open it, so a wrong
    /// address, key or certificate authority is said now rather than at the kiosk's next
    /// boot; the switch is an audit row in `current`, the database the machine leaves.
    /// Returns the config file written.
    pub fn switch_database(
        &self,
        current: &mut Store,
        site: &SiteConfig,
        actor: &str,
    ) -> Result<PathBuf> {
        let Some(db) = site.db.clone() else {
            return Err(crate::Error::Invalid(
                "name a database file or server".into(),
            ));
        };
        site_database(&db).map_err(|reason| {
            crate::Error::Invalid(format!(
                "{reason}; nothing changed (a new database is made by starting vouch once \
                 with --db and its whole path)"
            ))
        })?;
        // The CA typed is trusted only if the switch goes through.
        let trusted_before = site.db_ca.clone().map(|ca| store::trust_site_ca(Some(ca)));
        let opened = self.on_db(db, site.key.clone()).open_store();
        let next = match opened {
            Ok(next) => next,
            Err(error) => {
                if let Some(before) = trusted_before {
                    store::trust_site_ca(before);
                }
                return Err(error);
            }
        };
        let detail = serde_json::json!({
            "db": next.path().display().to_string(),
            "key": site.key,
            "db_ca": site.db_ca,
            "config": self.config,
        });
        drop(next);
        let previous = SiteConfig::load(&self.config)?;
        // A switch of database names the database; the machine's look stays its own.
        let site = SiteConfig {
            theme: previous.theme,
            ..site.clone()
        };
        site.save(&self.config)?;
        // Never a switch the audit does not show: without its row, the old file returns.
        if let Err(error) = current.audit_append(actor, "machine_database", &detail.to_string()) {
            previous.save(&self.config)?;
            return Err(error.into());
        }
        Ok(self.config.clone())
    }

    /// The same context on another database (with its default key file unless `key`).
    pub fn on_db(&self, db: PathBuf, key: Option<PathBuf>) -> Context {
        Context {
            db,
            key,
            ..self.clone()
        }
    }

    /// Opens the database to read and write, creating it (a file in a private folder, or
    /// the schema in an empty server database) and its key when absent.
    pub fn open_store(&self) -> Result<Store> {
        let key = self.key_path();
        Ok(match self.server_url() {
            Some(url) => Store::open_server(url, &key)?,
            None => Store::open_with_key(&self.db, &key)?,
        })
    }

    /// Opens the database without writing to it: what every command that only reads
    /// uses, so a read-only copy can be listed and audited.
    pub fn read_store(&self) -> Result<Store> {
        let key = self.key_path();
        Ok(match self.server_url() {
            Some(url) => Store::open_server_read_only(url, &key)?,
            None => Store::open_read_only_with_key(&self.db, &key)?,
        })
    }

    /// The database, read-only, when it exists: work that needs none (comparing two
    /// scans, an evaluation) still follows its settings when there is one.
    pub fn existing_store(&self) -> Result<Option<Store>> {
        if self.on_server() || self.db.is_file() {
            Ok(Some(self.read_store()?))
        } else {
            Ok(None)
        }
    }

    /// The server's URL when `db` names one.
    pub fn server_url(&self) -> Option<&str> {
        self.db.to_str().filter(|_| self.on_server())
    }

    pub fn load_faces(&self) -> Result<FaceModels> {
        let mut models = FaceModels::load(&self.models_dir, &self.device)?;
        models.min_detection_score = self.min_face_score;
        Ok(models)
    }

    /// The signature model in force: the one named on the command line, else the one
    /// activated in the database, else the shipped one.
    pub fn signature_model_path(&self, store: Option<&Store>) -> Result<PathBuf> {
        match (&self.signature_model, store) {
            (Some(explicit), _) => Ok(explicit.clone()),
            (None, Some(store)) => active_signature_model(store, &self.shipped_signature_model()),
            (None, None) => Ok(self.shipped_signature_model()),
        }
    }

    pub fn load_signature_model(&self, store: Option<&Store>) -> Result<SignatureModel> {
        SignatureModel::load(&self.signature_model_path(store)?, &self.device)
    }
}

#[cfg(test)]
mod tests {
    use super::{SiteConfig, Theme};

    #[test]
    fn a_site_config_names_the_server_and_refuses_what_it_does_not_know() {
        let config = SiteConfig::parse(
            "db = \"postgres://kiosk1@dbhost/vouch\"\nkey = \"/etc/vouch/site.key\"\n",
        )
        .unwrap();
        assert_eq!(
            config.db.as_deref(),
            Some(std::path::Path::new("postgres://kiosk1@dbhost/vouch"))
        );
        assert_eq!(config.db_ca, None);
        assert!(SiteConfig::parse("database = \"typo.db\"").is_err());
        assert!(SiteConfig::parse("db = 3").is_err());
    }

    #[test]
    fn a_site_config_fixes_the_look_only_with_a_look_it_knows() {
        assert_eq!(SiteConfig::parse("").unwrap().theme, None);
        assert_eq!(
            SiteConfig::parse("theme = \"light\"").unwrap().theme,
            Some(Theme::Light)
        );
        let refused = SiteConfig::parse("theme = \"sepia\"").unwrap_err();
        assert!(
            refused.contains("sepia") && refused.contains("light"),
            "{refused}"
        );
    }
}
