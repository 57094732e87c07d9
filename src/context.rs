//! The global options, resolved once: where the database, the weights and the training
//! runs live, which device runs the networks, who acts, and which signature model is in
//! force. The CLI and the window both build one from the same flags and open the store
//! and load the models through it, so they cannot disagree about any of these.

use std::path::PathBuf;

use candle_core::Device;

use crate::error::Result;
use crate::face::FaceModels;
use crate::signature::{SIGNATURE_MODEL_FILE, SignatureModel};
use crate::store::Store;
use crate::workflow::active_signature_model;

#[derive(Debug, Clone)]
pub struct Context {
    pub models_dir: PathBuf,
    /// A signature model named on the command line: used instead of the database's
    /// active one.
    pub signature_model: Option<PathBuf>,
    pub db: PathBuf,
    /// The database's key file [default: beside the database, `<db>.key`].
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

    /// Where training runs write their model versions: beside the database, so each site
    /// (each `--db`) keeps its own.
    pub fn runs_dir(&self) -> PathBuf {
        self.db.with_file_name("models")
    }

    /// Where the HTML reports of governed changes are saved.
    pub fn reports_dir(&self) -> PathBuf {
        self.db.with_file_name("reports")
    }

    /// Where camera frames captured for enrollment are saved.
    pub fn captures_dir(&self) -> PathBuf {
        self.db.with_file_name("captures")
    }

    /// The database's key file.
    pub fn key_path(&self) -> PathBuf {
        self.key
            .clone()
            .unwrap_or_else(|| crate::store::Keys::path_for(&self.db))
    }

    /// Opens the database to read and write, creating it (in a private folder) and its
    /// key when absent.
    pub fn open_store(&self) -> Result<Store> {
        Ok(Store::open_with_key(&self.db, &self.key_path())?)
    }

    /// Opens the database without writing to it: what every command that only reads
    /// uses, so a read-only copy can be listed and audited.
    pub fn read_store(&self) -> Result<Store> {
        Ok(Store::open_read_only_with_key(&self.db, &self.key_path())?)
    }

    /// The database, read-only, when it exists: work that needs none (comparing two
    /// scans, an evaluation) still follows its settings when there is one.
    pub fn existing_store(&self) -> Result<Option<Store>> {
        if self.db.is_file() {
            Ok(Some(self.read_store()?))
        } else {
            Ok(None)
        }
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
